//! Symbolising real crash frames against real modules: the fixture modules
//! are built with the cached kernel headers, and frames taken from kernel
//! logs those same fixtures produced must land on the faulty source line.
//! Skipped (with a note) when no kernel kit is cached, so a fresh checkout's
//! `cargo test` needs no network.

use modvm::kernel::profile;
use modvm::klog::KernelLine;
use modvm::{crash, kbuild, kernel, paths, symbolize};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/modules")
        .join(name)
}

fn headers() -> PathBuf {
    let profile = profile::load(profile::DEFAULT_PROFILE).unwrap();
    kernel::cached(&paths::cache_dir(None), &profile)
        .expect("a cached kernel kit; scripts/setup-host.sh fetches it")
        .headers
}

fn target(headers: &std::path::Path) -> kbuild::Target<'_> {
    kbuild::Target {
        headers,
        identity: "test",
        release: "test",
    }
}

fn frames_of(log: &str) -> Vec<modvm::outcome::Frame> {
    let lines: Vec<KernelLine> = log.lines().map(KernelLine::parse).collect();
    let crashes = crash::detect(&lines);
    assert_eq!(crashes.len(), 1);
    crashes.into_iter().next().unwrap().frames
}

/// Builds `name` and symbolises the frames of its recorded crash; returns
/// the frame of `function`.
fn symbolized(name: &str, log: &str, function: &str) -> modvm::outcome::Frame {
    let headers = headers();
    let build = tempfile::tempdir().expect("tempdir");
    let built = kbuild::build(&fixture(name), &target(&headers), &[], build.path())
        .expect("fixture builds");
    let mut frames = frames_of(log);
    symbolize::symbolize(&mut frames, &built.modules);
    frames
        .into_iter()
        .find(|f| f.function == function)
        .unwrap_or_else(|| panic!("no frame of {function} in the report of {name}"))
}

#[test]
fn null_deref_points_at_the_store() {
    let f = symbolized(
        "null_init",
        include_str!("data/klog/null_init.log"),
        "null_init_init",
    );
    assert_eq!(f.file.as_deref(), Some("null_init.c"));
    assert_eq!(f.line, Some(15), "`*target = 1;`");
}

#[test]
fn warning_points_at_warn_on() {
    let f = symbolized(
        "warn_exit",
        include_str!("data/klog/warn_exit.log"),
        "warn_exit_exit",
    );
    assert_eq!(f.file.as_deref(), Some("warn_exit.c"));
    assert_eq!(f.line, Some(20), "`WARN_ON(leaked);`");
}

#[test]
fn return_address_points_at_the_call() {
    // In the scheduling-while-atomic trace the module frame is a return
    // address from msleep(); it must map to the msleep line, not the next.
    let log = include_str!("data/klog/atomic_sleep.log");
    let headers = headers();
    let build = tempfile::tempdir().expect("tempdir");
    let built = kbuild::build(
        &fixture("atomic_sleep"),
        &target(&headers),
        &[],
        build.path(),
    )
    .expect("fixture builds");
    let lines: Vec<KernelLine> = log.lines().map(KernelLine::parse).collect();
    let mut frames = crash::detect(&lines).remove(0).frames;
    symbolize::symbolize(&mut frames, &built.modules);
    let f = frames
        .iter()
        .find(|f| f.function == "atomic_sleep_init")
        .expect("module frame");
    assert_eq!(f.file.as_deref(), Some("atomic_sleep.c"));
    assert_eq!(f.line, Some(17), "`msleep(10);`");
}
