//! Test specs: the JSON files module authors write (`modvm.json` beside the
//! module's sources). Parsing is strict: unknown fields, wrong types and bad
//! regexes are errors that name the file, line and column.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file name modvm looks for in a module directory.
pub const SPEC_FILE: &str = "modvm.json";

/// Default per-step deadline.
pub const DEFAULT_STEP_TIMEOUT_S: f64 = 30.0;

/// One spec file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    /// Name that prefixes the test names; defaults to the directory's name.
    #[serde(default)]
    pub suite: Option<String>,
    pub tests: Vec<TestSpec>,
}

/// One test: a fresh guest, steps run in order.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TestSpec {
    pub name: String,
    pub steps: Vec<Step>,
}

/// One command in the guest and what it must produce.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "RawStep", into = "RawStep")]
pub struct Step {
    pub action: Action,
    /// Expected exit status of the command.
    pub exit: i32,
    /// printk lines that must appear during the step, in this order.
    pub kernel_log: Vec<Expect>,
    pub timeout_s: f64,
}

/// What a step does in the guest.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `insmod /modules/<name>.ko`
    Insmod(String),
    /// `rmmod <name>`
    Rmmod(String),
    /// Any shell command (run from `/modules`).
    Run(String),
}

impl Action {
    /// The shell command sent to the guest.
    pub fn command(&self) -> String {
        match self {
            Action::Insmod(m) => format!("insmod /modules/{m}.ko"),
            Action::Rmmod(m) => format!("rmmod {m}"),
            Action::Run(c) => c.clone(),
        }
    }

    /// Module named by insmod/rmmod, if any.
    pub fn module(&self) -> Option<&str> {
        match self {
            Action::Insmod(m) | Action::Rmmod(m) => Some(m),
            Action::Run(_) => None,
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Insmod(m) => write!(f, "insmod {m}"),
            Action::Rmmod(m) => write!(f, "rmmod {m}"),
            Action::Run(c) => write!(f, "run `{c}`"),
        }
    }
}

/// An expected kernel log line.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum Expect {
    /// The line contains this text.
    Contains(String),
    /// The line (without its timestamp) matches this regex.
    Regex(Pattern),
}

impl Expect {
    pub fn matches(&self, line: &str) -> bool {
        match self {
            Expect::Contains(s) => line.contains(s.as_str()),
            Expect::Regex(p) => p.0.is_match(line),
        }
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Contains(s) => write!(f, "a line containing {s:?}"),
            Expect::Regex(p) => write!(f, "a line matching /{}/", p.0.as_str()),
        }
    }
}

/// A regex checked when the spec is read.
#[derive(Debug, Clone)]
pub struct Pattern(pub Regex);

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Regex::new(&s)
            .map(Pattern)
            .map_err(|e| serde::de::Error::custom(format!("invalid regex {s:?}: {e}")))
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    insmod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rmmod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run: Option<String>,
    #[serde(default)]
    exit: i32,
    #[serde(default)]
    kernel_log: Vec<Expect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout_s: Option<f64>,
}

impl TryFrom<RawStep> for Step {
    type Error = String;
    fn try_from(r: RawStep) -> Result<Step, String> {
        let action =
            match (r.insmod, r.rmmod, r.run) {
                (Some(m), None, None) => Action::Insmod(module_name(m)?),
                (None, Some(m), None) => Action::Rmmod(module_name(m)?),
                (None, None, Some(c)) if !c.trim().is_empty() => Action::Run(c),
                (None, None, Some(_)) => return Err("`run` needs a command".into()),
                (None, None, None) => {
                    return Err("a step needs one of `insmod`, `rmmod` or `run`".into())
                }
                _ => return Err(
                    "a step has exactly one of `insmod`, `rmmod` or `run`; split it into two steps"
                        .into(),
                ),
            };
        let timeout_s = r.timeout_s.unwrap_or(DEFAULT_STEP_TIMEOUT_S);
        if !(timeout_s > 0.0 && timeout_s <= 86400.0) {
            return Err(format!(
                "`timeout_s` must be between 0 and 86400 seconds, not {timeout_s}"
            ));
        }
        Ok(Step {
            action,
            exit: r.exit,
            kernel_log: r.kernel_log,
            timeout_s,
        })
    }
}

impl From<Step> for RawStep {
    fn from(s: Step) -> RawStep {
        let (insmod, rmmod, run) = match s.action {
            Action::Insmod(m) => (Some(m), None, None),
            Action::Rmmod(m) => (None, Some(m), None),
            Action::Run(c) => (None, None, Some(c)),
        };
        RawStep {
            insmod,
            rmmod,
            run,
            exit: s.exit,
            kernel_log: s.kernel_log,
            timeout_s: Some(s.timeout_s),
        }
    }
}

/// A module name as insmod/rmmod see it: `hello`, not `hello.ko`.
fn module_name(m: String) -> Result<String, String> {
    let name = m.strip_suffix(".ko").unwrap_or(&m).to_string();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "{m:?} is not a module name; give the name of the .ko without path, e.g. \"hello\""
        ));
    }
    Ok(name)
}

/// A spec that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Semantic { path: PathBuf, message: String },
}

/// A spec file with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    pub path: PathBuf,
    /// The module directory (the spec's parent).
    pub dir: PathBuf,
    pub suite: String,
    pub spec: SpecFile,
}

/// Reads a spec file or the spec of a module directory.
pub fn load(path: &Path) -> Result<LoadedSpec, SpecError> {
    let file = if path.is_dir() {
        path.join(SPEC_FILE)
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|source| SpecError::Read {
        path: file.clone(),
        source,
    })?;
    let spec = parse(&text, &file)?;
    let dir = file
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let suite = spec.suite.clone().unwrap_or_else(|| {
        std::fs::canonicalize(&dir)
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "module".to_string())
    });
    Ok(LoadedSpec {
        path: file,
        dir,
        suite,
        spec,
    })
}

/// Parses spec text; `origin` names the file in errors.
pub fn parse(text: &str, origin: &Path) -> Result<SpecFile, SpecError> {
    let spec: SpecFile = serde_json::from_str(text).map_err(|e| SpecError::Invalid {
        path: origin.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: explain(&e),
    })?;
    let semantic = |message: String| SpecError::Semantic {
        path: origin.to_path_buf(),
        message,
    };
    if spec.tests.is_empty() {
        return Err(semantic("`tests` is empty; add at least one test".into()));
    }
    let mut seen = std::collections::HashSet::new();
    for t in &spec.tests {
        if !seen.insert(&t.name) {
            return Err(semantic(format!(
                "two tests are named {:?}; names must be unique",
                t.name
            )));
        }
        if t.steps.is_empty() {
            return Err(semantic(format!("test {:?} has no steps", t.name)));
        }
    }
    Ok(spec)
}

/// serde's message, plus a "did you mean" for misspelt fields and variants.
fn explain(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    // serde_json appends " at line L column C"; the caller prints the position.
    let msg = match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    };
    match suggestion(&msg) {
        Some(s) => format!("{msg}; did you mean `{s}`?"),
        None => msg,
    }
}

/// For "unknown field `x`, expected one of `a`, `b`": the closest candidate.
fn suggestion(msg: &str) -> Option<String> {
    let rest = msg
        .strip_prefix("unknown field `")
        .or_else(|| msg.strip_prefix("unknown variant `"))?;
    let (bad, candidates) = rest.split_once('`')?;
    candidates
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|c| (edit_distance(bad, c), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min()
        .map(|(_, c)| c.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, Path::new("m/modvm.json"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn hello_spec_parses() {
        let text = include_str!("../../module/modvm.json");
        let spec = parse(text, Path::new("module/modvm.json")).unwrap();
        let steps = &spec.tests[0].steps;
        assert_eq!(steps[0].action, Action::Insmod("hello".into()));
        assert_eq!(steps[0].action.command(), "insmod /modules/hello.ko");
        assert_eq!(steps[1].action.command(), "rmmod hello");
        assert!(steps[1].kernel_log[0].matches("Goodbye, Kernel World!"));
        assert!(!steps[1].kernel_log[0].matches("Goodbye, Kernel World!!"));
    }

    #[test]
    fn syntax_error_has_position() {
        let e = err("{\n  \"tests\": [\n    {\"name\": \"a\",, }\n  ]\n}");
        assert!(e.starts_with("m/modvm.json:3:"), "{e}");
    }

    #[test]
    fn unknown_field_suggests_the_right_one() {
        let e = err(r#"{"tests": [{"name": "a", "steps": [{"insmod": "x", "kernel_lgo": []}]}]}"#);
        assert!(e.contains("unknown field `kernel_lgo`"), "{e}");
        assert!(e.contains("did you mean `kernel_log`?"), "{e}");
        assert!(e.starts_with("m/modvm.json:1:"), "{e}");
    }

    #[test]
    fn unknown_expect_kind_suggests() {
        let e = err(
            r#"{"tests": [{"name": "a", "steps": [{"insmod": "x", "kernel_log": [{"contain": "y"}]}]}]}"#,
        );
        assert!(e.contains("did you mean `contains`?"), "{e}");
    }

    #[test]
    fn bad_regex_is_reported_with_position() {
        let e = err("{\"tests\": [{\"name\": \"a\", \"steps\": [\n{\"rmmod\": \"x\", \"kernel_log\": [{\"regex\": \"(\"}]}]}]}");
        assert!(e.starts_with("m/modvm.json:2:"), "{e}");
        assert!(e.contains("invalid regex"), "{e}");
    }

    #[test]
    fn step_needs_exactly_one_action() {
        assert!(
            err(r#"{"tests": [{"name": "a", "steps": [{"exit": 1}]}]}"#).contains("needs one of")
        );
        assert!(
            err(r#"{"tests": [{"name": "a", "steps": [{"insmod": "x", "rmmod": "x"}]}]}"#)
                .contains("exactly one")
        );
    }

    #[test]
    fn wrong_type_is_explained() {
        let e = err(r#"{"tests": [{"name": "a", "steps": [{"insmod": "x", "exit": "0"}]}]}"#);
        assert!(e.contains("invalid type"), "{e}");
    }

    #[test]
    fn module_names_are_checked() {
        assert!(
            err(r#"{"tests": [{"name": "a", "steps": [{"insmod": "../x"}]}]}"#)
                .contains("not a module name")
        );
        let ok = parse(
            r#"{"tests": [{"name": "a", "steps": [{"insmod": "x.ko"}]}]}"#,
            Path::new("f"),
        )
        .unwrap();
        assert_eq!(ok.tests[0].steps[0].action, Action::Insmod("x".into()));
    }

    #[test]
    fn duplicate_and_empty_tests_are_refused() {
        assert!(err(r#"{"tests": []}"#).contains("empty"));
        assert!(err(r#"{"tests": [{"name": "a", "steps": []}]}"#).contains("no steps"));
        let dup = r#"{"tests": [{"name": "a", "steps": [{"run": "true"}]}, {"name": "a", "steps": [{"run": "true"}]}]}"#;
        assert!(err(dup).contains("unique"));
    }

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("expct", "expect"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
