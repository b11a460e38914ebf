//! Runs a composite action's steps as a GitHub runner would, on this host:
//! `run` steps in bash with the runner's files (`GITHUB_OUTPUT`,
//! `GITHUB_ENV`, `GITHUB_PATH`, `GITHUB_STEP_SUMMARY`), `if:` conditions,
//! and the few actions the template uses (cache, upload-artifact,
//! checkout) modelled on their documented behaviour. Any other action or
//! expression fails the test, so the template stays within what is
//! checked here.

use super::store::Store;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::Yaml;

/// One uploaded artifact: its name and the files in it.
pub struct Upload {
    pub name: String,
    pub files: Vec<PathBuf>,
}

pub struct Job<'a> {
    pub workspace: PathBuf,
    pub temp: PathBuf,
    pub action_path: PathBuf,
    pub store: &'a Store,
    /// Environment every step starts from (the runner's, plus the test's).
    pub env: BTreeMap<String, String>,
    pub inputs: BTreeMap<String, String>,
    outputs: BTreeMap<String, BTreeMap<String, String>>,
    added_env: BTreeMap<String, String>,
    added_path: Vec<String>,
    pub failed: bool,
    pub ran: Vec<String>,
    pub uploads: Vec<Upload>,
    pub summary: PathBuf,
    post_saves: Vec<(String, Vec<PathBuf>)>,
    _temp: tempfile::TempDir,
}

impl<'a> Job<'a> {
    pub fn new(
        workspace: &Path,
        action_path: &Path,
        store: &'a Store,
        env: BTreeMap<String, String>,
    ) -> Job<'a> {
        // Each job's own RUNNER_TEMP, emptied when it ends, as on GitHub.
        let temp_dir = tempfile::tempdir().unwrap();
        let temp = temp_dir.path().to_path_buf();
        let summary = temp.join("step-summary.md");
        std::fs::write(&summary, "").unwrap();
        Job {
            workspace: workspace.to_path_buf(),
            temp,
            action_path: action_path.to_path_buf(),
            store,
            env,
            inputs: BTreeMap::new(),
            outputs: BTreeMap::new(),
            added_env: BTreeMap::new(),
            added_path: Vec::new(),
            failed: false,
            ran: Vec::new(),
            uploads: Vec::new(),
            summary,
            post_saves: Vec::new(),
            _temp: temp_dir,
        }
    }

    /// The value of one `${{ … }}` expression.
    fn value(&self, e: &str) -> String {
        let e = e.trim();
        if let Some(name) = e.strip_prefix("inputs.") {
            return self
                .inputs
                .get(name)
                .unwrap_or_else(|| {
                    panic!("the action uses input `{name}`, which it does not declare")
                })
                .clone();
        }
        if let Some(rest) = e.strip_prefix("steps.") {
            let (id, key) = rest
                .split_once(".outputs.")
                .unwrap_or_else(|| panic!("unmodelled expression {e}"));
            return self
                .outputs
                .get(id)
                .and_then(|o| o.get(key))
                .cloned()
                .unwrap_or_default();
        }
        if let Some(lit) = e.strip_prefix('\'').and_then(|l| l.strip_suffix('\'')) {
            return lit.to_string();
        }
        match e {
            "github.action_path" => self.action_path.display().to_string(),
            "github.workspace" => self.workspace.display().to_string(),
            "runner.os" => "Linux".into(),
            "runner.temp" => self.temp.display().to_string(),
            _ => panic!("the template uses an expression this check does not model: {e}"),
        }
    }

    /// Text with its `${{ … }}` expressions replaced.
    pub fn expand(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find("}}").expect("unclosed ${{") + start;
            out.push_str(&self.value(&rest[start + 3..end]));
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out
    }

    /// An `if:`: terms joined by `&&`; without a status function the step
    /// runs only while the job succeeds, as on GitHub.
    fn condition(&self, cond: Option<&str>) -> bool {
        let Some(cond) = cond else {
            return !self.failed;
        };
        let cond = cond.trim().trim_start_matches("${{").trim_end_matches("}}");
        assert!(!cond.contains("||"), "unmodelled condition {cond}");
        let mut status_seen = false;
        let mut all = true;
        for term in cond.split("&&").map(str::trim) {
            let v = match term {
                "always()" => {
                    status_seen = true;
                    true
                }
                "failure()" => {
                    status_seen = true;
                    self.failed
                }
                "success()" => {
                    status_seen = true;
                    !self.failed
                }
                t => {
                    if let Some((a, b)) = t.split_once("!=") {
                        self.value(a) != self.value(b)
                    } else if let Some((a, b)) = t.split_once("==") {
                        self.value(a) == self.value(b)
                    } else {
                        panic!("unmodelled condition term {t}")
                    }
                }
            };
            all &= v;
        }
        all && (status_seen || !self.failed)
    }

    fn with(&self, step: &Yaml, key: &str) -> Option<String> {
        step["with"][key].as_str().map(|v| self.expand(v))
    }

    fn paths(&self, text: &str) -> Vec<PathBuf> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| {
                let p = PathBuf::from(l.replace("~/", &format!("{}/", self.env["HOME"])));
                if p.is_absolute() {
                    p
                } else {
                    self.workspace.join(p)
                }
            })
            .collect()
    }

    /// Runs the action's steps with `with` as its inputs, then the post
    /// steps (cache saves).
    pub fn run_action(&mut self, action: &Yaml, with: &BTreeMap<String, String>) {
        let declared = action["inputs"]
            .as_hash()
            .expect("the action declares inputs");
        for (k, v) in declared {
            let k = k.as_str().unwrap().to_string();
            let default = v["default"].as_str().unwrap_or("").to_string();
            self.inputs.insert(k, default);
        }
        for (k, v) in with {
            assert!(
                self.inputs.contains_key(k),
                "the workflow passes `{k}`, which the action does not declare"
            );
            self.inputs.insert(k.clone(), v.clone());
        }
        assert_eq!(action["runs"]["using"].as_str(), Some("composite"));
        for step in action["runs"]["steps"].as_vec().expect("steps") {
            self.step(step);
        }
        if !self.failed {
            for (key, paths) in std::mem::take(&mut self.post_saves) {
                self.store.save(&key, &paths);
            }
        }
    }

    fn step(&mut self, step: &Yaml) {
        let name = step["name"].as_str().unwrap_or("(unnamed)").to_string();
        if !self.condition(step["if"].as_str()) {
            return;
        }
        self.ran.push(name.clone());
        let id = step["id"].as_str().map(str::to_string);
        let mut outputs = BTreeMap::new();
        if let Some(script) = step["run"].as_str() {
            assert_eq!(
                step["shell"].as_str(),
                Some("bash"),
                "step `{name}`: composite steps must name their shell"
            );
            self.run_script(&name, step, script, &mut outputs);
        } else if let Some(uses) = step["uses"].as_str() {
            let action = uses.split('@').next().unwrap();
            match action {
                "actions/checkout" => {}
                "actions/cache/restore" | "actions/cache" => {
                    let key = self.with(step, "key").expect("cache key");
                    let paths = self.paths(&self.with(step, "path").expect("cache path"));
                    let hit = self.store.restore(&key, &paths);
                    outputs.insert("cache-hit".into(), hit.to_string());
                    if action == "actions/cache" && !hit {
                        self.post_saves.push((key, paths));
                    }
                }
                "actions/cache/save" => {
                    let key = self.with(step, "key").expect("cache key");
                    let paths = self.paths(&self.with(step, "path").expect("cache path"));
                    self.store.save(&key, &paths);
                }
                "actions/upload-artifact" => self.upload(step),
                other => panic!("step `{name}` uses {other}, which this check does not model"),
            }
        } else {
            panic!("step `{name}` neither runs nor uses anything");
        }
        if let Some(id) = id {
            self.outputs.insert(id, outputs);
        }
    }

    fn run_script(
        &mut self,
        name: &str,
        step: &Yaml,
        script: &str,
        outputs: &mut BTreeMap<String, String>,
    ) {
        let files = tempfile::tempdir_in(&self.temp).unwrap();
        let [output, env_file, path_file, script_file] =
            ["output", "env", "path", "script.sh"].map(|f| files.path().join(f));
        for f in [&output, &env_file, &path_file] {
            std::fs::write(f, "").unwrap();
        }
        assert!(
            !script.contains("${{"),
            "step `{name}`: expressions belong in `env:`, not in the script"
        );
        std::fs::write(&script_file, script).unwrap();
        let mut c = Command::new("bash");
        c.args(["--noprofile", "--norc", "-eo", "pipefail"])
            .arg(&script_file)
            .current_dir(&self.workspace)
            .env_clear()
            .envs(&self.env)
            .envs(&self.added_env);
        let mut path: Vec<String> = self.added_path.iter().rev().cloned().collect();
        path.push(self.env["PATH"].clone());
        c.env("PATH", path.join(":"));
        c.env("GITHUB_OUTPUT", &output)
            .env("GITHUB_ENV", &env_file)
            .env("GITHUB_PATH", &path_file)
            .env("GITHUB_STEP_SUMMARY", &self.summary)
            .env("GITHUB_ACTION_PATH", &self.action_path)
            .env("GITHUB_WORKSPACE", &self.workspace)
            .env("RUNNER_TEMP", &self.temp)
            .env("RUNNER_OS", "Linux");
        if let Some(env) = step["env"].as_hash() {
            for (k, v) in env {
                let v = match v {
                    Yaml::String(s) => self.expand(s),
                    other => panic!("step `{name}`: env value {other:?}"),
                };
                c.env(k.as_str().unwrap(), v);
            }
        }
        let status = c.status().unwrap();
        *outputs = key_values(&std::fs::read_to_string(&output).unwrap(), name);
        self.added_env.extend(key_values(
            &std::fs::read_to_string(&env_file).unwrap(),
            name,
        ));
        self.added_path.extend(
            std::fs::read_to_string(&path_file)
                .unwrap()
                .lines()
                .map(str::to_string),
        );
        if !status.success() {
            eprintln!("step `{name}` failed: {status}");
            self.failed = true;
        }
    }

    fn upload(&mut self, step: &Yaml) {
        let name = self.with(step, "name").expect("artifact name");
        assert!(
            !name.is_empty() && !name.contains(['/', '\\', ':', '"', '<', '>', '|', '*', '?']),
            "artifact name {name:?} is one upload-artifact refuses"
        );
        let missing_ok = self.with(step, "if-no-files-found").as_deref() == Some("ignore");
        let mut files = Vec::new();
        for path in self.paths(&self.with(step, "path").expect("artifact path")) {
            if !path.exists() {
                assert!(
                    missing_ok,
                    "artifact {name}: {} does not exist",
                    path.display()
                );
                continue;
            }
            collect_files(&path, &mut files);
        }
        assert!(missing_ok || !files.is_empty(), "artifact {name} is empty");
        self.uploads.push(Upload { name, files });
    }
}

/// Regular files under `path`; a symlink or other special file fails the
/// test (an artifact upload would store a link that dangles once
/// downloaded, or fail on the file).
pub fn collect_files(path: &Path, files: &mut Vec<PathBuf>) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    if meta.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            collect_files(&e.unwrap().path(), files);
        }
    } else {
        assert!(
            meta.is_file(),
            "{} is not a regular file ({:?})",
            path.display(),
            meta.file_type()
        );
        files.push(path.to_path_buf());
    }
}

/// `KEY=VALUE` lines of the runner's files; the `KEY<<EOF` form is not
/// modelled and fails the test.
pub fn key_values(text: &str, step: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            assert!(
                !l.contains("<<"),
                "step `{step}`: multi-line values are not modelled: {l}"
            );
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("step `{step}`: `{l}` is not KEY=VALUE"));
            (k.to_string(), v.to_string())
        })
        .collect()
}
