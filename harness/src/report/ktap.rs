//! KTAP version 1, the result format of the kernel's own test frameworks
//! (KUnit, kselftest), so modvm runs can feed the same tooling: the kernel's
//! KUnit parser, KernelCI, LAVA.
//!
//! Each modvm test is a test with its steps as subtests. Results are written
//! as each test finishes, so a consumer reading a pipe sees progress and a
//! killed run still leaves every finished test parseable.
//!
//! Layout choices, all within the KTAP v1 rules:
//! - nesting is indented two spaces per level, as the specification says
//!   (KUnit itself happens to use four; parsers accept any indentation);
//! - a step that did not run is `ok ... # SKIP`, so it does not count as a
//!   failure of its own, the failing step before it already does;
//! - timeouts and harness errors use the `TIMEOUT` and `ERROR` directives
//!   with the reason as diagnostic data; fails and crashes have no
//!   directive and explain themselves in `#` lines just before the result;
//! - descriptions cannot contain `#` (it starts the directive), so `#` is
//!   replaced and line breaks are folded.

use super::file::{FirstError, ReportError};
use crate::outcome::{CaseResult, Event, Reporter, Status, StepResult, Summary, TestResult};
use std::io::{self, Write};

/// One level of nesting.
const INDENT: &str = "  ";

pub struct Ktap {
    out: Box<dyn Write + Send>,
    /// Number of the next top-level test.
    next: usize,
    /// More than one kernel: test lines carry theirs.
    matrix: bool,
    /// After a write error nothing more is written: later lines could not be
    /// told apart from a truncated stream anyway.
    broken: bool,
    error: FirstError,
}

impl Ktap {
    pub fn stdout() -> Ktap {
        Ktap::new(Box::new(io::stdout()))
    }

    pub fn new(out: Box<dyn Write + Send>) -> Ktap {
        Ktap {
            out,
            next: 1,
            matrix: false,
            broken: false,
            error: FirstError::default(),
        }
    }

    /// Why output stopped, if it did.
    pub fn error(&self) -> Option<&io::Error> {
        self.error.get()
    }

    /// The same failure, reachable after the reporter has been boxed.
    pub fn error_handle(&self) -> ReportError {
        self.error.shared()
    }

    /// Writes a whole block at once and flushes, so a reader never sees half
    /// a test.
    fn emit(&mut self, text: &str) {
        if self.broken {
            return;
        }
        if let Err(e) = self
            .out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush())
        {
            self.broken = true;
            self.error.record("writing KTAP output", e);
        }
    }
}

impl Reporter for Ktap {
    fn event(&mut self, event: &Event<'_>) {
        match event {
            Event::RunStarted {
                tests,
                kernels,
                kernel,
                accel,
                ..
            } => {
                self.matrix = *kernels > 1;
                let mut text = format!("KTAP version 1\n1..{tests}\n");
                // Empty when the run stopped before it booted anything.
                if !kernel.is_empty() {
                    diagnostic(
                        &mut text,
                        "",
                        &format!("modvm: kernel {kernel}, accel {accel}"),
                    );
                }
                self.emit(&text);
            }
            Event::TestFinished { result: t, .. } => {
                let text = if self.matrix {
                    let mut shown = (*t).clone();
                    shown.name = t.label(true);
                    test_block(self.next, &shown)
                } else {
                    test_block(self.next, t)
                };
                self.next += 1;
                self.emit(&text);
            }
            Event::RunFinished(s) => {
                let mut text = String::new();
                if let Some(e) = &s.error {
                    diagnostic(&mut text, "", &format!("modvm: run failed: {e}"));
                }
                if s.interrupted {
                    diagnostic(&mut text, "", "modvm: run interrupted");
                }
                diagnostic(&mut text, "", &totals(s));
                self.emit(&text);
            }
            Event::TestStarted { .. }
            | Event::Booted { .. }
            | Event::StepStarted { .. }
            | Event::TestEnded { .. } => {}
        }
    }
}

/// A test: its steps and then the results inside it (KUnit suites, nested
/// as the kernel nests them) as a nested KTAP document, its own
/// diagnostics, then its result line. A test without either (it never
/// booted) is a plain result.
pub fn test_block(number: usize, t: &TestResult) -> String {
    let mut out = String::new();
    if !t.steps.is_empty() || !t.cases.is_empty() {
        out.push_str(&format!(
            "{INDENT}KTAP version 1\n{INDENT}1..{}\n",
            t.steps.len() + t.cases.len()
        ));
        for (i, s) in t.steps.iter().enumerate() {
            step_lines(&mut out, INDENT, i + 1, s);
        }
        for (i, c) in t.cases.iter().enumerate() {
            case_lines(&mut out, INDENT, t.steps.len() + i + 1, c);
        }
    }
    let mut directive = None;
    match t.status {
        Status::Pass => {}
        Status::Skip | Status::NotRun => {
            directive = Some(("SKIP", t.message.clone().unwrap_or_default()))
        }
        Status::Timeout | Status::Error => {
            let reason = t
                .message
                .clone()
                .or_else(|| first_failure(t).map(str::to_string))
                .unwrap_or_default();
            directive = Some((
                if t.status == Status::Timeout {
                    "TIMEOUT"
                } else {
                    "ERROR"
                },
                reason,
            ));
        }
        Status::Fail | Status::Crash => {
            if let Some(m) = t.message.as_ref().filter(|_| !t.message_repeats_a_step()) {
                diagnostic(&mut out, "", m);
            }
            if let Some(c) = &t.crash {
                let told = t
                    .steps
                    .iter()
                    .any(|s| s.crashes.iter().any(|sc| sc.title == c.title));
                if !told {
                    diagnostic(&mut out, "", &format!("crash: {}", c.title));
                }
            }
        }
    }
    if !matches!(t.status, Status::Pass | Status::Skip | Status::NotRun) {
        diagnostic(&mut out, "", &format!("logs: {}", t.artifacts.display()));
    }
    result_line(&mut out, "", number, t.status, &t.name, directive);
    out
}

fn step_lines(out: &mut String, indent: &str, number: usize, s: &StepResult) {
    let directive = match s.status {
        Status::Skip => Some(("SKIP", "an earlier step did not pass".to_string())),
        Status::NotRun => Some(("SKIP", "not run".to_string())),
        Status::Timeout => Some(("TIMEOUT", s.failures.first().cloned().unwrap_or_default())),
        Status::Error => Some(("ERROR", s.failures.first().cloned().unwrap_or_default())),
        Status::Pass | Status::Fail | Status::Crash => None,
    };
    let already = usize::from(directive.is_some() && s.status != Status::Skip);
    for f in s.failures.iter().skip(already) {
        diagnostic(out, indent, f);
    }
    for c in &s.crashes {
        diagnostic(out, indent, &format!("crash: {}", c.title));
    }
    result_line(out, indent, number, s.status, &s.description, directive);
}

/// A result inside a test: its own results as a subtest one level deeper
/// (with the `# Subtest:` line KUnit writes), what explains it, its line.
fn case_lines(out: &mut String, indent: &str, number: usize, c: &CaseResult) {
    if !c.cases.is_empty() {
        let inner = format!("{indent}{INDENT}");
        out.push_str(&format!("{inner}KTAP version 1\n"));
        diagnostic(
            out,
            &inner,
            &format!("Subtest: {}", clean_description(&c.name)),
        );
        out.push_str(&format!("{inner}1..{}\n", c.cases.len()));
        for (i, inner_case) in c.cases.iter().enumerate() {
            case_lines(out, &inner, i + 1, inner_case);
        }
    }
    let message = c.message.clone().unwrap_or_default();
    let directive = match c.status {
        Status::Skip | Status::NotRun => Some(("SKIP", message)),
        Status::Timeout => Some(("TIMEOUT", message)),
        Status::Error => Some(("ERROR", message)),
        Status::Pass => None,
        Status::Fail | Status::Crash => {
            if let Some(k) = &c.crash {
                diagnostic(out, indent, &format!("crash: {}", k.title));
            } else {
                diagnostic(out, indent, &message);
            }
            if let Some(l) = c
                .location
                .as_ref()
                .filter(|l| !message.contains(l.as_str()))
            {
                diagnostic(out, indent, &format!("at {l}"));
            }
            None
        }
    };
    result_line(out, indent, number, c.status, &c.name, directive);
}

fn first_failure(t: &TestResult) -> Option<&str> {
    t.steps
        .iter()
        .flat_map(|s| s.failures.first())
        .next()
        .map(String::as_str)
}

/// `ok` only for pass and skip, which is how KTAP counts them: a parent
/// fails when a child says `not ok`.
fn result_line(
    out: &mut String,
    indent: &str,
    number: usize,
    status: Status,
    description: &str,
    directive: Option<(&str, String)>,
) {
    let ok = if matches!(status, Status::Pass | Status::Skip | Status::NotRun) {
        "ok"
    } else {
        "not ok"
    };
    out.push_str(&format!("{indent}{ok} {number}"));
    let d = clean_description(description);
    if !d.is_empty() {
        out.push(' ');
        out.push_str(&d);
    }
    if let Some((word, data)) = directive {
        out.push_str(" # ");
        out.push_str(word);
        let data = fold(&data);
        if !data.is_empty() {
            out.push(' ');
            out.push_str(&data);
        }
    }
    out.push('\n');
}

/// One `#` line per line of `text`; blank lines are dropped because a bare
/// `#` carries nothing.
fn diagnostic(out: &mut String, indent: &str, text: &str) {
    for l in text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
    {
        out.push_str(&format!("{indent}# {l}\n"));
    }
}

/// Whitespace runs, including line breaks, become one space.
fn fold(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A `#` would start a directive and cut the description short.
fn clean_description(s: &str) -> String {
    fold(&s.replace('#', "_"))
}

fn totals(s: &Summary) -> String {
    let mut t = format!(
        "totals: pass:{} fail:{} crash:{} timeout:{} skip:{} error:{}",
        s.passed, s.failed, s.crashed, s.timed_out, s.skipped, s.errors
    );
    if s.not_run > 0 {
        t.push_str(&format!(" not_run:{}", s.not_run));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample;
    use crate::report::sample::SharedBuffer as Shared;

    fn render() -> String {
        let buf = Shared::default();
        let mut k = Ktap::new(Box::new(buf.clone()));
        sample::replay(&mut k);
        assert!(k.error().is_none());
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn sample_run_text() {
        let expected = "\
KTAP version 1
1..4
# modvm: kernel debian-6.1 (6.1.0-28-amd64), accel tcg
  KTAP version 1
  1..2
  ok 1 insmod hello
  ok 2 rmmod hello
ok 1 hello/load
  KTAP version 1
  1..3
  ok 1 insmod hello
  # expected a line containing \"Goodbye\" in the kernel log
  not ok 2 rmmod hello
  ok 3 run `lsmod` # SKIP an earlier step did not pass
# logs: /srv/modvm/runs/20250101-120000/hello/unload
not ok 2 hello/unload
  KTAP version 1
  1..2
  # the guest died during `insmod /modules/oops.ko` (QEMU: exit status: 0)
  # crash: BUG: kernel NULL pointer dereference in oops_init
  not ok 1 insmod oops
  ok 2 rmmod oops # SKIP an earlier step did not pass
# logs: /srv/modvm/runs/20250101-120000/oops/init
not ok 3 oops/init
# logs: /srv/modvm/runs/20250101-120000/slow/boot
not ok 4 slow/boot # TIMEOUT boot failed: the guest did not reach its shell within 30.0s
# totals: pass:1 fail:1 crash:1 timeout:1 skip:0 error:0
";
        assert_eq!(render(), expected);
    }

    #[test]
    fn results_inside_a_test_nest_after_its_steps() {
        let t = &sample::results_with_cases()[0];
        let expected = "  KTAP version 1
  1..4
  # KUnit case demo_math.add_wrong failed at demo.c:26: Expected 5 == demo_add(2, 2), but demo_add(2, 2) == 4
  not ok 1 insmod demo
  ok 2 rmmod demo # SKIP an earlier step did not pass
    KTAP version 1
    # Subtest: demo_math
    1..3
    ok 1 add_small
    # EXPECTATION FAILED at demo.c:26
    # Expected 5 == demo_add(2, 2), but
    #     demo_add(2, 2) == 4
    not ok 2 add_wrong
    ok 3 needs_hardware # SKIP no such hardware in the guest
  not ok 3 demo_math
    KTAP version 1
    # Subtest: demo_str
    1..2
    ok 1 str_len
      KTAP version 1
      # Subtest: str_len_param
      1..2
      ok 1 len-0
      ok 2 len-5
    ok 2 str_len_param
  ok 4 demo_str
# logs: /srv/modvm/runs/20250101-120000/demo/suites
not ok 1 demo/suites
";
        assert_eq!(test_block(1, t), expected);
        let crashed = test_block(2, &sample::results_with_cases()[1]);
        assert!(
            crashed.contains(
                "    # crash: BUG: kernel NULL pointer dereference in null_deref\n    # at crashy.c:20\n    not ok 2 case 2\n"
            ),
            "{crashed}"
        );
    }

    fn one_step(status: Status, failures: &[&str]) -> StepResult {
        let mut s = sample::results()[0].steps[0].clone();
        s.status = status;
        s.failures = failures.iter().map(|f| f.to_string()).collect();
        s
    }

    #[test]
    fn step_directives() {
        let mut out = String::new();
        step_lines(
            &mut out,
            "  ",
            3,
            &one_step(Status::Timeout, &["`sleep 99` did not finish within 5.0 s"]),
        );
        step_lines(
            &mut out,
            "  ",
            4,
            &one_step(Status::Error, &["console failure: EOF", "more"]),
        );
        let expected = concat!(
            "  not ok 3 insmod hello # TIMEOUT `sleep 99` did not finish within 5.0 s\n",
            "  # more\n",
            "  not ok 4 insmod hello # ERROR console failure: EOF\n",
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn hashes_and_line_breaks_cannot_break_a_result_line() {
        let mut t = sample::results().remove(0);
        t.name = "weird/has #hash\nand newline".into();
        t.steps.truncate(1);
        t.steps[0].description = "run `echo # x`".into();
        let text = test_block(7, &t);
        assert_eq!(
            text,
            "  KTAP version 1\n  1..1\n  ok 1 run `echo _ x`\nok 7 weird/has _hash and newline\n"
        );
    }

    #[test]
    fn skipped_and_errored_tests_without_steps() {
        let mut t = sample::results().remove(3);
        t.status = Status::Skip;
        t.message = Some("needs kvm".into());
        assert_eq!(test_block(2, &t), "ok 2 slow/boot # SKIP needs kvm\n");
        t.status = Status::Error;
        t.message = Some("boot failed: cannot start qemu-system-x86_64: not found\nmore".into());
        assert_eq!(
            test_block(2, &t),
            "# logs: /srv/modvm/runs/20250101-120000/slow/boot\n\
             not ok 2 slow/boot # ERROR boot failed: cannot start qemu-system-x86_64: not found more\n"
        );
    }

    #[test]
    fn a_run_stopped_early_lists_its_tests_as_not_run() {
        let buf = Shared::default();
        let mut k = Ktap::new(Box::new(buf.clone()));
        crate::report::sample::replay_stopped(&mut k, "build failed", false);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "KTAP version 1\n1..2\n\
             ok 1 hello/load # SKIP not run: build failed\n\
             ok 2 hello/unload # SKIP not run: build failed\n\
             # modvm: run failed: build failed\n\
             # totals: pass:0 fail:0 crash:0 timeout:0 skip:0 error:0 not_run:2\n"
        );
    }

    struct Failing;

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "reader went away",
            ))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_kept_as_an_error_not_a_panic() {
        let mut k = Ktap::new(Box::new(Failing));
        let handle = k.error_handle();
        sample::replay(&mut k);
        assert_eq!(k.error().unwrap().kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(
            handle.get().unwrap(),
            "writing KTAP output: reader went away"
        );
    }
}
