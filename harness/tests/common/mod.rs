//! Helpers shared by the integration tests: run the real binary, copy the
//! hello module, and watch for QEMU processes.
#![allow(dead_code)]

pub mod archive;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn all(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }
}

/// The repository root (tests run from `harness/`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `modvm test --accel tcg --json <tmp> ARGS…` and returns its output
/// and the parsed report (the test fails when no report was written).
pub fn test_with_report(args: &[&str]) -> (Output, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let mut all = vec!["test", "--accel", "tcg", "--json", report.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = modvm(&all, &[]);
    let text = std::fs::read(&report).unwrap_or_else(|e| panic!("no report: {e}\n{}", out.all()));
    (out, serde_json::from_slice(&text).unwrap())
}

/// The (first) result of suite `suite` in `report`.
pub fn result_of_suite<'a>(report: &'a serde_json::Value, suite: &str) -> &'a serde_json::Value {
    report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| {
            t["name"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{suite}/"))
        })
        .unwrap_or_else(|| panic!("no test of {suite} in {report:#}"))
}

/// The commands of a reported test's steps, in order.
pub fn step_commands(test: &serde_json::Value) -> Vec<String> {
    test["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["command"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The result in `report` whose `field` equals `value`.
pub fn result_where(report: &serde_json::Value, field: &str, value: &str) -> serde_json::Value {
    report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t[field] == value)
        .unwrap_or_else(|| panic!("no test with {field} = {value}: {report}"))
        .clone()
}

/// The path of a fixture module directory (`harness/tests/fixtures/modules`).
pub fn module_fixture(name: &str) -> String {
    repo()
        .join("harness/tests/fixtures/modules")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// A per-call output directory under the workspace's target dir, removed
/// when dropped (so repeated test runs leave nothing behind).
pub fn out_dir() -> tempfile::TempDir {
    let d = repo().join("target").join("modvm-tests");
    std::fs::create_dir_all(&d).unwrap();
    tempfile::tempdir_in(d).unwrap()
}

/// The modvm command for `args`, with `--out` in `out` for commands that start guests.
pub fn command(args: &[&str], env: &[(&str, &str)], out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_modvm"));
    c.current_dir(repo()).env("NO_COLOR", "1");
    if matches!(args.first(), Some(&"test") | Some(&"run") | Some(&"shell")) {
        // Before any `--`: after it, words belong to the guest's command.
        let at = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        c.args(&args[..at]).arg("--out").arg(out).args(&args[at..]);
    } else {
        c.args(args);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Runs modvm to completion.
pub fn modvm(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = out_dir();
    let out = command(args, env, dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Starts modvm and returns at once (its output directory is removed when
/// the returned guard drops).
pub fn spawn_modvm(args: &[&str]) -> (Child, tempfile::TempDir) {
    let dir = out_dir();
    let child = command(args, &[], dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, dir)
}

/// A scratch copy of `module/` (the user's module stays untouched).
pub fn module_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["hello.c", "Kbuild", "Makefile", "modvm.json"] {
        std::fs::copy(repo().join("module").join(f), dir.path().join(f)).unwrap();
    }
    dir
}

fn stat_fields(pid: u32) -> Option<(String, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    let comm = stat[stat.find('(')? + 1..close].to_string();
    let mut rest = stat[close + 2..].split(' ');
    let state = rest.next()?;
    if state == "Z" {
        return None;
    }
    let ppid = rest.next()?.parse().ok()?;
    Some((comm, ppid))
}

/// QEMU processes whose parent is `parent`.
pub fn qemu_children(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            matches!(stat_fields(*pid), Some((comm, ppid)) if ppid == parent && comm.starts_with("qemu-system"))
        })
        .collect()
}

pub fn wait_for_qemu_child(parent: u32, timeout: Duration) -> Option<u32> {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if let Some(p) = qemu_children(parent).first() {
            return Some(*p);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// True once `pid` no longer runs (or is a zombie).
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if stat_fields(pid).is_none() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// No QEMU left that this test process's modvm children started: any QEMU
/// whose parent is gone would have been re-parented, so check that no QEMU
/// runs with our kernel image from a modvm that already exited.
pub fn assert_no_qemu_left_by_us() {
    // Every QEMU modvm starts has its console socket in a directory named
    // after the modvm process that owns it (`modvm-<pid>-…`): one whose
    // owner is gone was left behind, whoever adopted it (PID 1 or a
    // subreaper). PDEATHSIG and the guards make that impossible.
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !comm.starts_with("qemu-system") {
            continue;
        }
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let Some(owner) = socket_owner(&cmdline) else {
            continue;
        };
        let owner_comm = std::fs::read_to_string(format!("/proc/{owner}/comm")).unwrap_or_default();
        assert!(
            owner_comm.trim() == "modvm" || !is_running(pid),
            "QEMU {pid} outlived its modvm {owner}: {}",
            cmdline.replace('\0', " ")
        );
    }
}

/// The modvm pid in a QEMU command line's socket directory `modvm-<pid>-`.
fn socket_owner(cmdline: &str) -> Option<u32> {
    let at = cmdline.find("/modvm-")? + "/modvm-".len();
    let digits: String = cmdline[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn is_running(pid: u32) -> bool {
    stat_fields(pid).is_some()
}

/// A cache of the test's own whose kernels are the shared cache's (only
/// read through it), so its saved guests or verdicts can be damaged or
/// planted without touching anyone's.
pub fn private_cache() -> tempfile::TempDir {
    let shared = modvm::paths::cache_dir(None).join("kernels");
    assert!(
        shared.is_dir(),
        "no kernel kit in {}: run `bash scripts/setup-host.sh` first",
        shared.display()
    );
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&shared, dir.path().join("kernels")).unwrap();
    dir
}

/// Every file under `dir`, recursively (none if it does not exist).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A driver's directory in the `debug` kit's source tree.
pub fn kernel_source(rel: &str) -> PathBuf {
    let profile = modvm::paths::cache_dir(None).join("kernels/debug");
    let current = std::fs::read_to_string(profile.join("current.json")).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `bash scripts/setup-host.sh` first (it builds the debug kernel)",
            profile.display()
        )
    });
    let record: serde_json::Value = serde_json::from_str(&current).unwrap();
    profile
        .join(record["kit"].as_str().unwrap())
        .join("linux")
        .join(rel)
}

/// The driver's `.c`/`.h` files and the spec fixture in `to`, with a Kbuild
/// that builds it through the kernel's own Makefile.
pub fn driver_copy(source: &Path, config: &str, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "c" || e == "h") {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
    let makefile = std::fs::read_to_string(source.join("Makefile")).unwrap();
    std::fs::write(to.join("Kbuild"), format!("{config} := m\n{makefile}")).unwrap();
}

/// e1000e from the kernel source with its spec fixture, under `dir`.
pub fn e1000e_copy(dir: &Path) -> PathBuf {
    let copy = dir.join("e1000e");
    driver_copy(
        &kernel_source("drivers/net/ethernet/intel/e1000e"),
        "CONFIG_E1000E",
        &copy,
    );
    std::fs::copy(
        repo().join("harness/tests/fixtures/kernel_drivers/e1000e/modvm.json"),
        copy.join("modvm.json"),
    )
    .unwrap();
    copy
}
