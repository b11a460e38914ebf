//! DKMS source trees on real guests: a tree shaped like Debian's `*-dkms`
//! packages (dkms.conf with PRE_BUILD, modules in subdirectories, a header
//! outside them, a `$(PWD)` Makefile, a script that needs its exec bit)
//! built from `/` as working directory, with no spec and with one; a tree
//! whose BUILD_EXCLUSIVE_CONFIG rules the kernel out is a skip; and three
//! of Debian's own packages exactly as Debian ships them (downloaded by
//! `scripts/setup-host.sh`, never by a test), one of them a V4L2 driver
//! that only the generic flavour can load.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `modvm test --json` started in `/`, so nothing can lean on the working
/// directory.
fn test_from_root(dirs: &[&Path]) -> (Output, Value) {
    test_from_root_on(&[], dirs)
}

fn test_from_root_on(flags: &[&str], dirs: &[&Path]) -> (Output, Value) {
    let out = out_dir();
    let report = out.path().join("report.json");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_modvm"))
        .current_dir("/")
        .env("NO_COLOR", "1")
        .args(["test", "--accel", "tcg", "--out"])
        .arg(out.path())
        .arg("--json")
        .arg(&report)
        .args(flags)
        .args(dirs)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let output = Output {
        code: run.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&run.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&run.stderr).into_owned(),
    };
    let text =
        std::fs::read(&report).unwrap_or_else(|e| panic!("no report: {e}\n{}", output.all()));
    (output, serde_json::from_slice(&text).unwrap())
}

fn fixture(name: &str) -> PathBuf {
    repo().join("harness/tests/fixtures/dkms").join(name)
}

/// Copies a tree with its file modes (a DKMS tree's scripts keep theirs).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn kernel_lines(test: &Value) -> String {
    test["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["kernel_lines"].as_array().cloned().unwrap_or_default())
        .filter_map(|l| l["text"].as_str().map(str::to_string))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_dkms_tree_builds_as_dkms_builds_it_with_and_without_a_spec() {
    // The same tree once as shipped (a smoke test) and once in a copy with
    // a spec that checks what PRE_BUILD generated.
    let with_spec = tempfile::tempdir().unwrap();
    let copy = with_spec.path().join("modvm_demo-1.0");
    copy_tree(&fixture("modvm_demo-1.0"), &copy);
    std::fs::write(
        copy.join("modvm.json"),
        r#"{ "suite": "demo-spec", "tests": [ { "name": "load", "steps": [
            { "insmod": "demo_core", "kernel_log": [{ "regex": "^demo_core: built by PRE_BUILD for 6\\." }] },
            { "insmod": "demo_user", "kernel_log": ["demo_user: the core answers 42"] },
            { "rmmod": "demo_user" },
            { "rmmod": "demo_core" } ] } ] }"#,
    )
    .unwrap();
    let (out, report) =
        test_from_root(&[&fixture("modvm_demo-1.0"), &copy, &fixture("exclusive-1.0")]);
    assert_eq!(out.code, 0, "{}", out.all());
    let smoke = result_where(&report, "name", "modvm_demo-1.0/smoke");
    assert_eq!(smoke["status"], "pass", "{smoke:#}");
    assert_eq!(
        step_commands(&smoke),
        [
            "insmod /modules/demo_core.ko",
            "insmod /modules/demo_user.ko",
            "rmmod demo_user",
            "rmmod demo_core"
        ],
        "{smoke:#}"
    );
    let spec = result_where(&report, "name", "demo-spec/load");
    assert_eq!(spec["status"], "pass", "{spec:#}");
    let skipped = result_where(&report, "name", "exclusive-1.0/smoke");
    assert_eq!(skipped["status"], "skip", "{skipped:#}");
    let why = skipped["message"].as_str().unwrap();
    assert!(
        why.contains("BUILD_EXCLUSIVE_CONFIG needs CONFIG_MODVM_NO_SUCH_OPTION"),
        "{why}"
    );
    // The shipped tree holds only what it held: the build is in modvm's copy.
    let demo = walk(&fixture("modvm_demo-1.0"));
    assert!(
        !demo.iter().any(|p| {
            let name = p.to_string_lossy();
            name.ends_with(".ko") || name.ends_with("demo_generated.h")
        }),
        "{demo:?}"
    );
}

#[test]
fn a_dkms_tree_whose_pre_build_fails_is_a_failed_test_with_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("modvm_demo-1.0");
    copy_tree(&fixture("modvm_demo-1.0"), &copy);
    let conf = std::fs::read_to_string(copy.join("dkms.conf")).unwrap();
    std::fs::write(
        copy.join("dkms.conf"),
        conf.replace("gen-version.sh ${kernelver}", "gen-version.sh"),
    )
    .unwrap();
    let (out, report) = test_from_root(&[&copy]);
    assert_eq!(out.code, 1, "{}", out.all());
    let t = result_where(&report, "name", "modvm_demo-1.0/smoke");
    assert_eq!(t["status"], "error", "{t:#}");
    let why = t["message"].as_str().unwrap();
    assert!(
        why.contains("PRE_BUILD failed") && why.contains("usage:"),
        "{why}"
    );
}

/// Where `scripts/setup-host.sh` unpacked Debian's package `pkg`: its
/// source tree under `usr/src`.
fn debian_tree(pkg: &str) -> PathBuf {
    let root = modvm::paths::cache_dir(None)
        .join("dkms-packages")
        .join(pkg)
        .join("usr/src");
    let trees: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `bash scripts/setup-host.sh` first",
                root.display()
            )
        })
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(trees.len(), 1, "{trees:?}");
    trees[0].clone()
}

#[test]
fn debian_s_own_dkms_packages_build_and_load_as_shipped() {
    // dm-writeboost: `MAKE` with its own Makefile that builds through
    // $(PWD), loaded on top of device-mapper (an in-tree dependency).
    let writeboost = debian_tree("dm-writeboost-dkms");
    // xtables-addons: 23 modules that `MAKE` moves to the top of the build
    // tree, each on top of x_tables. Two findings of its own, pinned here:
    // - xt_DNETMAP is built for a kernel with NF_NAT built in (`#ifdef
    //   CONFIG_NF_NAT`); Debian's has it as a module, so its init refuses
    //   with its own message;
    // - xt_CHAOS takes `xt_request_find_target()`'s ERR_PTR for a found
    //   target (it tests for NULL), so when DELUDE and TARPIT are not
    //   loaded before it, its exit dereferences the error pointer.
    // A spec in a copy loads them in an order that works, and shows the
    // crash with the order that does not.
    let xt = debian_tree("xtables-addons-dkms");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(xt.file_name().unwrap());
    copy_tree(&xt, &copy);
    let conf = std::fs::read_to_string(copy.join("dkms.conf")).unwrap();
    let mut names: Vec<&str> = conf
        .lines()
        .filter_map(|l| l.split_once("BUILT_MODULE_NAME[").map(|(_, r)| r))
        .filter_map(|r| r.split('"').nth(1))
        .filter(|n| *n != "xt_CHAOS")
        .collect();
    assert!(names.len() > 20, "{names:?}");
    names.push("xt_CHAOS");
    let mut steps: Vec<String> = Vec::new();
    for name in &names {
        if *name == "xt_DNETMAP" {
            steps.push(
                r#"{ "insmod": "xt_DNETMAP", "errno": "EINVAL", "kernel_log": ["CONFIG_NF_NAT is not available in your kernel"] }"#
                    .into(),
            );
        } else {
            steps.push(format!(r#"{{ "insmod": "{name}" }}"#));
        }
    }
    for name in names.iter().rev().filter(|n| **n != "xt_DNETMAP") {
        steps.push(format!(r#"{{ "rmmod": "{name}" }}"#));
    }
    std::fs::write(
        copy.join("modvm.json"),
        format!(
            r#"{{ "suite": "xtables-addons", "tests": [
                {{ "name": "all-targets", "steps": [ {} ] }},
                {{ "name": "chaos-alone", "expect_crash": "NULL pointer dereference in chaos_tg_exit",
                   "steps": [ {{ "insmod": "xt_CHAOS" }}, {{ "rmmod": "xt_CHAOS" }} ] }} ] }}"#,
            steps.join(",\n")
        ),
    )
    .unwrap();
    let (out, report) = test_from_root(&[&writeboost, &copy]);
    assert_eq!(out.code, 0, "{}", out.all());
    let wb = result_of_suite(&report, writeboost.file_name().unwrap().to_str().unwrap());
    assert_eq!(wb["status"], "pass", "{wb:#}");
    assert!(step_commands(wb)[0].starts_with("modprobe -a "), "{wb:#}");
    assert!(step_commands(wb)[0].contains("dm_mod"), "{wb:#}");
    let xt = result_where(&report, "name", "xtables-addons/all-targets");
    assert_eq!(xt["status"], "pass", "{xt:#}");
    assert_eq!(step_commands(&xt)[0], "modprobe -a x_tables", "{xt:#}");
    assert!(
        kernel_lines(&xt).contains("CONFIG_NF_NAT is not available"),
        "{xt:#}"
    );
    let chaos = result_where(&report, "name", "xtables-addons/chaos-alone");
    assert_eq!(chaos["status"], "pass", "{chaos:#}");
    // Located in the package's own source, as shipped.
    let top = &chaos["crash"]["frames"][0];
    assert_eq!(top["function"], "chaos_tg_exit", "{chaos:#}");
    assert_eq!(top["file"], "extensions/xt_CHAOS.c", "{chaos:#}");
    assert!(top["line"].as_u64().is_some(), "{chaos:#}");
}

#[test]
fn v4l2loopback_loads_on_the_generic_flavour_and_is_skipped_on_cloud() {
    // Its dkms.conf sources the kernel's .config and sets
    // BUILD_EXCLUSIVE_KERNEL to a string no release matches when V4L2 is
    // missing: the cloud flavour has no CONFIG_VIDEO_DEV.
    let tree = debian_tree("v4l2loopback-dkms");
    let (out, report) = test_from_root_on(
        &["--kernel", "debian-6.1-generic,debian-6.1-cloud"],
        &[&tree],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let generic = result_where(&report, "kernel", "debian-6.1-generic");
    assert_eq!(generic["status"], "pass", "{generic:#}");
    // videodev (V4L2's core) comes from the kernel's own modules.
    assert_eq!(
        step_commands(&generic)[0],
        "modprobe -a videodev",
        "{generic:#}"
    );
    let cloud = result_where(&report, "kernel", "debian-6.1-cloud");
    assert_eq!(cloud["status"], "skip", "{cloud:#}");
    let why = cloud["message"].as_str().unwrap();
    assert!(why.contains("CONFIG_VIDEO_DEV"), "{why}");
}

#[test]
fn an_xtables_addons_target_logs_packets_a_rule_of_the_guest_s_iptables_sends_it() {
    // The netfilter target as its users run it: the kernel module built
    // from Debian's xtables-addons-dkms, the iptables extension that
    // speaks to it from Debian's xtables-addons-common (a guest package,
    // fetched by the setup), a rule sending the gateway's ICMP answers to
    // it, and the target's own kernel line for the packet.
    let xt = debian_tree("xtables-addons-dkms");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(xt.file_name().unwrap());
    copy_tree(&xt, &copy);
    // The spec is a fixture of its own, so that the setup fetches its
    // guest packages (tests never download).
    std::fs::copy(
        fixture("xtables-logmark").join("modvm.json"),
        copy.join("modvm.json"),
    )
    .unwrap();
    let (out, report) = test_from_root(&[&copy]);
    assert_eq!(out.code, 0, "{}", out.all());
    let t = result_where(&report, "name", "xtables-addons/logmark-rule");
    assert_eq!(t["status"], "pass", "{t:#}");
    assert!(kernel_lines(&t).contains("hook=INPUT"), "{t:#}");
}
