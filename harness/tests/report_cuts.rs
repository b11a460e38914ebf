//! What reports say about steps, on real guests: the errno insmod named
//! beside the one expected, a failed test's message naming its step, and
//! steps numbered as the spec's author wrote them (not counting the steps
//! the `modules` shorthand adds, nor earlier rounds of a repeated test).

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

const SPEC: &str = r#"{
  "suite": "cuts",
  "tests": [
    {
      "name": "errno-as-number-passes",
      "modules": ["features_base"],
      "steps": [
        { "insmod": "features_user", "params": { "fail_errno": 22 }, "errno": 22 }
      ]
    },
    {
      "name": "errno-wrong",
      "modules": ["features_base"],
      "steps": [
        { "run": "true" },
        { "insmod": "features_user", "params": { "fail_errno": 19 }, "errno": "EINVAL" }
      ]
    },
    {
      "name": "run-fails",
      "modules": ["features_base"],
      "steps": [
        { "run": "true" },
        { "run": "echo hi", "output": ["bye"] }
      ]
    },
    {
      "name": "second-round-fails",
      "repeat": 2,
      "steps": [
        { "run": "test ! -e /round-mark" },
        { "run": "touch /round-mark" }
      ]
    }
  ]
}
"#;

/// A copy of the features fixture (two modules, one whose init fails with
/// the errno its parameter names) with the spec above.
fn module() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = repo().join("harness/tests/fixtures/features");
    for f in ["Kbuild", "features_base.c", "features_user.c"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join("modvm.json"), SPEC).unwrap();
    dir
}

fn test(doc: &Value, name: &str) -> Value {
    result_where(doc, "name", &format!("cuts/{name}"))
}

fn junit_message(path: &Path, case: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let report = quick_junit::Report::deserialize_from_str(&text).expect("valid JUnit XML");
    let c = report
        .test_suites
        .iter()
        .flat_map(|s| s.test_cases.iter())
        .find(|c| c.name.as_str() == case)
        .unwrap_or_else(|| panic!("no case {case}: {text}"));
    match &c.status {
        quick_junit::TestCaseStatus::NonSuccess { message, .. } => {
            message.as_ref().map(|m| m.to_string()).unwrap_or_default()
        }
        other => panic!("{case} passed in JUnit: {other:?}"),
    }
}

#[test]
fn reports_name_errnos_and_steps_as_the_spec_wrote_them() {
    let module = module();
    let dir = tempfile::tempdir().unwrap();
    let (json, junit) = (dir.path().join("r.json"), dir.path().join("j.xml"));
    let out = modvm(
        &[
            "test",
            "--accel",
            "tcg",
            "--json",
            json.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            module.path().to_str().unwrap(),
        ],
        &[],
    );
    let doc: Value = serde_json::from_slice(&std::fs::read(&json).unwrap_or_else(|e| {
        panic!("no report: {e}\n{}", out.all());
    }))
    .unwrap();
    assert_eq!(out.code, 1, "three tests fail: {}", out.all());

    // An errno given as a number passes, and the report names both errnos.
    let pass = test(&doc, "errno-as-number-passes");
    assert_eq!(pass["status"], "pass", "{pass:#}");
    let step = &pass["steps"][1];
    assert_eq!(step["expected_errno"], "EINVAL", "{step:#}");
    assert_eq!(step["errno"], "EINVAL", "{step:#}");

    // The wrong errno: both named, in the step and in the test's message,
    // which counts the spec's `steps` (not the shorthand's insmod before).
    let wrong = test(&doc, "errno-wrong");
    assert_eq!(wrong["status"], "fail", "{wrong:#}");
    let step = &wrong["steps"][2];
    assert_eq!(step["errno"], "ENODEV", "{step:#}");
    assert_eq!(step["expected_errno"], "EINVAL", "{step:#}");
    let failure = step["failures"][0].as_str().unwrap();
    assert!(
        failure
            .contains("expected EINVAL (Invalid argument), insmod said: No such device (ENODEV)"),
        "{failure}"
    );
    let message = wrong["message"]
        .as_str()
        .expect("a failed test has a message");
    assert!(
        message.starts_with("step 2 (insmod features_user fail_errno=19): "),
        "{message}"
    );
    assert!(
        message.contains("insmod said: No such device (ENODEV)"),
        "{message}"
    );

    // An ordinary failing `run`: the message names the step and the failure.
    let run = test(&doc, "run-fails");
    assert_eq!(
        run["message"],
        "step 2 (run `echo hi`): expected a line containing \"bye\" in the command's output",
        "{run:#}"
    );
    assert_eq!(
        junit_message(&junit, "run-fails"),
        run["message"].as_str().unwrap()
    );

    // A repeated test names the round and the step within it.
    let round = test(&doc, "second-round-fails");
    let message = round["message"].as_str().expect("a message");
    assert!(
        message.starts_with("[2/2] step 1 (run `test ! -e /round-mark`): "),
        "{message}"
    );

    // The human report names each failing step once, as the spec wrote it.
    assert!(
        out.stdout.contains("step 2 (run `echo hi`) FAIL:"),
        "{}",
        out.all()
    );
    assert_eq!(
        out.stdout
            .matches("expected a line containing \"bye\" in the command's output")
            .count(),
        1,
        "{}",
        out.all()
    );
}
