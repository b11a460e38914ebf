//! The command line: one file per subcommand over a shared "prepare a run"
//! step (`prepare.rs`: specs, prerequisites, kits, builds, run directory,
//! accelerator, launcher); this file holds the definitions and the
//! dispatch, and turns every command's result into an [`Outcome`].

use crate::kernel::profile;
use crate::{children, plan, spec};

mod args;
mod doctor;
mod kernels;
mod matrix;
mod prepare;
mod run;
mod shell;
mod summary;
mod test;
use anyhow::{Context, Result};
use args::{jobs, step_timeout_s};
pub use args::{ArchiveArgs, GuestArgs};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "modvm",
    version,
    about = "Test Linux kernel modules inside throw-away QEMU guests"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build the module(s), boot a guest per test, run the spec's steps.
    Test(Box<TestArgs>),
    /// Run one command in a fresh guest, output streamed, its exit status
    /// passed through (`modvm run module -- sh -c 'insmod hello.ko'`).
    Run(Box<run::RunArgs>),
    /// A root shell in a fresh guest, in /modules with the module(s) built;
    /// a crash brings you back with its summary (leave with `exit` or Ctrl-]).
    Shell(Box<shell::ShellArgs>),
    /// List the tests `test` would run, without building or booting.
    List(ListArgs),
    /// Fetch the guest kernel kit into the cache (done by `test` when needed),
    /// and the `guest_packages` of the specs named.
    Fetch(FetchArgs),
    /// Check the host prerequisites and say how to fix what is missing.
    Doctor(KitArgs),
    /// List kernel profiles and the cache; fetch, build or prune them.
    Kernels(kernels::KernelsArgs),
    /// Print a Markdown summary of JSON reports (for a CI job's summary page).
    Summary(summary::SummaryArgs),
}

#[derive(Args, Debug, Clone)]
pub struct KitArgs {
    /// Kernel profiles, comma-separated: built-in names, paths of recipe
    /// files, or `all` (every built-in profile that can run here).
    #[arg(long, default_value = profile::DEFAULT_PROFILE)]
    pub kernel: String,
    /// Cache directory [default: $MODVM_CACHE, else $XDG_CACHE_HOME/modvm, else ~/.cache/modvm]
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Fetch again even if the kit is cached (picks up a newer kernel).
    #[arg(long)]
    pub refresh: bool,
    #[command(flatten)]
    pub archive: ArchiveArgs,
}

#[derive(Args, Debug, Clone)]
pub struct FetchArgs {
    #[command(flatten)]
    pub kit: KitArgs,
    /// Module directories or spec files whose `guest_packages` to fetch
    /// too (a CI cache warmed before the tests, which then need no network).
    pub paths: Vec<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct ListArgs {
    /// Module directories (holding modvm.json) or spec files [default: module]
    pub paths: Vec<PathBuf>,
    /// Only tests whose `suite/name` contains this text; repeat it for
    /// tests that contain any of the texts. Matching nothing is an error.
    #[arg(long, value_name = "TEXT")]
    pub filter: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct TestArgs {
    /// Module directories (holding modvm.json; without one, a smoke test
    /// loads and unloads every module) or spec files [default: module]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub guest: GuestArgs,
    /// Only tests whose `suite/name` contains this text; repeat it for
    /// tests that contain any of the texts. Matching nothing is an error.
    #[arg(long, value_name = "TEXT")]
    pub filter: Vec<String>,
    /// Seconds a step may take when its spec sets no `timeout_s` (above 0, at most 86400).
    #[arg(long, default_value_t = spec::DEFAULT_STEP_TIMEOUT_S, value_parser = step_timeout_s)]
    pub step_timeout: f64,
    /// Guests running at once (1 to 64) [default: the number of CPUs]
    #[arg(short, long, value_name = "N", value_parser = jobs)]
    pub jobs: Option<usize>,
    /// Show each step and the module build's output.
    #[arg(short, long, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Print only failures and the summary.
    #[arg(short, long)]
    pub quiet: bool,
    /// Write a JSON report (schema: docs/report.schema.json).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a JUnit XML report.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Print KTAP version 1 on stdout (the human output moves to stderr).
    #[arg(long)]
    pub ktap: bool,
    /// After a test that did not pass, open a shell in its guest as the
    /// test left it (unless a panic ended the guest); the run goes on when
    /// the shell ends. Implies `-j 1`.
    #[arg(long)]
    pub keep: bool,
    /// Run only share K of N of the selected tests (CI jobs in parallel:
    /// the N shares together run every test once).
    #[arg(long, value_name = "K/N", value_parser = crate::partition::parse)]
    pub partition: Option<crate::partition::Partition>,
    /// Fault injection: after a run that counts the allocations of each
    /// test's first module's init, run the test again once per allocation,
    /// each in a fresh guest, with that allocation failed; every run must
    /// end cleanly (needs a kernel with fault injection: `--kernel debug`).
    #[arg(long, conflicts_with = "gdb")]
    pub faults: bool,
    /// Run each test N times (1 to 10000), each on a fresh guest from the
    /// same saved state, as one result with counts: for races (with
    /// `--smp`). Unlike a spec's `repeat`, which loops in one guest.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000), conflicts_with_all = ["faults", "gdb"])]
    pub repeat: Option<u32>,
}

/// The run was stopped by Ctrl-C (exit 130).
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// How a command ended, as the process's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked for was done and passed (exit 0).
    Success,
    /// A test failed, crashed or timed out (exit 1).
    TestsFailed,
    /// The status of a command run in the guest (`modvm run`).
    Status(u8),
}

impl Outcome {
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::TestsFailed => 1,
            Outcome::Status(s) => s,
        }
    }
}

impl From<bool> for Outcome {
    fn from(passed: bool) -> Outcome {
        if passed {
            Outcome::Success
        } else {
            Outcome::TestsFailed
        }
    }
}

/// Runs a parsed command. Errors are exit 2 (130 after an interrupt).
pub fn run(cli: Cli) -> Result<Outcome> {
    children::install_interrupt_handler();
    match cli.command {
        Command::Test(args) => test::test(*args).map(Outcome::from),
        Command::Run(args) => run::run(*args),
        Command::Shell(args) => shell::shell(*args),
        Command::List(args) => {
            let specs = prepare::load_specs(&args.paths)?;
            let mut n = 0;
            for loaded in &specs {
                for name in plan::selected(loaded, &args.filter) {
                    let origin = if loaded.smoke {
                        format!("{} (no spec: smoke test)", loaded.dir.display())
                    } else {
                        loaded.path.display().to_string()
                    };
                    if !print_line(&format!("{name:<40} {origin}"))? {
                        return Ok(Outcome::Success);
                    }
                    n += 1;
                }
            }
            if n == 0 {
                return Err(prepare::no_test_matches(&args.filter));
            }
            eprintln!("{n} test{}", if n == 1 { "" } else { "s" });
            Ok(Outcome::Success)
        }
        Command::Fetch(fetch) => {
            let args = &fetch.kit;
            for profile in matrix::profiles(&args.kernel, &mut say)? {
                // Fetching needs only apt's tools, not the compiler or QEMU;
                // the fetch says what to do on a host without them.
                let kit = prepare::fetch_kit(args, &profile)?;
                print_line(&format!(
                    "{}: {} ({}) ready in {}",
                    kit.profile,
                    kit.release,
                    kit.version,
                    kit.dir.display()
                ))?;
            }
            if !fetch.paths.is_empty() {
                let specs = prepare::load_specs(&fetch.paths)?;
                for (names, files) in prepare::fetch_guest_packages(args, &specs)? {
                    print_line(&format!(
                        "guest packages {}: {} files ready",
                        names.join(", "),
                        files.len()
                    ))?;
                }
            }
            Ok(Outcome::Success)
        }
        Command::Doctor(args) => doctor::doctor(&args).map(Outcome::from),
        Command::Kernels(args) => kernels::run(&args).map(Outcome::from),
        Command::Summary(args) => summary::summary(&args).map(|()| Outcome::Success),
    }
}

/// The error and its causes for the user, each said once.
///
/// `{:#}` appends every `source()` to the message, but many error types
/// already quote their source in their own text ("{path}: {source}"), which
/// would print the compiler output or an OS error twice. A cause whose text
/// is already in what has been written adds nothing and is left out.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(c.trim()) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}

/// Writes a line to stdout; `Ok(false)` when the reader has gone away
/// (`modvm list | head -1`), which is a normal end of output, not an error.
/// (`println!` would panic there.)
pub(crate) fn print_line(line: &str) -> Result<bool> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

pub(crate) fn say(msg: &str) {
    eprintln!("modvm: {msg}");
}

#[cfg(test)]
mod tests {
    use super::args::{default_jobs, MAX_JOBS};
    use super::prepare::load_specs;
    use super::*;
    use crate::accel::AccelMode;
    use clap::CommandFactory;
    use std::path::Path;
    use std::time::Duration;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn test_defaults() {
        let cli = Cli::try_parse_from(["modvm", "test"]).unwrap();
        let Command::Test(a) = cli.command else {
            panic!()
        };
        assert_eq!(a.guest.accel, AccelMode::Auto);
        assert_eq!(a.guest.kit.kernel, profile::DEFAULT_PROFILE);
        assert!(a.paths.is_empty());
    }

    #[test]
    fn jobs_are_bounded_where_parsed() {
        let jobs_of = |v: &str| {
            let cli = Cli::try_parse_from(["modvm", "test", &format!("--jobs={v}")])?;
            let Command::Test(a) = cli.command else {
                panic!()
            };
            Ok::<_, clap::Error>(a.jobs)
        };
        assert_eq!(jobs_of("1").unwrap(), Some(1));
        assert_eq!(jobs_of("64").unwrap(), Some(64));
        for bad in ["0", "65", "999", "-1", "two", "1.5"] {
            let e = jobs_of(bad).unwrap_err().to_string();
            assert!(e.contains("allowed: from 1 to 64"), "{bad}: {e}");
        }
        assert!((1..=MAX_JOBS).contains(&default_jobs()));
    }

    #[test]
    fn bad_accel_is_a_usage_error() {
        assert!(Cli::try_parse_from(["modvm", "test", "--accel", "xen"]).is_err());
    }

    fn module_dir(root: &Path, rel: &str, spec: Option<&str>) -> PathBuf {
        let dir = root.join(rel);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Kbuild"), "obj-m := x.o\n").unwrap();
        if let Some(text) = spec {
            std::fs::write(dir.join(spec::SPEC_FILE), text).unwrap();
        }
        dir
    }

    #[test]
    fn the_same_module_named_twice_is_loaded_once() {
        let root = tempfile::tempdir().unwrap();
        let dir = module_dir(
            root.path(),
            "m",
            Some(r#"{"tests": [{"name": "t", "steps": [{"run": "true"}]}]}"#),
        );
        let specs = load_specs(&[
            dir.clone(),
            dir.join(spec::SPEC_FILE),
            root.path().join("m/../m"),
        ])
        .unwrap();
        assert_eq!(specs.len(), 1);
        let smoke = module_dir(root.path(), "s", None);
        assert_eq!(load_specs(&[smoke.clone(), smoke]).unwrap().len(), 1);
    }

    fn parse_test(args: &[&str]) -> Result<TestArgs, clap::Error> {
        let mut all = vec!["modvm", "test"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all)?.command {
            Command::Test(a) => Ok(*a),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn numbers_outside_their_range_are_usage_errors_naming_the_range() {
        for (flag, value, range) in [
            ("--boot-timeout", "inf", "from 1 to 3600 seconds"),
            ("--boot-timeout", "NaN", "from 1 to 3600 seconds"),
            ("--boot-timeout", "0.5", "from 1 to 3600 seconds"),
            ("--boot-timeout", "3601", "from 1 to 3600 seconds"),
            (
                "--step-timeout",
                "1e300",
                "above 0 and at most 86400 seconds",
            ),
            (
                "--step-timeout",
                "1e19",
                "above 0 and at most 86400 seconds",
            ),
            ("--step-timeout", "0", "above 0 and at most 86400 seconds"),
            ("--step-timeout", "-1", "above 0 and at most 86400 seconds"),
            (
                "--step-timeout",
                "soon",
                "above 0 and at most 86400 seconds",
            ),
            ("--memory", "64", "from 96 to 65536 MiB"),
            ("--memory", "99999999999", "from 96 to 65536 MiB"),
            ("--memory", "1.5", "from 96 to 65536 MiB"),
        ] {
            let e = parse_test(&[&format!("{flag}={value}")]).expect_err(value);
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
            let text = e.to_string();
            assert!(text.contains(range), "{flag} {value}: {text}");
        }
    }

    #[test]
    fn numbers_at_the_edges_of_their_range_are_taken() {
        let a = parse_test(&[
            "--boot-timeout",
            "3600",
            "--step-timeout",
            "0.001",
            "--memory",
            "96",
        ])
        .unwrap();
        assert_eq!(
            (a.guest.boot_timeout, a.step_timeout, a.guest.memory),
            (Some(3600.0), 0.001, Some(96))
        );
        let a = parse_test(&[
            "--boot-timeout",
            "1",
            "--step-timeout",
            "86400",
            "--memory",
            "65536",
        ])
        .unwrap();
        assert_eq!(
            (a.guest.boot_timeout, a.step_timeout, a.guest.memory),
            (Some(1.0), 86400.0, Some(65536))
        );
        assert!(Duration::from_secs_f64(a.step_timeout) > Duration::ZERO);
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct Quoting {
        path: String,
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot build the module in m: {source}")]
    struct Outer {
        #[source]
        source: Quoting,
    }

    #[test]
    fn a_cause_already_quoted_by_its_error_is_printed_once() {
        let io = std::io::Error::from_raw_os_error(libc::EROFS);
        let os = io.to_string();
        let e = anyhow::Error::new(Outer {
            source: Quoting {
                path: "/cache".into(),
                source: io,
            },
        })
        .context("cannot get the guest kernel");
        let text = error_text(&e);
        assert_eq!(
            text,
            format!("cannot get the guest kernel: cannot build the module in m: /cache: {os}")
        );
        assert_eq!(text.matches(&os).count(), 1, "{text}");
    }

    #[test]
    fn a_cause_not_yet_quoted_is_appended() {
        let e = anyhow::Error::new(std::io::Error::other("disk full")).context("writing x");
        assert_eq!(error_text(&e), "writing x: disk full");
    }

    #[test]
    fn only_the_oldest_of_modvm_own_run_directories_are_pruned() {
        let runs = tempfile::tempdir().unwrap();
        for n in [
            "20260101-000000-1",
            "20260101-000001-22",
            "20260102-000000-3",
            "mine",
            "2026-notes",
        ] {
            std::fs::create_dir(runs.path().join(n)).unwrap();
        }
        std::fs::write(runs.path().join("20250101-000000-9"), b"a file").unwrap();
        let old = prepare::old_runs(runs.path(), 2);
        assert_eq!(old, vec![runs.path().join("20260101-000000-1")]);
        assert!(prepare::old_runs(runs.path(), 5).is_empty());
    }

    #[test]
    fn suites_named_after_directories_of_one_name_take_their_parents_names() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in ["a/x/hello", "b/x/hello", "c/hello", "s1", "s2"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
            std::fs::write(r.join(d).join("Kbuild"), "obj-m := hello.o\n").unwrap();
        }
        let paths: Vec<std::path::PathBuf> = ["a/x/hello", "b/x/hello", "c/hello"]
            .iter()
            .map(|d| r.join(d))
            .collect();
        let specs = prepare::load_specs(&paths).unwrap();
        let suites: Vec<&str> = specs.iter().map(|s| s.suite.as_str()).collect();
        assert_eq!(suites, ["a-x-hello", "b-x-hello", "hello"]);
        // Named alike by their specs: the author's to rename.
        for d in ["s1", "s2"] {
            std::fs::write(
                r.join(d).join("modvm.json"),
                r#"{ "suite": "same", "tests": [{ "name": "t", "steps": [{ "run": "true" }] }] }"#,
            )
            .unwrap();
        }
        let e = prepare::load_specs(&[r.join("s1"), r.join("s2")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("are both suite \"same\""), "{e}");
    }

    #[test]
    fn pruning_passes_over_a_run_still_in_progress() {
        let out = tempfile::tempdir().unwrap();
        let runs = out.path().join("runs");
        for n in ["20260101-000000-1", "20260101-000001-2"] {
            std::fs::create_dir_all(runs.join(n)).unwrap();
        }
        // The older one is another run's, still going.
        let held = crate::lock::Lock::try_exclusive(
            &runs.join("20260101-000000-1").join(".in-progress.lock"),
        )
        .unwrap();
        let (mine, lock) = prepare::new_run_dir(out.path(), 1).unwrap();
        assert!(mine.is_dir());
        assert!(runs.join("20260101-000000-1").is_dir(), "in progress: kept");
        assert!(!runs.join("20260101-000001-2").exists(), "finished: pruned");
        drop(held);
        // (The same process in the same second gets the same name again.)
        drop(lock);
        let (_again, _lock) = prepare::new_run_dir(out.path(), 1).unwrap();
        assert!(
            !runs.join("20260101-000000-1").exists(),
            "finished now: pruned"
        );
    }

    #[test]
    fn stamps_are_utc_civil_dates() {
        for (secs, want) in [
            (0, "19700101-000000"),
            (951_782_400, "20000229-000000"),
            (1_709_294_399, "20240301-115959"),
            (4_102_444_799, "20991231-235959"),
        ] {
            assert_eq!(prepare::stamp_of(secs), want, "{secs}");
        }
        let now = prepare::utc_stamp();
        assert_eq!(now.len(), 15);
        assert!(now.starts_with("20"));
    }
}
