//! Feeds modvm's KTAP output to the kernel's own KUnit parser through
//! `scripts/check-ktap.sh`. The test never downloads: the parser is fetched
//! into the cache by `scripts/setup-host.sh`, and the test runs the script
//! with `MODVM_KTAP_OFFLINE=1`.
//!
//! The unit tests pin the exact text; this test asks an independent reader
//! whether that text means what we think. Where the parser is not cached the
//! test says why and passes on a developer's machine, but fails under CI
//! (`CI` set), where setup must have fetched it.

use modvm::outcome::{Event, Reporter, Summary};
use modvm::report::ktap::Ktap;
use modvm::report::sample;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The script's "no parser here" status.
const UNAVAILABLE: i32 = 77;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("check-ktap.sh")
}

fn write_ktap(path: &Path, replay: impl FnOnce(&mut dyn Reporter)) {
    let file = std::fs::File::create(path).expect("create KTAP file");
    let mut k = Ktap::new(Box::new(file));
    replay(&mut k);
    assert!(k.error().is_none(), "{:?}", k.error());
}

struct Parsed {
    status: i32,
    output: String,
    json: Option<Value>,
}

/// Runs the parser, or returns `None` after printing why it cannot.
fn parse(dir: &Path, ktap: &Path) -> Parsed {
    let json = dir.join("parsed.json");
    let out = match Command::new("bash")
        .env("MODVM_KTAP_OFFLINE", "1")
        .arg(script())
        .arg("--json")
        .arg(&json)
        .arg(ktap)
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!("cannot run bash: {e}"),
    };
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let status = out.status.code().unwrap_or(-1);
    assert_ne!(
        status, UNAVAILABLE,
        "the KUnit parser is not cached; scripts/setup-host.sh fetches it:\n{output}"
    );
    let json = std::fs::read(&json)
        .ok()
        .map(|b| serde_json::from_slice(&b).expect("the parser wrote JSON"));
    Parsed {
        status,
        output,
        json,
    }
}

/// `(name, status)` of each test case, leaves only, depth first.
fn cases(group: &Value) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for c in group["test_cases"].as_array().into_iter().flatten() {
        v.push((
            c["name"].as_str().unwrap_or_default().to_string(),
            c["status"].as_str().unwrap_or_default().to_string(),
        ));
    }
    v
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn kunit_parser_reads_the_sample_run() {
    let dir = tempfile::tempdir().unwrap();
    let ktap = dir.path().join("run.ktap");
    write_ktap(&ktap, |r| sample::replay(r));
    let p = parse(dir.path(), &ktap);
    // 1: parsed cleanly and found failing tests, as the sample has.
    assert_eq!(p.status, 1, "{}", p.output);
    assert!(!p.output.contains("[ERROR]"), "{}", p.output);
    let json = p.json.expect("parsed JSON");

    let groups: Vec<&str> = json["sub_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["hello/load", "hello/unload", "oops/init"]);
    let g = &json["sub_groups"];
    assert_eq!(
        cases(&g[0]),
        pairs(&[("insmod hello", "PASS"), ("rmmod hello", "PASS")])
    );
    assert_eq!(
        cases(&g[1]),
        pairs(&[
            ("insmod hello", "PASS"),
            ("rmmod hello", "FAIL"),
            ("run `lsmod`", "SKIP"),
        ])
    );
    assert_eq!(
        cases(&g[2]),
        pairs(&[("insmod oops", "FAIL"), ("rmmod oops", "SKIP")])
    );
    // A test that never booted has no steps and is a leaf of the run.
    assert_eq!(cases(&json), pairs(&[("slow/boot", "FAIL")]));
}

#[test]
fn kunit_parser_accepts_a_passing_run() {
    let dir = tempfile::tempdir().unwrap();
    let ktap = dir.path().join("pass.ktap");
    let pass = sample::results().remove(0);
    let artifacts = PathBuf::from(sample::ARTIFACTS);
    write_ktap(&ktap, |r| {
        r.event(&Event::RunStarted {
            tests: 1,
            kernels: 1,
            kernel: sample::KERNEL,
            accel: sample::ACCEL,
            artifacts: &artifacts,
        });
        r.event(&Event::TestFinished {
            id: 0,
            result: &pass,
        });
        let mut s = Summary::default();
        s.add(pass.status);
        r.event(&Event::RunFinished(&s));
    });
    let p = parse(dir.path(), &ktap);
    assert_eq!(p.status, 0, "{}", p.output);
    assert!(!p.output.contains("[ERROR]"), "{}", p.output);
}

/// Results inside a test (KUnit suites with their cases and parameters)
/// read as subtests nested under the test, the way the kernel's own KUnit
/// output nests them.
#[test]
fn kunit_parser_reads_results_nested_inside_tests() {
    let dir = tempfile::tempdir().unwrap();
    let ktap = dir.path().join("cases.ktap");
    write_ktap(&ktap, |r| {
        sample::replay_results(r, &sample::results_with_cases())
    });
    let p = parse(dir.path(), &ktap);
    assert_eq!(p.status, 1, "{}", p.output);
    assert!(!p.output.contains("[ERROR]"), "{}", p.output);
    let json = p.json.expect("parsed JSON");
    let demo = &json["sub_groups"][0];
    assert_eq!(demo["name"], "demo/suites");
    assert_eq!(
        cases(demo),
        pairs(&[("insmod demo", "FAIL"), ("rmmod demo", "SKIP")])
    );
    let suites: Vec<&str> = demo["sub_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(suites, ["demo_math", "demo_str"]);
    assert_eq!(
        cases(&demo["sub_groups"][0]),
        pairs(&[
            ("add_small", "PASS"),
            ("add_wrong", "FAIL"),
            ("needs_hardware", "SKIP"),
        ])
    );
    let strings = &demo["sub_groups"][1];
    assert_eq!(cases(strings), pairs(&[("str_len", "PASS")]));
    assert_eq!(
        cases(&strings["sub_groups"][0]),
        pairs(&[("len-0", "PASS"), ("len-5", "PASS")])
    );
    let crashy = &json["sub_groups"][1]["sub_groups"][0];
    assert_eq!(
        cases(crashy),
        pairs(&[("survives", "PASS"), ("case 2", "FAIL")])
    );
}

/// Shows that the check can fail: numbering out of order is reported.
#[test]
fn kunit_parser_rejects_broken_numbering() {
    let dir = tempfile::tempdir().unwrap();
    let ktap = dir.path().join("bad.ktap");
    std::fs::write(&ktap, "KTAP version 1\n1..2\nok 2 a\nok 1 b\n").unwrap();
    let p = parse(dir.path(), &ktap);
    assert_eq!(p.status, 3, "{}", p.output);
}
