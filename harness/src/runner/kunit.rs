//! A step's KUnit results judged: the cases the kernel reported during the
//! step ([`crate::kunit::parse`]) sorted by the test's `kunit` filter, the
//! ones a crash or deadline cut short marked so, paths made relative to the
//! module's directory, and every case that did not pass made a failure of
//! the step, named `suite.case` with its `file:line`.

use crate::outcome::{CaseResult, Status, StepResult, TestResult};
use crate::spec::kunit::KunitFilter;
use std::path::{Path, PathBuf};

/// Failures listed per step before the rest are only counted.
const MAX_FAILURES: usize = 20;

/// The step's cases, judged; the step fails when one of them did not pass.
pub(super) fn judge(
    step: &mut StepResult,
    mut cases: Vec<CaseResult>,
    filter: &KunitFilter,
    modules: &[PathBuf],
) -> Vec<CaseResult> {
    let dirs: Vec<&Path> = modules.iter().filter_map(|m| m.parent()).collect();
    for suite in &mut cases {
        relative(suite, &dirs);
        apply_filter(suite, filter);
    }
    let ended = step.status;
    if let Some(crash) = step.crashes.first() {
        let modules = crate::kbuild::module_names(modules);
        let location = crash.frames.iter().find_map(|f| {
            let m = f.module.as_ref()?;
            modules
                .contains(&crate::kbuild::module_name(m))
                .then(|| f.location())?
        });
        for suite in &mut cases {
            cut_short(suite, Status::Crash, &crash.title, &mut |leaf| {
                leaf.crash = Some(crash.clone());
                leaf.location = location.clone();
            });
        }
    } else if ended == Status::Timeout {
        for suite in &mut cases {
            cut_short(
                suite,
                Status::Timeout,
                "the step passed its deadline",
                &mut |_| {},
            );
        }
    }
    let mut failed = Vec::new();
    for suite in &cases {
        failures(suite, "", &mut failed);
    }
    let more = failed.len().saturating_sub(MAX_FAILURES);
    failed.truncate(MAX_FAILURES);
    if !failed.is_empty() && step.status == Status::Pass {
        step.status = Status::Fail;
    }
    step.failures.extend(failed);
    if more > 0 {
        step.failures.push(format!(
            "... and {more} more KUnit results that did not pass"
        ));
    }
    cases
}

/// A test with a `kunit` filter fails when a glob of it selected nothing
/// the test's modules ran: a misspelt suite would otherwise pass silently.
pub(super) fn check_filter(filter: &KunitFilter, result: &mut TestResult) {
    if result.status != Status::Pass {
        return;
    }
    let unused: Vec<String> = filter
        .0
        .iter()
        .filter(|g| {
            !result
                .cases
                .iter()
                .any(|s| g.matches_any(&s.name, s.cases.iter().map(|c| c.name.as_str())))
        })
        .map(|g| format!("{:?}", g.to_string()))
        .collect();
    if unused.is_empty() {
        return;
    }
    let mut ran: Vec<&str> = result.cases.iter().map(|s| s.name.as_str()).collect();
    ran.dedup();
    let ran = if ran.is_empty() {
        "its modules ran no KUnit suites".to_string()
    } else {
        format!("its modules ran: {}", ran.join(", "))
    };
    result.status = Status::Fail;
    result.message = Some(format!(
        "`kunit` names {} that selected no suite or case; {ran}",
        unused.join(", ")
    ));
}

/// Paths of the build directory (where kbuild compiled a copy of the
/// module's sources) become paths in the module's directory.
fn relative(case: &mut CaseResult, dirs: &[&Path]) {
    let strip = |text: &str| -> String {
        dirs.iter().fold(text.to_string(), |t, d| {
            let prefix = format!("{}/", d.display());
            if d.as_os_str().is_empty() {
                t
            } else {
                t.replace(&prefix, "")
            }
        })
    };
    case.location = case.location.as_deref().map(strip);
    case.message = case.message.as_deref().map(strip);
    for c in &mut case.cases {
        relative(c, dirs);
    }
}

const NOT_SELECTED: &str = "not selected by the test's `kunit` filter";

fn apply_filter(suite: &mut CaseResult, filter: &KunitFilter) {
    if !filter.selects_suite(&suite.name) {
        skip_all(suite);
        return;
    }
    let mut changed = false;
    for c in &mut suite.cases {
        if !filter.selects_case(&suite.name, &c.name) {
            skip_all(c);
            changed = true;
        }
    }
    if changed && suite.status == Status::Fail && suite.cases.iter().all(passed_or_skipped) {
        let any_pass = suite.cases.iter().any(|c| c.status == Status::Pass);
        suite.status = if any_pass { Status::Pass } else { Status::Skip };
        suite.message = None;
        suite.location = None;
    }
}

fn skip_all(case: &mut CaseResult) {
    case.status = Status::Skip;
    case.message = Some(NOT_SELECTED.into());
    case.location = None;
    for c in &mut case.cases {
        skip_all(c);
    }
}

fn passed_or_skipped(c: &CaseResult) -> bool {
    matches!(c.status, Status::Pass | Status::Skip)
}

/// Results that never came ([`Status::Error`] from the reader) ended
/// because of the step's crash or deadline: `leaf` marks the innermost.
fn cut_short(
    case: &mut CaseResult,
    status: Status,
    why: &str,
    leaf: &mut dyn FnMut(&mut CaseResult),
) {
    if case.status != Status::Error {
        return;
    }
    case.status = status;
    if case.cases.iter().any(|c| c.status == Status::Error) {
        case.message = Some(format!("did not finish: {why}"));
        for c in &mut case.cases {
            cut_short(c, status, why, leaf);
        }
    } else {
        case.message = Some(why.to_string());
        leaf(case);
    }
}

/// One line per innermost result that did not pass: `suite.case`, what
/// happened, where, and the kernel's explanation.
fn failures(case: &CaseResult, parent: &str, out: &mut Vec<String>) {
    if passed_or_skipped(case) {
        return;
    }
    let path = if parent.is_empty() {
        case.name.clone()
    } else {
        format!("{parent}.{}", case.name)
    };
    if case.cases.iter().any(|c| !passed_or_skipped(c)) {
        for c in &case.cases {
            failures(c, &path, out);
        }
        return;
    }
    let what = match case.status {
        Status::Crash => "crashed",
        Status::Timeout => "timed out",
        Status::Error => "did not finish",
        _ => "failed",
    };
    let at = case
        .location
        .as_deref()
        .map(|l| format!(" at {l}"))
        .unwrap_or_default();
    // The first line repeats the location (`EXPECTATION FAILED at f.c:12`)
    // when more follows.
    let detail = case.message.as_deref().map(|m| {
        let mut lines: Vec<&str> = m.lines().collect();
        if lines.len() > 1
            && case
                .location
                .as_deref()
                .is_some_and(|l| lines[0].ends_with(l))
        {
            lines.remove(0);
        }
        lines
            .iter()
            .flat_map(|l| l.split_whitespace())
            .collect::<Vec<_>>()
            .join(" ")
    });
    let detail = detail
        .filter(|d| !d.is_empty())
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    out.push(format!("KUnit case {path} {what}{at}{detail}"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::klog::KernelLine;
    use crate::outcome::{Crash, Frame};

    fn step(status: Status) -> StepResult {
        StepResult::empty(0, "insmod m".into(), "insmod /modules/m.ko".into(), status)
    }

    fn parsed(text: &str) -> Vec<CaseResult> {
        let lines: Vec<KernelLine> = text.lines().map(KernelLine::parse).collect();
        crate::kunit::parse(&lines)
    }

    const DEMO: &str = "    KTAP version 1
    # Subtest: math
    1..2
    ok 1 add
    # sub: EXPECTATION FAILED at /build/m-1/m.c:26
    Expected 5 == sub(2, 2), but
        sub(2, 2) == 0
    not ok 2 sub
not ok 1 math
    KTAP version 1
    # Subtest: str
    1..1
    ok 1 len
ok 2 str
";

    fn modules() -> Vec<PathBuf> {
        vec![PathBuf::from("/build/m-1/m.ko")]
    }

    #[test]
    fn a_failed_case_fails_the_step_with_suite_case_and_place() {
        let mut s = step(Status::Pass);
        let cases = judge(&mut s, parsed(DEMO), &KunitFilter::default(), &modules());
        assert_eq!(s.status, Status::Fail);
        assert_eq!(
            s.failures,
            ["KUnit case math.sub failed at m.c:26: Expected 5 == sub(2, 2), but sub(2, 2) == 0"]
        );
        assert_eq!(cases[0].cases[1].location.as_deref(), Some("m.c:26"));
        assert!(cases[0].cases[1]
            .message
            .as_deref()
            .unwrap()
            .starts_with("EXPECTATION FAILED at m.c:26\n"));
    }

    #[test]
    fn cases_outside_the_filter_are_skipped_and_cannot_fail() {
        let filter: KunitFilter = serde_json::from_str(r#"["str", "math.add"]"#).unwrap();
        let mut s = step(Status::Pass);
        let cases = judge(&mut s, parsed(DEMO), &filter, &modules());
        assert_eq!(s.status, Status::Pass, "{:?}", s.failures);
        assert_eq!(cases[0].status, Status::Pass);
        assert_eq!(cases[0].cases[1].status, Status::Skip);
        assert_eq!(cases[0].cases[1].message.as_deref(), Some(NOT_SELECTED));
        let only_str: KunitFilter = serde_json::from_str(r#"["s*"]"#).unwrap();
        let cases = judge(&mut step(Status::Pass), parsed(DEMO), &only_str, &modules());
        assert_eq!(cases[0].status, Status::Skip);
        assert!(cases[0].cases.iter().all(|c| c.status == Status::Skip));
    }

    #[test]
    fn a_crash_marks_the_case_that_was_running() {
        let text = "    KTAP version 1\n    # Subtest: c\n    1..2\n    ok 1 a\n";
        let mut s = step(Status::Crash);
        s.crashes.push(Crash {
            title: "BUG: kernel NULL pointer dereference in null_deref".into(),
            report: Vec::new(),
            frames: vec![Frame {
                function: "null_deref".into(),
                offset: Some(0x54),
                module: Some("m".into()),
                file: Some("m.c".into()),
                line: Some(20),
            }],
            fatal: true,
        });
        let cases = judge(&mut s, parsed(text), &KunitFilter::default(), &modules());
        assert_eq!(cases[0].status, Status::Crash);
        let running = &cases[0].cases[1];
        assert_eq!(running.status, Status::Crash);
        assert_eq!(running.location.as_deref(), Some("m.c:20"));
        assert!(running.crash.is_some());
        assert_eq!(
            s.failures.last().unwrap(),
            "KUnit case c.case 2 crashed at m.c:20: BUG: kernel NULL pointer dereference in null_deref"
        );
        assert_eq!(s.status, Status::Crash, "a crash stays a crash");
    }

    #[test]
    fn an_unused_glob_fails_a_passing_test() {
        let mut r = crate::report::sample::results().remove(0);
        r.cases = parsed(DEMO);
        let filter: KunitFilter = serde_json::from_str(r#"["math", "strr*"]"#).unwrap();
        check_filter(&filter, &mut r);
        assert_eq!(r.status, Status::Fail);
        assert_eq!(
            r.message.as_deref(),
            Some("`kunit` names \"strr*\" that selected no suite or case; its modules ran: math, str")
        );
        let mut r = crate::report::sample::results().remove(0);
        check_filter(&filter, &mut r);
        assert!(r
            .message
            .unwrap()
            .ends_with("its modules ran no KUnit suites"));
    }
}
