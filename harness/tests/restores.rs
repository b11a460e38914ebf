//! Restores in a row on Debian's 6.12 kernel, the one whose TCG guests
//! used to fail now and then: every run of hello must come from the saved
//! guest and pass, with no restore that failed and fell back to a boot.
//! Long (about a minute), so kept out of the default `cargo test`; run it
//! with `cargo test --test restores -- --ignored`, as
//! `scripts/bench-restores.sh` does.

mod common;

use common::*;

#[test]
#[ignore = "long: 50 guests; run by scripts/bench-restores.sh"]
fn fifty_restores_of_6_12_in_a_row() {
    let (out, doc) = test_with_report(&[
        "--kernel",
        "debian-6.12-cloud",
        "--repeat",
        "50",
        "-j",
        "2",
        "module",
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    let t = result_of_suite(&doc, "hello");
    assert_eq!(t["message"], "passed all 50 runs", "{t}");
    let runs = t["cases"].as_array().unwrap();
    assert_eq!(runs.len(), 50);
    assert!(
        runs.iter().all(|c| c["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("restored in "))),
        "{runs:?}"
    );
    assert!(
        !out.stderr.contains("restoring the saved") && !out.stderr.contains("cannot restore"),
        "{}",
        out.all()
    );
    assert_no_qemu_left_by_us();
}
