//! `--partition K/N`: CI jobs that share a suite run every test exactly once.

mod common;

use common::{module_copy, modvm, test_with_report};

#[test]
fn two_shares_of_four_tests_each_pass_and_together_run_each_test_once() {
    let dir = module_copy();
    let tests: Vec<serde_json::Value> = (1..=4)
        .map(|i| {
            serde_json::json!({
                "name": format!("t{i}"),
                "steps": [
                    { "insmod": "hello", "kernel_log": [{ "contains": "Hello, Kernel World!" }] },
                    { "rmmod": "hello" }
                ]
            })
        })
        .collect();
    std::fs::write(
        dir.path().join("modvm.json"),
        serde_json::to_vec(&serde_json::json!({ "suite": "shard", "tests": tests })).unwrap(),
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();
    let mut ran = Vec::new();
    for share in ["1/2", "2/2"] {
        let (out, report) = test_with_report(&["--partition", share, path]);
        assert_eq!(out.code, 0, "{share}: {}", out.all());
        assert!(
            out.stderr
                .contains(&format!("partition {share}: 2 of the 4")),
            "{}",
            out.all()
        );
        let names: Vec<String> = report["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                assert_eq!(t["status"], "pass", "{t:#}");
                t["name"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(names.len(), 2, "{share}: {names:?}");
        ran.extend(names);
    }
    ran.sort();
    assert_eq!(ran, ["shard/t1", "shard/t2", "shard/t3", "shard/t4"]);

    // More jobs than tests: an empty share passes.
    let (out, report) = test_with_report(&["--partition", "5/5", path]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(report["tests"].as_array().unwrap().len(), 0);
}

#[test]
fn a_bad_partition_is_refused_with_the_form_to_use() {
    for bad in ["0/2", "3/2", "two/4"] {
        let out = modvm(&["test", "--partition", bad], &[]);
        assert_eq!(out.code, 2, "{bad}: {}", out.all());
        assert!(out.stderr.contains("K/N"), "{}", out.all());
    }
}
