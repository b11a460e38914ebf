//! Names on disk, with real guests: module files with a dash, two module
//! directories of one name, test names that would collide or escape as
//! directories, the same module given twice, and the socket directory a
//! killed run leaves in `$TMPDIR`.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs modvm with an explicit `--out` (shared between runs that must see
/// each other's builds) and extra environment.
fn run_in(args: &[&str], out: &Path, env: &[(&str, &Path)]) -> Output {
    let mut c = command_in(args, out, env);
    let o = c.stdin(Stdio::null()).output().unwrap();
    Output {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn command_in(args: &[&str], out: &Path, env: &[(&str, &Path)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_modvm"));
    c.args(args)
        .arg("--accel")
        .arg("tcg")
        .arg("--out")
        .arg(out)
        .current_dir(repo())
        .env("NO_COLOR", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// A module directory at `root/rel` building `<stem>.ko` from a copy of
/// hello.c, without a spec (so it gets the smoke test).
fn module_named(root: &Path, rel: &str, stem: &str) -> PathBuf {
    let dir = root.join(rel);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(repo().join("module/hello.c"), dir.join(format!("{stem}.c"))).unwrap();
    std::fs::write(dir.join("Kbuild"), format!("obj-m := {stem}.o\n")).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn smoke_test_loads_a_module_whose_file_name_has_a_dash() {
    let root = tempfile::tempdir().unwrap();
    let dir = module_named(root.path(), "dash", "my-dash");
    let out = out_dir();
    let r = run_in(&["test", "-v", s(&dir)], out.path(), &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("insmod my-dash"), "{}", r.all());
    assert!(r.stdout.contains("rmmod my_dash"), "{}", r.all());
    assert!(r.stdout.contains("1 passed, 0 failed"), "{}", r.all());
}

#[test]
fn each_run_tests_exactly_what_its_directory_builds() {
    let root = tempfile::tempdir().unwrap();
    let p1 = module_named(root.path(), "p1/mod", "alpha");
    let p2 = module_named(root.path(), "p2/mod", "beta");
    let out = out_dir();

    let first = run_in(&["test", "-v", s(&p1)], out.path(), &[]);
    assert_eq!(first.code, 0, "{}", first.all());
    assert!(first.stdout.contains("insmod alpha"), "{}", first.all());

    // Same suite name ("mod"), another directory: alpha.ko must not come along.
    let second = run_in(&["test", "-v", s(&p2)], out.path(), &[]);
    assert_eq!(second.code, 0, "{}", second.all());
    assert!(second.stdout.contains("insmod beta"), "{}", second.all());
    assert!(!second.stdout.contains("alpha"), "{}", second.all());

    // The module renamed in place: beta.ko is stale, gamma is what builds.
    std::fs::remove_file(p2.join("beta.c")).unwrap();
    std::fs::copy(repo().join("module/hello.c"), p2.join("gamma.c")).unwrap();
    std::fs::write(p2.join("Kbuild"), "obj-m := gamma.o\n").unwrap();
    let third = run_in(&["test", "-v", s(&p2)], out.path(), &[]);
    assert_eq!(third.code, 0, "{}", third.all());
    assert!(third.stdout.contains("insmod gamma"), "{}", third.all());
    assert!(!third.stdout.contains("beta"), "{}", third.all());
    assert!(!third.stdout.contains("alpha"), "{}", third.all());
}

#[test]
fn names_map_to_distinct_directories_inside_the_run() {
    let root = tempfile::tempdir().unwrap();
    let dir = module_named(root.path(), "names", "hello");
    let long = "n".repeat(300);
    let names = ["a b", "a_b", "..", long.as_str()];
    let tests: Vec<String> = names
        .iter()
        .map(|n| format!(r#"{{"name": "{n}", "steps": [{{"run": "true"}}]}}"#))
        .collect();
    std::fs::write(
        dir.join("modvm.json"),
        format!(r#"{{"suite": "..", "tests": [{}]}}"#, tests.join(", ")),
    )
    .unwrap();
    let out = out_dir();
    let json = out.path().join("report.json");
    let r = run_in(&["test", "--json", s(&json), s(&dir)], out.path(), &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("4 passed, 0 failed"), "{}", r.all());

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let runs = out.path().join("runs").canonicalize().unwrap();
    let mut dirs = Vec::new();
    for t in report["tests"].as_array().unwrap() {
        let artifacts = PathBuf::from(t["artifacts"].as_str().unwrap())
            .canonicalize()
            .unwrap();
        // <out>/runs/<stamp>/<suite>/<test>: two levels below the run.
        let rel = artifacts.strip_prefix(&runs).unwrap();
        assert_eq!(rel.components().count(), 4, "{}", artifacts.display());
        let spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(artifacts.join("spec.json")).unwrap()).unwrap();
        assert_eq!(
            format!("../{}", spec["name"].as_str().unwrap()),
            t["name"].as_str().unwrap(),
            "each test's directory holds its own spec"
        );
        assert!(artifacts.join("console.log").is_file());
        assert!(!dirs.contains(&artifacts), "{} shared", artifacts.display());
        dirs.push(artifacts);
    }
    assert_eq!(dirs.len(), 4);
    // Nothing was written beside the run or the profile's build directory.
    let stamp_dir = dirs[0].parent().unwrap().parent().unwrap();
    let in_stamp: Vec<_> = std::fs::read_dir(stamp_dir).unwrap().collect();
    assert_eq!(in_stamp.len(), 1, "only the suite's directory in the run");
    let in_build: Vec<String> = std::fs::read_dir(out.path().join("build"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(in_build, vec!["debian-6.1-cloud"]);
}

#[test]
fn the_same_module_given_twice_runs_once() {
    let dir = module_copy();
    let out = out_dir();
    let spec = dir.path().join("modvm.json");
    let r = run_in(&["test", s(dir.path()), s(&spec)], out.path(), &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("running 1 test "), "{}", r.all());
    assert!(r.stdout.contains("1 passed, 0 failed"), "{}", r.all());
}

#[test]
fn two_directories_of_one_name_run_together_under_distinct_suites() {
    let root = tempfile::tempdir().unwrap();
    let p1 = module_named(root.path(), "p1/mod", "alpha");
    let p2 = module_named(root.path(), "p2/mod", "beta");
    let out = out_dir();
    let r = run_in(&["test", s(&p1), s(&p2)], out.path(), &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("p1-mod/smoke"), "{}", r.all());
    assert!(r.stdout.contains("p2-mod/smoke"), "{}", r.all());
    assert!(r.stdout.contains("2 passed, 0 failed"), "{}", r.all());
    // Each has its own logs: nothing of one overwrote the other's.
    let run = out.path().join("runs/latest/debian-6.1-cloud");
    for (suite, module) in [("p1-mod", "alpha"), ("p2-mod", "beta")] {
        let console = std::fs::read_to_string(run.join(suite).join("smoke/console.log")).unwrap();
        assert!(
            console.contains(&format!("insmod /modules/{module}.ko")),
            "{console}"
        );
    }
}

/// Socket directories in `tmp` whose name carries `pid`.
fn socket_dirs_of(tmp: &Path, pid: u32) -> Vec<PathBuf> {
    let prefix = format!("modvm-{pid}-");
    std::fs::read_dir(tmp)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

#[test]
fn a_killed_run_leaves_a_socket_directory_that_the_next_run_removes() {
    let tmp = tempfile::tempdir().unwrap();
    let slow = module_copy();
    std::fs::write(
        slow.path().join("modvm.json"),
        r#"{"suite": "slow", "tests": [{"name": "sleep", "steps": [{"run": "sleep 120", "timeout_s": 300}]}]}"#,
    )
    .unwrap();
    let out = out_dir();
    let mut child = command_in(
        &["test", s(slow.path())],
        out.path(),
        &[("TMPDIR", tmp.path())],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let pid = child.id();
    let qemu = wait_for_qemu_child(pid, Duration::from_secs(120));
    let qemu = qemu.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("no guest started");
    });
    let left = socket_dirs_of(tmp.path(), pid);
    child.kill().unwrap(); // SIGKILL: modvm cannot clean up
    child.wait().unwrap();
    assert!(
        wait_gone(qemu, Duration::from_secs(10)),
        "QEMU dies with modvm"
    );
    assert_eq!(
        left.len(),
        1,
        "one socket directory named after modvm's pid"
    );
    assert!(left[0].is_dir(), "a killed run leaves its directory behind");

    let r = run_in(
        &["test", s(module_copy().path())],
        out.path(),
        &[("TMPDIR", tmp.path())],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        !left[0].exists(),
        "the next run removes {}",
        left[0].display()
    );
    let remaining: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(remaining.is_empty(), "{remaining:?}");
}
