//! Output for a person: a live line per test in flight (on a terminal), one
//! result line per test in plan order, the detail of each failure, and a
//! summary.

use crate::outcome::{CaseResult, Crash, Event, Reporter, Status, StepResult, TestId, TestResult};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Kernel lines shown per failing step before eliding the start.
const SHOWN_LINES: usize = 30;
/// Frames shown per crash.
const MAX_FRAMES: usize = 8;
/// Lines of results inside one test shown before the rest are counted.
const SHOWN_CASES: usize = 100;

/// How much a person wants to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Failures and the summary only.
    Quiet,
    /// A line per test, failure detail, summary.
    Normal,
    /// Also each step, boot times and log paths.
    Verbose,
}

pub struct Human {
    colour: bool,
    level: Level,
    /// The live lines, drawn on stderr below everything printed (indicatif
    /// hides them when stderr is not a terminal).
    progress: MultiProgress,
    /// One live line per test in flight.
    spinners: BTreeMap<TestId, ProgressBar>,
    out: Box<dyn Write + Send>,
    /// More than one kernel: lines name theirs.
    matrix: bool,
}

impl Human {
    /// Writes to stdout; colours and the live lines only on a terminal.
    pub fn stdout(level: Level) -> Human {
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Human::new(
            Box::new(std::io::stdout()),
            colour,
            level,
            ProgressDrawTarget::stderr(),
        )
    }

    /// Writes to stderr (when stdout carries a machine format such as KTAP).
    pub fn stderr(level: Level) -> Human {
        let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Human::new(
            Box::new(std::io::stderr()),
            colour,
            level,
            ProgressDrawTarget::stderr(),
        )
    }

    fn new(
        out: Box<dyn Write + Send>,
        colour: bool,
        level: Level,
        live: ProgressDrawTarget,
    ) -> Human {
        Human {
            colour,
            level,
            progress: MultiProgress::with_draw_target(live),
            spinners: BTreeMap::new(),
            out,
            matrix: false,
        }
    }

    /// No live lines (`modvm test --keep` hands the terminal to a shell).
    pub fn hide_live_lines(&mut self) {
        self.progress.set_draw_target(ProgressDrawTarget::hidden());
    }

    /// Removes the live line of test `id` (gone already when its end was
    /// seen before its result).
    fn end_spinner(&mut self, id: TestId) {
        if let Some(sp) = self.spinners.remove(&id) {
            sp.finish_and_clear();
            self.progress.remove(&sp);
        }
    }

    fn paint(&self, status: Status) -> String {
        let label = format!("{:<7}", status.label());
        if !self.colour {
            return label;
        }
        let code = match status {
            Status::Pass => "32",
            Status::Skip => "33",
            _ => "31;1",
        };
        format!("\x1b[{code}m{label}\x1b[0m")
    }

    /// Prints above the live lines, which are cleared and redrawn around it.
    fn line(&mut self, s: &str) {
        let out = &mut self.out;
        self.progress.suspend(|| {
            let _ = writeln!(out, "{s}");
        });
    }

    fn detail(&mut self, t: &TestResult) {
        if let Some(m) = t.message.as_ref().filter(|_| !t.message_repeats_a_step()) {
            // Line by line: a compiler's output stays readable, and each
            // line is still made safe for the terminal.
            for line in m.lines() {
                self.line(&format!("    {}", printable(line)));
            }
        }
        if let Some(c) = &t.crash {
            self.crash_detail(c);
        }
        self.cases(&t.cases, self.level == Level::Verbose);
        for s in &t.steps {
            if matches!(s.status, Status::Pass | Status::Skip) {
                continue;
            }
            self.step_detail(s);
        }
        if t.steps.iter().all(|s| s.kernel_lines.is_empty()) && !t.kernel_tail.is_empty() {
            self.line("    last kernel lines:");
            for l in &t.kernel_tail {
                self.line(&format!("      | {}", printable(&l.to_string())));
            }
        }
        if !t.artifacts.as_os_str().is_empty() {
            self.line(&format!(
                "    console, kernel log and QEMU command line: {}",
                t.artifacts.display()
            ));
        }
    }

    /// The results inside a test, indented as they nest: those that did
    /// not pass with their message and `file:line`, the ones inside a
    /// result that passed only counted unless `all`.
    fn cases(&mut self, cases: &[CaseResult], all: bool) {
        if cases.is_empty() {
            return;
        }
        self.line("    results inside the test:");
        let mut lines = Vec::new();
        for c in cases {
            case_lines(c, 0, all, &mut lines);
        }
        let more = lines.len().saturating_sub(SHOWN_CASES);
        for (pad, status, text) in lines.into_iter().take(SHOWN_CASES) {
            let label = status
                .map(|s| format!("{} ", self.paint(s)))
                .unwrap_or_default();
            self.line(&format!("{pad}{label}{text}"));
        }
        if more > 0 {
            self.line(&format!("      ... {more} more lines in the JSON report"));
        }
    }

    fn crash_detail(&mut self, c: &Crash) {
        for l in crash_summary(c) {
            self.line(&format!("    {}", printable(&l)));
        }
    }

    fn step_detail(&mut self, s: &StepResult) {
        self.line(&format!(
            "    {} {}:",
            printable(&s.label),
            s.status.label()
        ));
        for f in &s.failures {
            self.line(&format!("      - {}", printable(f)));
        }
        if !s.output.trim().is_empty() {
            self.line("      command output:");
            let lines: Vec<&str> = s.output.trim_end().lines().collect();
            let skip = lines.len().saturating_sub(SHOWN_LINES);
            if skip > 0 {
                self.line(&format!(
                    "      > ... {skip} earlier lines in the reports and console.log"
                ));
            }
            for l in &lines[skip..] {
                self.line(&format!("      > {}", printable(l)));
            }
        }
        if s.kernel_lines.is_empty() {
            self.line("      kernel lines seen in this step: (none)");
        } else {
            self.line("      kernel lines seen in this step:");
            let skip = s.kernel_lines.len().saturating_sub(SHOWN_LINES);
            if skip > 0 {
                self.line(&format!("      | ... {skip} earlier lines in kernel.log"));
            }
            for l in &s.kernel_lines[skip..] {
                self.line(&format!("      | {}", printable(&l.to_string())));
            }
        }
    }
}

/// One line of [`Human::cases`]: indentation, the status to paint (none
/// for a line of explanation) and the text after it.
type CaseLine = (String, Option<Status>, String);

/// Lines for one result inside a test and the results it holds.
fn case_lines(c: &CaseResult, depth: usize, all: bool, out: &mut Vec<CaseLine>) {
    let pad = format!("      {}", "  ".repeat(depth));
    let passed = matches!(c.status, Status::Pass | Status::Skip | Status::NotRun);
    let at = c
        .location
        .as_deref()
        .map(|l| format!("  at {}", printable(l)))
        .unwrap_or_default();
    let inside = if !c.cases.is_empty() && passed && !all {
        format!(" ({} inside)", c.cases.len())
    } else {
        String::new()
    };
    let skip_why = match (&c.message, c.status) {
        (Some(m), Status::Skip | Status::NotRun) => format!(": {}", printable(m)),
        _ => String::new(),
    };
    out.push((
        pad.clone(),
        Some(c.status),
        format!("{}{at}{inside}{skip_why}", printable(&c.name)),
    ));
    if !passed && c.cases.is_empty() {
        let why = c
            .crash
            .as_ref()
            .map(|k| k.title.clone())
            .or(c.message.clone());
        for l in why.iter().flat_map(|m| m.lines()) {
            out.push((format!("{pad}        "), None, printable(l).into_owned()));
        }
    }
    if all || !passed {
        for inner in &c.cases {
            case_lines(inner, depth + 1, all, out);
        }
    }
}

/// A crash as a person reads it: its title, then its first frames with
/// their module and `file:line` where symbolised.
pub fn crash_summary(c: &Crash) -> Vec<String> {
    let mut lines = vec![format!("crash: {}", c.title)];
    for f in c.frames.iter().take(MAX_FRAMES) {
        let module = f
            .module
            .as_deref()
            .map(|m| format!(" [{m}]"))
            .unwrap_or_default();
        let place = match (&f.file, f.line) {
            (Some(file), Some(line)) => format!("  at {file}:{line}"),
            (Some(file), None) => format!("  in {file}"),
            _ => String::new(),
        };
        let offset = f.offset.map(|o| format!("+{o:#x}")).unwrap_or_default();
        lines.push(format!("  {}{offset}{module}{place}", f.function));
    }
    lines
}

/// A live line with a message and the time elapsed; indicatif hides it
/// when stderr is not a terminal.
pub fn spinner() -> ProgressBar {
    let sp = ProgressBar::new_spinner();
    animate(&sp);
    sp
}

/// The spinner's look and tick, started only once the bar has its place
/// (in a [`MultiProgress`]), so the ticker never draws it anywhere else.
fn animate(sp: &ProgressBar) {
    sp.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    sp.enable_steady_tick(Duration::from_millis(120));
}

/// A name as it may reach a terminal: control characters (a newline that
/// forges a result line, an escape sequence that recolours or clears the
/// screen) are shown escaped. Specs refuse them; names also come from
/// directory names.
pub fn printable(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.chars().any(char::is_control) {
        return name.into();
    }
    name.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

fn secs(ms: u64) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}

impl Reporter for Human {
    fn event(&mut self, event: &Event<'_>) {
        match event {
            Event::RunStarted {
                tests,
                kernels,
                kernel,
                accel,
                artifacts,
            } => {
                self.matrix = *kernels > 1;
                if self.level == Level::Quiet {
                    return;
                }
                self.line(&format!(
                    "running {tests} test{} on {kernel} ({accel}); logs in {}",
                    if *tests == 1 { "" } else { "s" },
                    artifacts.display()
                ));
            }
            Event::TestStarted { id, name } => {
                let name = printable(name);
                let sp = self.progress.add(ProgressBar::new_spinner());
                sp.set_message(format!("{name}: booting"));
                animate(&sp);
                if let Some(old) = self.spinners.insert(*id, sp) {
                    old.finish_and_clear();
                    self.progress.remove(&old);
                }
            }
            Event::Booted { name, boot, .. } => {
                let name = printable(name);
                if self.level == Level::Verbose {
                    self.line(&format!(
                        "  {name}: guest ready in {:.2}s",
                        boot.as_secs_f64()
                    ));
                }
            }
            Event::StepStarted {
                id,
                name,
                index,
                description,
            } => {
                let name = printable(name);
                let description = printable(description);
                if let Some(sp) = self.spinners.get(id) {
                    sp.set_message(format!("{name}: step {} {description}", index + 1));
                }
                if self.level == Level::Verbose {
                    self.line(&format!("  {name}: step {} {description}", index + 1));
                }
            }
            Event::TestEnded { id } => self.end_spinner(*id),
            Event::TestFinished { id, result: t } => {
                self.end_spinner(*id);
                let how = match t.guest {
                    Some(crate::guest::launcher::Start::Restored) => "restore",
                    _ => "boot",
                };
                let boot = t
                    .boot_ms
                    .map(|b| format!(" ({how} {})", secs(b)))
                    .unwrap_or_default();
                let failed = !matches!(t.status, Status::Pass | Status::Skip | Status::NotRun);
                if self.level == Level::Quiet && !failed {
                    return;
                }
                let label = self.paint(t.status);
                self.line(&format!(
                    "{label} {}  {}{boot}",
                    printable(&t.label(self.matrix)),
                    secs(t.duration_ms)
                ));
                if failed {
                    self.detail(t);
                } else if let (Some(m), true) = (
                    &t.message,
                    matches!(t.status, Status::Skip | Status::NotRun) || t.crash.is_some(),
                ) {
                    self.line(&format!("    {}", printable(m)));
                } else if self.level == Level::Verbose {
                    self.line(&format!("    logs: {}", t.artifacts.display()));
                }
                if !failed && self.level == Level::Verbose {
                    self.cases(&t.cases, true);
                }
            }
            Event::RunFinished(s) => {
                let mut parts = vec![
                    format!("{} passed", s.passed),
                    format!("{} failed", s.failed),
                ];
                for (n, what) in [
                    (s.crashed, "crashed"),
                    (s.timed_out, "timed out"),
                    (s.errors, "errors"),
                    (s.skipped, "skipped"),
                    (s.not_run, "not run"),
                ] {
                    if n > 0 {
                        parts.push(format!("{n} {what}"));
                    }
                }
                let gap = if self.level == Level::Quiet { "" } else { "\n" };
                self.line(&format!(
                    "{gap}{} in {}",
                    parts.join(", "),
                    secs(s.duration_ms)
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests;
