//! Results and the events the runner emits while producing them.
//!
//! The runner knows nothing of terminals or file formats: it sends [`Event`]s
//! to a [`Reporter`], and each output (human, and later JSON/JUnit/KTAP)
//! is one reporter.

use crate::klog::KernelLine;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// How a test or step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// The guest kernel crashed or the guest died.
    Crash,
    /// A deadline passed (boot or step).
    Timeout,
    /// Not run (an earlier step failed).
    Skip,
    /// modvm could not run the test (guest did not boot, I/O failure).
    Error,
    /// Never started: the run stopped first (interrupted, or a build or
    /// environment error before any test).
    #[serde(rename = "not_run")]
    NotRun,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Crash => "CRASH",
            Status::Timeout => "TIMEOUT",
            Status::Skip => "SKIP",
            Status::Error => "ERROR",
            Status::NotRun => "NOT RUN",
        }
    }
}

/// One stack frame of a crash report, symbolised where possible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Frame {
    pub function: String,
    /// Offset into the function, from `func+0x1f/0x60`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Module the function lives in (`[hello]`), `None` for the kernel proper.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Source file, when symbolised: of the module under test (relative to
    /// its directory), or of the kernel tree when the kit has `vmlinux`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

impl Frame {
    /// `file:line`, once symbolised.
    pub fn location(&self) -> Option<String> {
        Some(format!("{}:{}", self.file.as_ref()?, self.line?))
    }
}

/// A kernel crash report cut out of the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Crash {
    /// Normalised, syzkaller-style: "BUG: unable to handle kernel NULL pointer
    /// dereference in hello_init", "WARNING in hello_exit".
    pub title: String,
    /// The report's lines, from its first line to the end of its trace.
    pub report: Vec<String>,
    /// Frames of the call trace (RIP first), most relevant first.
    pub frames: Vec<Frame>,
    /// Whether the kernel treats it as fatal to the guest (panic, oops).
    pub fatal: bool,
}

/// One step as it ran.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub index: usize,
    /// e.g. "insmod hello".
    pub description: String,
    /// The step as the spec's author sees it, for messages: "step 2 (run
    /// `cat /proc/x`)", "[2/5] insmod hello (from `modules`)".
    #[serde(skip)]
    pub label: String,
    pub command: String,
    pub status: Status,
    /// Expected exit status; with `expected_errno`, any non-zero status.
    pub expected_exit: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_errno: Option<String>,
    pub exit: Option<i32>,
    /// The errno a failed insmod reported (read from its message: its exit
    /// status is 1 whatever the errno).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
    /// What the command printed.
    pub output: String,
    /// Kernel lines written during the step.
    pub kernel_lines: Vec<KernelLine>,
    /// Why the step did not pass, one entry per unmet expectation.
    pub failures: Vec<String>,
    /// Kernel crash reports seen during the step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub crashes: Vec<Crash>,
    /// Kernel taint mask after the step (`/proc/sys/kernel/tainted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taint: Option<u64>,
    pub duration_ms: u64,
}

impl StepResult {
    /// A step with nothing recorded yet (expected exit 0, no output); the
    /// runner fills in what happened.
    pub fn empty(index: usize, description: String, command: String, status: Status) -> StepResult {
        StepResult {
            index,
            label: format!("step {} ({description})", index + 1),
            description,
            command,
            status,
            expected_exit: 0,
            expected_errno: None,
            exit: None,
            errno: None,
            output: String::new(),
            kernel_lines: Vec::new(),
            failures: Vec::new(),
            crashes: Vec::new(),
            taint: None,
            duration_ms: 0,
        }
    }
}

/// A result inside a test (see [`TestResult::cases`]): a KUnit suite
/// (whose `cases` are its test cases) or case, a fault-injection point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseResult {
    /// As the kernel or modvm names it: `example_suite`, `example_case`,
    /// `fault 3`.
    pub name: String,
    pub status: Status,
    /// Why it did not pass (the first failure line), or a note (a skip's
    /// reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Where it failed, `file:line` (a failed expectation, an injected
    /// call site).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The crash that ended it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crash: Option<Crash>,
    /// Results inside this one (a suite's cases).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cases: Vec<CaseResult>,
}

/// One test as it ran.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    /// `<suite>/<test>`.
    pub name: String,
    /// The kernel profile's name.
    pub kernel: String,
    /// `uname -r` of the guest kernel (empty when nothing booted).
    pub kernel_release: String,
    pub status: Status,
    pub duration_ms: u64,
    pub boot_ms: Option<u64>,
    /// Whether the guest was booted or restored from a snapshot (`None`
    /// when no guest started).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest: Option<crate::guest::launcher::Start>,
    pub steps: Vec<StepResult>,
    /// Test-level reason (boot failure, crash, timeout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The first crash of the test (also for `expect_crash` tests that pass).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crash: Option<Crash>,
    /// Time from the crash report's first line reaching modvm to the verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crash_detect_ms: Option<u64>,
    /// Last kernel lines, for tests that ended without finishing a step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kernel_tail: Vec<KernelLine>,
    /// Results inside the test: the KUnit suites its modules ran, the
    /// points `--faults` injected a failure at. Each reporter lists them
    /// under the test; the test's status already accounts for them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cases: Vec<CaseResult>,
    pub artifacts: PathBuf,
}

impl TestResult {
    /// The name for places that must tell the kernels of a matrix apart
    /// (a terminal line, a JUnit case, a KTAP line): `suite/test [kernel]`.
    pub fn label(&self, matrix: bool) -> String {
        if matrix && !self.kernel.is_empty() {
            format!("{} [{}]", self.name, self.kernel)
        } else {
            self.name.clone()
        }
    }

    /// Whether `message` only repeats a step's label and first failure,
    /// which a report that lists the step's failures need not print twice.
    pub fn message_repeats_a_step(&self) -> bool {
        let Some(m) = &self.message else {
            return false;
        };
        self.steps.iter().any(|s| {
            s.failures.contains(m)
                || s.failures
                    .first()
                    .is_some_and(|f| *m == format!("{}: {f}", s.label))
        })
    }

    /// A test the run never started, listed so that reports name every
    /// planned test instead of silently leaving it out.
    pub fn not_run(name: String, kernel: String, artifacts: PathBuf, why: &str) -> TestResult {
        TestResult {
            name,
            kernel,
            kernel_release: String::new(),
            status: Status::NotRun,
            duration_ms: 0,
            boot_ms: None,
            guest: None,
            steps: Vec::new(),
            message: Some(format!("not run: {why}")),
            crash: None,
            crash_detect_ms: None,
            kernel_tail: Vec::new(),
            cases: Vec::new(),
            artifacts,
        }
    }
}

/// Counts over a run, and whether it ended early.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    pub crashed: usize,
    pub timed_out: usize,
    pub skipped: usize,
    pub errors: usize,
    pub not_run: usize,
    pub duration_ms: u64,
    /// The user stopped the run (Ctrl-C, SIGTERM).
    pub interrupted: bool,
    /// Why the run stopped before its tests (bad spec, build failure,
    /// missing tool): a run that tested nothing must not read as a pass.
    pub error: Option<String>,
}

impl Summary {
    pub fn add(&mut self, s: Status) {
        self.total += 1;
        match s {
            Status::Pass => self.passed += 1,
            Status::Fail => self.failed += 1,
            Status::Crash => self.crashed += 1,
            Status::Timeout => self.timed_out += 1,
            Status::Skip => self.skipped += 1,
            Status::Error => self.errors += 1,
            Status::NotRun => self.not_run += 1,
        }
    }

    /// True when every test passed or was skipped and the run was neither
    /// interrupted nor stopped by an error.
    pub fn ok(&self) -> bool {
        self.passed + self.skipped == self.total && !self.interrupted && self.error.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_stopped_early_is_not_ok() {
        let mut s = Summary::default();
        s.add(Status::Pass);
        assert!(s.ok());
        s.interrupted = true;
        assert!(!s.ok(), "interrupted");
        let mut s = Summary {
            error: Some("build failed".into()),
            ..Summary::default()
        };
        assert!(!s.ok(), "an error with no tests");
        s.error = None;
        s.add(Status::NotRun);
        assert_eq!((s.total, s.not_run), (1, 1));
        assert!(!s.ok(), "a test not run");
    }
}

/// A test's place in the run's plan (kernel by kernel, test by test),
/// counted from 0. Tests run concurrently; the id ties a live event to its
/// test and fixes the order in which results are reported.
pub type TestId = usize;

/// What the runner tells reporters.
///
/// `TestStarted`, `Booted`, `StepStarted` and `TestEnded` are live: they
/// arrive as they happen, interleaved between the tests in flight.
/// `TestFinished` arrives once per test in plan order (ids 0, 1, 2, …),
/// whichever test ended first, so a report lists tests in plan order.
#[derive(Debug)]
pub enum Event<'a> {
    RunStarted {
        tests: usize,
        /// How many kernels the run tests on (a matrix when more than one).
        kernels: usize,
        kernel: &'a str,
        accel: &'a str,
        artifacts: &'a std::path::Path,
    },
    TestStarted {
        id: TestId,
        name: &'a str,
    },
    Booted {
        id: TestId,
        name: &'a str,
        boot: Duration,
    },
    StepStarted {
        id: TestId,
        name: &'a str,
        index: usize,
        description: &'a str,
    },
    /// The test's guest is gone; its result follows as `TestFinished` once
    /// every earlier test's has.
    TestEnded {
        id: TestId,
    },
    TestFinished {
        id: TestId,
        result: &'a TestResult,
    },
    RunFinished(&'a Summary),
}

/// Consumes events.
pub trait Reporter {
    fn event(&mut self, event: &Event<'_>);
}

/// Fans events out to several reporters.
#[derive(Default)]
pub struct Reporters(pub Vec<Box<dyn Reporter>>);

impl Reporter for Reporters {
    fn event(&mut self, event: &Event<'_>) {
        for r in &mut self.0 {
            r.event(event);
        }
    }
}
