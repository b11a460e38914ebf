//! The spec parser meets random and adversarial bytes: it must answer every
//! input with a spec or an error, never a panic and never a hang. A seeded
//! generator keeps failures reproducible; the seed and input of a failing
//! case are in the panic message.

use modvm::rng::Rng;
use modvm::spec::{self, SpecError};
use std::path::Path;

/// Valid specs to mutate, so mutations reach deep into the format.
const SEEDS: &[&str] = &[
    include_str!("../../module/modvm.json"),
    include_str!("fixtures/features/modvm.json"),
];

/// Fragments that have broken parsers before: odd numbers, escapes, BOMs,
/// control characters, nesting, huge or pathological regexes, names that
/// look like paths.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "null",
    "true",
    "-0",
    "1e999",
    "-1",
    "300",
    "4294967296",
    "18446744073709551616",
    "0.0",
    "NaN",
    "\\u0000",
    "\\ud800",
    "\\n",
    "\u{feff}",
    "\u{0}",
    "\u{1b}[31m",
    "..",
    "a/b",
    "/",
    "\"regex\": \"(a{1000}){1000}\"",
    "\"regex\": \"(\"",
    "\"regex\": \"\\\\p{Foo}\"",
    "\"exit\": 256",
    "\"errno\": \"EWHAT\"",
    "\"errno\": 4096",
    "\"timeout_s\": 0",
    "\"step_timeout_s\": 1e308",
    "\"repeat\": 0",
    "\"modules\": [\"x\"]",
    "\"params\": {\"a\": [1]}",
    "\"insmod\": \"../x\"",
    "\"suite\": \"\"",
    "\"kernel_log\": [{\"contains\": \"x\", \"regex\": \"y\"}]",
];

fn mutate(rng: &mut Rng, base: &str) -> String {
    let mut bytes = base.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(5) {
            0 if at < bytes.len() => {
                bytes[at] ^= 1 << rng.below(8);
            }
            1 => {
                let end = (at + rng.below(16)).min(bytes.len());
                bytes.drain(at..end);
            }
            2 => {
                let t = rng.pick(TOKENS);
                bytes.splice(at..at, t.bytes());
            }
            3 => {
                let n = rng.below(8);
                for _ in 0..n {
                    bytes.insert(at.min(bytes.len()), rng.next_u64() as u8);
                }
            }
            _ => {
                let end = (at + rng.below(64)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                let to = rng.below(bytes.len() + 1);
                bytes.splice(to..to, copy);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn random_bytes(rng: &mut Rng) -> String {
    let n = rng.below(256);
    let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn random_tokens(rng: &mut Rng) -> String {
    (0..rng.below(40)).map(|_| rng.pick(TOKENS)).collect()
}

/// Parses `text` and, as the plan does for errors found after parsing,
/// places a value in it; either may fail, neither may panic.
fn exercise(text: &str, rng: &mut Rng) {
    let origin = Path::new("fuzz/modvm.json");
    if let Ok(spec) = spec::parse(text, origin) {
        for t in &spec.tests {
            for s in &t.steps {
                let _ = s.action.command();
                let _ = serde_json::to_string(s);
            }
        }
    }
    let value = rng.pick(&["hello", "", "\"", "x.ko", "\u{feff}"]);
    let _ = SpecError::at_value(origin, text, value, rng.below(3), String::new());
}

#[test]
fn random_and_mutated_specs_never_panic() {
    for seed in 1..=4u64 {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
        for i in 0..3000 {
            let text = match i % 4 {
                0 => random_bytes(&mut rng),
                1 => random_tokens(&mut rng),
                _ => {
                    let base = SEEDS[rng.below(SEEDS.len())];
                    mutate(&mut rng, base)
                }
            };
            let result = std::panic::catch_unwind(|| exercise(&text, &mut Rng(seed ^ i)));
            assert!(
                result.is_ok(),
                "seed {seed}, case {i}: the parser panicked on {text:?}"
            );
        }
    }
}

#[test]
fn deep_nesting_and_huge_inputs_are_errors() {
    let origin = Path::new("fuzz/modvm.json");
    for text in [
        "[".repeat(100_000),
        "{\"tests\":".repeat(50_000),
        format!("{{\"tests\": [{{\"name\": \"{}\"", "a".repeat(1 << 20)),
        format!("\"{}", "\\".repeat(100_001)),
    ] {
        assert!(spec::parse(&text, origin).is_err());
    }
}

#[test]
fn a_pathological_regex_is_refused_not_compiled_forever() {
    let text = r#"{"tests": [{"name": "a", "steps": [{"run": "x", "output": [{"regex": "((a{100}){100}){100}"}]}]}]}"#;
    let e = spec::parse(text, Path::new("f")).unwrap_err().to_string();
    assert!(e.contains("invalid regex"), "{e}");
}
