//! The machine reports of a real run (a passing and a crashing test), read
//! by real consumers: JUnit XML by quick-junit's reader, KTAP by the kernel's
//! own KUnit parser (cached by scripts/setup-host.sh; this test never
//! downloads).

mod common;

use common::*;
use quick_junit::{NonSuccessKind, Report, TestCaseStatus};

#[test]
fn junit_and_ktap_of_a_real_run_are_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let json = dir.path().join("report.json");
    let null_init = repo().join("harness/tests/fixtures/modules/null_init");
    let out = modvm(
        &[
            "test",
            "--accel",
            "tcg",
            "--ktap",
            "--junit",
            junit.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "module",
            null_init.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("PASS    hello/load-unload"),
        "human output moved to stderr: {}",
        out.all()
    );
    assert!(
        out.stdout.starts_with("KTAP version 1\n1..2\n"),
        "{}",
        out.all()
    );

    let report = Report::deserialize_from_str(&std::fs::read_to_string(&junit).unwrap())
        .expect("valid JUnit XML");
    assert_eq!(report.tests, 2);
    let suites: Vec<&str> = report.test_suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(suites, ["hello", "null_init"]);
    let crash = &report.test_suites[1].test_cases[0];
    match &crash.status {
        TestCaseStatus::NonSuccess { kind, message, .. } => {
            assert_eq!(*kind, NonSuccessKind::Error);
            let message = message.as_ref().map(|m| m.as_str()).unwrap_or_default();
            assert!(
                message.contains("NULL pointer dereference in null_init_init"),
                "{message}"
            );
        }
        other => panic!("the crash is an error case, not {other:?}"),
    }
    assert!(matches!(
        report.test_suites[0].test_cases[0].status,
        TestCaseStatus::Success { .. }
    ));

    let ktap = dir.path().join("run.ktap");
    std::fs::write(&ktap, &out.stdout).unwrap();
    let parsed = std::process::Command::new("bash")
        .env("MODVM_KTAP_OFFLINE", "1")
        .arg(repo().join("scripts/check-ktap.sh"))
        .arg(&ktap)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&parsed.stdout),
        String::from_utf8_lossy(&parsed.stderr)
    );
    match parsed.status.code() {
        // 1: parsed cleanly, and a test is not ok (the crash).
        Some(1) => assert!(!said.contains("[ERROR]"), "{said}"),
        Some(77) => panic!("the KUnit parser is not cached: run scripts/setup-host.sh\n{said}"),
        other => panic!(
            "KUnit parser said {other:?}:\n{said}\n--- KTAP\n{}",
            out.stdout
        ),
    }

    // The Markdown summary of the same run, as a CI job summary gets it.
    let md = modvm(&["summary", json.to_str().unwrap()], &[]);
    assert_eq!(md.code, 0, "{}", md.all());
    assert!(
        md.stdout
            .starts_with("### Failed: modvm: 1 crashed, 1 passed (2 tests)"),
        "{}",
        md.stdout
    );
    let row = md
        .stdout
        .lines()
        .find(|l| l.starts_with("| **crash** | <code>null_init/load-unload</code>"))
        .unwrap_or_else(|| panic!("{}", md.stdout));
    assert!(
        row.contains("null\\_init.c:"),
        "the crash's located frame: {row}"
    );
    assert!(md
        .stdout
        .contains("<details><summary>1 passed or skipped</summary>"));
    let missing = modvm(
        &["summary", dir.path().join("none.json").to_str().unwrap()],
        &[],
    );
    assert_eq!(missing.code, 2, "{}", missing.all());
    assert!(
        missing.stderr.contains("cannot read the report"),
        "{}",
        missing.all()
    );
}
