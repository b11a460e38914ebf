//! Reports through the real binary in the cases that used to lie or
//! destroy: targets that are not plain files, the files' mode, runs that
//! stop before or during their tests.

mod common;

use common::*;
use serde_json::Value;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// modvm with umask 022, as on a typical CI runner, and its own output dir.
fn command(args: &[&str], out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_modvm"));
    c.args(args)
        .arg("--out")
        .arg(out)
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    // SAFETY: umask(2) is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    c
}

fn run(args: &[&str]) -> Output {
    let out = out_dir();
    let o = command(args, out.path()).output().unwrap();
    Output {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no JSON report at {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn read_junit(path: &Path) -> quick_junit::Report {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no JUnit report at {}: {e}", path.display()));
    quick_junit::Report::deserialize_from_str(&text).expect("valid JUnit XML")
}

/// `modvm test MODULE` asking for a JSON and a JUnit report; returns the
/// output and both reports, read back.
fn test_with_both_reports(module: &Path) -> (Output, Value, quick_junit::Report) {
    let dir = tempfile::tempdir().unwrap();
    let (json, junit) = (dir.path().join("r.json"), dir.path().join("j.xml"));
    let out = run(&[
        "test",
        "--json",
        json.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        module.to_str().unwrap(),
    ]);
    (out, read_json(&json), read_junit(&junit))
}

#[test]
fn a_spec_error_still_writes_reports_that_say_the_run_failed() {
    let module = module_copy();
    std::fs::write(module.path().join("modvm.json"), "{ \"tests\": [ }\n").unwrap();
    let (out, doc, report) = test_with_both_reports(module.path());
    assert_eq!(out.code, 2, "{}", out.all());
    assert_eq!(doc["summary"]["ok"], false, "{doc:#}");
    let error = doc["error"].as_str().expect("an error message");
    assert!(error.contains("modvm.json"), "{error}");
    assert_eq!(doc["interrupted"], false);
    assert_eq!(report.errors, 1, "the failure shows as an error case");
}

#[test]
fn a_build_error_writes_reports_and_prints_the_compiler_output_once() {
    let module = module_copy();
    let c = module.path().join("hello.c");
    let mut text = std::fs::read_to_string(&c).unwrap();
    text.push_str("int modvm_broken(void) { return undeclared_thing; }\n");
    std::fs::write(&c, text).unwrap();
    let (out, doc, report) = test_with_both_reports(module.path());
    // The module's own failure: a result of the run, as a failing test is.
    assert_eq!(out.code, 1, "{}", out.all());
    let all = out.all();
    let said = all
        .matches("error: \u{2018}undeclared_thing\u{2019} undeclared")
        .count()
        + all.matches("error: 'undeclared_thing' undeclared").count();
    assert_eq!(said, 1, "the compiler's error once: {all}");
    // The error names the author's file, not modvm's build copy of it.
    let original = std::fs::canonicalize(&c).unwrap();
    let line = all
        .lines()
        .find(|l| l.contains("error: ") && l.contains("undeclared_thing"))
        .unwrap();
    assert!(
        line.trim_start()
            .starts_with(&format!("{}:", original.display())),
        "{line}"
    );

    assert_eq!(doc["summary"]["ok"], false, "{doc:#}");
    assert_eq!(doc["summary"]["errors"], 1, "{doc:#}");
    assert_eq!(doc["tests"][0]["name"], "hello/load-unload");
    assert_eq!(doc["tests"][0]["status"], "error");
    assert!(doc["tests"][0]["message"]
        .as_str()
        .unwrap()
        .contains("undeclared_thing"));
    assert!(doc["error"].is_null(), "{doc:#}");
    assert_eq!((report.tests, report.errors), (1, 1));
}

#[test]
fn reports_go_through_symlinks_fifos_and_stdout_with_a_readable_mode() {
    let dir = tempfile::tempdir().unwrap();
    // A symlink stays a symlink; its target receives the report.
    let target = dir.path().join("kept.xml");
    std::fs::write(&target, "old").unwrap();
    let link = dir.path().join("junit.xml");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    // A FIFO, like /dev/stdout into a pipe, stays a FIFO and is read.
    let fifo = dir.path().join("fifo.json");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) on a path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    // Held open for reading and writing, so modvm's open does not wait for
    // a reader and this test never waits for a writer.
    let mut held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let out = run(&[
        "test",
        "--accel",
        "tcg",
        "--json",
        fifo.to_str().unwrap(),
        "--junit",
        link.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match held.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    let text = String::from_utf8(text).unwrap();
    let from_fifo: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?} read from the FIFO"));
    assert_eq!(from_fifo["summary"]["ok"], true);
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(read_junit(&target).tests, 1);

    // `-` is stdout (the people's output moves to stderr), and a new file
    // gets 0666 less the umask, readable by a CI uploader.
    let fresh = dir.path().join("new").join("junit.xml");
    let out = run(&[
        "test",
        "--accel",
        "tcg",
        "--json",
        "-",
        "--junit",
        fresh.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    let doc: Value = serde_json::from_str(&out.stdout).expect("stdout is the JSON report");
    assert_eq!(doc["tests"][0]["status"], "pass");
    assert!(
        out.stderr.contains("PASS    hello/load-unload"),
        "{}",
        out.all()
    );
    assert!(!dir.path().join("-").exists() && !repo().join("-").exists());
    assert_eq!(std::fs::metadata(&fresh).unwrap().mode() & 0o777, 0o644);
}

#[test]
fn two_outputs_on_stdout_are_a_usage_error() {
    let out = run(&["test", "--json", "-", "--ktap"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("stdout"), "{}", out.all());
}

fn wait_for(path: &Path, child: &mut Child, timeout: Duration) {
    let until = Instant::now() + timeout;
    while !path.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "modvm ended before {} appeared",
            path.display()
        );
        assert!(Instant::now() < until, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_during_the_build_gives_a_truthful_report() {
    let module = module_copy();
    let marker = module.path().join("building");
    // The build announces itself, then takes far longer than the interrupt
    // handler's wind-down.
    std::fs::write(
        module.path().join("Kbuild"),
        format!(
            "$(shell touch {}; sleep 12.25)\nobj-m := hello.o\n",
            marker.display()
        ),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (json, junit) = (dir.path().join("r.json"), dir.path().join("j.xml"));
    let out = out_dir();
    let mut child = command(
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
        out.path(),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    wait_for(&marker, &mut child, Duration::from_secs(120));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let doc = read_json(&json);
    assert_eq!(doc["summary"]["ok"], false, "{doc:#}");
    assert_eq!(doc["interrupted"], true, "{doc:#}");
    assert_eq!(doc["tests"][0]["name"], "hello/load-unload", "{doc:#}");
    assert_eq!(doc["tests"][0]["status"], "not_run", "{doc:#}");
    let report = read_junit(&junit);
    assert_eq!(report.errors, 1, "the interruption is an error case");
    // make and what it started die with modvm.
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while build_sleep_running() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!build_sleep_running(), "the build outlived modvm");
}

/// Whether the Kbuild's `sleep 12.25` (above) still runs.
fn build_sleep_running() -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x0012.25\0"))
}

#[test]
fn tests_that_never_started_are_listed_as_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let null_init = repo().join("harness/tests/fixtures/modules/null_init");
    let out = out_dir();
    let mut child = command(
        &[
            "test",
            "--accel",
            "tcg",
            "--boot-timeout",
            "120",
            // One guest at a time, so the second test has not started
            // (with more jobs it would be in flight: see tests/parallel.rs).
            "-j",
            "1",
            "--json",
            json.to_str().unwrap(),
            "module",
            null_init.to_str().unwrap(),
        ],
        out.path(),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    wait_for_qemu_child(child.id(), Duration::from_secs(120)).expect("modvm started a QEMU");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let doc = read_json(&json);
    let statuses: Vec<&str> = doc["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["error", "not_run"], "{doc:#}");
    assert_eq!(doc["tests"][1]["name"], "null_init/load-unload");
    assert_eq!(doc["summary"]["total"], 2);
    assert_eq!(doc["summary"]["ok"], false);
    assert_eq!(doc["interrupted"], true);
}
