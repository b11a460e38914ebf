//! The spec language end to end: a spec using every feature runs green
//! against a module written for it; each kind of bad spec is a usage error
//! with file:line:column; a directory without a spec gets a smoke test.

mod common;

use common::*;

fn fixture(name: &str) -> String {
    repo()
        .join("harness/tests/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn every_feature_runs_green() {
    let out = modvm(&["test", "--accel", "tcg", &fixture("features")], &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    for name in [
        "features/params-proc-sysfs",
        "features/dependent-pair-in-order",
        "features/init-fails-with-errno",
        "features/load-unload-loop",
    ] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with("PASS") && l.contains(name)),
            "{name} passes: {}",
            out.all()
        );
    }
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("SKIP") && l.contains("only-on-another-kernel")),
        "{}",
        out.all()
    );
    assert!(
        out.stdout.contains("4 passed, 0 failed, 1 skipped"),
        "{}",
        out.all()
    );
}

/// Writes `spec` into a copy of the hello module and runs `modvm test` on it.
fn bad_spec(spec: &str) -> (Output, String) {
    let dir = module_copy();
    let path = dir.path().join("modvm.json");
    std::fs::write(&path, spec).unwrap();
    let out = modvm(
        &["test", "--accel", "tcg", dir.path().to_str().unwrap()],
        &[],
    );
    (out, path.display().to_string())
}

fn assert_usage_error(spec: &str, line: usize, col: usize, words: &[&str]) {
    let (out, path) = bad_spec(spec);
    assert_eq!(out.code, 2, "{}", out.all());
    let place = format!("{path}:{line}:{col}:");
    assert!(out.stderr.contains(&place), "wanted {place}: {}", out.all());
    for w in words {
        assert!(out.stderr.contains(w), "wanted {w:?}: {}", out.all());
    }
    assert!(!out.stderr.contains("panicked"), "{}", out.all());
}

#[test]
fn syntax_error() {
    assert_usage_error("{\n  \"tests\": [\n    {\"name\": \"a\"\n", 4, 0, &["EOF"]);
}

#[test]
fn unknown_field_with_suggestion() {
    let spec = "{\"tests\": [{\"name\": \"a\", \"steps\": [\n  {\"insmod\": \"hello\", \"kernel_lgo\": []}\n]}]}";
    assert_usage_error(
        spec,
        2,
        34,
        &["unknown field `kernel_lgo`", "did you mean `kernel_log`?"],
    );
}

#[test]
fn wrong_type() {
    let spec = "{\"tests\": [{\"name\": \"a\", \"steps\": [\n  {\"insmod\": \"hello\", \"exit\": \"zero\"}\n]}]}";
    assert_usage_error(
        spec,
        2,
        36,
        &["invalid type: string \"zero\", expected i32"],
    );
}

#[test]
fn bad_regex() {
    let spec = "{\"tests\": [{\"name\": \"a\", \"steps\": [\n  {\"rmmod\": \"hello\",\n   \"kernel_log\": [{\"regex\": \"Goodbye (\"}]}\n]}]}";
    assert_usage_error(spec, 3, 40, &["invalid regex", "Goodbye ("]);
}

#[test]
fn missing_module() {
    let spec = "{\"tests\": [{\"name\": \"a\", \"steps\": [\n  {\"insmod\": \"helo\"}\n]}]}";
    assert_usage_error(
        spec,
        2,
        14,
        &["loads module `helo`", "produced only: hello"],
    );
}

#[test]
fn directory_without_spec_gets_a_smoke_test() {
    let dir = module_copy();
    std::fs::remove_file(dir.path().join("modvm.json")).unwrap();
    let listed = modvm(&["list", dir.path().to_str().unwrap()], &[]);
    assert!(listed.stdout.contains("/smoke"), "{}", listed.all());
    let out = modvm(
        &["test", "--accel", "tcg", dir.path().to_str().unwrap()],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("PASS") && l.ends_with(")") && l.contains("/smoke")),
        "{}",
        out.all()
    );
}

#[test]
fn cpus_come_from_the_spec_else_from_smp() {
    let dir = module_copy();
    std::fs::write(
        dir.path().join("modvm.json"),
        r#"{"tests": [
            {"name": "run-default", "steps": [{"run": "nproc", "output": [{"regex": "^2$"}]}]},
            {"name": "spec-three", "smp": 3, "steps": [{"run": "nproc", "output": [{"regex": "^3$"}]}]}
        ]}"#,
    )
    .unwrap();
    let out = modvm(
        &[
            "test",
            "--accel",
            "tcg",
            "--smp",
            "2",
            dir.path().to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("2 passed, 0 failed"), "{}", out.all());
}
