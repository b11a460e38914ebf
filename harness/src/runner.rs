//! Runs tests: one fresh guest per test, steps in order, results as events.

use crate::console::ConsoleError;
use crate::guest::{BootError, Guest, GuestLogs};
use crate::klog::{marker, KernelLine, KernelLog};
use crate::outcome::{Event, Reporter, Status, StepResult, Summary, TestResult};
use crate::qemu::QemuConfig;
use crate::spec::{Step, TestSpec};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long after a command's end marker its kernel-log marker may lag.
const KLOG_GRACE: Duration = Duration::from_secs(2);
/// Kernel lines kept with a test that ended abnormally.
const TAIL_LINES: usize = 40;

/// Everything tests of one run share.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// QEMU configuration; its `initrd` is replaced per test.
    pub qemu: QemuConfig,
    pub kernel_name: String,
    pub boot_timeout: Duration,
    /// Root of this run's artifacts (`<out>/runs/<stamp>`).
    pub artifacts: PathBuf,
}

/// A test ready to run: its spec and the initramfs holding its modules.
#[derive(Debug, Clone)]
pub struct PlannedTest {
    pub suite: String,
    pub spec: TestSpec,
    pub initrd: PathBuf,
}

impl PlannedTest {
    pub fn name(&self) -> String {
        format!("{}/{}", self.suite, self.spec.name)
    }
}

/// Runs every test in order and returns the summary.
pub fn run(config: &RunConfig, tests: &[PlannedTest], reporter: &mut dyn Reporter) -> Summary {
    let started = Instant::now();
    reporter.event(&Event::RunStarted {
        tests: tests.len(),
        kernel: &config.kernel_name,
        accel: &config.qemu.accel.to_string(),
        artifacts: &config.artifacts,
    });
    let mut summary = Summary::default();
    for test in tests {
        let result = run_test(config, test, reporter);
        summary.add(result.status);
        reporter.event(&Event::TestFinished(&result));
    }
    summary.duration_ms = started.elapsed().as_millis() as u64;
    reporter.event(&Event::RunFinished(&summary));
    summary
}

/// A file-system-safe version of a test name.
pub fn dir_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn run_test(config: &RunConfig, test: &PlannedTest, reporter: &mut dyn Reporter) -> TestResult {
    let name = test.name();
    reporter.event(&Event::TestStarted { name: &name });
    let started = Instant::now();
    let dir = config
        .artifacts
        .join(dir_name(&test.suite))
        .join(dir_name(&test.spec.name));
    let mut result = TestResult {
        name: name.clone(),
        kernel: config.kernel_name.clone(),
        status: Status::Error,
        duration_ms: 0,
        boot_ms: None,
        steps: Vec::new(),
        message: None,
        crash: None,
        kernel_tail: Vec::new(),
        artifacts: dir.clone(),
    };
    let mut qemu = config.qemu.clone();
    qemu.initrd = test.initrd.clone();
    if let Err(e) = write_artifacts(&dir, test, &qemu) {
        result.message = Some(format!("cannot write artifacts to {}: {e}", dir.display()));
        return result;
    }
    let logs = GuestLogs::in_dir(&dir);
    match Guest::boot(&qemu, &logs, config.boot_timeout) {
        Ok(mut guest) => {
            result.boot_ms = Some(guest.boot_time.as_millis() as u64);
            reporter.event(&Event::Booted {
                name: &name,
                boot: guest.boot_time,
            });
            run_steps(&mut guest, test, &name, &mut result, reporter);
            if result.status != Status::Pass {
                result.kernel_tail = guest.klog.tail(TAIL_LINES);
            }
        }
        Err(e) => {
            result.status = match e {
                BootError::Timeout(_) => Status::Timeout,
                _ => Status::Error,
            };
            result.message = Some(format!("boot failed: {e}"));
            result.kernel_tail = tail_of_file(&logs.kernel, TAIL_LINES);
        }
    }
    result.duration_ms = started.elapsed().as_millis() as u64;
    result
}

fn write_artifacts(dir: &Path, test: &PlannedTest, qemu: &QemuConfig) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("spec.json"),
        serde_json::to_vec_pretty(&test.spec).expect("spec serialises"),
    )?;
    std::fs::write(dir.join("qemu-cmdline.txt"), qemu.display() + "\n")
}

fn run_steps(
    guest: &mut Guest,
    test: &PlannedTest,
    name: &str,
    result: &mut TestResult,
    reporter: &mut dyn Reporter,
) {
    result.status = Status::Pass;
    for (i, step) in test.spec.steps.iter().enumerate() {
        let description = step.action.to_string();
        if result.status != Status::Pass {
            result.steps.push(skipped(i, step, description));
            continue;
        }
        reporter.event(&Event::StepStarted {
            name,
            index: i,
            description: &description,
        });
        let r = run_step(guest, i, step, description);
        if r.status != Status::Pass {
            result.status = r.status;
            if r.status != Status::Fail {
                result.message = r.failures.first().cloned();
            }
        }
        result.steps.push(r);
    }
}

fn skipped(index: usize, step: &Step, description: String) -> StepResult {
    StepResult {
        index,
        description,
        command: step.action.command(),
        status: Status::Skip,
        expected_exit: step.exit,
        exit: None,
        output: String::new(),
        kernel_lines: Vec::new(),
        failures: Vec::new(),
        crashes: Vec::new(),
        taint: None,
        duration_ms: 0,
    }
}

fn run_step(guest: &mut Guest, index: usize, step: &Step, description: String) -> StepResult {
    let started = Instant::now();
    let id = (index + 1).to_string();
    let from = guest.klog.len();
    let deadline = started + Duration::from_secs_f64(step.timeout_s);
    let command = step.action.command();
    let mut r = StepResult {
        command: command.clone(),
        ..skipped(index, step, description)
    };
    match guest.console.run(&id, &command, deadline) {
        Ok(out) => {
            r.exit = Some(out.exit);
            r.taint = Some(out.taint);
            r.output = out.output;
            r.kernel_lines = step_lines(&guest.klog, from, &id, Instant::now() + KLOG_GRACE);
            r.failures = check(step, out.exit, &r.kernel_lines);
            r.status = if r.failures.is_empty() {
                Status::Pass
            } else {
                Status::Fail
            };
        }
        Err(e) => {
            r.output = e.seen().to_string();
            r.kernel_lines = step_lines(&guest.klog, from, &id, Instant::now());
            match e {
                ConsoleError::Timeout { .. } => {
                    r.status = Status::Timeout;
                    r.failures.push(format!(
                        "`{command}` did not finish within {:.1} s",
                        step.timeout_s
                    ));
                }
                ConsoleError::Closed { .. } => {
                    r.status = Status::Crash;
                    let exit = guest
                        .wait_exit(Duration::from_millis(500))
                        .unwrap_or_else(|| "still running".into());
                    r.failures
                        .push(format!("the guest died during `{command}` (QEMU: {exit})"));
                }
                ConsoleError::Io(msg) => {
                    r.status = Status::Error;
                    r.failures.push(format!("console failure: {msg}"));
                }
            }
        }
    }
    r.duration_ms = started.elapsed().as_millis() as u64;
    r
}

/// Kernel lines between the step's begin and end markers (or up to now).
fn step_lines(klog: &KernelLog, from: usize, id: &str, deadline: Instant) -> Vec<KernelLine> {
    let begin = marker(id, "begin");
    let end = marker(id, "end");
    klog.wait_until(deadline, |lines| {
        lines.iter().skip(from).any(|l| l.text == end)
    });
    let lines = klog.lines_from(from);
    let start = lines
        .iter()
        .position(|l| l.text == begin)
        .map(|p| p + 1)
        .unwrap_or(0);
    lines[start..]
        .iter()
        .take_while(|l| l.text != end)
        .cloned()
        .collect()
}

/// Unmet expectations of a finished step.
pub fn check(step: &Step, exit: i32, lines: &[KernelLine]) -> Vec<String> {
    let mut failures = Vec::new();
    if exit != step.exit {
        failures.push(format!(
            "`{}` exited with status {exit}, expected {}",
            step.action.command(),
            step.exit
        ));
    }
    let mut next = 0;
    for expect in &step.kernel_log {
        match lines[next..].iter().position(|l| expect.matches(&l.text)) {
            Some(p) => next += p + 1,
            None => {
                let anywhere = lines.iter().any(|l| expect.matches(&l.text));
                failures.push(if anywhere {
                    format!(
                        "expected {expect} after the previous expected line, but it came before it"
                    )
                } else {
                    format!("expected {expect} in the kernel log")
                });
            }
        }
    }
    failures
}

fn tail_of_file(path: &Path, n: usize) -> Vec<KernelLine> {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| KernelLine::parse(l))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Action, Expect, Pattern};

    fn line(t: &str) -> KernelLine {
        KernelLine::parse(t)
    }

    fn step(expect: Vec<Expect>) -> Step {
        Step {
            action: Action::Rmmod("hello".into()),
            exit: 0,
            kernel_log: expect,
            timeout_s: 5.0,
        }
    }

    #[test]
    fn passing_step_has_no_failures() {
        let s = step(vec![
            Expect::Contains("one".into()),
            Expect::Regex(Pattern(regex::Regex::new("^two$").unwrap())),
        ]);
        let lines = vec![line("[1.0] one"), line("[1.1] noise"), line("[1.2] two")];
        assert!(check(&s, 0, &lines).is_empty());
    }

    #[test]
    fn order_matters() {
        let s = step(vec![
            Expect::Contains("two".into()),
            Expect::Contains("one".into()),
        ]);
        let lines = vec![line("one"), line("two")];
        let f = check(&s, 0, &lines);
        assert_eq!(f.len(), 1);
        assert!(f[0].contains("came before"), "{f:?}");
    }

    #[test]
    fn wrong_exit_and_missing_line_are_both_reported() {
        let s = step(vec![Expect::Contains("Goodbye".into())]);
        let f = check(&s, 1, &[line("Hello")]);
        assert_eq!(f.len(), 2);
        assert!(f[0].contains("exited with status 1, expected 0"));
        assert!(f[1].contains("\"Goodbye\""));
    }

    #[test]
    fn step_lines_are_cut_at_markers() {
        let data = "[0.1] before\n[0.2] modvm-mark 2 begin\n[0.3] inside\n[0.4] modvm-mark 2 end\n[0.5] after\n";
        let log = KernelLog::start(std::io::Cursor::new(data.as_bytes().to_vec()), None);
        let got = step_lines(&log, 0, "2", Instant::now() + Duration::from_secs(5));
        assert_eq!(
            got.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
            vec!["inside"]
        );
    }

    #[test]
    fn dir_names_are_safe() {
        assert_eq!(dir_name("a b/c"), "a_b_c");
    }
}
