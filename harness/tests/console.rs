//! The console on real guests, attacked the way a hostile test would:
//! endless and large output, non-ASCII and binary bytes, and output that
//! imitates the protocol's markers.

mod common;

use common::*;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `modvm test` on a copy of hello with `spec`, killing it (and failing)
/// if it has not ended within `limit`: these tests are about things that
/// used to hang.
fn run_spec(spec: &str, limit: Duration) -> (Output, serde_json::Value, u64) {
    let dir = module_copy();
    std::fs::write(dir.path().join("modvm.json"), spec).unwrap();
    let out_dir = out_dir();
    let report = out_dir.path().join("report.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_modvm"))
        .args(["test", "--accel", "tcg", "--out"])
        .arg(out_dir.path())
        .arg("--json")
        .arg(&report)
        .arg(dir.path())
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain both pipes as the run goes, so a full pipe cannot stall it.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "modvm still ran after {limit:?}\n{}",
                stdout.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = Output {
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    let size = std::fs::metadata(&report).map(|m| m.len()).unwrap_or(0);
    let json = read_json(&report, &output);
    (output, json, size)
}

fn read_json(path: &Path, out: &Output) -> serde_json::Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("no report: {e}\n{}", out.all()));
    serde_json::from_slice(&text).unwrap()
}

fn test_named<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no test {name} in {report}"))
}

#[test]
fn endless_and_large_output_meet_deadlines_and_stay_bounded() {
    let spec = r#"{"suite": "flood", "tests": [
        {"name": "endless", "steps": [{"run": "yes", "timeout_s": 3}]},
        {"name": "endless-default-deadline", "step_timeout_s": 4, "steps": [{"run": "yes"}]},
        {"name": "large", "steps": [{
            "run": "echo FIRST; yes | head -c 400000; echo; echo LAST",
            "timeout_s": 120, "output": ["FIRST", "LAST"]}]}
    ]}"#;
    let (out, report, size) = run_spec(spec, Duration::from_secs(240));
    assert_eq!(out.code, 1, "{}", out.all());

    for name in ["flood/endless", "flood/endless-default-deadline"] {
        let t = test_named(&report, name);
        assert_eq!(t["status"], "timeout", "{name}: {t}");
        let step = &t["steps"][0];
        let output = step["output"].as_str().unwrap();
        assert!(output.contains("bytes of output dropped here"), "{name}");
        assert!(
            output.len() < 140 * 1024,
            "{name}: {} bytes kept",
            output.len()
        );
    }

    let large = test_named(&report, "flood/large");
    assert_eq!(large["status"], "pass", "{large}");
    let output = large["steps"][0]["output"].as_str().unwrap();
    assert!(output.starts_with("FIRST\n"), "{}", &output[..40]);
    assert!(output.ends_with("LAST\n"));
    assert!(output.contains("bytes of output dropped here"));
    assert!(size < 1024 * 1024, "the JSON report has {size} bytes");
}

#[test]
fn output_is_utf8_and_cannot_forge_the_protocol() {
    // Each step tries another way to end itself early with status 0.
    let spec = r#"{"suite": "forge", "tests": [
        {"name": "utf8", "steps": [
            {"run": "echo 'héllo ☃'", "output": ["héllo ☃"], "not_output": ["Ã"]},
            {"run": "printf 'bad \\377\\376 bytes\\n'", "output": ["bad \ufffd\ufffd bytes"]}
        ]},
        {"name": "markers", "steps": [
            {"run": "printf '\\036end 1 0 0\\036\\n'; exit 3", "exit": 3},
            {"run": "printf '\\036end %s 0 0\\036\\n' \"$1\" \"$tag\" \"$2\" \"$3\"; exit 4", "exit": 4},
            {"run": "t=$(dmesg | sed -n 's/.*modvm-mark \\([^ ]*\\) begin.*/\\1/p' | tail -1); printf '\\036end %s 0 0\\036\\n' \"$t\" \"$t-0\"; exit 5", "exit": 5},
            {"run": "set | grep -c '[0-9]-[0-9a-f]\\{16\\}'", "exit": 1, "output": ["0"]}
        ]},
        {"name": "binary", "steps": [
            {"run": "head -c 50000 /dev/urandom; echo; echo DONE", "output": ["DONE"], "timeout_s": 60}
        ]}
    ]}"#;
    let (out, report, _) = run_spec(spec, Duration::from_secs(180));
    assert_eq!(out.code, 0, "{}", out.all());
    for name in ["forge/utf8", "forge/markers", "forge/binary"] {
        assert_eq!(test_named(&report, name)["status"], "pass", "{name}");
    }
    let utf8 = test_named(&report, "forge/utf8");
    assert_eq!(utf8["steps"][0]["output"], "héllo ☃\n");
}
