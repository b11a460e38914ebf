//! A module's own KUnit suites on real guests: on the `debug` kernel
//! (KUnit built in) the suites `kunit_demo` and `kunit_crash` run when
//! they are loaded and every case becomes a result inside the test, in
//! JSON, JUnit and KTAP; a failed expectation fails the test with its
//! `suite.case` and `file:line`, a case that crashes the kernel is named
//! and located; the `kunit` filter skips what it does not select. On a
//! Debian kernel (no KUnit) the same module is a skip that names the
//! kernels that can run it.

mod common;

use common::*;
use quick_junit::{NonSuccessKind, Report, TestCaseStatus};
use serde_json::Value;

/// `(name, status)` of a list of JSON cases.
fn named(cases: &Value) -> Vec<(String, String)> {
    cases
        .as_array()
        .unwrap_or_else(|| panic!("not a list of cases: {cases}"))
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn test_named<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no test {name} in {doc:#}"))
}

#[test]
fn kunit_cases_are_results_inside_the_test_in_every_report() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let json = dir.path().join("report.json");
    let out = modvm(
        &[
            "test",
            "--kernel",
            "debug",
            "--accel",
            "tcg",
            "--ktap",
            "--junit",
            junit.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            &module_fixture("kunit_demo"),
            &module_fixture("kunit_crash"),
        ],
        &[],
    );
    assert_no_qemu_left_by_us();
    assert_eq!(out.code, 1, "{}", out.all());
    let doc: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();

    // Every suite and case, nested as the kernel nests them.
    let suites = test_named(&doc, "kunit_demo/suites");
    assert_eq!(suites["status"], "fail", "{suites:#}");
    let cases = &suites["cases"];
    assert_eq!(
        named(cases),
        pairs(&[("kunit_demo_math", "fail"), ("kunit_demo_str", "pass")])
    );
    assert_eq!(
        named(&cases[0]["cases"]),
        pairs(&[
            ("add_small", "pass"),
            ("add_wrong", "fail"),
            ("needs_hardware", "skip")
        ])
    );
    let wrong = &cases[0]["cases"][1];
    assert_eq!(wrong["location"], "kunit_demo.c:26", "{wrong:#}");
    let why = wrong["message"].as_str().unwrap();
    assert!(
        why.starts_with("EXPECTATION FAILED at kunit_demo.c:26\n") && why.contains("== 4"),
        "{why}"
    );
    assert_eq!(
        cases[0]["cases"][2]["message"],
        "no such hardware in the guest"
    );
    assert_eq!(
        named(&cases[1]["cases"][1]["cases"]),
        pairs(&[("len-0", "pass"), ("len-1", "pass"), ("len-5", "pass")])
    );
    // The failed case fails the test, named and placed.
    let message = suites["message"].as_str().unwrap();
    assert!(
        message.contains("KUnit case kunit_demo_math.add_wrong failed at kunit_demo.c:26"),
        "{message}"
    );
    // KUnit's `N` taint is no crash.
    assert!(suites["crash"].is_null(), "{suites:#}");

    // The filter keeps the passing suite only: the failing one is listed
    // as skipped and the test passes.
    let filtered = test_named(&doc, "kunit_demo/str-only");
    assert_eq!(filtered["status"], "pass", "{filtered:#}");
    assert_eq!(
        named(&filtered["cases"]),
        pairs(&[("kunit_demo_math", "skip"), ("kunit_demo_str", "pass")])
    );
    assert_eq!(filtered["cases"][0]["cases"][1]["status"], "skip");

    // The crash inside a case: titled after the case's function, located
    // in the module, and the case that was running carries it.
    let crashed = test_named(&doc, "kunit_crash/suite");
    assert_eq!(crashed["status"], "crash", "{crashed:#}");
    let title = crashed["crash"]["title"].as_str().unwrap();
    assert!(title.ends_with(" in null_deref"), "{title}");
    let suite = &crashed["cases"][0];
    assert_eq!(suite["name"], "kunit_crash");
    assert_eq!(suite["status"], "crash");
    assert_eq!(
        named(&suite["cases"]),
        pairs(&[("survives", "pass"), ("case 2", "crash")])
    );
    let running = &suite["cases"][1];
    assert_eq!(running["location"], "kunit_crash.c:20", "{running:#}");
    assert_eq!(running["crash"]["title"], title);

    // JUnit: one test case per innermost result, beside the test.
    let report = Report::deserialize_from_str(&std::fs::read_to_string(&junit).unwrap())
        .expect("valid JUnit XML");
    let demo = report
        .test_suites
        .iter()
        .find(|s| s.name.as_str() == "kunit_demo")
        .expect("suite kunit_demo");
    let case = |name: &str| {
        demo.test_cases
            .iter()
            .find(|c| c.name.as_str() == name)
            .unwrap_or_else(|| panic!("no JUnit case {name}"))
    };
    match &case("suites/kunit_demo_math.add_wrong").status {
        TestCaseStatus::NonSuccess {
            kind,
            message,
            description,
            ..
        } => {
            assert_eq!(*kind, NonSuccessKind::Failure);
            assert_eq!(
                message.as_ref().unwrap().as_str(),
                "EXPECTATION FAILED at kunit_demo.c:26"
            );
            assert!(description.as_ref().unwrap().as_str().contains("== 4"));
        }
        other => panic!("add_wrong is a failure, not {other:?}"),
    }
    assert!(matches!(
        case("suites/kunit_demo_str.str_len_param.len-5").status,
        TestCaseStatus::Success { .. }
    ));
    assert!(matches!(
        case("str-only/kunit_demo_math.add_wrong").status,
        TestCaseStatus::Skipped { .. }
    ));
    let crash_suite = report
        .test_suites
        .iter()
        .find(|s| s.name.as_str() == "kunit_crash")
        .expect("suite kunit_crash");
    let running = crash_suite
        .test_cases
        .iter()
        .find(|c| c.name.as_str() == "suite/kunit_crash.case 2")
        .expect("the case that crashed");
    match &running.status {
        TestCaseStatus::NonSuccess {
            kind, ty, message, ..
        } => {
            assert_eq!(*kind, NonSuccessKind::Error);
            assert_eq!(ty.as_ref().unwrap().as_str(), "crash");
            let m = message.as_ref().unwrap().as_str();
            assert!(
                m.contains("null_deref") && m.ends_with("at kunit_crash.c:20"),
                "{m}"
            );
        }
        other => panic!("the crashed case is an error, not {other:?}"),
    }

    // KTAP: the suites nest under the test, the kernel's parser agrees.
    assert!(
        out.stdout.contains(
            "    KTAP version 1\n    # Subtest: kunit_demo_math\n    1..3\n    ok 1 add_small\n"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("    not ok 2 add_wrong\n"),
        "{}",
        out.stdout
    );
    let ktap = dir.path().join("run.ktap");
    std::fs::write(&ktap, &out.stdout).unwrap();
    let parsed_json = dir.path().join("parsed.json");
    let parsed = std::process::Command::new("bash")
        .env("MODVM_KTAP_OFFLINE", "1")
        .arg(repo().join("scripts/check-ktap.sh"))
        .arg("--json")
        .arg(&parsed_json)
        .arg(&ktap)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&parsed.stdout),
        String::from_utf8_lossy(&parsed.stderr)
    );
    assert_eq!(parsed.status.code(), Some(1), "{said}");
    assert!(!said.contains("[ERROR]"), "{said}");
    let tree: Value = serde_json::from_slice(&std::fs::read(&parsed_json).unwrap()).unwrap();
    let first = &tree["sub_groups"][0];
    assert_eq!(first["name"], "kunit_demo/suites");
    assert_eq!(first["sub_groups"][0]["name"], "kunit_demo_math");
    assert_eq!(
        first["sub_groups"][0]["test_cases"][1]["status"], "FAIL",
        "{first:#}"
    );
}

#[test]
fn a_kernel_without_kunit_skips_the_module_naming_the_debug_kernel() {
    let (out, doc) = test_with_report(&[
        "--kernel",
        "debian-6.1-cloud",
        &module_fixture("kunit_demo"),
    ]);
    assert_no_qemu_left_by_us();
    assert_eq!(out.code, 0, "skips only: {}", out.all());
    let tests = doc["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 2, "{doc:#}");
    for t in tests {
        assert_eq!(t["status"], "skip", "{t:#}");
        let m = t["message"].as_str().unwrap();
        assert!(
            m.contains("KUnit") && m.contains("--kernel debug") && m.contains("CONFIG_KUNIT"),
            "{m}"
        );
    }
}
