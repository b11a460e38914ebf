//! The KVM probe's cached verdict: `doctor` reports it instead of an
//! "openable" `/dev/kvm`, and `test` acts on it without repeating it.

mod common;

use common::*;
use std::path::Path;

/// Makes sure the default kernel is in `cache`.
fn fetch(cache: &str) {
    let out = modvm(&["fetch", "--cache", cache], &[]);
    assert_eq!(out.code, 0, "{}", out.all());
}

/// Writes a failed verdict for this host, as a probe that hung would.
fn plant_failed_verdict(cache: &Path) {
    fetch(cache.to_str().unwrap());
    let key = modvm::accel::host_key(Path::new("qemu-system-x86_64"));
    let verdict = serde_json::json!({
        "key": key,
        "kvm_works": false,
        "reason": "planted: the guest hung",
    });
    std::fs::write(cache.join("accel.json"), verdict.to_string()).unwrap();
}

fn kvm_openable() -> bool {
    let open = modvm::accel::kvm_device_problem().is_none();
    if !open {
        eprintln!("/dev/kvm cannot be opened here: no probe, no verdict to report");
    }
    open
}

#[test]
fn doctor_reports_the_cached_verdict_not_just_the_device() {
    let openable = kvm_openable();
    let cache = private_cache();
    let dir = cache.path().to_str().unwrap();
    let before = modvm(&["doctor", "--cache", dir], &[]);
    let line = |out: &Output| {
        out.stdout
            .lines()
            .find(|l| l.contains("/dev/kvm"))
            .unwrap_or_else(|| panic!("no /dev/kvm line: {}", out.all()))
            .to_string()
    };
    if !openable {
        // No device, no probe: the line says why runs use TCG.
        assert!(line(&before).contains("TCG"), "{}", before.all());
        return;
    }
    assert!(line(&before).contains("openable"), "{}", before.all());

    plant_failed_verdict(cache.path());
    let after = modvm(&["doctor", "--cache", dir], &[]);
    let kvm = line(&after);
    assert!(
        kvm.contains("KVM failed its probe on this host earlier: planted: the guest hung")
            && kvm.contains("runs use TCG"),
        "{}",
        after.all()
    );
    assert!(!kvm.contains("openable"), "{kvm}");
}

#[test]
fn a_cached_failed_verdict_means_tcg_without_a_line_on_every_run() {
    let openable = kvm_openable();
    let cache = private_cache();
    plant_failed_verdict(cache.path());
    let planted = std::fs::read(cache.path().join("accel.json")).unwrap();
    let dir = cache.path().to_str().unwrap();
    let report = tempfile::NamedTempFile::new().unwrap();
    let path = report.path().to_str().unwrap();
    for quiet in [true, false] {
        let mut args = vec!["test", "--cache", dir, "--accel", "auto", "--json", path];
        if quiet {
            args.push("-q");
        }
        let out = modvm(&args, &[]);
        assert_eq!(out.code, 0, "{}", out.all());
        if openable {
            // Without the device the run says so each time: that line is
            // about the host, not a probe's verdict.
            assert!(!out.all().contains("KVM"), "quiet={quiet}: {}", out.all());
        }
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(report.path()).unwrap()).unwrap();
        assert_eq!(doc["accel"], "tcg", "{doc:#}");
    }
    let after = std::fs::read(cache.path().join("accel.json")).unwrap();
    assert_eq!(after, planted, "no new probe: the verdict was used");
}
