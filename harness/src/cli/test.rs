//! `modvm test`: reporters made first, then the shared preparation, then
//! the runner; a run that stops early still writes truthful reports.

use super::prepare::{self, Prepared};
use super::{error_text, say, Interrupted, TestArgs};
use crate::outcome::{Event, Reporter, Reporters, Summary, TestResult};
use crate::report::human::{Human, Level};
use crate::report::json::Json;
use crate::report::junit::Junit;
use crate::report::ktap::Ktap;
use crate::report::{is_stdout, ReportError};
use crate::{children, runner};
use anyhow::{bail, Result};
use std::path::PathBuf;

pub fn test(args: TestArgs) -> Result<bool> {
    let (mut reporters, outputs) = machine_reporters(&args)?;
    let started = std::time::Instant::now();
    let mut planned_names = Vec::new();
    let (summary, unbuilt) = match prepare_and_run(&args, &mut reporters, &mut planned_names) {
        Ok(done) => done,
        Err(e) => {
            // The reports were asked for, so they are written, and say
            // the run failed: "no report" reads as a pass to some CI.
            let interrupted = children::interrupted();
            let why = if interrupted {
                "the run was interrupted".to_string()
            } else {
                error_text(&e)
            };
            report_stopped(&mut reporters, &planned_names, &why, interrupted, started);
            for handle in outputs {
                if let Some(w) = handle.get() {
                    say(&w);
                }
            }
            return Err(e);
        }
    };
    for handle in outputs {
        if let Some(e) = handle.get() {
            bail!("{e}");
        }
    }
    if children::interrupted() {
        return Err(Interrupted.into());
    }
    // Tests that modvm could not run say nothing about the module: when
    // nothing else failed, that is an environment problem (exit 2). A
    // module that did not compile for one kernel of a matrix is the
    // module's failure (exit 1).
    let could_not_run = summary.errors - unbuilt;
    if could_not_run > 0 && summary.failed + summary.crashed + summary.timed_out + unbuilt == 0 {
        bail!(
            "{} test{} could not run (see the errors above)",
            could_not_run,
            if could_not_run == 1 { "" } else { "s" }
        );
    }
    Ok(summary.ok())
}

/// The JSON, JUnit and KTAP reporters, made before anything can fail so
/// that every failure can still be reported; with the handles that tell
/// whether each could be written.
fn machine_reporters(args: &TestArgs) -> Result<(Reporters, Vec<ReportError>)> {
    let on_stdout = [
        ("--json -", args.json.as_deref().is_some_and(is_stdout)),
        ("--junit -", args.junit.as_deref().is_some_and(is_stdout)),
        ("--ktap", args.ktap),
    ];
    let claims: Vec<&str> = on_stdout
        .iter()
        .filter(|(_, on)| *on)
        .map(|(flag, _)| *flag)
        .collect();
    if claims.len() > 1 {
        bail!(
            "{} all write to stdout; send all but one to files",
            claims.join(" and ")
        );
    }
    let mut reporters = Reporters::default();
    let mut outputs = Vec::new();
    if let Some(path) = &args.json {
        let r = Json::new(path.clone());
        outputs.push(r.error_handle());
        reporters.0.push(Box::new(r));
    }
    if let Some(path) = &args.junit {
        let r = Junit::new(path.clone());
        outputs.push(r.error_handle());
        reporters.0.push(Box::new(r));
    }
    if args.ktap {
        let r = Ktap::stdout();
        outputs.push(r.error_handle());
        reporters.0.push(Box::new(r));
    }
    Ok((reporters, outputs))
}

/// Whether a machine format owns stdout, so the human output moves to stderr.
fn stdout_taken(args: &TestArgs) -> bool {
    args.ktap
        || args.json.as_deref().is_some_and(is_stdout)
        || args.junit.as_deref().is_some_and(is_stdout)
}

/// Tells `reporters` about a run that stopped before its tests: every test
/// it meant to run (if it got as far as knowing them) is not run, and the
/// summary carries the reason.
fn report_stopped(
    reporters: &mut Reporters,
    planned: &[String],
    why: &str,
    interrupted: bool,
    started: std::time::Instant,
) {
    let none = PathBuf::new();
    reporters.event(&Event::RunStarted {
        tests: planned.len(),
        kernels: 0,
        kernel: "",
        accel: "",
        artifacts: &none,
    });
    let short = why.lines().next().unwrap_or(why);
    let mut summary = Summary::default();
    for (id, name) in planned.iter().enumerate() {
        let t = TestResult::not_run(name.clone(), String::new(), PathBuf::new(), short);
        summary.add(t.status);
        reporters.event(&Event::TestFinished { id, result: &t });
    }
    summary.interrupted = interrupted;
    if !interrupted {
        summary.error = Some(why.to_string());
    }
    summary.duration_ms = started.elapsed().as_millis() as u64;
    reporters.event(&Event::RunFinished(&summary));
}

/// The shared preparation, then the runner with the human reporter first.
fn prepare_and_run(
    args: &TestArgs,
    reporters: &mut Reporters,
    planned: &mut Vec<String>,
) -> Result<(Summary, usize)> {
    let request = prepare::Request {
        paths: &args.paths,
        filter: &args.filter,
        step_timeout_s: args.step_timeout,
        verbose: args.verbose,
        partition: args.partition,
        faults: args.faults,
        runs: args.repeat.unwrap_or(1),
    };
    let Prepared {
        mut runs,
        artifacts,
        unbuilt,
        run_lock: _run_lock,
    } = prepare::prepare(&args.guest, &request, planned)?;
    if args.keep {
        for run in &mut runs {
            run.config.keep = Some(std::sync::Arc::new(super::shell::KeepShell {
                kernel_symbols: run.config.kernel_symbols.clone(),
            }));
        }
    }
    let level = if args.quiet {
        Level::Quiet
    } else if args.verbose {
        Level::Verbose
    } else {
        Level::Normal
    };
    let mut human = if stdout_taken(args) {
        Human::stderr(level)
    } else {
        Human::stdout(level)
    };
    if args.keep {
        // Live lines would be drawn over the shell.
        human.hide_live_lines();
    }
    reporters.0.insert(0, Box::new(human));
    // One debugger, one guest; the shell of --keep needs the terminal to
    // itself.
    let jobs = if args.guest.gdb.is_some() || args.keep {
        1
    } else {
        args.jobs.unwrap_or_else(super::args::default_jobs)
    };
    Ok((runner::run(&runs, &artifacts, jobs, reporters), unbuilt))
}
