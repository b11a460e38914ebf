//! JUnit XML, the format CI systems (GitLab, Jenkins, GitHub test-report
//! actions) already know how to show.
//!
//! JUnit has no notion of a kernel crash or a timeout, only "failure" (the
//! test's assertion did not hold) and "error" (the test could not complete).
//! An unmet expectation is a failure; a crash, a timeout or modvm's own
//! inability to run the test is an error whose `type` keeps the precise
//! status, so dashboards can still tell them apart. CI pages usually show
//! only the message, the element text and `system-out`, so the kernel log a
//! developer needs goes there rather than into a separate file.

use super::file::{write_report, FirstError, ReportError};
use super::json::split_name;
use crate::klog::KernelLine;
use crate::outcome::{CaseResult, Event, Reporter, Status, StepResult, Summary, TestResult};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// Collects results during the run and writes the XML at its end.
pub struct Junit {
    path: PathBuf,
    kernel: Option<String>,
    accel: Option<String>,
    /// More than one kernel: case names carry theirs.
    matrix: bool,
    /// Suites in the order their first test finished, so the file reads in
    /// run order.
    suites: Vec<TestSuite>,
    error: FirstError,
}

impl Junit {
    pub fn new(path: PathBuf) -> Junit {
        Junit {
            path,
            kernel: None,
            accel: None,
            matrix: false,
            suites: Vec::new(),
            error: FirstError::default(),
        }
    }

    /// Why the report could not be written, if it could not.
    pub fn error(&self) -> Option<&std::io::Error> {
        self.error.get()
    }

    /// The same failure, reachable after the reporter has been boxed.
    pub fn error_handle(&self) -> ReportError {
        self.error.shared()
    }

    fn add(&mut self, t: &TestResult) {
        let label = t.label(self.matrix);
        let (suite_name, case_name) = split_name(&label);
        let suite_name = if suite_name.is_empty() {
            "modvm"
        } else {
            suite_name
        };
        let pos = match self
            .suites
            .iter()
            .position(|s| s.name.as_str() == suite_name)
        {
            Some(p) => p,
            None => {
                let mut s = TestSuite::new(suite_name);
                s.time = Some(Duration::ZERO);
                if let Some(k) = &self.kernel {
                    s.add_property(("kernel", k.as_str()));
                }
                if let Some(a) = &self.accel {
                    s.add_property(("accel", a.as_str()));
                }
                self.suites.push(s);
                self.suites.len() - 1
            }
        };
        let suite = &mut self.suites[pos];
        suite.time = Some(suite.time.unwrap_or_default() + Duration::from_millis(t.duration_ms));
        suite.add_test_case(test_case(suite_name, case_name, t));
        let mut inner = Vec::new();
        for c in &t.cases {
            inner_cases(suite_name, case_name, "", c, &mut inner);
        }
        suite.add_test_cases(inner);
    }

    fn finish(&mut self, summary: &Summary) {
        if let Some(case) = run_failure(summary) {
            let mut suite = TestSuite::new("modvm");
            suite.add_test_case(case);
            self.suites.push(suite);
        }
        let mut report = Report::new("modvm");
        report.set_time(Duration::from_millis(summary.duration_ms));
        report.add_test_suites(std::mem::take(&mut self.suites));
        let what = format!("writing JUnit report {}", self.path.display());
        let xml = match report.to_string() {
            Ok(x) => x,
            Err(e) => return self.error.record(&what, std::io::Error::other(e)),
        };
        if let Err(e) = write_report(&self.path, xml.as_bytes()) {
            self.error.record(&what, e);
        }
    }
}

impl Reporter for Junit {
    fn event(&mut self, event: &Event<'_>) {
        match event {
            Event::RunStarted {
                kernel,
                accel,
                kernels,
                ..
            } => {
                self.matrix = *kernels > 1;
                // Empty when the run stopped before it booted anything.
                self.kernel = Some(kernel.to_string()).filter(|k| !k.is_empty());
                self.accel = Some(accel.to_string()).filter(|a| !a.is_empty());
            }
            Event::TestFinished { result, .. } => self.add(result),
            Event::RunFinished(s) => self.finish(s),
            Event::TestStarted { .. }
            | Event::Booted { .. }
            | Event::StepStarted { .. }
            | Event::TestEnded { .. } => {}
        }
    }
}

fn test_case(suite: &str, case: &str, t: &TestResult) -> TestCase {
    let status = match t.status {
        Status::Pass => TestCaseStatus::success(),
        Status::Skip | Status::NotRun => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(t.message.as_deref().unwrap_or("not run"));
            s
        }
        Status::Fail => non_success(NonSuccessKind::Failure, t),
        Status::Crash | Status::Timeout | Status::Error => non_success(NonSuccessKind::Error, t),
    };
    let mut tc = TestCase::new(case, status);
    tc.set_classname(suite);
    tc.set_time(Duration::from_millis(t.duration_ms));
    if t.status != Status::NotRun {
        tc.add_property(("kernel", t.kernel.as_str()));
        tc.add_property(("artifacts", t.artifacts.to_string_lossy().as_ref()));
    }
    if let Some(b) = t.boot_ms {
        tc.add_property(("boot_ms", b.to_string().as_str()));
    }
    if let Some(g) = t.guest {
        let g = serde_json::to_value(g).unwrap_or_default();
        tc.add_property(("guest", g.as_str().unwrap_or_default()));
    }
    if !matches!(t.status, Status::Pass | Status::Skip | Status::NotRun) {
        tc.set_system_out(system_out(t));
    }
    tc
}

/// The innermost results inside a test (a KUnit suite's cases, a
/// parameter of one) as test cases of the test's suite, named
/// `<test>/<path>` with the path joined by `.` (`load/my_suite.my_case`),
/// so a CI page lists and counts them beside the test. A result with
/// results inside it is only their name's prefix.
fn inner_cases(suite: &str, test: &str, parent: &str, c: &CaseResult, out: &mut Vec<TestCase>) {
    let path = if parent.is_empty() {
        c.name.clone()
    } else {
        format!("{parent}.{}", c.name)
    };
    if !c.cases.is_empty() {
        for inner in &c.cases {
            inner_cases(suite, test, &path, inner, out);
        }
        return;
    }
    let located = |text: &str| match &c.location {
        Some(l) if !text.contains(l.as_str()) => format!("{text}\nat {l}"),
        _ => text.to_string(),
    };
    let status = match c.status {
        Status::Pass => TestCaseStatus::success(),
        Status::Skip | Status::NotRun => {
            let mut s = TestCaseStatus::skipped();
            if let Some(m) = &c.message {
                s.set_message(one_line(m));
            }
            s
        }
        other => {
            let kind = if other == Status::Fail {
                NonSuccessKind::Failure
            } else {
                NonSuccessKind::Error
            };
            let mut s = TestCaseStatus::non_success(kind);
            s.set_type(status_name(other));
            let headline = c
                .crash
                .as_ref()
                .map(|k| k.title.clone())
                .or_else(|| c.message.clone())
                .unwrap_or_else(|| format!("ended with status {}", status_name(other)));
            let headline = match &c.location {
                Some(l) if !headline.lines().next().unwrap_or("").contains(l.as_str()) => {
                    format!("{} at {l}", one_line(&headline))
                }
                _ => one_line(&headline),
            };
            s.set_message(headline);
            let mut detail = located(c.message.as_deref().unwrap_or_default());
            if let Some(k) = &c.crash {
                for l in &k.report {
                    let _ = write!(detail, "\n  {l}");
                }
            }
            s.set_description(detail);
            s
        }
    };
    let mut tc = TestCase::new(format!("{test}/{path}"), status);
    tc.set_classname(suite);
    if let Some(l) = &c.location {
        tc.add_property(("location", l.as_str()));
    }
    out.push(tc);
}

/// A run that stopped early becomes an error case of its own: CI pages count
/// test cases, and a run whose tests were all skipped, or that had none,
/// would otherwise show green.
fn run_failure(summary: &Summary) -> Option<TestCase> {
    let (ty, message) = match (&summary.error, summary.interrupted) {
        (Some(e), _) => ("error", e.clone()),
        (None, true) => ("interrupted", "the run was interrupted".to_string()),
        (None, false) => return None,
    };
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
    status.set_type(ty);
    status.set_message(one_line(&message));
    status.set_description(message);
    let mut tc = TestCase::new("run", status);
    tc.set_classname("modvm");
    Some(tc)
}

fn non_success(kind: NonSuccessKind, t: &TestResult) -> TestCaseStatus {
    let mut s = TestCaseStatus::non_success(kind);
    s.set_type(status_name(t.status));
    s.set_message(one_line(&headline(t)));
    s.set_description(failure_detail(t, true));
    s
}

/// The lower-case status, as in the JSON report, so tools can join the two.
fn status_name(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Fail => "fail",
        Status::Crash => "crash",
        Status::Timeout => "timeout",
        Status::Skip => "skip",
        Status::Error => "error",
        Status::NotRun => "not_run",
    }
}

/// The one line a CI page shows next to the test name. A crash title beats
/// anything else because it identifies the bug across runs.
fn headline(t: &TestResult) -> String {
    if t.status == Status::Crash {
        if let Some(c) = t.crash.as_ref().or_else(|| first_crash(t)) {
            return c.title.clone();
        }
    }
    if let Some(m) = &t.message {
        return m.clone();
    }
    t.steps
        .iter()
        .flat_map(|s| s.failures.first())
        .next()
        .or(t.message.as_ref())
        .cloned()
        .unwrap_or_else(|| format!("test ended with status {}", status_name(t.status)))
}

fn first_crash(t: &TestResult) -> Option<&crate::outcome::Crash> {
    t.steps.iter().flat_map(|s| s.crashes.first()).next()
}

/// Attribute values are one line in every viewer; keep the first.
fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// Every unmet expectation and the crash report: what a developer reads
/// first when the message alone does not explain the failure.
fn failure_detail(t: &TestResult, with_crash_report: bool) -> String {
    let mut out = String::new();
    if let Some(m) = t.message.as_ref().filter(|_| !t.message_repeats_a_step()) {
        let _ = writeln!(out, "{m}");
    }
    for s in t.steps.iter().filter(|s| !s.failures.is_empty()) {
        let _ = writeln!(out, "{}:", step_heading(s));
        for f in &s.failures {
            let _ = writeln!(out, "  - {f}");
        }
    }
    if let Some(c) = t.crash.as_ref().or_else(|| first_crash(t)) {
        let _ = writeln!(out, "{}", c.title);
        if with_crash_report {
            for l in &c.report {
                let _ = writeln!(out, "  {l}");
            }
        }
    }
    let _ = writeln!(out, "logs: {}", t.artifacts.display());
    out
}

fn step_heading(s: &StepResult) -> String {
    format!("{} {}", s.label, s.status.label())
}

/// The failure detail, then each step with its output and kernel lines, so
/// the log can be read without fetching the run's artifacts. The crash
/// report is left to the kernel lines, which already hold it.
fn system_out(t: &TestResult) -> String {
    let has_lines = t.steps.iter().any(|s| !s.kernel_lines.is_empty());
    let mut out = failure_detail(t, !has_lines);
    for s in &t.steps {
        let _ = writeln!(out, "\n{}", step_heading(s));
        let _ = writeln!(out, "  $ {}", s.command);
        match (s.exit, &s.expected_errno) {
            (Some(e), Some(want)) => {
                let seen = s.errno.as_deref().unwrap_or("none named");
                let _ = writeln!(out, "  exit {e}, errno {seen} (expected {want})");
            }
            (Some(e), None) => {
                let _ = writeln!(out, "  exit {e} (expected {})", s.expected_exit);
            }
            (None, _) => {}
        }
        for l in s.output.trim_end().lines() {
            let _ = writeln!(out, "  > {l}");
        }
        kernel_lines(&mut out, &s.kernel_lines);
    }
    if !has_lines && !t.kernel_tail.is_empty() {
        let _ = writeln!(out, "\nlast kernel lines:");
        kernel_lines(&mut out, &t.kernel_tail);
    }
    out
}

fn kernel_lines(out: &mut String, lines: &[KernelLine]) {
    for l in lines {
        let _ = writeln!(out, "  | {l}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample;

    fn produce() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        let mut j = Junit::new(path.clone());
        sample::replay(&mut j);
        assert!(j.error().is_none(), "{:?}", j.error());
        (dir, path)
    }

    fn case<'a>(suite: &'a TestSuite, name: &str) -> &'a TestCase {
        suite
            .test_cases
            .iter()
            .find(|c| c.name.as_str() == name)
            .unwrap_or_else(|| panic!("no test case {name}"))
    }

    fn status_parts(c: &TestCase) -> (NonSuccessKind, String, String, String) {
        match &c.status {
            TestCaseStatus::NonSuccess {
                kind,
                message,
                ty,
                description,
                ..
            } => (
                *kind,
                ty.as_ref()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                message
                    .as_ref()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                description
                    .as_ref()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            ),
            other => panic!("{} is not a failure: {other:?}", c.name.as_str()),
        }
    }

    /// Reads the file back with quick-junit's own deserialiser: a second,
    /// independent reading of the XML rather than a string comparison.
    #[test]
    fn report_reads_back_as_junit() {
        let (_dir, path) = produce();
        let text = std::fs::read_to_string(&path).unwrap();
        let report = Report::deserialize_from_str(&text).expect("valid JUnit XML");

        assert_eq!(report.name.as_ref().map(|n| n.as_str()), Some("modvm"));
        assert_eq!(report.tests, 4);
        assert_eq!(report.failures, 1);
        assert_eq!(report.errors, 2);
        let names: Vec<&str> = report.test_suites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["hello", "oops", "slow"]);

        let hello = &report.test_suites[0];
        assert_eq!(hello.tests, 2);
        assert_eq!(hello.failures, 1);
        assert_eq!(hello.time, Some(Duration::from_millis(4180 + 4420)));
        assert!(hello
            .properties
            .iter()
            .any(|p| p.name.as_str() == "kernel" && p.value.as_str() == sample::KERNEL));

        let load = case(hello, "load");
        assert!(matches!(load.status, TestCaseStatus::Success { .. }));
        assert_eq!(load.classname.as_ref().unwrap().as_str(), "hello");
        assert_eq!(load.time, Some(Duration::from_millis(4180)));
        assert!(load.system_out.is_none());

        let unload = case(hello, "unload");
        let (kind, ty, message, detail) = status_parts(unload);
        assert_eq!(kind, NonSuccessKind::Failure);
        assert_eq!(ty, "fail");
        assert_eq!(
            message,
            "step 2 (rmmod hello): expected a line containing \"Goodbye\" in the kernel log"
        );
        assert!(detail.contains("step 2 (rmmod hello) FAIL"), "{detail}");
        assert_eq!(detail.matches("\"Goodbye\"").count(), 1, "{detail}");
        let out = unload.system_out.as_ref().unwrap().as_str();
        assert!(out.contains("hello: unloading"), "{out}");
        assert!(out.contains("step 3 (run `lsmod`) SKIP"), "{out}");

        let init = case(&report.test_suites[1], "init");
        let (kind, ty, message, detail) = status_parts(init);
        assert_eq!(kind, NonSuccessKind::Error);
        assert_eq!(ty, "crash");
        assert_eq!(message, sample::oops().title);
        assert!(
            detail.contains("RIP: 0010:oops_init+0x11/0x30 [oops]"),
            "{detail}"
        );

        let boot = case(&report.test_suites[2], "boot");
        let (kind, ty, message, _) = status_parts(boot);
        assert_eq!(kind, NonSuccessKind::Error);
        assert_eq!(ty, "timeout");
        assert!(message.contains("did not reach its shell"), "{message}");
        let out = boot.system_out.as_ref().unwrap().as_str();
        assert!(out.contains("last kernel lines:"), "{out}");
        assert!(out.contains("random: crng init done"), "{out}");
        assert!(!boot.properties.iter().any(|p| p.name.as_str() == "boot_ms"));
    }

    #[test]
    fn results_inside_a_test_are_test_cases_of_its_suite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        let mut j = Junit::new(path.clone());
        sample::replay_results(&mut j, &sample::results_with_cases());
        let report = Report::deserialize_from_str(&std::fs::read_to_string(&path).unwrap())
            .expect("valid JUnit XML");
        let demo = &report.test_suites[0];
        let names: Vec<&str> = demo.test_cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "suites",
                "suites/demo_math.add_small",
                "suites/demo_math.add_wrong",
                "suites/demo_math.needs_hardware",
                "suites/demo_str.str_len",
                "suites/demo_str.str_len_param.len-0",
                "suites/demo_str.str_len_param.len-5",
            ]
        );
        assert_eq!((demo.tests, demo.failures, demo.errors), (7, 2, 0));
        let wrong = case(demo, "suites/demo_math.add_wrong");
        assert_eq!(wrong.classname.as_ref().unwrap().as_str(), "demo");
        let (kind, ty, message, detail) = status_parts(wrong);
        assert_eq!((kind, ty.as_str()), (NonSuccessKind::Failure, "fail"));
        assert_eq!(message, "EXPECTATION FAILED at demo.c:26");
        assert!(detail.contains("demo_add(2, 2) == 4"), "{detail}");
        assert!(wrong
            .properties
            .iter()
            .any(|p| p.name.as_str() == "location" && p.value.as_str() == "demo.c:26"));
        match &case(demo, "suites/demo_math.needs_hardware").status {
            TestCaseStatus::Skipped { message, .. } => assert_eq!(
                message.as_ref().unwrap().as_str(),
                "no such hardware in the guest"
            ),
            other => panic!("{other:?}"),
        }
        let crashy = &report.test_suites[1];
        let (kind, ty, message, detail) = status_parts(case(crashy, "suite/crashy.case 2"));
        assert_eq!((kind, ty.as_str()), (NonSuccessKind::Error, "crash"));
        assert_eq!(
            message,
            "BUG: kernel NULL pointer dereference in null_deref at crashy.c:20"
        );
        assert!(detail.contains("address: 0000000000000000"), "{detail}");
    }

    #[test]
    fn a_stopped_run_is_an_error_and_its_tests_are_skipped_saying_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        let mut j = Junit::new(path.clone());
        sample::replay_stopped(&mut j, "building m failed", false);
        assert!(j.error().is_none(), "{:?}", j.error());
        let report = Report::deserialize_from_str(&std::fs::read_to_string(&path).unwrap())
            .expect("valid JUnit XML");
        assert_eq!(report.tests, 3);
        assert_eq!(report.errors, 1);
        let run = case(&report.test_suites[1], "run");
        let (kind, ty, message, _) = status_parts(run);
        assert_eq!(kind, NonSuccessKind::Error);
        assert_eq!(
            (ty.as_str(), message.as_str()),
            ("error", "building m failed")
        );
        for case in &report.test_suites[0].test_cases {
            match &case.status {
                TestCaseStatus::Skipped { message, .. } => assert_eq!(
                    message.as_ref().unwrap().as_str(),
                    "not run: building m failed"
                ),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn skipped_tests_become_skipped_elements() {
        let mut t = sample::results().remove(0);
        t.status = Status::Skip;
        t.message = Some("needs kvm".into());
        let tc = test_case("hello", "load", &t);
        match tc.status {
            TestCaseStatus::Skipped { message, .. } => {
                assert_eq!(message.unwrap().as_str(), "needs kvm")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unwritable_path_is_kept_as_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").unwrap();
        let mut j = Junit::new(blocker.join("junit.xml"));
        sample::replay(&mut j);
        assert!(j.error().is_some());
        assert!(j.error_handle().get().unwrap().contains("junit.xml"));
    }

    /// A second reader from outside Rust: python's junitparser, which the
    /// host setup does not install (Debian has no package of it).
    #[test]
    #[ignore = "needs python3 with junitparser (pip install junitparser); run with --ignored"]
    fn python_junitparser_reads_the_report() {
        let probe = std::process::Command::new("python3")
            .args(["-c", "import junitparser"])
            .output();
        match probe {
            Ok(o) if o.status.success() => {}
            Ok(_) => panic!("python3 has no junitparser: pip install junitparser"),
            Err(e) => {
                panic!("python3 not runnable: {e}");
            }
        }
        let (_dir, path) = produce();
        let script = r#"
import sys
from junitparser import JUnitXml, Failure, Error, Skipped
xml = JUnitXml.fromfile(sys.argv[1])
for suite in xml:
    for case in suite:
        kinds = [type(r).__name__ + ":" + (r.type or "") for r in case.result]
        print(suite.name, case.classname, case.name, round(case.time, 3), ",".join(kinds) or "pass")
"#;
        let out = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            text,
            "hello hello load 4.18 pass\n\
             hello hello unload 4.42 Failure:fail\n\
             oops oops init 5.01 Error:crash\n\
             slow slow boot 30.04 Error:timeout\n"
        );
    }
}
