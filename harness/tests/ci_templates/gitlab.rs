//! Runs jobs of an includable GitLab template as a runner would, on this
//! host: `spec:inputs` interpolated (`$[[ inputs.x ]]`), variables
//! expanded with the documented precedence (project variables over job
//! variables over predefined ones), the script in one bash, `cache` and
//! `artifacts` (paths, `reports: dotenv` and `junit`) honoured, and every
//! job in a fresh copy of the project with its `needs`' artifacts in it.

use super::github::{collect_files, key_values};
use super::store::Store;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

/// The template's declared inputs and their defaults (`None`: required).
pub fn spec_inputs(header: &Yaml) -> BTreeMap<String, Option<String>> {
    header["spec"]["inputs"]
        .as_hash()
        .expect("spec:inputs")
        .iter()
        .map(|(k, v)| {
            let default = match &v["default"] {
                Yaml::String(s) => Some(s.clone()),
                Yaml::Integer(i) => Some(i.to_string()),
                Yaml::BadValue => None,
                other => panic!("input {k:?}: default {other:?} is not modelled"),
            };
            (k.as_str().unwrap().to_string(), default)
        })
        .collect()
}

/// The template's jobs with `inputs` interpolated; every input it uses
/// must be declared, every required one given.
pub fn interpolate(text: &str, inputs: &BTreeMap<String, String>) -> (Yaml, Yaml) {
    let (header_text, body) = text.split_once("\n---\n").expect("a spec header, then ---");
    let header = YamlLoader::load_from_str(header_text).unwrap().remove(0);
    let declared = spec_inputs(&header);
    let mut values = BTreeMap::new();
    for (k, default) in &declared {
        let v = inputs.get(k).cloned().or_else(|| default.clone());
        values.insert(
            k.clone(),
            v.unwrap_or_else(|| panic!("input `{k}` is required and was not given")),
        );
    }
    for k in inputs.keys() {
        assert!(
            declared.contains_key(k),
            "input `{k}` is given but the template does not declare it"
        );
    }
    let re = regex::Regex::new(r"\$\[\[\s*inputs\.([A-Za-z0-9_-]+)\s*\]\]").unwrap();
    let body = re.replace_all(body, |c: &regex::Captures| {
        values
            .get(&c[1])
            .unwrap_or_else(|| {
                panic!(
                    "the template uses input `{}`, which it does not declare",
                    &c[1]
                )
            })
            .clone()
    });
    assert!(
        !body.contains("$[["),
        "an interpolation this check does not model is left: {body}"
    );
    (header, YamlLoader::load_from_str(&body).unwrap().remove(0))
}

/// `$VAR` and `${VAR}` expanded from `vars`, unknown ones to empty, as the
/// runner does for variables, cache keys and artifact paths.
pub fn expand(text: &str, vars: &BTreeMap<String, String>) -> String {
    let re = regex::Regex::new(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?").unwrap();
    re.replace_all(text, |c: &regex::Captures| {
        vars.get(&c[1]).cloned().unwrap_or_default()
    })
    .into_owned()
}

pub struct Runner<'a> {
    pub store: &'a Store,
    /// The project's files, copied into every job's directory.
    pub project: PathBuf,
    /// The machine's environment for the job's shell (PATH, HOME, …).
    pub env: BTreeMap<String, String>,
    /// Project-level CI/CD variables (above job variables).
    pub project_vars: BTreeMap<String, String>,
    /// Where each finished job's directory stays, for `needs`.
    pub done: BTreeMap<String, Finished>,
    pub scratch: tempfile::TempDir,
}

pub struct Finished {
    pub dir: PathBuf,
    pub artifacts: Vec<PathBuf>,
    pub dotenv: BTreeMap<String, String>,
    pub status: i32,
}

impl Runner<'_> {
    /// Runs `job` (a key of `jobs`) with the matrix variables `matrix`, as
    /// instance `label`; returns its exit status.
    pub fn run(
        &mut self,
        jobs: &Yaml,
        job: &str,
        label: &str,
        matrix: &BTreeMap<String, String>,
    ) -> i32 {
        let spec = &jobs[job];
        assert!(!spec.is_badvalue(), "no job {job}");
        let dir = self.scratch.path().join(label.replace(['/', ' '], "_"));
        std::fs::create_dir_all(&dir).unwrap();
        let copy = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", self.project.display()))
            .arg(&dir)
            .status()
            .unwrap();
        assert!(copy.success());

        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        vars.insert("CI".into(), "true".into());
        vars.insert("CI_PROJECT_DIR".into(), dir.display().to_string());
        vars.insert("CI_JOB_NAME".into(), job.into());
        let needs: Vec<String> = spec["needs"]
            .as_vec()
            .map(|n| n.iter().map(|j| j.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        for need in &needs {
            let done = self
                .done
                .get(need)
                .unwrap_or_else(|| panic!("{job} needs {need}, which has not run"));
            assert_eq!(done.status, 0, "{need} failed, so {job} would not run");
            for a in &done.artifacts {
                let rel = a.strip_prefix(&done.dir).unwrap();
                let to = dir.join(rel);
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                let _ = std::fs::remove_dir_all(&to);
                assert!(Command::new("cp")
                    .arg("-a")
                    .arg(a)
                    .arg(&to)
                    .status()
                    .unwrap()
                    .success());
            }
            vars.extend(done.dotenv.clone());
        }
        if let Some(v) = spec["variables"].as_hash() {
            for (k, v) in v {
                let v = match v {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    other => panic!("{job}: variable value {other:?}"),
                };
                let expanded = expand(&v, &vars);
                vars.insert(k.as_str().unwrap().to_string(), expanded);
            }
        }
        vars.extend(matrix.clone());
        vars.extend(self.project_vars.clone());
        match &spec["parallel"] {
            Yaml::Integer(n) if matrix.is_empty() => {
                let (index, total) = label
                    .rsplit_once('-')
                    .and_then(|(_, i)| i.split_once("of"))
                    .map(|(i, t)| (i.to_string(), t.to_string()))
                    .unwrap_or(("1".into(), n.to_string()));
                vars.insert("CI_NODE_INDEX".into(), index);
                vars.insert("CI_NODE_TOTAL".into(), total);
            }
            _ => {}
        }

        let cache_key = spec["cache"]["key"].as_str().map(|k| expand(k, &vars));
        let cache_paths: Vec<PathBuf> = spec["cache"]["paths"]
            .as_vec()
            .map(|ps| {
                ps.iter()
                    .map(|p| dir.join(expand(p.as_str().unwrap(), &vars)))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(key) = &cache_key {
            self.store.restore(key, &cache_paths);
        }

        let script: Vec<String> = spec["script"]
            .as_vec()
            .expect("script")
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect();
        let script_file = self
            .scratch
            .path()
            .join(format!("{}.sh", label.replace(['/', ' '], "_")));
        std::fs::write(&script_file, script.join("\n")).unwrap();
        let status = Command::new("bash")
            .args(["--noprofile", "--norc", "-eo", "pipefail"])
            .arg(&script_file)
            .current_dir(&dir)
            .env_clear()
            .envs(&self.env)
            .envs(&vars)
            .status()
            .unwrap();
        let code = status.code().unwrap_or(128);
        if code == 0 {
            if let Some(key) = &cache_key {
                self.store.save_existing(key, &cache_paths, false);
            }
        }

        let when = spec["artifacts"]["when"].as_str().unwrap_or("on_success");
        let mut artifacts = Vec::new();
        let mut dotenv = BTreeMap::new();
        if code == 0 || when == "always" {
            for p in spec["artifacts"]["paths"]
                .as_vec()
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                let path = dir.join(expand(p.as_str().unwrap(), &vars));
                if path.exists() {
                    collect_files(&path, &mut Vec::new());
                    artifacts.push(path);
                }
            }
            if let Some(env) = spec["artifacts"]["reports"]["dotenv"].as_str() {
                let text = std::fs::read_to_string(dir.join(env))
                    .unwrap_or_else(|e| panic!("{job}: dotenv report {env}: {e}"));
                dotenv = key_values(&text, job);
            }
            if let Some(junit) = spec["artifacts"]["reports"]["junit"].as_str() {
                let path = dir.join(junit);
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{job}: junit report {junit}: {e}"));
                assert!(
                    text.contains("<testsuites"),
                    "{job}: {junit} is not JUnit XML"
                );
            }
        }
        self.done.insert(
            job.to_string(),
            Finished {
                dir,
                artifacts,
                dotenv,
                status: code,
            },
        );
        code
    }
}
