//! The fast path: guests restored from a saved snapshot are isolated from
//! each other, get their modules and switches, and a damaged, missing or
//! unusable snapshot costs time, never a result.

mod common;

use common::{module_copy, modvm, private_cache, repo, result_where, test_with_report};
use std::path::{Path, PathBuf};

fn write_spec(dir: &Path, spec: serde_json::Value) {
    std::fs::write(
        dir.join("modvm.json"),
        serde_json::to_vec_pretty(&spec).unwrap(),
    )
    .unwrap();
}

fn tests_of(report: &serde_json::Value) -> &Vec<serde_json::Value> {
    report["tests"].as_array().unwrap()
}

fn snapshot_dirs(cache: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(cache.join("snapshots")) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    dirs.sort();
    dirs
}

fn run_hello(cache: &Path, extra: &[&str]) -> (common::Output, serde_json::Value) {
    let module = repo().join("module");
    let mut args = vec![
        "--cache",
        cache.to_str().unwrap(),
        "-j",
        "1",
        module.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    test_with_report(&args)
}

fn assert_passed_restored(out: &common::Output, report: &serde_json::Value) {
    assert_eq!(out.code, 0, "{}", out.all());
    let t = &tests_of(report)[0];
    assert_eq!(t["status"], "pass", "{}", out.all());
    assert_eq!(t["guest"], "restored", "{}", out.all());
}

#[test]
fn a_test_leaves_nothing_behind_for_the_next_one_on_the_same_snapshot() {
    let dir = module_copy();
    write_spec(
        dir.path(),
        serde_json::json!({
            "suite": "iso",
            "tests": [
                {
                    "name": "dirty",
                    "panic_on_oops": true,
                    "steps": [
                        { "insmod": "hello" },
                        { "run": "echo 17 > /proc/sys/vm/swappiness && echo left > /tmp/left-behind" },
                        { "run": "cat /proc/sys/kernel/panic_on_oops", "output": [{ "regex": "^1$" }] }
                    ]
                },
                {
                    "name": "clean",
                    "steps": [
                        { "run": "lsmod", "not_output": [{ "contains": "hello" }] },
                        { "run": "cat /proc/sys/vm/swappiness", "output": [{ "regex": "^60$" }] },
                        { "run": "test ! -e /tmp/left-behind" },
                        { "run": "cat /proc/sys/kernel/panic_on_oops", "output": [{ "regex": "^0$" }] },
                        { "insmod": "hello", "kernel_log": [{ "contains": "Hello, Kernel World!" }] }
                    ]
                }
            ]
        }),
    );
    let (out, report) = test_with_report(&["-j", "1", dir.path().to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.all());
    for name in ["iso/dirty", "iso/clean"] {
        let t = result_where(&report, "name", name);
        assert_eq!(t["status"], "pass", "{name}: {}", out.all());
        assert_eq!(t["guest"], "restored", "{name}: {}", out.all());
    }
}

#[test]
fn a_module_bigger_than_one_exchange_arrives_whole() {
    // 96 KiB of bytes that do not compress: several console exchanges.
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut bytes = Vec::new();
    let mut sum: u64 = 0;
    for _ in 0..96 * 1024 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let b = (state >> 24) as u8;
        sum = (sum * 31 + u64::from(b)) % 1_000_000_007;
        bytes.push(b);
    }
    let array: Vec<String> = bytes.iter().map(|b| b.to_string()).collect();
    std::fs::write(
        dir.path().join("big.c"),
        format!(
            r#"#include <linux/module.h>
#include <linux/init.h>
MODULE_LICENSE("GPL");
static const unsigned char blob[] = {{ {} }};
static int __init big_init(void)
{{
	unsigned long long sum = 0;
	size_t i;
	for (i = 0; i < sizeof(blob); i++)
		sum = (sum * 31 + blob[i]) % 1000000007ULL;
	pr_info("big: sum %llu\n", sum);
	return 0;
}}
static void __exit big_exit(void) {{ }}
module_init(big_init);
module_exit(big_exit);
"#,
            array.join(",")
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("Kbuild"), "obj-m := big.o\n").unwrap();
    write_spec(
        dir.path(),
        serde_json::json!({
            "suite": "big",
            "tests": [{
                "name": "checksum",
                "steps": [
                    { "insmod": "big", "kernel_log": [{ "contains": format!("big: sum {sum}") }] },
                    { "rmmod": "big" }
                ]
            }]
        }),
    );
    let (out, report) = test_with_report(&[dir.path().to_str().unwrap()]);
    assert_passed_restored(&out, &report);
}

#[test]
fn a_damaged_or_missing_snapshot_is_saved_again() {
    let cache = private_cache();
    let (out, report) = run_hello(cache.path(), &[]);
    assert_passed_restored(&out, &report);
    assert!(out.stderr.contains("once to save it"), "{}", out.all());
    let snapshot = snapshot_dirs(cache.path()).pop().expect("a snapshot");
    let state = snapshot.join("state");

    // Bytes changed at the same size: found by the hash check.
    let mut bytes = std::fs::read(&state).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 4096] {
        *b ^= 0x5a;
    }
    std::fs::write(&state, &bytes).unwrap();
    let (out, report) = run_hello(cache.path(), &[]);
    assert_passed_restored(&out, &report);
    assert!(
        out.stderr.contains("damaged; saving it again"),
        "{}",
        out.all()
    );

    // Garbage that passes the record (its hash rewritten): QEMU refuses it.
    std::fs::write(&state, vec![0xa5u8; 1 << 20]).unwrap();
    let meta_path = snapshot.join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["state_bytes"] = (1u64 << 20).into();
    meta["state_hash"] = modvm::kernel::manifest::hash_file(&state).unwrap().into();
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let (out, report) = run_hello(cache.path(), &[]);
    assert_passed_restored(&out, &report);
    assert!(
        out.stderr.contains("failed") && out.stderr.contains("saving it again"),
        "{}",
        out.all()
    );

    // Deleted.
    std::fs::remove_file(&state).unwrap();
    let (out, report) = run_hello(cache.path(), &[]);
    assert_passed_restored(&out, &report);
    assert!(out.stderr.contains("once to save it"), "{}", out.all());
    assert_eq!(snapshot_dirs(cache.path()), vec![snapshot]);
}

#[test]
fn guests_boot_cold_on_request_and_when_no_snapshot_can_be_made() {
    let cache = private_cache();
    let (out, report) = run_hello(cache.path(), &["--cold"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(tests_of(&report)[0]["guest"], "booted", "{}", out.all());
    assert!(
        snapshot_dirs(cache.path()).is_empty(),
        "--cold saves nothing"
    );

    // Nowhere to save: one line says why, and the run still passes.
    std::fs::write(cache.path().join("snapshots"), b"not a directory").unwrap();
    let (out, report) = run_hello(cache.path(), &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(tests_of(&report)[0]["guest"], "booted", "{}", out.all());
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("booting every guest cold"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", out.all());
    assert!(
        lines[0].contains("snapshots"),
        "names the place: {}",
        lines[0]
    );
}

#[test]
fn two_runs_that_need_the_same_new_snapshot_save_it_once() {
    let cache = private_cache();
    let module = repo().join("module");
    let args = |report: &Path| -> Vec<String> {
        vec![
            "test".into(),
            "--accel".into(),
            "tcg".into(),
            "--cache".into(),
            cache.path().display().to_string(),
            "--json".into(),
            report.display().to_string(),
            module.display().to_string(),
        ]
    };
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.json"), tmp.path().join("b.json"));
    let (args_a, args_b) = (args(&a), args(&b));
    let first = std::thread::spawn(move || {
        let refs: Vec<&str> = args_a.iter().map(String::as_str).collect();
        modvm(&refs, &[])
    });
    let refs: Vec<&str> = args_b.iter().map(String::as_str).collect();
    let second = modvm(&refs, &[]);
    let first = first.join().unwrap();
    for (out, report) in [(first, a), (second, b)] {
        assert_eq!(out.code, 0, "{}", out.all());
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
        assert_passed_restored(&out, &report);
    }
    assert_eq!(snapshot_dirs(cache.path()).len(), 1);
}
