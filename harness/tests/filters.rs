//! `--filter`: repeated, a test is selected when its `suite/name` contains
//! any of the texts; `test` and `list` both refuse a filter that selects
//! nothing (exit 2, one message).

mod common;

use common::*;

fn features() -> String {
    repo()
        .join("harness/tests/fixtures/features")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_repeated_filter_selects_the_tests_matching_any_of_them() {
    let dir = features();
    let list = modvm(
        &[
            "list",
            &dir,
            "--filter",
            "dependent-pair",
            "--filter",
            "errno",
        ],
        &[],
    );
    assert_eq!(list.code, 0, "{}", list.all());
    let listed: Vec<&str> = list
        .stdout
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        listed,
        [
            "features/dependent-pair-in-order",
            "features/init-fails-with-errno"
        ],
        "{}",
        list.all()
    );

    let (out, report) = test_with_report(&[
        "-j",
        "1",
        "--filter",
        "dependent-pair",
        "--filter",
        "errno",
        &dir,
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    let mut ran: Vec<&str> = report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    ran.sort();
    assert_eq!(ran, listed, "{report:#}");
}

#[test]
fn a_filter_that_matches_nothing_is_the_same_error_for_test_and_list() {
    let dir = features();
    let args = ["--filter", "no-such-test", "--filter", "nor-this", &dir];
    let list = modvm(&[&["list"][..], &args].concat(), &[]);
    let test = modvm(&[&["test", "--accel", "tcg"][..], &args].concat(), &[]);
    for out in [&list, &test] {
        assert_eq!(out.code, 2, "{}", out.all());
        assert!(
            out.stderr.contains(
                "no test matches --filter \"no-such-test\" or \"nor-this\" (`modvm list` without --filter shows every test)"
            ),
            "{}",
            out.all()
        );
    }
    assert_eq!(list.stderr, test.stderr);
    assert!(list.stdout.is_empty(), "{}", list.all());
}
