//! Fault injection on real guests of the `debug` kernel: each allocation
//! of a module's init failed in turn, each in a fresh guest. A double free
//! on one error path is found at exactly its point, titled and located; a
//! leak on another is found once the module that failed to load is gone;
//! the fixed module passes every point; a kernel without fault injection
//! skips the test and says which kernel can run it.

mod common;

use common::*;
use serde_json::Value;

fn cases(t: &Value) -> Vec<Value> {
    t["cases"].as_array().cloned().unwrap_or_default()
}

#[test]
fn every_allocation_of_init_fails_in_turn() {
    let (out, doc) = test_with_report(&[
        "--kernel",
        "debug",
        "--faults",
        "-j",
        "2",
        &module_fixture("fault_bug"),
        &module_fixture("fault_ok"),
        &module_fixture("fault_leak"),
    ]);
    assert_eq!(out.code, 1, "{}", out.all());

    // The buggy error path: the second kmalloc failing frees `table` twice.
    let bug = result_of_suite(&doc, "fault_bug");
    assert_eq!(bug["status"], "crash", "{bug}");
    assert_eq!(
        bug["crash"]["title"], "KASAN: double-free in fault_bug_init",
        "{bug}"
    );
    let message = bug["message"].as_str().unwrap();
    assert!(
        message.contains("(the allocation at fault_bug.c:18 failed)"),
        "{message}"
    );
    let frames = bug["crash"]["frames"].as_array().unwrap();
    assert!(
        frames
            .iter()
            .any(|f| f["file"] == "fault_bug.c" && f["line"] == 30),
        "{frames:?}"
    );
    // Exactly one point fails, the second allocation, and the message
    // names it. (Points alternate: each allocation of the module, then
    // kmemleak's record of it, whose failure kmemleak absorbs.)
    let points = cases(bug);
    assert_eq!(points.len(), 6, "{points:?}");
    let failed: Vec<&Value> = points.iter().filter(|c| c["status"] != "pass").collect();
    assert_eq!(failed.len(), 1, "{points:?}");
    assert_eq!(failed[0]["name"], "fault 3");
    assert_eq!(failed[0]["location"], "fault_bug.c:18");
    assert!(message.starts_with(&format!("{} of", failed[0]["name"].as_str().unwrap())));

    // The fixed module: every point ends cleanly, some with ENOMEM.
    let ok = result_of_suite(&doc, "fault_ok");
    assert_eq!(ok["status"], "pass", "{ok}");
    let points = cases(ok);
    assert!(points.len() >= 3, "{points:?}");
    assert!(points.iter().all(|c| c["status"] == "pass"), "{points:?}");
    assert!(
        points
            .iter()
            .filter(|c| c["message"]
                .as_str()
                .is_some_and(|m| m.contains("failed cleanly with ENOMEM")))
            .count()
            >= 3,
        "{points:?}"
    );

    // The spec's own `faults`: a leak on the error path, after the failed
    // module is gone, named from where it lay.
    let leak = result_of_suite(&doc, "fault_leak");
    assert_eq!(leak["status"], "crash", "{leak}");
    assert_eq!(
        leak["crash"]["title"], "memory leak in fault_leak_init",
        "{leak}"
    );
    let frames = leak["crash"]["frames"].as_array().unwrap();
    assert!(
        frames
            .iter()
            .any(|f| f["file"] == "fault_leak.c" && f["line"] == 21),
        "{frames:?}"
    );
    assert!(
        leak["message"]
            .as_str()
            .unwrap()
            .contains("(the allocation at fault_leak.c:24 failed)"),
        "{leak}"
    );
    assert_no_qemu_left_by_us();
}

#[test]
fn a_kernel_without_fault_injection_skips_and_names_one_with_it() {
    let (out, doc) = test_with_report(&["--faults", &module_fixture("fault_ok")]);
    assert_eq!(out.code, 0, "{}", out.all());
    let t = result_of_suite(&doc, "fault_ok");
    assert_eq!(t["status"], "skip", "{t}");
    let why = t["message"].as_str().unwrap();
    assert!(
        why.contains("CONFIG_FAULT_INJECTION") && why.contains("--kernel debug"),
        "{why}"
    );
}
