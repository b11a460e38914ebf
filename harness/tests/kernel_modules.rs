//! The kernel's own modules in the guest, on real guests: test modules
//! whose in-tree dependencies (`x_tables`, `dm-mod`) are loaded for them
//! with no spec, `request_module()` from a test module, and a module under
//! a non-GPL licence whose `P` taint is expected. (`modprobe null_blk` is
//! in `devices.rs`, with the other block devices.)

mod common;

use common::*;
use serde_json::Value;

fn run(fixtures: &[&str], extra: &[&str]) -> (Output, Value) {
    let paths: Vec<String> = fixtures.iter().map(|f| module_fixture(f)).collect();
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(paths.iter().map(String::as_str));
    test_with_report(&args)
}

#[test]
fn in_tree_dependencies_modprobe_and_request_module_work() {
    let (out, report) = run(&["xt_modvm", "dm_modvm", "request_mod", "proprietary"], &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    let xt = result_of_suite(&report, "xt_modvm");
    assert_eq!(step_commands(xt)[0], "modprobe -a x_tables", "{xt:#}");
    let dm = result_of_suite(&report, "dm_modvm");
    assert_eq!(step_commands(dm)[0], "modprobe -a dm_mod", "{dm:#}");
    let loaded: Vec<&str> = dm["steps"][0]["kernel_lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["text"].as_str())
        .collect();
    assert!(
        loaded.iter().any(|l| l.starts_with("device-mapper: ioctl")),
        "{loaded:?}"
    );
    for suite in ["request_mod", "proprietary"] {
        let t = result_of_suite(&report, suite);
        assert_eq!(t["status"], "pass", "{suite}: {t:#}");
        assert!(
            !step_commands(t)[0].starts_with("modprobe -a"),
            "{suite} needs no in-tree module: {t:#}"
        );
    }
    // The proprietary module did taint the kernel P (bit 0), and passed.
    let p = result_of_suite(&report, "proprietary");
    let taint = p["steps"][0]["taint"].as_u64().unwrap();
    assert_eq!(taint & 1, 1, "{p:#}");
}

#[test]
fn without_its_dependency_a_module_fails_and_the_exporter_is_named() {
    // The module's dependency is unloaded again before its insmod: the
    // smoke test's success above is due to the dependency step, and the
    // failure names the module that exports the missing symbols.
    let dir = tempfile::tempdir().unwrap();
    let src = std::path::Path::new(&module_fixture("xt_modvm")).to_path_buf();
    for f in ["xt_MODVM.c", "Kbuild"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(
        dir.path().join("modvm.json"),
        r#"{ "suite": "xt_nodep", "tests": [
            { "name": "errno", "steps": [
                { "run": "rmmod x_tables" },
                { "insmod": "xt_MODVM", "errno": "ENOENT" } ] },
            { "name": "named", "steps": [
                { "run": "rmmod x_tables" },
                { "insmod": "xt_MODVM" } ] } ] }"#,
    )
    .unwrap();
    let (out, report) = test_with_report(&[dir.path().to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.all());
    let errno = result_where(&report, "name", "xt_nodep/errno");
    assert_eq!(
        step_commands(&errno)[0],
        "modprobe -a x_tables",
        "{errno:#}"
    );
    assert_eq!(errno["status"], "pass", "{errno:#}");
    let named = result_where(&report, "name", "xt_nodep/named");
    assert_eq!(named["status"], "fail", "{named:#}");
    let failures = named["steps"][2]["failures"].to_string();
    assert!(
        failures.contains("`xt_register_target` is exported by the kernel's module `x_tables`"),
        "{failures}"
    );
}

#[test]
fn a_pwd_kbuild_with_a_script_builds_from_any_working_directory() {
    // The fixture's Makefile runs its own gen.sh through $(PWD): that needs
    // make to run inside the build copy, and the copy to keep the script's
    // executable bit, whatever directory modvm is started from.
    let out = out_dir();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_modvm"))
        .current_dir("/")
        .env("NO_COLOR", "1")
        .args(["test", "--accel", "tcg", "--out"])
        .arg(out.path())
        .arg(module_fixture("pwd_kbuild"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout).into_owned()
        + &String::from_utf8_lossy(&status.stderr);
    assert_eq!(status.status.code(), Some(0), "{text}");
    assert!(text.contains("PASS    pwd_kbuild/smoke"), "{text}");
}
