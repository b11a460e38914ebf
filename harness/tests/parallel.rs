//! Several guests at once (`-j N`) through the real binary: the same
//! verdicts as one at a time, reports in plan order whatever finished
//! first, and every QEMU stopped on Ctrl-C or SIGKILL.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// A copy of hello whose spec is `tests` (a JSON array) under suite `suite`.
fn hello_with_tests(suite: &str, tests: &str) -> tempfile::TempDir {
    let dir = module_copy();
    std::fs::write(
        dir.path().join("modvm.json"),
        format!(r#"{{"suite": "{suite}", "tests": {tests}}}"#),
    )
    .unwrap();
    dir
}

/// `(name, status, crash title)` of every test in the report, in its order.
fn verdicts(report: &Value) -> Vec<(String, String, String)> {
    report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
                t["crash"]["title"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The names of the human output's result lines, in order.
fn result_lines(stdout: &str) -> Vec<String> {
    let labels = [
        "PASS", "FAIL", "CRASH", "TIMEOUT", "SKIP", "ERROR", "NOT RUN",
    ];
    stdout
        .lines()
        .filter_map(|l| {
            let label = labels.iter().find(|w| l.starts_with(*w))?;
            l[label.len()..].split_whitespace().next().map(String::from)
        })
        .collect()
}

#[test]
fn two_jobs_give_the_verdicts_of_one_in_plan_order() {
    // The slow test comes first in the plan, so it ends after the others
    // when two guests run at once; its result must still come first.
    let mix = hello_with_tests(
        "mix",
        r#"[
            {"name": "slow-timeout", "steps": [
                {"insmod": "hello"},
                {"run": "echo waiting; sleep 600", "timeout_s": 6}
            ]},
            {"name": "passes", "steps": [
                {"insmod": "hello", "kernel_log": ["Hello, Kernel World!"]},
                {"rmmod": "hello"}
            ]},
            {"name": "fails", "steps": [{"run": "cat /proc/modvm-missing"}]}
        ]"#,
    );
    let panic = module_fixture("panic_init");
    let paths = [mix.path().to_str().unwrap(), panic.as_str()];
    let plan = [
        "mix/slow-timeout",
        "mix/passes",
        "mix/fails",
        "panic_init/load",
    ];

    let run = |jobs: &str| {
        let mut args = vec!["--boot-timeout", "120", "-j", jobs];
        args.extend(paths);
        let (out, report) = test_with_report(&args);
        assert_eq!(out.code, 1, "-j {jobs}: {}", out.all());
        (out, report)
    };
    let (one_out, one) = run("1");
    let (two_out, two) = run("2");

    let names = |r: &Value| -> Vec<String> { verdicts(r).into_iter().map(|v| v.0).collect() };
    assert_eq!(names(&two), plan, "-j 2 reports in plan order: {two:#}");
    assert_eq!(names(&one), plan, "-j 1 reports in plan order: {one:#}");
    assert_eq!(verdicts(&two), verdicts(&one), "same verdicts with -j 2");
    let statuses: Vec<String> = verdicts(&two).into_iter().map(|v| v.1).collect();
    assert_eq!(statuses, ["timeout", "pass", "fail", "crash"], "{two:#}");
    assert_eq!(
        two["summary"]["total"], one["summary"]["total"],
        "{two:#}\n{one:#}"
    );
    for field in [
        "passed",
        "failed",
        "crashed",
        "timed_out",
        "errors",
        "not_run",
    ] {
        assert_eq!(two["summary"][field], one["summary"][field], "{field}");
    }
    // The person reading the terminal sees the same order too.
    assert_eq!(result_lines(&two_out.stdout), plan, "{}", two_out.all());
    assert_eq!(result_lines(&one_out.stdout), plan, "{}", one_out.all());
}

/// The QEMU children of `parent` once there are `n` of them.
fn wait_for_qemu_children(parent: u32, n: usize, timeout: Duration) -> Vec<u32> {
    let until = Instant::now() + timeout;
    loop {
        let found = qemu_children(parent);
        if found.len() >= n || Instant::now() >= until {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Four tests that each keep their guest busy for a minute.
fn four_sleepers() -> tempfile::TempDir {
    let test = |name: &str| {
        format!(r#"{{"name": "{name}", "steps": [{{"run": "sleep 60", "timeout_s": 120}}]}}"#)
    };
    let tests: Vec<String> = ["a", "b", "c", "d"].iter().map(|n| test(n)).collect();
    hello_with_tests("stop", &format!("[{}]", tests.join(",")))
}

/// Starts `modvm test -j 2` on `module` and returns it with the two QEMU
/// processes it started (the test fails unless both come up).
fn start_two_guests(
    module: &Path,
    report: &Path,
) -> (std::process::Child, tempfile::TempDir, Vec<u32>) {
    let (child, out) = spawn_modvm(&[
        "test",
        "--accel",
        "tcg",
        "--boot-timeout",
        "120",
        "-j",
        "2",
        "--json",
        report.to_str().unwrap(),
        module.to_str().unwrap(),
    ]);
    let qemus = wait_for_qemu_children(child.id(), 2, Duration::from_secs(180));
    assert_eq!(qemus.len(), 2, "modvm -j 2 started two QEMUs: {qemus:?}");
    (child, out, qemus)
}

#[test]
fn ctrl_c_with_two_guests_stops_both_and_reports_every_test() {
    let module = four_sleepers();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let (mut child, _out, qemus) = start_two_guests(module.path(), &report);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    for q in &qemus {
        assert!(
            wait_gone(*q, Duration::from_secs(5)),
            "QEMU {q} outlived Ctrl-C"
        );
    }
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let doc: Value = serde_json::from_slice(&std::fs::read(&report).expect("a JSON report"))
        .expect("valid JSON");
    let got: Vec<(String, String)> = verdicts(&doc)
        .into_iter()
        .map(|(name, status, _)| (name, status))
        .collect();
    let want: Vec<(String, String)> = [
        ("stop/a", "error"),
        ("stop/b", "error"),
        ("stop/c", "not_run"),
        ("stop/d", "not_run"),
    ]
    .iter()
    .map(|(n, s)| (n.to_string(), s.to_string()))
    .collect();
    assert_eq!(got, want, "{doc:#}");
    for t in &doc["tests"].as_array().unwrap()[..2] {
        assert_eq!(t["message"], "interrupted by the user", "{t:#}");
    }
    assert_eq!(doc["interrupted"], true, "{doc:#}");
    assert_eq!(doc["summary"]["total"], 4, "{doc:#}");
    assert_eq!(doc["summary"]["ok"], false, "{doc:#}");
}

#[test]
fn kill_9_with_two_guests_takes_both_qemus_with_it() {
    let module = four_sleepers();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let (mut child, _out, qemus) = start_two_guests(module.path(), &report);
    // Both QEMUs were spawned by worker threads, not by the main thread:
    // the death signal must still reach them when the process dies.
    child.kill().unwrap();
    let _ = child.wait();
    for q in &qemus {
        assert!(
            wait_gone(*q, Duration::from_secs(5)),
            "QEMU {q} outlived a SIGKILLed modvm"
        );
    }
    assert_no_qemu_left_by_us();
}

#[test]
fn jobs_out_of_range_are_refused_with_the_range() {
    for jobs in ["0", "999"] {
        let out = modvm(&["test", "--jobs", jobs], &[]);
        assert_eq!(out.code, 2, "--jobs {jobs}: {}", out.all());
        assert!(
            out.stderr.contains("allowed: from 1 to 64"),
            "--jobs {jobs} names the range: {}",
            out.all()
        );
        assert!(!out.stderr.contains("panicked"), "{}", out.all());
    }
}
