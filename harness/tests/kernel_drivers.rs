//! The kernel's own drivers built out of tree, as a driver author builds
//! the one they are changing: e1000e's sources from the `linux-source-6.1`
//! package that the `debug` kernel is built from (cached by the setup),
//! built against Debian's 6.1 cloud kernel, probe QEMU's e1000e card,
//! bring its link up and reach the user network's gateway, with the same
//! verdicts as with `--cold`. Without the card the driver loads and probes nothing.

mod common;

use common::*;

#[test]
fn the_kernel_s_e1000e_built_out_of_tree_brings_qemu_s_card_up() {
    let dir = tempfile::tempdir().unwrap();
    let copy = e1000e_copy(dir.path());
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
