//! The kernel's own drivers built out of tree, as a driver author builds
//! the one they are changing: e1000e's sources from the `linux-source-6.1`
//! package that the `debug` kernel is built from (cached by the setup),
//! built against Debian's 6.1 cloud kernel, probe QEMU's e1000e card,
//! bring its link up and reach the user network's gateway, with the same
//! verdicts as with `--cold`. Without the card the driver loads and probes nothing.

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// A driver's directory in the `debug` kit's source tree.
fn kernel_source(rel: &str) -> PathBuf {
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
fn driver_copy(source: &Path, config: &str, to: &Path) {
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

#[test]
fn the_kernel_s_e1000e_built_out_of_tree_brings_qemu_s_card_up() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("e1000e");
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
    let dir_arg = copy.to_str().unwrap();
    let (out, restored) = test_with_report(&[dir_arg]);
    assert_eq!(out.code, 0, "{}", out.all());
    let (cold_out, cold) = test_with_report(&["--cold", dir_arg]);
    assert_eq!(cold_out.code, 0, "{}", cold_out.all());
    // The driver with its debug information is large enough that modvm
    // boots its guests with it rather than sending it to a restored one;
    // either way the verdicts are the same as with --cold.
    for (report, cold) in [(&restored, false), (&cold, true)] {
        for name in ["e1000e/link-up-and-ping", "e1000e/no-nic-no-probe"] {
            let t = result_where(report, "name", name);
            assert_eq!(t["status"], "pass", "{t:#}");
            if cold {
                assert_eq!(t["guest"], "booted", "{t:#}");
            }
        }
    }
    let ping = result_where(&restored, "name", "e1000e/link-up-and-ping");
    let lines = ping.to_string();
    assert!(
        lines.contains("NIC Link is Up 1000 Mbps Full Duplex"),
        "{ping:#}"
    );
}
