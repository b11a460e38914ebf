//! The CI templates in `ci/` users copy: they parse, every modvm command
//! and option in them exists in the real binary, and their steps run here,
//! on this Debian host, as the platform's runner would run them: modvm
//! built from this repository, the kernel cache keyed by the resolved
//! kernels, real guests, reports, job summary and uploaded logs checked.
//!
//! The runners are emulated only where a platform's own machinery would
//! act (step files, expressions, cache, artifacts); the templates' scripts
//! themselves run unchanged, extracted from the YAML.

#[path = "ci_templates/commands.rs"]
mod commands;
mod common;
#[path = "ci_templates/github.rs"]
mod github;
#[path = "ci_templates/gitlab.rs"]
mod gitlab;
#[path = "ci_templates/store.rs"]
mod store;

use common::repo;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use store::Store;
use yaml_rust2::{Yaml, YamlLoader};

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Yaml {
    let docs =
        YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"));
    assert_eq!(docs.len(), 1, "{rel}: one document");
    docs.into_iter().next().unwrap()
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_modvm"))
}

const ACTION: &str = "ci/github/action.yml";
const WORKFLOW: &str = "ci/github/modvm.yml";
const TEMPLATE: &str = "ci/gitlab/modvm.yml";
const EXAMPLE: &str = "ci/gitlab/example.gitlab-ci.yml";

/// The GitLab template's jobs as the example includes them.
fn gitlab_example() -> (BTreeMap<String, String>, Yaml, Yaml) {
    let example = yaml(EXAMPLE);
    let include = &example["include"][0];
    assert!(
        include["remote"].as_str().unwrap().ends_with(TEMPLATE),
        "the example includes {TEMPLATE}"
    );
    let inputs: BTreeMap<String, String> = include["inputs"]
        .as_hash()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Yaml::String(s) => s.clone(),
                Yaml::Integer(i) => i.to_string(),
                other => panic!("input value {other:?}"),
            };
            (k.as_str().unwrap().to_string(), v)
        })
        .collect();
    let (_, jobs) = gitlab::interpolate(&read(TEMPLATE), &inputs);
    (inputs, jobs, example)
}

/// The matrix rows the example's override of `modvm-test` makes.
fn gitlab_matrix(example: &Yaml) -> Vec<BTreeMap<String, String>> {
    let mut rows = vec![BTreeMap::new()];
    for (k, values) in example["modvm-test"]["parallel"]["matrix"][0]
        .as_hash()
        .expect("a matrix")
    {
        let mut next = Vec::new();
        for row in &rows {
            for v in values.as_vec().unwrap() {
                let mut r: BTreeMap<String, String> = row.clone();
                r.insert(k.as_str().unwrap().into(), v.as_str().unwrap().into());
                next.push(r);
            }
        }
        rows = next;
    }
    rows
}

fn builtin_profiles() -> String {
    let out = common::modvm(&["kernels", "list"], &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.stdout
}

#[test]
fn templates_parse_and_use_only_what_they_declare() {
    let action = yaml(ACTION);
    let declared: Vec<&str> = action["inputs"]
        .as_hash()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    let used = regex::Regex::new(r"inputs\.([a-z0-9-]+)").unwrap();
    for c in used.captures_iter(&read(ACTION)) {
        assert!(
            declared.contains(&&c[1]),
            "{ACTION} uses undeclared input {}",
            &c[1]
        );
    }

    let workflow = yaml(WORKFLOW);
    let job = &workflow["jobs"]["modvm"];
    assert!(
        job["container"]["image"]
            .as_str()
            .unwrap()
            .contains("bookworm"),
        "the job runs in a Debian container"
    );
    let steps = job["steps"].as_vec().unwrap();
    let uses = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.contains("/ci/github@"))
        })
        .expect("the workflow uses the action");
    for k in uses["with"].as_hash().unwrap().keys() {
        assert!(
            declared.contains(&k.as_str().unwrap()),
            "{WORKFLOW} passes undeclared input {k:?}"
        );
    }
    let profiles = builtin_profiles();
    for k in job["strategy"]["matrix"]["kernel"].as_vec().unwrap() {
        assert!(
            profiles.contains(k.as_str().unwrap()),
            "{WORKFLOW}: {k:?} is not a built-in profile:\n{profiles}"
        );
    }
    for s in job["strategy"]["matrix"]["shard"].as_vec().unwrap() {
        let shard = s.as_str().unwrap();
        assert!(
            modvm::partition::parse(shard).is_ok(),
            "{WORKFLOW}: shard {shard:?} is not a --partition value"
        );
    }

    let (_, jobs, example) = gitlab_example();
    assert!(
        jobs["modvm-build"]["stage"].as_str() == Some(".pre"),
        "modvm is built once, before the tests"
    );
    assert_eq!(jobs["modvm-test"]["needs"][0].as_str(), Some("modvm-build"));
    let test_job = read(TEMPLATE);
    for row in gitlab_matrix(&example) {
        for (k, v) in row {
            assert!(
                test_job.contains(&format!("${k}")) || test_job.contains(&format!("${{{k}")),
                "{EXAMPLE}'s matrix sets {k}, which the template does not read"
            );
            if k == "MODVM_KERNEL" {
                assert!(
                    profiles.contains(&v),
                    "{EXAMPLE}: {v} is not a built-in profile"
                );
            }
        }
    }
}

/// Every script of the templates, with where it is from.
fn scripts() -> Vec<(String, String)> {
    let mut all = Vec::new();
    for step in yaml(ACTION)["runs"]["steps"].as_vec().unwrap() {
        if let Some(run) = step["run"].as_str() {
            all.push((
                format!("{ACTION}: {}", step["name"].as_str().unwrap_or("?")),
                run.to_string(),
            ));
        }
    }
    let (_, jobs, _) = gitlab_example();
    for (name, job) in jobs.as_hash().unwrap() {
        for line in job["script"].as_vec().map(Vec::as_slice).unwrap_or(&[]) {
            all.push((
                format!("{TEMPLATE}: {}", name.as_str().unwrap()),
                line.as_str().unwrap().to_string(),
            ));
        }
    }
    let readme = read("README.md");
    let section = readme
        .split("## Use in CI")
        .nth(1)
        .expect("README has a `Use in CI` section");
    let section = section.split("\n## ").next().unwrap();
    for block in section.split("```").skip(1).step_by(2) {
        all.push(("README.md, Use in CI".to_string(), block.to_string()));
    }
    all
}

#[test]
fn every_modvm_command_in_the_templates_exists() {
    let bin = bin();
    let mut help = commands::Help::new(&bin);
    let mut seen = Vec::new();
    for (place, script) in scripts() {
        for args in commands::invocations(&script) {
            if let Err(e) = help.check(&args) {
                panic!("{place}: {e}");
            }
            seen.push(
                args.iter()
                    .take_while(|a| !a.starts_with('-') && !a.starts_with('$'))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
    }
    for expected in ["test", "summary", "kernels key"] {
        assert!(
            seen.iter().any(|s| s.starts_with(expected)),
            "no `modvm {expected}` found in the templates: {seen:?}"
        );
    }
    // The check itself rejects what does not exist.
    assert!(help
        .check(&["test".into(), "--no-such-flag".into()])
        .is_err());
    for wrong in [
        vec!["tests"],
        vec!["kernels", "keys"],
        vec!["summary", "-z"],
    ] {
        let wrong: Vec<String> = wrong.into_iter().map(String::from).collect();
        assert!(
            help.check(&wrong).is_err(),
            "modvm {wrong:?} passed the check"
        );
    }
}

/// A project as users have it: the module at `module/`, with a spec of
/// two tests (so two shards each run one), the second failing if `fail`.
fn project(fail: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("module");
    std::fs::create_dir(&module).unwrap();
    for f in ["hello.c", "Kbuild", "Makefile"] {
        std::fs::copy(repo().join("module").join(f), module.join(f)).unwrap();
    }
    let second = if fail {
        "Hello, nobody"
    } else {
        "Hello, Kernel World!"
    };
    std::fs::write(
        module.join("modvm.json"),
        format!(
            r#"{{"suite": "hello", "tests": [
  {{"name": "load", "steps": [{{"insmod": "hello", "kernel_log": [{{"contains": "Hello, Kernel World!"}}]}}, {{"rmmod": "hello"}}]}},
  {{"name": "again", "steps": [{{"insmod": "hello", "kernel_log": [{{"contains": "{second}"}}]}}, {{"rmmod": "hello"}}]}}
]}}"#
        ),
    )
    .unwrap();
    dir
}

/// The environment of the emulated runners: this process's, without
/// cargo's per-test variables or the user's modvm settings, offline for
/// cargo, and with a cheap release profile (the build is the template's;
/// only its optimisation is turned down, to keep CI short).
fn runner_env() -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| {
            !(k.starts_with("CARGO_PKG_")
                || k.starts_with("CARGO_BIN_EXE_")
                || k.starts_with("CARGO_MANIFEST")
                || k.starts_with("CARGO_CRATE")
                || k.starts_with("CARGO_TARGET")
                || k.starts_with("CARGO_PRIMARY")
                || k.starts_with("MODVM_"))
        })
        .collect();
    env.insert("CARGO_NET_OFFLINE".into(), "true".into());
    env.insert(
        "CARGO_TARGET_DIR".into(),
        repo().join("target/ci-templates").display().to_string(),
    );
    env.insert("CARGO_PROFILE_RELEASE_OPT_LEVEL".into(), "0".into());
    env.insert("CARGO_PROFILE_RELEASE_INCREMENTAL".into(), "true".into());
    env
}

/// `modvm kernels key` as the templates run it, from the archive at `mirror`
/// (its apt state in a cache of its own: the archive's port, in its URL,
/// names a new state directory every run).
fn kernels_key(kernel: &str, env: &BTreeMap<String, String>, mirror: &str) -> String {
    let cache = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin())
        .args([
            "kernels",
            "key",
            "--kernel",
            kernel,
            "--debian-mirror",
            mirror,
        ])
        .arg("--cache")
        .arg(cache.path())
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kernels key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// What an earlier pipeline saved of the kernel cache: this machine's kit
/// of `kernel` and its busybox, as the directories the templates cache.
fn seed_kernels(store: &Store, key: &str, kernel: &str) {
    let shared = modvm::paths::cache_dir(None);
    assert!(
        shared.join("kernels").join(kernel).is_dir(),
        "no {kernel} kit in {}: run `bash scripts/setup-host.sh` first",
        shared.display()
    );
    let seed = tempfile::tempdir().unwrap();
    std::fs::create_dir(seed.path().join("kernels")).unwrap();
    for (from, to) in [
        (
            shared.join("kernels").join(kernel),
            seed.path().join("kernels").join(kernel),
        ),
        (shared.join("busybox"), seed.path().join("busybox")),
    ] {
        assert!(std::process::Command::new("cp")
            .arg("-al")
            .arg(&from)
            .arg(&to)
            .status()
            .unwrap()
            .success());
    }
    store.seed(
        key,
        &[seed.path().join("kernels"), seed.path().join("busybox")],
    );
}

/// The loopback Debian archive `modvm kernels key` resolves from (tests
/// reach only loopback).
fn mirror() -> common::archive::Server {
    common::archive::Server::start(&common::archive::archive_dir(), None)
}

fn run_github(
    store: &Store,
    env: &BTreeMap<String, String>,
    project: &Path,
    with: &BTreeMap<String, String>,
) -> (bool, Vec<String>, String, Vec<github::Upload>) {
    let action = yaml(ACTION);
    let mut job = github::Job::new(project, &repo().join("ci/github"), store, env.clone());
    job.env.insert("GITHUB_JOB".into(), "modvm".into());
    job.run_action(&action, with);
    let summary = std::fs::read_to_string(&job.summary).unwrap();
    (job.failed, job.ran, summary, job.uploads)
}

#[test]
fn github_action_runs_here() {
    let archive = mirror();
    let env = runner_env();
    let workflow = yaml(WORKFLOW);
    let matrix = &workflow["jobs"]["modvm"]["strategy"]["matrix"];
    let kernel = matrix["kernel"][0].as_str().unwrap().to_string();
    let store = Store::new();
    seed_kernels(&store, &kernels_key(&kernel, &env, &archive.url()), &kernel);
    let uses = workflow["jobs"]["modvm"]["steps"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|s| s["with"].as_hash().is_some())
        .unwrap()
        .clone();

    let good = project(false);
    let mut built = 0;
    for shard in matrix["shard"].as_vec().unwrap() {
        let with: BTreeMap<String, String> = uses["with"]
            .as_hash()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let v = v
                    .as_str()
                    .unwrap()
                    .replace("${{ matrix.kernel }}", &kernel)
                    .replace("${{ matrix.shard }}", shard.as_str().unwrap());
                (k.as_str().unwrap().to_string(), v)
            })
            .chain([("debian-mirror".to_string(), archive.url())])
            .collect();
        let ws = good
            .path()
            .join(format!("ws-{}", shard.as_str().unwrap().replace('/', "of")));
        std::fs::create_dir_all(&ws).unwrap();
        assert!(std::process::Command::new("cp")
            .arg("-a")
            .arg(good.path().join("module"))
            .arg(&ws)
            .status()
            .unwrap()
            .success());
        let (failed, ran, summary, uploads) = run_github(&store, &env, &ws, &with);
        assert!(
            !failed,
            "shard {shard:?} failed; steps run: {ran:?}\n{summary}"
        );
        built += ran.iter().filter(|s| *s == "Build modvm").count();
        assert!(
            summary.starts_with("### Passed: modvm: 1 passed (1 test)"),
            "shard {shard:?}: {summary}"
        );
        assert!(
            !ran.iter().any(|s| s == "Upload the per-test logs"),
            "logs are uploaded only on failure"
        );
        let reports = uploads
            .iter()
            .find(|u| u.name.ends_with("-reports"))
            .expect("reports uploaded");
        assert_eq!(
            reports.files.len(),
            2,
            "JSON and JUnit: {:?}",
            reports.files
        );
    }
    assert_eq!(
        built, 1,
        "modvm is built by the first job only; the others restore it"
    );

    let bad = project(true);
    let with = BTreeMap::from([
        ("kernel".to_string(), kernel.clone()),
        ("debian-mirror".to_string(), archive.url()),
    ]);
    let (failed, ran, summary, uploads) = run_github(&store, &env, bad.path(), &with);
    assert!(failed, "a failing test fails the job");
    assert!(
        summary.contains("| **fail** | <code>hello/again</code>"),
        "{summary}"
    );
    assert!(
        ran.iter().any(|s| s == "Upload the per-test logs"),
        "{ran:?}"
    );
    let logs = uploads
        .iter()
        .find(|u| !u.name.ends_with("-reports"))
        .expect("logs uploaded");
    assert!(
        logs.files.iter().any(|f| f.ends_with("again/console.log")),
        "{:?}",
        logs.files
    );
    assert!(!ran.iter().any(|s| s == "Build modvm"), "{ran:?}");

    // A kernel that cannot be resolved stops the job at that step, not
    // with an empty cache key further on.
    let with = BTreeMap::from([
        ("kernel".to_string(), "no-such-kernel".to_string()),
        ("debian-mirror".to_string(), archive.url()),
    ]);
    let (failed, ran, _, _) = run_github(&store, &env, good.path(), &with);
    assert!(failed, "an unknown kernel fails the job");
    assert!(
        ran.iter().any(|s| s == "Resolve the kernels")
            && !ran.iter().any(|s| s == "Test the modules"),
        "{ran:?}"
    );

    // A first job on an image without Rust stops at the build, saying so.
    let mut no_cargo = env.clone();
    let path: Vec<&str> = env["PATH"]
        .split(':')
        .filter(|d| !Path::new(d).join("cargo").exists())
        .collect();
    no_cargo.insert("PATH".into(), path.join(":"));
    let (failed, ran, _, _) = run_github(&Store::new(), &no_cargo, good.path(), &with);
    assert!(failed, "no cargo fails the job");
    assert!(
        ran.iter().any(|s| s == "Build modvm") && !ran.iter().any(|s| s == "Resolve the kernels"),
        "{ran:?}"
    );
}

#[test]
fn gitlab_template_runs_here() {
    let archive = mirror();
    let env = runner_env();
    let (inputs, _, example) = gitlab_example();
    let head = std::process::Command::new("git")
        .arg("-C")
        .arg(repo())
        .args(["rev-parse", "HEAD"])
        .output()
        .unwrap();
    let mut given = inputs.clone();
    given.insert("modvm-git".into(), repo().display().to_string());
    given.insert(
        "modvm-ref".into(),
        String::from_utf8(head.stdout).unwrap().trim().to_string(),
    );
    given.insert("debian-mirror".into(), archive.url());
    let (_, jobs) = gitlab::interpolate(&read(TEMPLATE), &given);

    let store = Store::new();
    let all_key = kernels_key(&inputs["kernel"], &env, &archive.url());
    let rows = gitlab_matrix(&example);
    for row in &rows {
        let k = &row["MODVM_KERNEL"];
        let key = gitlab::expand(
            jobs["modvm-test"]["cache"]["key"].as_str().unwrap(),
            &BTreeMap::from([
                ("MODVM_KERNEL".to_string(), k.clone()),
                ("MODVM_KERNELS_KEY".to_string(), all_key.clone()),
            ]),
        );
        seed_kernels(&store, &key, k);
    }

    let good = project(false);
    let mut project_vars = BTreeMap::new();
    for k in [
        "CARGO_TARGET_DIR",
        "CARGO_NET_OFFLINE",
        "CARGO_PROFILE_RELEASE_OPT_LEVEL",
        "CARGO_PROFILE_RELEASE_INCREMENTAL",
    ] {
        project_vars.insert(k.to_string(), env[k].clone());
    }
    let mut runner = gitlab::Runner {
        store: &store,
        project: good.path().to_path_buf(),
        env: env.clone(),
        project_vars,
        done: BTreeMap::new(),
        scratch: tempfile::tempdir().unwrap(),
    };
    assert_eq!(
        runner.run(&jobs, "modvm-build", "build", &BTreeMap::new()),
        0,
        "modvm-build failed"
    );
    assert_eq!(
        runner.done["modvm-build"].dotenv.get("MODVM_KERNELS_KEY"),
        Some(&all_key)
    );
    for (i, row) in rows.iter().enumerate() {
        let code = runner.run(&jobs, "modvm-test", &format!("test-{i}"), row);
        assert_eq!(code, 0, "modvm-test {row:?} failed");
        let dir = runner.done["modvm-test"].dir.clone();
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("modvm-report.json")).unwrap()).unwrap();
        assert_eq!(
            report["tests"].as_array().unwrap().len(),
            1,
            "{row:?}: one test per share: {report}"
        );
        assert_eq!(report["tests"][0]["kernel"], row["MODVM_KERNEL"].as_str());
        assert!(
            !dir.join(".modvm/out/runs").exists(),
            "a passing job keeps no logs"
        );
    }

    runner.project = project(true).keep();
    // The share that runs `hello/again`, the test that fails in this project.
    let row = rows
        .iter()
        .find(|r| r["MODVM_SHARD"] == "2/2")
        .expect("a 2/2 share");
    let code = runner.run(&jobs, "modvm-test", "test-fail", row);
    assert_eq!(code, 1, "a failing test fails the job");
    let done = &runner.done["modvm-test"];
    let runs = done.dir.join(".modvm/out/runs");
    assert!(
        done.artifacts.contains(&runs),
        "the logs are artifacts: {:?}",
        done.artifacts
    );
    let found = common::walk(&runs);
    assert!(
        found.iter().any(|f| f.ends_with("again/console.log")),
        "{found:?}"
    );
    let _ = std::fs::remove_dir_all(&runner.project);

    // A kernel that cannot be resolved fails the build job, instead of
    // handing the test jobs an empty cache key.
    given.insert("kernel".into(), "no-such-kernel".into());
    let (_, bad_jobs) = gitlab::interpolate(&read(TEMPLATE), &given);
    runner.project = good.path().to_path_buf();
    assert_ne!(
        runner.run(&bad_jobs, "modvm-build", "build-bad", &BTreeMap::new()),
        0,
        "modvm-build passed with an unknown kernel"
    );
}
