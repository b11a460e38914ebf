//! Hardware a spec declares, on real guests: a driver written for QEMU's
//! `edu` PCI device probes it and reads its registers (and loads without
//! probing when no device is declared); scratch disks on virtio-blk and
//! NVMe carry file systems; `modprobe null_blk` gives a block device of
//! the kernel's own; a netfilter hook sees the ICMP answers of QEMU's user
//! network's gateway on a declared NIC, and with the guest's own iptables
//! (`guest_packages`) a LOG rule logs them too. The same tests restored and booted
//! cold give the same verdicts; devices QEMU cannot save make their tests
//! boot cold.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;

fn verdicts(report: &Value) -> BTreeMap<String, (String, String)> {
    report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                (
                    t["status"].as_str().unwrap().to_string(),
                    t["guest"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect()
}

#[test]
fn declared_devices_work_restored_and_cold_alike() {
    let fixtures = [
        module_fixture("edu_drv"),
        module_fixture("blockdev"),
        module_fixture("icmp_watch"),
    ];
    let dirs: Vec<&str> = fixtures.iter().map(String::as_str).collect();
    let (out, restored) = test_with_report(&dirs);
    assert_eq!(out.code, 0, "{}", out.all());
    let mut cold_args = vec!["--cold"];
    cold_args.extend(&dirs);
    let (cold_out, cold) = test_with_report(&cold_args);
    assert_eq!(cold_out.code, 0, "{}", cold_out.all());

    let r = verdicts(&restored);
    let c = verdicts(&cold);
    assert_eq!(r.len(), 9, "{r:?}");
    for (name, (status, _)) in &r {
        // The USB test names the generic flavour (below): a skip here.
        let want = if name.ends_with("usb-stick") {
            "skip"
        } else {
            "pass"
        };
        assert_eq!(status, want, "{name}: {restored:#}");
        assert_eq!(c[name].0, *status, "{name}: restored and cold differ");
        if want == "pass" {
            assert_eq!(c[name].1, "booted", "{name}");
        }
    }
    // QEMU keeps no state of edu, and cannot save NVMe: those boot cold,
    // said once each; a virtio-blk scratch disk is saved and restored.
    assert_eq!(r["edu_drv/probes-the-edu-device"].1, "booted");
    assert_eq!(r["blockdev/scratch-disk-nvme-ext4"].1, "booted");
    assert_eq!(r["blockdev/scratch-disk-vfat"].1, "restored");
    assert_eq!(r["edu_drv/no-device-no-probe"].1, "restored");
    // A NIC on QEMU's user network is saved with the guest.
    assert_eq!(r["icmp_watch/sees-the-gateway-answer"].1, "restored");
    // The guest's iptables (a Debian package, fetched by the setup) put a
    // LOG rule in the kernel that the ping hit; the saved guest holds it.
    assert_eq!(r["icmp_watch/iptables-log-rule"].1, "restored");
    assert_eq!(
        out.stderr
            .matches(
                "QEMU keeps no state of its `edu` device in a saved guest: tests with it boot cold"
            )
            .count(),
        1,
        "{}",
        out.all()
    );
    assert!(
        out.stderr
            .contains("QEMU cannot save a guest with an NVMe controller"),
        "{}",
        out.all()
    );
}

/// Writes `spec` into `dir` and runs `modvm test` on it, which must stop
/// with exit 2 before any guest.
fn refused_spec(dir: &std::path::Path, spec: &str) -> Output {
    std::fs::write(dir.join("modvm.json"), spec).unwrap();
    let out = modvm(&["test", "--accel", "tcg", dir.to_str().unwrap()], &[]);
    assert_eq!(out.code, 2, "{}", out.all());
    out
}

#[test]
fn a_bad_device_is_refused_at_its_place_in_the_spec() {
    let dir = module_copy();
    let out = refused_spec(
        dir.path(),
        r#"{ "tests": [ { "name": "t",
  "devices": ["edu", { "disk": { "name": "d", "size_mib": 99999999 } }],
  "steps": [{ "insmod": "hello" }] } ] }"#,
    );
    assert!(
        out.stderr.contains("modvm.json:")
            && out.stderr.contains("`size_mib` must be between 1 and"),
        "{}",
        out.all()
    );
}

#[test]
fn usb_storage_sees_qemu_s_usb_disk_behind_xhci_on_the_generic_flavour() {
    // The cloud flavour has no USB at all: the test names the generic one.
    let dir = module_fixture("blockdev");
    let (out, report) = test_with_report(&[
        "--kernel",
        "debian-6.1-generic",
        "--filter",
        "usb-stick",
        dir.as_str(),
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    let t = result_where(&report, "name", "blockdev/usb-stick");
    assert_eq!(t["status"], "pass", "{t:#}");
    assert_eq!(t["guest"], "restored", "{t:#}");
}

#[test]
fn a_raw_qemu_device_is_checked_against_qemu_and_reaches_the_guest() {
    let dir = module_copy();
    let spec = dir.path().join("modvm.json");
    std::fs::write(
        &spec,
        r#"{ "suite": "raw", "tests": [ { "name": "watchdog",
  "devices": [{ "qemu": "i6300esb,id=wd" }],
  "steps": [{ "run": "cat /sys/bus/pci/devices/*/device", "output": ["0x25ab"] }] } ] }"#,
    )
    .unwrap();
    let (out, report) = test_with_report(&[dir.path().to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.all());
    let t = result_where(&report, "name", "raw/watchdog");
    assert_eq!(t["guest"], "booted", "{t:#}");
    assert!(
        out.stderr.contains("may not be saved by QEMU"),
        "{}",
        out.all()
    );

    let out = refused_spec(
        dir.path(),
        r#"{ "tests": [ { "name": "t",
  "devices": [{ "qemu": "no-such-device" }],
  "steps": [{ "insmod": "hello" }] } ] }"#,
    );
    let place = format!("{}:2:", spec.display());
    assert!(
        out.stderr.contains(&place) && out.stderr.contains("has no device `no-such-device`"),
        "{}",
        out.all()
    );
}
