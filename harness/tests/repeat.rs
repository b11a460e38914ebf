//! `--repeat N`: each test N times on fresh guests, one result with
//! counts and each run inside it; runs spread over free guest slots.

mod common;

use common::*;

#[test]
fn runs_are_counted_and_each_is_a_result_inside_the_test() {
    let (out, doc) = test_with_report(&[
        "--repeat",
        "3",
        "-j",
        "2",
        "module",
        &module_fixture("null_init"),
    ]);
    assert_eq!(out.code, 1, "{}", out.all());
    let hello = result_of_suite(&doc, "hello");
    assert_eq!(hello["status"], "pass", "{hello}");
    assert_eq!(hello["message"], "passed all 3 runs");
    let runs = hello["cases"].as_array().unwrap();
    let names: Vec<&str> = runs.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["run 1", "run 2", "run 3"]);
    assert!(runs.iter().all(|c| c["status"] == "pass"), "{runs:?}");
    assert!(
        runs.iter().all(|c| c["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("restored in "))),
        "{runs:?}"
    );

    let null = result_of_suite(&doc, "null_init");
    assert_eq!(null["status"], "crash", "{null}");
    let message = null["message"].as_str().unwrap();
    assert!(
        message.starts_with("3 of 3 runs did not pass; first, run 1: ")
            && message.contains("NULL pointer dereference in null_init_init"),
        "{message}"
    );
    let runs = null["cases"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert!(
        runs.iter().all(|c| c["location"]
            .as_str()
            .is_some_and(|l| l.starts_with("null_init.c:"))),
        "{runs:?}"
    );
    assert_no_qemu_left_by_us();
}

#[test]
fn repeat_and_faults_do_not_mix() {
    let out = modvm(&["test", "--repeat", "2", "--faults", "module"], &[]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("--faults"), "{}", out.all());
}
