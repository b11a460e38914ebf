//! Tests that reach beyond busybox: files a spec ships and C helpers it
//! builds arrive in the guest, restored or booted, where the spec promised
//! and with their content; bad paths and helpers that do not compile stop
//! the run with the place to fix.

mod common;

use common::{module_copy, module_fixture, modvm, test_with_report};
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn write_spec(dir: &Path, spec: serde_json::Value) {
    std::fs::write(
        dir.join("modvm.json"),
        serde_json::to_vec_pretty(&spec).unwrap(),
    )
    .unwrap();
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn assert_all_pass(out: &common::Output, report: &serde_json::Value, guest: &str) {
    assert_eq!(out.code, 0, "{}", out.all());
    let tests = report["tests"].as_array().unwrap();
    assert!(!tests.is_empty(), "{}", out.all());
    for t in tests {
        assert_eq!(t["status"], "pass", "{t:#}\n{}", out.all());
        assert_eq!(t["guest"], guest, "{t:#}\n{}", out.all());
    }
}

#[test]
fn the_misc_device_helper_drives_its_ioctls_restored_and_booted() {
    let dir = module_fixture("miscdev");
    // A static helper is a few hundred KiB of gzip: more than is worth
    // sending to a restored guest, so its test boots, and says why once.
    let (out, report) = test_with_report(&["-j", "1", &dir]);
    assert_all_pass(&out, &report, "booted");
    assert!(out.stderr.contains("faster than sending"), "{}", out.all());
    let (out, report) = test_with_report(&["-j", "1", "--cold", &dir]);
    assert_all_pass(&out, &report, "booted");
}

/// A module directory with a script, a text file and a firmware blob large
/// enough to need several console exchanges after a restore.
fn module_with_files() -> (tempfile::TempDir, Vec<(String, String)>) {
    let dir = module_copy();
    let root = dir.path();
    std::fs::create_dir_all(root.join("scripts")).unwrap();
    std::fs::create_dir_all(root.join("fw")).unwrap();
    let script = b"#!/bin/sh\necho \"check ran in $(pwd)\"\n";
    std::fs::write(root.join("scripts/check.sh"), script).unwrap();
    std::fs::set_permissions(
        root.join("scripts/check.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let notes = b"plain text, not executable\n";
    std::fs::write(root.join("notes.txt"), notes).unwrap();
    // Incompressible, so it travels in several pieces.
    let mut rng = modvm::rng::Rng(0x9e37_79b9_7f4a_7c15);
    // 100 KiB: several exchanges, and still below the size past which
    // booting with the files is faster than sending them.
    let blob: Vec<u8> = (0..100 * 1024)
        .map(|_| (rng.next_u64() >> 32) as u8)
        .collect();
    std::fs::write(root.join("fw/blob.bin"), &blob).unwrap();
    let hashes = vec![
        ("/modules/check.sh".to_string(), sha256(script)),
        ("/modules/notes.txt".to_string(), sha256(notes)),
        ("/lib/firmware/modvm/blob.bin".to_string(), sha256(&blob)),
    ];
    let expected: Vec<serde_json::Value> = hashes
        .iter()
        .map(|(path, sha)| serde_json::json!({ "regex": format!("^{sha}  {path}$") }))
        .collect();
    write_spec(
        root,
        serde_json::json!({
            "suite": "shipped",
            "files": ["scripts/check.sh", "notes.txt"],
            "tests": [
                {
                    "name": "with-firmware",
                    "files": [{ "src": "fw/blob.bin", "dest": "/lib/firmware/modvm/blob.bin" }],
                    "modules": ["hello"],
                    "steps": [
                        { "run": "./check.sh", "output": ["check ran in /modules"] },
                        {
                            "run": "sha256sum /modules/check.sh /modules/notes.txt /lib/firmware/modvm/blob.bin",
                            "output": expected
                        },
                        {
                            "run": "test -x check.sh && test ! -x notes.txt && test ! -x /lib/firmware/modvm/blob.bin && echo modes-ok",
                            "output": ["modes-ok"]
                        }
                    ]
                },
                {
                    "name": "without-firmware",
                    "steps": [
                        {
                            "run": "test -x check.sh && test ! -e /lib/firmware/modvm/blob.bin && echo only-common-files",
                            "output": ["only-common-files"]
                        }
                    ]
                }
            ]
        }),
    );
    (dir, hashes)
}

#[test]
fn shipped_files_arrive_where_promised_with_their_content_restored_and_booted() {
    let (dir, _) = module_with_files();
    let path = dir.path().to_str().unwrap();
    let (out, report) = test_with_report(&["-j", "1", path]);
    assert_all_pass(&out, &report, "restored");
    assert_eq!(report["tests"].as_array().unwrap().len(), 2);
    let (out, report) = test_with_report(&["-j", "1", "--cold", path]);
    assert_all_pass(&out, &report, "booted");
}

#[test]
fn a_changed_file_fails_the_hash_check_of_the_spec() {
    // The content check of the test above can fail: the spec still expects
    // the old hash after the blob changed.
    let (dir, _) = module_with_files();
    std::fs::write(dir.path().join("fw/blob.bin"), b"other firmware").unwrap();
    let path = dir.path().to_str().unwrap();
    let (out, report) = test_with_report(&["-j", "1", "--filter", "with-firmware", path]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(report["tests"][0]["status"], "fail", "{}", out.all());
}

fn spec_error(spec: serde_json::Value, prepare: impl FnOnce(&Path)) -> common::Output {
    let dir = module_copy();
    prepare(dir.path());
    write_spec(dir.path(), spec);
    let out = modvm(
        &["test", "--accel", "tcg", dir.path().to_str().unwrap()],
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.all());
    out
}

#[test]
fn a_missing_file_is_a_spec_error_with_its_place_and_the_fix() {
    let out = spec_error(
        serde_json::json!({
            "tests": [{ "name": "a", "files": ["scripts/nowhere.sh"], "steps": [{ "run": "true" }] }]
        }),
        |_| {},
    );
    assert!(
        out.stderr.contains("modvm.json:")
            && out.stderr.contains("\"scripts/nowhere.sh\"")
            && out.stderr.contains("does not exist")
            && out.stderr.contains("relative to the spec's directory"),
        "{}",
        out.all()
    );
    let line_col = regex::Regex::new(r"modvm\.json:\d+:\d+: ").unwrap();
    assert!(line_col.is_match(&out.stderr), "{}", out.all());
}

#[test]
fn paths_that_escape_or_a_relative_dest_are_refused() {
    let out = spec_error(
        serde_json::json!({
            "files": ["../hello.c"],
            "tests": [{ "name": "a", "steps": [{ "run": "true" }] }]
        }),
        |_| {},
    );
    assert!(
        out.stderr
            .contains("leaves the spec's directory through `..`"),
        "{}",
        out.all()
    );
    let out = spec_error(
        serde_json::json!({
            "files": [{ "src": "hello.c", "dest": "lib/hello.c" }],
            "tests": [{ "name": "a", "steps": [{ "run": "true" }] }]
        }),
        |_| {},
    );
    assert!(
        out.stderr.contains("must be an absolute path in the guest"),
        "{}",
        out.all()
    );
}

#[test]
fn a_helper_that_does_not_compile_names_the_authors_file_and_line() {
    // The author's code, as a module that does not compile is: a failed
    // result of the run (exit 1), not a set-up problem.
    let dir = module_copy();
    std::fs::write(
        dir.path().join("broken.c"),
        "int main(void)\n{\n\treturn undeclared_thing;\n}\n",
    )
    .unwrap();
    write_spec(
        dir.path(),
        serde_json::json!({
            "helpers": [{ "name": "broken", "sources": ["broken.c"] }],
            "tests": [{ "name": "a", "steps": [{ "run": "./broken" }] }]
        }),
    );
    let out = modvm(
        &["test", "--accel", "tcg", dir.path().to_str().unwrap()],
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.all());
    let all = out.all();
    assert!(all.contains("cannot build helper `broken`"), "{all}");
    // The module directory is a temporary one; gcc names the real file.
    let real = regex::Regex::new(r"/[^\s:]*/broken\.c:3:\d+: error: .undeclared_thing.").unwrap();
    assert!(real.is_match(&all), "{all}");
    assert!(!all.contains("modvm-helpers"), "{all}");
}
