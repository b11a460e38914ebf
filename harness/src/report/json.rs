//! One JSON document per run, for scripts and dashboards.
//!
//! The document has its own types instead of serialising the result model
//! directly: the model may grow or rename fields for the runner's sake, while
//! consumers need a shape that only changes with `schema_version`. Every field
//! is always present (absent values are `null` or `[]`), so consumers need no
//! "missing or null" checks. `docs/report.schema.json` describes the shape and
//! the tests hold the two together.

use super::file::{write_report, FirstError, ReportError};
use crate::klog::KernelLine;
use crate::outcome::{
    CaseResult, Crash, Event, Frame, Reporter, Status, StepResult, Summary, TestResult,
};
use serde::Serialize;
use std::path::PathBuf;

/// Bumped on any change that could break a consumer of version 1.
pub const SCHEMA_VERSION: u32 = 1;

/// Collects results during the run and writes the document at its end.
pub struct Json {
    path: PathBuf,
    kernel: Option<String>,
    accel: Option<String>,
    artifacts: Option<String>,
    tests: Vec<TestDoc>,
    error: FirstError,
}

impl Json {
    pub fn new(path: PathBuf) -> Json {
        Json {
            path,
            kernel: None,
            accel: None,
            artifacts: None,
            tests: Vec::new(),
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

    fn finish(&mut self, summary: &Summary) {
        let doc = RunDoc {
            schema_version: SCHEMA_VERSION,
            tool: "modvm",
            tool_version: env!("CARGO_PKG_VERSION"),
            kernel: self.kernel.as_deref(),
            accel: self.accel.as_deref(),
            artifacts: self.artifacts.as_deref(),
            interrupted: summary.interrupted,
            error: summary.error.as_deref(),
            tests: &self.tests,
            summary: SummaryDoc::from(summary),
        };
        let what = format!("writing JSON report {}", self.path.display());
        let bytes = match serde_json::to_vec_pretty(&doc) {
            Ok(mut b) => {
                b.push(b'\n');
                b
            }
            Err(e) => return self.error.record(&what, e.into()),
        };
        if let Err(e) = write_report(&self.path, &bytes) {
            self.error.record(&what, e);
        }
    }
}

impl Reporter for Json {
    fn event(&mut self, event: &Event<'_>) {
        match event {
            Event::RunStarted {
                kernel,
                accel,
                artifacts,
                ..
            } => {
                // Empty when the run stopped before it booted anything.
                let known = |s: String| Some(s).filter(|s| !s.is_empty());
                self.kernel = known(kernel.to_string());
                self.accel = known(accel.to_string());
                self.artifacts = known(artifacts.to_string_lossy().into_owned());
            }
            Event::TestFinished { result, .. } => self.tests.push(TestDoc::from(*result)),
            Event::RunFinished(s) => self.finish(s),
            Event::TestStarted { .. }
            | Event::Booted { .. }
            | Event::StepStarted { .. }
            | Event::TestEnded { .. } => {}
        }
    }
}

#[derive(Serialize)]
struct RunDoc<'a> {
    schema_version: u32,
    tool: &'static str,
    tool_version: &'static str,
    kernel: Option<&'a str>,
    accel: Option<&'a str>,
    artifacts: Option<&'a str>,
    interrupted: bool,
    error: Option<&'a str>,
    tests: &'a [TestDoc],
    summary: SummaryDoc,
}

#[derive(Serialize)]
struct SummaryDoc {
    total: usize,
    passed: usize,
    failed: usize,
    crashed: usize,
    timed_out: usize,
    skipped: usize,
    errors: usize,
    not_run: usize,
    duration_ms: u64,
    ok: bool,
}

impl From<&Summary> for SummaryDoc {
    fn from(s: &Summary) -> SummaryDoc {
        SummaryDoc {
            total: s.total,
            passed: s.passed,
            failed: s.failed,
            crashed: s.crashed,
            timed_out: s.timed_out,
            skipped: s.skipped,
            errors: s.errors,
            not_run: s.not_run,
            duration_ms: s.duration_ms,
            ok: s.ok(),
        }
    }
}

#[derive(Serialize)]
struct TestDoc {
    name: String,
    suite: String,
    case: String,
    kernel: String,
    kernel_release: String,
    status: Status,
    duration_ms: u64,
    boot_ms: Option<u64>,
    guest: Option<crate::guest::launcher::Start>,
    message: Option<String>,
    artifacts: String,
    steps: Vec<StepDoc>,
    crash: Option<CrashDoc>,
    crash_detect_ms: Option<u64>,
    kernel_tail: Vec<LineDoc>,
    cases: Vec<CaseDoc>,
}

/// Splits `<suite>/<test>`; a name without `/` is a test of no suite.
pub(crate) fn split_name(name: &str) -> (&str, &str) {
    name.split_once('/').unwrap_or(("", name))
}

impl From<&TestResult> for TestDoc {
    fn from(t: &TestResult) -> TestDoc {
        let (suite, case) = split_name(&t.name);
        TestDoc {
            name: t.name.clone(),
            suite: suite.to_string(),
            case: case.to_string(),
            kernel: t.kernel.clone(),
            kernel_release: t.kernel_release.clone(),
            status: t.status,
            duration_ms: t.duration_ms,
            boot_ms: t.boot_ms,
            guest: t.guest,
            message: t.message.clone(),
            artifacts: t.artifacts.to_string_lossy().into_owned(),
            steps: t.steps.iter().map(StepDoc::from).collect(),
            crash: t.crash.as_ref().map(CrashDoc::from),
            crash_detect_ms: t.crash_detect_ms,
            kernel_tail: lines(&t.kernel_tail),
            cases: t.cases.iter().map(CaseDoc::from).collect(),
        }
    }
}

#[derive(Serialize)]
struct StepDoc {
    index: usize,
    description: String,
    command: String,
    status: Status,
    expected_exit: i32,
    expected_errno: Option<String>,
    exit: Option<i32>,
    errno: Option<String>,
    output: String,
    kernel_lines: Vec<LineDoc>,
    failures: Vec<String>,
    taint: Option<u64>,
    duration_ms: u64,
    crashes: Vec<CrashDoc>,
}

impl From<&StepResult> for StepDoc {
    fn from(s: &StepResult) -> StepDoc {
        StepDoc {
            index: s.index,
            description: s.description.clone(),
            command: s.command.clone(),
            status: s.status,
            expected_exit: s.expected_exit,
            expected_errno: s.expected_errno.clone(),
            exit: s.exit,
            errno: s.errno.clone(),
            output: s.output.clone(),
            kernel_lines: lines(&s.kernel_lines),
            failures: s.failures.clone(),
            taint: s.taint,
            duration_ms: s.duration_ms,
            crashes: s.crashes.iter().map(CrashDoc::from).collect(),
        }
    }
}

/// A result inside a test, nested as the test nests them.
#[derive(Serialize)]
struct CaseDoc {
    name: String,
    status: Status,
    message: Option<String>,
    location: Option<String>,
    crash: Option<CrashDoc>,
    cases: Vec<CaseDoc>,
}

impl From<&CaseResult> for CaseDoc {
    fn from(c: &CaseResult) -> CaseDoc {
        CaseDoc {
            name: c.name.clone(),
            status: c.status,
            message: c.message.clone(),
            location: c.location.clone(),
            crash: c.crash.as_ref().map(CrashDoc::from),
            cases: c.cases.iter().map(CaseDoc::from).collect(),
        }
    }
}

#[derive(Serialize)]
struct LineDoc {
    time: Option<f64>,
    text: String,
}

fn lines(ls: &[KernelLine]) -> Vec<LineDoc> {
    ls.iter()
        .map(|l| LineDoc {
            time: l.time,
            text: l.text.clone(),
        })
        .collect()
}

#[derive(Serialize)]
struct CrashDoc {
    title: String,
    report: Vec<String>,
    frames: Vec<FrameDoc>,
    fatal: bool,
}

impl From<&Crash> for CrashDoc {
    fn from(c: &Crash) -> CrashDoc {
        CrashDoc {
            title: c.title.clone(),
            report: c.report.clone(),
            frames: c.frames.iter().map(FrameDoc::from).collect(),
            fatal: c.fatal,
        }
    }
}

#[derive(Serialize)]
struct FrameDoc {
    function: String,
    offset: Option<u64>,
    module: Option<String>,
    file: Option<String>,
    line: Option<u32>,
}

impl From<&Frame> for FrameDoc {
    fn from(f: &Frame) -> FrameDoc {
        FrameDoc {
            function: f.function.clone(),
            offset: f.offset,
            module: f.module.clone(),
            file: f.file.clone(),
            line: f.line,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample;
    use serde_json::Value;

    const SCHEMA: &str = include_str!("../../../docs/report.schema.json");

    fn schema() -> Value {
        serde_json::from_str(SCHEMA).expect("the schema is JSON")
    }

    fn produce(dir: &std::path::Path) -> Value {
        let path = dir.join("out").join("report.json");
        let mut json = Json::new(path.clone());
        sample::replay(&mut json);
        assert!(json.error().is_none(), "{:?}", json.error());
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }

    fn problems(doc: &Value) -> Vec<String> {
        let v = jsonschema::validator_for(&schema()).expect("the schema compiles");
        v.iter_errors(doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    #[test]
    fn schema_is_a_valid_schema() {
        if let Err(e) = jsonschema::meta::validate(&schema()) {
            panic!("docs/report.schema.json is not a valid JSON Schema: {e}");
        }
    }

    #[test]
    fn report_validates_against_the_schema() {
        let dir = tempfile::tempdir().unwrap();
        let doc = produce(dir.path());
        assert_eq!(problems(&doc), Vec::<String>::new());

        assert_eq!(doc["schema_version"], 1);
        assert_eq!(doc["tool"], "modvm");
        assert_eq!(doc["kernel"], sample::KERNEL);
        assert_eq!(doc["accel"], "tcg");
        let tests = doc["tests"].as_array().unwrap();
        let statuses: Vec<&str> = tests
            .iter()
            .map(|t| t["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["pass", "fail", "crash", "timeout"]);
        assert_eq!(tests[0]["suite"], "hello");
        assert_eq!(tests[0]["case"], "load");
        assert_eq!(tests[0]["steps"][0]["kernel_lines"][0]["time"], 2.345678);
        assert_eq!(
            tests[1]["steps"][1]["failures"].as_array().unwrap().len(),
            1
        );
        assert_eq!(tests[1]["steps"][1]["crashes"], serde_json::json!([]));
        assert!(tests[1]["crash"].is_null());
        let crash = &tests[2]["crash"];
        assert_eq!(crash["fatal"], true);
        assert_eq!(crash["frames"][0]["function"], "oops_init");
        assert_eq!(crash["frames"][0]["module"], "oops");
        assert_eq!(crash["frames"][1]["module"], Value::Null);
        assert_eq!(tests[2]["steps"][0]["crashes"][0]["title"], crash["title"]);
        assert_eq!(tests[3]["boot_ms"], Value::Null);
        assert!(!tests[3]["kernel_tail"].as_array().unwrap().is_empty());
        assert_eq!(doc["summary"]["total"], 4);
        assert_eq!(doc["summary"]["crashed"], 1);
        assert_eq!(doc["summary"]["ok"], false);
    }

    #[test]
    fn optional_values_validate_when_set() {
        let mut results = sample::results();
        results[1].steps[0].expected_errno = Some("EINVAL".into());
        results[1].steps[0].expected_exit = 1;
        results[1].steps[0].errno = Some("ENODEV".into());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let mut json = Json::new(path.clone());
        sample::replay_results(&mut json, &results);
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(problems(&doc), Vec::<String>::new());
        assert_eq!(doc["tests"][1]["steps"][0]["expected_errno"], "EINVAL");
        assert_eq!(doc["tests"][1]["steps"][0]["errno"], "ENODEV");
        assert_eq!(doc["tests"][2]["crash_detect_ms"], 140);
        assert_eq!(doc["tests"][0]["crash_detect_ms"], Value::Null);
    }

    #[test]
    fn cases_nest_and_validate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cases.json");
        let mut json = Json::new(path.clone());
        sample::replay_results(&mut json, &sample::results_with_cases());
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(problems(&doc), Vec::<String>::new());
        let suites = &doc["tests"][0]["cases"];
        assert_eq!(suites[0]["name"], "demo_math");
        assert_eq!(suites[0]["status"], "fail");
        let wrong = &suites[0]["cases"][1];
        assert_eq!(wrong["name"], "add_wrong");
        assert_eq!(wrong["location"], "demo.c:26");
        assert!(wrong["message"]
            .as_str()
            .unwrap()
            .starts_with("EXPECTATION FAILED at demo.c:26\n"));
        assert_eq!(wrong["crash"], Value::Null);
        assert_eq!(wrong["cases"], serde_json::json!([]));
        assert_eq!(suites[1]["cases"][1]["cases"][1]["name"], "len-5");
        let running = &doc["tests"][1]["cases"][0]["cases"][1];
        assert_eq!(running["status"], "crash");
        assert_eq!(running["crash"]["frames"][0]["line"], 20);
        // A test without cases lists none, and a nested case missing a
        // field is refused.
        let mut doc = produce(dir.path());
        assert_eq!(doc["tests"][0]["cases"], serde_json::json!([]));
        doc["tests"][0]["cases"] = serde_json::json!([{"name": "s", "status": "pass", "message": null, "location": null, "crash": null, "cases": [{"name": "c"}]}]);
        assert!(!problems(&doc).is_empty());
    }

    #[test]
    fn schema_rejects_an_unknown_status() {
        let dir = tempfile::tempdir().unwrap();
        let mut doc = produce(dir.path());
        doc["tests"][1]["status"] = "exploded".into();
        let found = problems(&doc);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("/tests/1/status"), "{found:?}");

        let mut doc = produce(dir.path());
        doc["tests"][0]["steps"][0]["status"] = "PASS".into();
        assert!(
            !problems(&doc).is_empty(),
            "upper-case step status accepted"
        );
    }

    #[test]
    fn schema_rejects_missing_and_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let mut doc = produce(dir.path());
        doc["tests"][0]
            .as_object_mut()
            .unwrap()
            .remove("duration_ms");
        assert!(!problems(&doc).is_empty());
        let mut doc = produce(dir.path());
        doc["summary"]["surprise"] = 1.into();
        assert!(!problems(&doc).is_empty());
    }

    #[test]
    fn a_run_stopped_early_says_so_and_validates() {
        let dir = tempfile::tempdir().unwrap();
        for (error, interrupted) in [("building m failed", false), ("interrupted", true)] {
            let path = dir.path().join("stopped.json");
            let mut json = Json::new(path.clone());
            sample::replay_stopped(&mut json, error, interrupted);
            assert!(json.error().is_none(), "{:?}", json.error());
            let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            assert_eq!(problems(&doc), Vec::<String>::new());
            assert_eq!(doc["summary"]["ok"], false);
            assert_eq!(doc["summary"]["not_run"], 2);
            assert_eq!(doc["summary"]["total"], 2);
            assert_eq!(doc["interrupted"], interrupted);
            assert_eq!(doc["error"].as_str(), (!interrupted).then_some(error));
            assert!(doc["kernel"].is_null() && doc["artifacts"].is_null());
            assert_eq!(doc["tests"][1]["status"], "not_run");
            assert_eq!(doc["tests"][1]["message"], format!("not run: {error}"));
        }
    }

    #[test]
    fn a_finished_run_has_no_error_and_was_not_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let doc = produce(dir.path());
        assert_eq!(doc["interrupted"], false);
        assert!(doc["error"].is_null());
        assert_eq!(doc["summary"]["not_run"], 0);
    }

    #[test]
    fn an_unwritable_path_is_kept_as_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, b"").unwrap();
        let mut json = Json::new(blocker.join("report.json"));
        let handle = json.error_handle();
        sample::replay(&mut json);
        assert!(json.error().is_some());
        let text = handle.get().unwrap();
        assert!(text.contains("report.json"), "{text}");
    }
}
