//! End-to-end: the real `modvm` binary builds hello.ko, boots real guests
//! under QEMU and checks the kernel's printk lines.
//!
//! Guests run with `--accel tcg` so the tests behave the same on hosts where
//! KVM works and where it does not.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn hello_passes() {
    let out = modvm(&["test", "--accel", "tcg"], &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("PASS"), "{}", out.all());
    assert!(out.stdout.contains("hello/load-unload"), "{}", out.all());
    assert!(out.stdout.contains("1 passed, 0 failed"), "{}", out.all());
}

#[test]
fn changed_expectation_fails_and_shows_what_was_seen() {
    let dir = module_copy();
    let spec = dir.path().join("modvm.json");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        text.replace("^Goodbye, Kernel World!$", "^Farewell, Kernel World!$"),
    )
    .unwrap();
    let out = modvm(
        &["test", "--accel", "tcg", dir.path().to_str().unwrap()],
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stdout.contains("FAIL"), "{}", out.all());
    assert!(
        out.stdout.contains("/^Farewell, Kernel World!$/"),
        "the expected line is shown: {}",
        out.all()
    );
    assert!(
        out.stdout.contains("] Goodbye, Kernel World!"),
        "the line actually seen is shown: {}",
        out.all()
    );
    assert!(out.stdout.contains("step 2 (rmmod hello)"), "{}", out.all());
    assert_no_qemu_left_by_us();
}

#[test]
fn spec_syntax_error_is_a_usage_error_with_position() {
    let dir = module_copy();
    let spec = dir.path().join("modvm.json");
    std::fs::write(
        &spec,
        "{\n  \"tests\": [\n    { \"name\": \"x\" \"steps\": [] }\n  ]\n}\n",
    )
    .unwrap();
    let out = modvm(&["test", dir.path().to_str().unwrap()], &[]);
    assert_eq!(out.code, 2, "{}", out.all());
    let expected = format!("{}:3:19:", spec.display());
    assert!(
        out.stderr.contains(&expected),
        "wanted {expected} in {}",
        out.all()
    );
}

#[test]
fn a_compile_error_is_a_failed_result_with_the_compiler_s_words() {
    let dir = module_copy();
    let src = dir.path().join("hello.c");
    let text = std::fs::read_to_string(&src).unwrap();
    std::fs::write(
        &src,
        text.replace("return 0;", "return undefined_symbol_here;"),
    )
    .unwrap();
    let out = modvm(
        &["test", "--accel", "tcg", dir.path().to_str().unwrap()],
        &[],
    );
    // The module's failure, as a failing test is (exit 1), not a problem
    // of the set-up (exit 2).
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.all().contains("undefined_symbol_here"), "{}", out.all());
    assert!(out.all().contains("error:"), "{}", out.all());
    assert!(out.stdout.contains("ERROR"), "{}", out.all());
    // The user's directory holds only what they put there.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["Kbuild", "Makefile", "hello.c", "modvm.json"]);
}

#[test]
fn kill_9_of_modvm_takes_qemu_with_it() {
    let (mut child, _out) = spawn_modvm(&["test", "--accel", "tcg", "--boot-timeout", "120"]);
    let qemu =
        wait_for_qemu_child(child.id(), Duration::from_secs(120)).expect("modvm started a QEMU");
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    assert!(
        wait_gone(qemu, Duration::from_secs(5)),
        "QEMU {qemu} outlived a SIGKILLed modvm"
    );
}

#[test]
fn ctrl_c_stops_qemu_and_exits_130_with_reports_written() {
    let report = tempfile::NamedTempFile::new().unwrap();
    let (mut child, _out) = spawn_modvm(&[
        "test",
        "--accel",
        "tcg",
        "--boot-timeout",
        "120",
        "--json",
        report.path().to_str().unwrap(),
    ]);
    let qemu =
        wait_for_qemu_child(child.id(), Duration::from_secs(120)).expect("modvm started a QEMU");
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(
        wait_gone(qemu, Duration::from_secs(5)),
        "QEMU {qemu} outlived Ctrl-C"
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.path()).unwrap()).expect("a JSON report");
    assert_eq!(json["tests"][0]["status"], "error", "{json:#}");
    assert_eq!(
        json["tests"][0]["message"], "interrupted by the user",
        "{json:#}"
    );
}

#[test]
fn a_qemu_that_cannot_start_is_an_environment_error() {
    let out = modvm(
        &[
            "test",
            "--accel",
            "tcg",
            "--qemu",
            "/nonexistent/qemu-system-x86_64",
        ],
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stdout
            .contains("cannot start /nonexistent/qemu-system-x86_64"),
        "{}",
        out.all()
    );
    assert!(out.stderr.contains("could not run"), "{}", out.all());
}
