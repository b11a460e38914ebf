//! The `debian-6.1-debug` kernel (Debian's own config, trimmed, with the
//! sanitizers) on real guests: the detectors catch a use-after-free and a
//! leak as on `debug`, and modules that need the kernel's subsystems load
//! through the kernel's own modules on its guest disk (x_tables,
//! device-mapper, `request_module()`), and the kernel's e1000e built out of
//! tree brings QEMU's card up, none of which `debug` can do.
//!
//! Ignored by default: the kernel takes about 15 minutes to build on 2
//! cores, more than the test run's budget from empty caches.
//! `scripts/check-debian-debug.sh` builds it and runs this test.

mod common;

use common::*;

#[test]
#[ignore = "needs the debian-6.1-debug kernel (about 15 minutes to build): scripts/check-debian-debug.sh"]
fn the_debian_config_debug_kernel_has_the_subsystems_and_the_detectors() {
    let mut args = vec![
        "--kernel".to_string(),
        "debian-6.1-debug".into(),
        "module".into(),
    ];
    for f in [
        "uaf",
        "leak",
        "xt_modvm",
        "dm_modvm",
        "request_mod",
        "blockdev",
    ] {
        args.push(module_fixture(f));
    }
    let dir = tempfile::tempdir().unwrap();
    args.push(e1000e_copy(dir.path()).to_str().unwrap().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, doc) = test_with_report(&args);
    assert_eq!(out.code, 1, "{}", out.all());

    let status = |suite: &str| {
        result_of_suite(&doc, suite)["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for suite in ["hello", "xt_modvm", "dm_modvm", "request_mod"] {
        assert_eq!(status(suite), "pass", "{suite}: {doc:#}");
    }
    // A PCI network driver of the kernel's own, under the detectors.
    for t in doc["tests"].as_array().unwrap() {
        if t["suite"] == "e1000e" {
            assert_eq!(t["status"], "pass", "{t:#}");
        }
    }
    // In-tree dependencies come from the kit's own modules.
    let xt = result_of_suite(&doc, "xt_modvm");
    assert_eq!(step_commands(xt)[0], "modprobe -a x_tables", "{xt:#}");
    let dm = result_of_suite(&doc, "dm_modvm");
    assert_eq!(step_commands(dm)[0], "modprobe -a dm_mod", "{dm:#}");
    // Block devices: null_blk from the modules disk, scratch disks.
    for t in doc["tests"].as_array().unwrap() {
        if t["suite"] == "blockdev" {
            // The USB test names the generic flavours.
            let usb = t["name"].as_str().unwrap().ends_with("usb-stick");
            assert_eq!(t["status"], if usb { "skip" } else { "pass" }, "{t:#}");
        }
    }
    // The detectors, as on `debug`.
    let uaf = result_of_suite(&doc, "uaf");
    assert_eq!(uaf["status"], "crash", "{uaf:#}");
    let title = uaf["crash"]["title"].as_str().unwrap();
    assert!(title.starts_with("KASAN: use-after-free"), "{title}");
    let leak = result_of_suite(&doc, "leak");
    assert_eq!(leak["status"], "crash", "{leak:#}");
    let title = leak["crash"]["title"].as_str().unwrap();
    assert!(title.starts_with("memory leak"), "{title}");
}
