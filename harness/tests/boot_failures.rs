//! Guests that cannot come up, through the real binary: a QEMU that quits
//! at once, an init that cannot start or never answers, a damaged kernel
//! image, too little memory. Each ends without waiting past its deadline,
//! with a message that names the cause, the documented exit status, the
//! boot's logs kept, and no QEMU left. Every run uses a cache of its own
//! (the kernels shared read-only), so the saved guests these boots fail
//! to make never reach anyone's cache.

mod common;

use common::{assert_no_qemu_left_by_us, module_fixture, private_cache};
use std::path::{Path, PathBuf};

/// What a run left: its output, its JSON report, and its output directory
/// (kept until dropped, so the logs can be read).
struct Run {
    out: common::Output,
    report: serde_json::Value,
    _dir: tempfile::TempDir,
}

/// `modvm test --accel tcg --cache <private> --json … ARGS…`.
fn run(cache: &Path, args: &[&str]) -> Run {
    let dir = common::out_dir();
    let report = dir.path().join("report.json");
    let mut all = vec![
        "test",
        "--accel",
        "tcg",
        "--cache",
        cache.to_str().unwrap(),
        "--json",
        report.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let out = common::command(&all, &[], &dir.path().join("out"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_no_qemu_left_by_us();
    let out = common::Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let text = std::fs::read(&report).unwrap_or_else(|e| panic!("no report: {e}\n{}", out.all()));
    Run {
        report: serde_json::from_slice(&text).unwrap(),
        out,
        _dir: dir,
    }
}

/// The one result of a one-test run.
fn only(report: &serde_json::Value) -> &serde_json::Value {
    let tests = report["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 1, "{report:#}");
    &tests[0]
}

/// The test's artifacts directory, with the files a failed boot leaves.
fn artifacts(result: &serde_json::Value) -> PathBuf {
    let dir = PathBuf::from(result["artifacts"].as_str().unwrap());
    for f in ["kernel.log", "qemu.stderr", "qemu-cmdline.txt"] {
        assert!(dir.join(f).is_file(), "{f} kept in {}", dir.display());
    }
    dir
}

#[test]
fn a_qemu_that_exits_at_once_is_an_error_that_blames_qemu_not_the_kernel() {
    let cache = private_cache();
    let Run { out, report, _dir } = run(cache.path(), &["--qemu", "/bin/false"]);
    assert_eq!(out.code, 2, "{}", out.all());
    let t = only(&report);
    assert_eq!(t["status"], "error", "{t}");
    let message = t["message"].as_str().unwrap();
    assert!(
        message.starts_with("boot failed: QEMU exited during boot (exit status: 1)"),
        "{message}"
    );
    assert!(message.contains("check `--qemu`"), "{message}");
    assert!(!message.contains("fetch --refresh"), "{message}");
    assert!(
        out.stdout.contains("ERROR   hello/load-unload"),
        "{}",
        out.all()
    );
    assert!(out.stderr.contains("could not run"), "{}", out.all());
    let dir = artifacts(t);
    let cmdline = std::fs::read_to_string(dir.join("qemu-cmdline.txt")).unwrap();
    assert!(cmdline.starts_with("/bin/false "), "{cmdline}");
}

#[test]
fn an_init_that_cannot_start_is_a_boot_crash_with_the_kernels_words() {
    let cache = private_cache();
    // The initramfs has no such file: the kernel looks for a root file
    // system instead and panics. The saved guest cannot be made either,
    // which the run says before it boots the test cold.
    let Run { out, report, _dir } = run(cache.path(), &["--append", "rdinit=/nonexistent"]);
    assert_eq!(out.code, 1, "{}", out.all());
    let t = only(&report);
    assert_eq!(t["status"], "crash", "{t}");
    assert_eq!(
        t["message"],
        "the kernel crashed during boot: kernel panic: VFS: Unable to mount root fs on unknown-block(0,0)"
    );
    assert_eq!(t["boot_ms"], serde_json::Value::Null);
    assert!(
        out.stderr.contains(
            "cannot save a debian-6.1-cloud guest to restore (the guest to save did not boot: the kernel crashed during boot twice: kernel panic: VFS: Unable to mount root fs"
        ),
        "{}",
        out.all()
    );
    assert!(
        out.stdout.contains("CRASH   hello/load-unload"),
        "{}",
        out.all()
    );
    let log = std::fs::read_to_string(artifacts(t).join("kernel.log")).unwrap();
    assert!(
        log.contains("Kernel panic - not syncing: VFS: Unable to mount root fs"),
        "{log}"
    );
}

#[test]
fn an_init_that_never_answers_times_out_at_the_boot_deadline() {
    let cache = private_cache();
    // The kernel starts busybox's `sleep` as init: it never prints the
    // ready marker.
    let Run { out, report, _dir } = run(
        cache.path(),
        &[
            "--cold",
            "--boot-timeout",
            "4",
            "--append",
            "rdinit=/bin/busybox -- sleep 100000",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.all());
    let t = only(&report);
    assert_eq!(t["status"], "timeout", "{t}");
    assert_eq!(
        t["message"],
        "boot failed: the guest did not reach its shell within 4.0s"
    );
    assert!(
        out.stdout.contains("TIMEOUT hello/load-unload"),
        "{}",
        out.all()
    );
    assert!(out.stdout.contains("1 timed out"), "{}", out.all());
    artifacts(t);
}

/// The debug kernel's build tree: a `local` profile needs a whole tree.
fn debug_tree() -> PathBuf {
    modvm::kernel::cached(
        &modvm::paths::cache_dir(None),
        &modvm::kernel::profile::load("debug").unwrap(),
    )
    .expect("the debug kernel is built by the setup")
    .headers
}

/// A `local` recipe for `image` on the debug tree, in `dir`; the private
/// cache gets the shared busybox (read only) so nothing is fetched.
fn local_recipe(dir: &Path, cache: &Path, image: &Path) -> PathBuf {
    let shared = modvm::paths::cache_dir(None).join("busybox");
    std::os::unix::fs::symlink(shared, cache.join("busybox")).unwrap();
    let recipe = dir.join("mine.json");
    std::fs::write(
        &recipe,
        format!(
            r#"{{"name": "mine", "compiler": "gcc", "source": {{"kind": "local", "image": "{}", "build": "{}"}}}}"#,
            image.display(),
            debug_tree().display()
        ),
    )
    .unwrap();
    recipe
}

#[test]
fn a_file_that_is_not_a_kernel_is_refused_before_any_boot() {
    let cache = private_cache();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("bzImage");
    std::fs::write(&image, b"#!/bin/sh\necho not a kernel\n").unwrap();
    let recipe = local_recipe(dir.path(), cache.path(), &image);
    let Run { out, report, _dir } = run(
        cache.path(),
        &["--kernel", recipe.to_str().unwrap(), "module"],
    );
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr
            .contains(&format!("{}: not a kernel image", image.display())),
        "{}",
        out.all()
    );
    assert_eq!(report["summary"]["ok"], false, "{report:#}");
    let t = only(&report);
    assert_eq!(t["status"], "not_run", "{t}");
    assert_eq!(t["guest"], serde_json::Value::Null, "{t}");
}

#[test]
fn a_kernel_image_damaged_inside_times_out_with_its_empty_log_kept() {
    let cache = private_cache();
    let dir = tempfile::tempdir().unwrap();
    // Its headers are intact (so it passes the checks made before a
    // boot), its compressed payload is not.
    let image = dir.path().join("bzImage");
    let mut bytes = std::fs::read(debug_tree().join("arch/x86/boot/bzImage")).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64 * 1024] {
        *b = b.wrapping_mul(7).wrapping_add(13);
    }
    std::fs::write(&image, bytes).unwrap();
    let recipe = local_recipe(dir.path(), cache.path(), &image);
    let Run { out, report, _dir } = run(
        cache.path(),
        &[
            "--cold",
            "--boot-timeout",
            "4",
            "--kernel",
            recipe.to_str().unwrap(),
            "module",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.all());
    let t = only(&report);
    assert_eq!(t["status"], "timeout", "{t}");
    assert_eq!(
        t["message"],
        "boot failed: the guest did not reach its shell within 4.0s"
    );
    let log = std::fs::read(artifacts(t).join("kernel.log")).unwrap();
    assert!(log.is_empty(), "{}", String::from_utf8_lossy(&log));
}

#[test]
fn the_smallest_memory_allowed_boots_and_less_is_a_usage_error() {
    let cache = private_cache();
    let Run { out, report, _dir } = run(cache.path(), &["--memory", "96"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(only(&report)["status"], "pass");

    let out = common::modvm(&["test", "--memory", "95", &module_fixture("uaf")], &[]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr
            .contains("95 is out of range; allowed: from 96 to 65536 MiB"),
        "{}",
        out.all()
    );
}

#[test]
fn a_guest_of_modvm_run_that_panics_while_booting_is_named_with_its_panic() {
    let cache = private_cache();
    let dir = common::out_dir();
    let out = common::command(
        &[
            "run",
            "--accel",
            "tcg",
            "--cache",
            cache.path().to_str().unwrap(),
            "--append",
            "rdinit=/nonexistent",
            "--",
            "true",
        ],
        &[],
        dir.path(),
    )
    .stdin(std::process::Stdio::null())
    .output()
    .unwrap();
    assert_no_qemu_left_by_us();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // An error before the command ran: 2, not the crash status 123.
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let said = "modvm: error: the kernel crashed during boot: kernel panic: VFS: Unable to mount root fs on unknown-block(0,0) (logs in ";
    let at = stderr.find(said).unwrap_or_else(|| panic!("{stderr}"));
    let rest = &stderr[at + said.len()..];
    let logs = Path::new(&rest[..rest.find(')').unwrap()]);
    let log = std::fs::read_to_string(logs.join("kernel.log")).unwrap();
    assert!(log.contains("Kernel panic - not syncing"), "{log}");
}
