//! Crash-safety end to end: every fixture module crashes (or not) a real
//! guest, and the JSON report must name the status, the title and, where the
//! kernel printed a frame of the module, the faulty source line.

mod common;

use common::*;
use serde_json::Value;

/// Schema violations of a real report (docs/report.schema.json).
fn schema_errors(report: &Value) -> Vec<String> {
    let schema: Value =
        serde_json::from_slice(&std::fs::read(repo().join("docs/report.schema.json")).unwrap())
            .unwrap();
    let v = jsonschema::validator_for(&schema).expect("the schema compiles");
    v.iter_errors(report)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

/// Runs `modvm test` on fixtures (in order) and returns (exit code, report).
fn run(fixtures: &[&str], extra: &[&str]) -> (Output, Value) {
    let paths: Vec<String> = fixtures.iter().map(|f| module_fixture(f)).collect();
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(paths.iter().map(String::as_str));
    test_with_report(&args)
}

/// Asserts a crash: status, title, and the module frame's `file:line`.
fn assert_crash(report: &Value, suite: &str, title: &str, place: Option<(&str, &str, u64)>) {
    let t = result_of_suite(report, suite);
    assert_eq!(t["status"], "crash", "{suite}: {t:#}");
    let got = t["crash"]["title"].as_str().unwrap_or_default();
    assert_eq!(got, title, "{suite}");
    if let Some((function, file, line)) = place {
        let frames = t["crash"]["frames"].as_array().unwrap();
        let frame = frames
            .iter()
            .find(|f| f["function"] == function)
            .unwrap_or_else(|| panic!("{suite}: no frame {function} in {frames:#?}"));
        assert_eq!(frame["module"], suite, "{suite}");
        assert_eq!(frame["file"], file, "{suite}: {frame}");
        assert_eq!(frame["line"], line, "{suite}: {frame}");
    }
}

#[test]
fn each_fixture_is_caught_titled_and_located() {
    let (out, report) = run(
        &[
            "null_init",
            "null_exit",
            "null_proc",
            "warn_exit",
            "atomic_sleep",
            "panic_init",
            "loop_init",
            "clean_bug_word",
            "uaf",
            "oob",
        ],
        &[],
    );
    assert_eq!(out.code, 1, "crashes fail the run: {}", out.all());
    assert_eq!(
        schema_errors(&report),
        Vec::<String>::new(),
        "a real report follows the schema"
    );
    let nul = "BUG: unable to handle kernel NULL pointer dereference in";
    assert_crash(
        &report,
        "null_init",
        &format!("{nul} null_init_init"),
        Some(("null_init_init", "null_init.c", 15)),
    );
    assert_crash(
        &report,
        "null_exit",
        &format!("{nul} null_exit_exit"),
        Some(("null_exit_exit", "null_exit.c", 21)),
    );
    assert_crash(
        &report,
        "null_proc",
        &format!("{nul} null_proc_read"),
        Some(("null_proc_read", "null_proc.c", 17)),
    );
    assert_crash(
        &report,
        "warn_exit",
        "WARNING in warn_exit_exit",
        Some(("warn_exit_exit", "warn_exit.c", 20)),
    );
    assert_crash(
        &report,
        "atomic_sleep",
        "BUG: scheduling while atomic in atomic_sleep_init",
        Some(("atomic_sleep_init", "atomic_sleep.c", 17)),
    );
    assert_crash(
        &report,
        "panic_init",
        "kernel panic: modvm fixture panic",
        Some(("panic_init_init", "panic_init.c", 12)),
    );
    assert_crash(
        &report,
        "loop_init",
        "BUG: soft lockup in loop_init_init",
        Some(("loop_init_init", "loop_init.c", 20)),
    );
    // The plain kernel has no KASAN: use-after-free and out-of-bounds writes
    // go unseen there, and must not be invented.
    for clean in ["clean_bug_word", "uaf", "oob"] {
        assert_eq!(
            result_of_suite(&report, clean)["status"],
            "pass",
            "{clean}: {report:#}"
        );
    }
    // Every crash after the first test still ran in a fresh guest.
    assert_eq!(report["summary"]["crashed"], 7, "{report:#}");
    assert_eq!(report["summary"]["passed"], 3, "{report:#}");
}

#[test]
fn a_crash_does_not_spill_into_the_next_test() {
    let (out, report) = run(&["panic_init", "null_exit", "clean_bug_word"], &[]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(result_of_suite(&report, "panic_init")["status"], "crash");
    assert_eq!(result_of_suite(&report, "null_exit")["status"], "crash");
    let clean = result_of_suite(&report, "clean_bug_word");
    assert_eq!(clean["status"], "pass", "{clean:#}");
    assert!(clean["crash"].is_null(), "{clean:#}");
    assert!(
        out.stdout.contains("CRASH   panic_init/load"),
        "{}",
        out.all()
    );
}

#[test]
fn expected_crash_passes_and_a_missing_one_fails() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["null_init.c", "Kbuild"] {
        std::fs::copy(
            repo()
                .join("harness/tests/fixtures/modules/null_init")
                .join(f),
            dir.path().join(f),
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("modvm.json"),
        r#"{"suite": "expect", "tests": [
            {"name": "oops-expected", "expect_crash": "NULL pointer dereference", "steps": [{"insmod": "null_init"}]},
            {"name": "no-crash", "expect_crash": "NULL pointer", "steps": [{"run": "true"}]}
        ]}"#,
    )
    .unwrap();
    let out = modvm(
        &["test", "--accel", "tcg", dir.path().to_str().unwrap()],
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout.contains("PASS    expect/oops-expected"),
        "{}",
        out.all()
    );
    assert!(
        out.stdout.contains("FAIL    expect/no-crash"),
        "{}",
        out.all()
    );
    assert!(out.stdout.contains("ended without one"), "{}", out.all());
}

#[test]
fn panic_on_warn_turns_a_warning_into_a_panic() {
    let (out, report) = run(&["warn_exit"], &["--panic-on-warn"]);
    assert_eq!(out.code, 1, "{}", out.all());
    let t = result_of_suite(&report, "warn_exit");
    assert_eq!(t["status"], "crash");
    assert_eq!(t["crash"]["fatal"], true, "{t:#}");
    assert!(
        t["message"]
            .as_str()
            .unwrap()
            .contains("WARNING in warn_exit_exit"),
        "{t:#}"
    );
}

#[test]
fn a_hang_is_a_timeout_with_the_last_lines() {
    let dir = module_copy();
    std::fs::write(
        dir.path().join("modvm.json"),
        r#"{"suite": "hang", "tests": [
            {"name": "sleeps", "steps": [
                {"insmod": "hello"},
                {"run": "echo about to hang; sleep 600", "timeout_s": 3}
            ]},
            {"name": "next-is-fresh", "steps": [{"insmod": "hello", "kernel_log": ["Hello"]}]}
        ]}"#,
    )
    .unwrap();
    let report = tempfile::NamedTempFile::new().unwrap();
    let out = modvm(
        &[
            "test",
            "--accel",
            "tcg",
            "--json",
            report.path().to_str().unwrap(),
            dir.path().to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.all());
    let report: Value = serde_json::from_slice(&std::fs::read(report.path()).unwrap()).unwrap();
    let t = &report["tests"][0];
    assert_eq!(t["status"], "timeout", "{t:#}");
    let step = &t["steps"][1];
    assert_eq!(step["status"], "timeout");
    assert!(
        step["output"].as_str().unwrap().contains("about to hang"),
        "{step:#}"
    );
    let ms = step["duration_ms"].as_u64().unwrap();
    assert!(
        (3000..30_000).contains(&ms),
        "the deadline was honoured: {ms} ms"
    );
    assert_eq!(report["tests"][1]["status"], "pass", "{report:#}");
    assert!(out.stdout.contains("TIMEOUT hang/sleeps"), "{}", out.all());
}

#[test]
fn no_false_positives_over_20_runs() {
    for round in 1..=20 {
        let (out, report) = run(&["clean_bug_word"], &[]);
        let hello = modvm(&["test", "--accel", "tcg", "-q"], &[]);
        assert_eq!(out.code, 0, "round {round}: {}", out.all());
        assert_eq!(report["summary"]["passed"], 1, "round {round}: {report:#}");
        assert_eq!(hello.code, 0, "round {round}: {}", hello.all());
    }
}
