//! The command line: parses arguments, prepares a run, hands it to the runner.

use crate::accel::{self, AccelMode};
use crate::guest::launcher::{Cold, Launcher, Restore};
use crate::guest::{Guest, GuestLogs};
use crate::kernel::profile::{self, KernelProfile};
use crate::kernel::{self, Kit};
use crate::outcome::{Event, Reporter, Reporters, Summary, TestResult};
use crate::qemu::{Accel, QemuConfig};
use crate::report::human::{spinner, Human, Level};
use crate::report::json::Json;
use crate::report::junit::Junit;
use crate::report::ktap::Ktap;
use crate::report::{is_stdout, ReportError};
use crate::runner::{self, RunConfig};
use crate::{children, paths, plan, prereq, spec};

mod kernels;
mod matrix;
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
    /// List the tests `test` would run, without building or booting.
    List(ListArgs),
    /// Fetch the guest kernel kit into the cache (done by `test` when needed).
    Fetch(KitArgs),
    /// Check the host prerequisites and say how to fix what is missing.
    Doctor(KitArgs),
    /// List kernel profiles and the cache; fetch, build or prune them.
    Kernels(kernels::KernelsArgs),
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
}

#[derive(Args, Debug, Clone)]
pub struct ListArgs {
    /// Module directories (holding modvm.json) or spec files [default: module]
    pub paths: Vec<PathBuf>,
    /// Only tests whose `suite/name` contains this text.
    #[arg(long)]
    pub filter: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct TestArgs {
    /// Module directories (holding modvm.json; without one, a smoke test
    /// loads and unloads every module) or spec files [default: module]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub kit: KitArgs,
    /// CPU acceleration; `auto` uses KVM only after a probe boot proves it works.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: AccelMode,
    /// Only tests whose `suite/name` contains this text.
    #[arg(long)]
    pub filter: Option<String>,
    /// Where builds and per-test logs go.
    #[arg(long, default_value = "target/modvm")]
    pub out: PathBuf,
    /// Seconds a guest may take to reach its shell (1 to 3600) [default: the kernel profile's, 60 for the Debian ones]
    #[arg(long, value_parser = boot_timeout_s)]
    pub boot_timeout: Option<f64>,
    /// Seconds a step may take when its spec sets no `timeout_s` (above 0, at most 86400).
    #[arg(long, default_value_t = spec::DEFAULT_STEP_TIMEOUT_S, value_parser = step_timeout_s)]
    pub step_timeout: f64,
    /// Guest memory in MiB (96 to 65536) [default: the kernel profile's, 256 for the Debian ones]
    #[arg(long, value_parser = memory_mib)]
    pub memory: Option<u32>,
    /// Guests running at once (1 to 64) [default: the number of CPUs]
    #[arg(short, long, value_name = "N", value_parser = jobs)]
    pub jobs: Option<usize>,
    /// Guest CPUs for tests whose spec sets no `smp` (1 to 16).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=spec::MAX_SMP as i64))]
    pub smp: u32,
    /// Boot every guest instead of restoring a saved one (the saved guests
    /// live in the cache under `snapshots/`).
    #[arg(long)]
    pub cold: bool,
    /// Extra kernel command-line parameters.
    #[arg(long, default_value = "")]
    pub append: String,
    /// QEMU binary.
    #[arg(long, default_value = "qemu-system-x86_64")]
    pub qemu: PathBuf,
    /// Show each step and the module build's output.
    #[arg(short, long, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Print only failures and the summary.
    #[arg(short, long)]
    pub quiet: bool,
    /// Stream every guest's console and kernel log to stderr while it runs.
    #[arg(long)]
    pub console: bool,
    /// Boot with `panic_on_warn=1`: a kernel WARNING ends the guest at once.
    #[arg(long)]
    pub panic_on_warn: bool,
    /// Boot with `oops=panic`: an oops ends the guest at once.
    #[arg(long)]
    pub panic_on_oops: bool,
    /// Write a JSON report (schema: docs/report.schema.json).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a JUnit XML report.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Print KTAP version 1 on stdout (the human output moves to stderr).
    #[arg(long)]
    pub ktap: bool,
}

/// The run was stopped by Ctrl-C (exit 130).
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Runs a parsed command; `Ok(false)` means tests failed.
pub fn run(cli: Cli) -> Result<bool> {
    children::install_interrupt_handler();
    match cli.command {
        Command::Test(args) => test(*args),
        Command::List(args) => {
            let specs = load_specs(&args.paths)?;
            let mut n = 0;
            for loaded in &specs {
                for name in plan::selected(loaded, args.filter.as_deref()) {
                    let origin = if loaded.smoke {
                        format!("{} (no spec: smoke test)", loaded.dir.display())
                    } else {
                        loaded.path.display().to_string()
                    };
                    if !print_line(&format!("{name:<40} {origin}"))? {
                        return Ok(true);
                    }
                    n += 1;
                }
            }
            eprintln!("{n} test{}", if n == 1 { "" } else { "s" });
            Ok(true)
        }
        Command::Fetch(args) => {
            for profile in matrix::profiles(&args.kernel, &mut say)? {
                // Fetching needs only apt's tools, not the compiler or QEMU.
                let tools: Vec<_> = prereq::required(&profile.compiler)
                    .into_iter()
                    .filter(|t| ["apt-get", "dpkg-deb"].contains(&t.program.as_str()))
                    .collect();
                prereq::ensure(&tools, &mut say)?;
                let kit = fetch_kit(&args, &profile)?;
                print_line(&format!(
                    "{}: {} ({}) ready in {}",
                    kit.profile,
                    kit.release,
                    kit.version,
                    kit.dir.display()
                ))?;
            }
            Ok(true)
        }
        Command::Doctor(args) => doctor(&args),
        Command::Kernels(args) => kernels::run(&args),
    }
}

/// Below this the cloud kernel does not reach its shell (64 MiB fails).
const MIN_MEMORY_MIB: u32 = 96;
/// 64 GiB: far beyond what a module test needs, and small enough that QEMU
/// reports a host shortage instead of an overflow.
const MAX_MEMORY_MIB: u32 = 65536;
/// An hour: a boot that takes longer has hung.
const MAX_BOOT_TIMEOUT_S: f64 = 3600.0;
/// A day: longer deadlines are typos, and `Duration` cannot hold every `f64`.
const MAX_STEP_TIMEOUT_S: f64 = 86400.0;

/// More guests than this at once is a typo: each needs its own memory
/// (256 MiB by default) and most of a CPU under TCG.
const MAX_JOBS: usize = 64;

/// Parses seconds and checks them against a range at the edge, so that no
/// later `Duration` conversion can see NaN, infinity or an overflow.
fn seconds_in(text: &str, min: f64, min_inclusive: bool, max: f64) -> Result<f64, String> {
    let range = if min_inclusive {
        format!("from {min} to {max} seconds")
    } else {
        format!("above {min} and at most {max} seconds")
    };
    let v: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds; allowed: {range}"))?;
    let above_min = if min_inclusive { v >= min } else { v > min };
    if v.is_finite() && above_min && v <= max {
        Ok(v)
    } else {
        Err(format!("{text} is out of range; allowed: {range}"))
    }
}

fn boot_timeout_s(text: &str) -> Result<f64, String> {
    seconds_in(text, 1.0, true, MAX_BOOT_TIMEOUT_S)
}

fn step_timeout_s(text: &str) -> Result<f64, String> {
    seconds_in(text, 0.0, false, MAX_STEP_TIMEOUT_S)
}

fn memory_mib(text: &str) -> Result<u32, String> {
    let range = format!("from {MIN_MEMORY_MIB} to {MAX_MEMORY_MIB} MiB (the guest kernel needs at least {MIN_MEMORY_MIB})");
    match text.trim().parse::<u64>() {
        Ok(v) if (u64::from(MIN_MEMORY_MIB)..=u64::from(MAX_MEMORY_MIB)).contains(&v) => {
            Ok(v as u32)
        }
        Ok(_) => Err(format!("{text} is out of range; allowed: {range}")),
        Err(_) => Err(format!(
            "`{text}` is not a whole number of MiB; allowed: {range}"
        )),
    }
}

fn jobs(text: &str) -> Result<usize, String> {
    let range = format!("from 1 to {MAX_JOBS} guests at once");
    match text.trim().parse::<u64>() {
        Ok(v) if (1..=MAX_JOBS as u64).contains(&v) => Ok(v as usize),
        Ok(_) => Err(format!("{text} is out of range; allowed: {range}")),
        Err(_) => Err(format!(
            "`{text}` is not a whole number of guests; allowed: {range}"
        )),
    }
}

/// One guest per CPU: under TCG each guest keeps a CPU busy.
fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_JOBS)
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
fn print_line(line: &str) -> Result<bool> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

fn say(msg: &str) {
    eprintln!("modvm: {msg}");
}

fn fetch_kit(args: &KitArgs, profile: &KernelProfile) -> Result<Kit> {
    let cache = paths::cache_dir(args.cache.clone());
    let mut progress = KitProgress { spinner: None };
    let kit = kernel::ensure(&cache, profile, args.refresh, &mut progress);
    if let Some(sp) = progress.spinner {
        sp.finish_and_clear();
    }
    kit.with_context(|| format!("cannot get the guest kernel `{}`", profile.name))
}

/// Shows the kit's steps on a spinner (started only when there is work)
/// and its notices as lines that stay.
struct KitProgress {
    spinner: Option<indicatif::ProgressBar>,
}

impl kernel::Progress for KitProgress {
    fn step(&mut self, message: &str) {
        let sp = self.spinner.get_or_insert_with(spinner);
        if sp.is_hidden() {
            say(message);
        }
        sp.set_message(message.to_string());
    }

    fn notice(&mut self, message: &str) {
        match &self.spinner {
            Some(sp) => sp.suspend(|| say(message)),
            None => say(message),
        }
    }
}

/// `println!` that ends quietly on a closed stdout (see [`print_line`]).
macro_rules! out {
    ($($t:tt)*) => {{
        print_line(&format!($($t)*))?;
    }};
}

fn doctor(args: &KitArgs) -> Result<bool> {
    let profiles = matrix::profiles(&args.kernel, &mut say)?;
    let tools = matrix::tools(&profiles);
    let mut ok = true;
    for t in &tools {
        match prereq::find(&t.program) {
            Some(p) => out!("ok       {:<20} {}", t.program, p.display()),
            None => {
                ok = false;
                out!(
                    "MISSING  {:<20} {}: install with `sudo apt-get install {}`",
                    t.program,
                    t.why,
                    t.package
                );
            }
        }
    }
    match accel::kvm_device_problem() {
        None => out!(
            "ok       {:<20} openable; `--accel auto` probes it before use",
            "/dev/kvm"
        ),
        Some(p) => out!(
            "note     {:<20} {p}: guests run under TCG (slower, works)",
            "/dev/kvm"
        ),
    }
    let cache = paths::cache_dir(args.cache.clone());
    let mut kit_damaged = false;
    for profile in &profiles {
        if !kernel::is_cached_kind(profile) {
            match (&profile.source, kernel::host::problem()) {
                (kernel::Source::Host, Some(why)) => {
                    out!("MISSING  {:<20} {why}", profile.name);
                    ok = false;
                }
                _ => out!(
                    "note     {:<20} a {} kernel: checked when a run uses it",
                    profile.name,
                    profile.source.kind()
                ),
            }
            continue;
        }
        match kernel::inspect(&cache, profile) {
        kernel::CacheState::Ready(kit) => out!("ok       {:<20} {} ({}) in {}", "kernel", kit.release, kit.version, kit.dir.display()),
        kernel::CacheState::Unverified(kit) => out!(
            "ok       {:<20} {} ({}) in {} (made by an older modvm; checked and given a manifest on the next `modvm test` or `modvm fetch`)",
            "kernel", kit.release, kit.version, kit.dir.display()
        ),
        kernel::CacheState::Damaged(damage) => {
            out!(
                "DAMAGED  {:<20} {damage}; `modvm fetch` fetches it again",
                "kernel"
            );
            kit_damaged = true;
        }
        kernel::CacheState::Missing => out!(
            "note     {:<20} `{}` not cached yet in {}; `modvm fetch` or the first `modvm test` downloads it",
            "kernel",
            profile.name,
            cache.display()
        ),
        }
    }
    if !ok {
        if prereq::can_self_install() {
            out!("(running as root on Debian: `modvm test` installs missing tools itself)");
        }
        bail!("some host prerequisites are missing (see above)");
    }
    if kit_damaged {
        bail!("the cached kernel kit is damaged (see above)");
    }
    Ok(true)
}

fn test(args: TestArgs) -> Result<bool> {
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

/// Runs `work` on a thread of its own and stops waiting for it when the
/// user interrupts. A build or a download can take minutes, longer than the
/// interrupt handler's wind-down; waiting for them would let the process
/// exit without writing the reports.
fn until_interrupted<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    use std::sync::mpsc::{channel, RecvTimeoutError};
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(result) => return result,
            Err(RecvTimeoutError::Timeout) if children::interrupted() => {
                return Err(Interrupted.into())
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => bail!("the build stopped without a result"),
        }
    }
}

/// Everything from the specs to the last test. `planned` receives the
/// selected tests' names as soon as they are known, for the reports of a
/// run that stops before running them. Errors are returned only before
/// the runner starts; after that the runner reports for itself. Returns
/// the summary and how many results are modules that did not build for a
/// kernel of a matrix.
fn prepare_and_run(
    args: &TestArgs,
    reporters: &mut Reporters,
    planned: &mut Vec<String>,
) -> Result<(Summary, usize)> {
    let specs = load_specs(&args.paths)?;
    let filter = args.filter.as_deref();
    *planned = specs
        .iter()
        .flat_map(|s| plan::selected(s, filter))
        .collect();
    if planned.is_empty() {
        bail!(
            "no test matches the filter {:?} (`modvm list` shows the tests)",
            filter.unwrap_or_default()
        );
    }
    let profiles = matrix::profiles(&args.kit.kernel, &mut say)?;
    matrix::check_spec_kernels(&specs, &profiles)?;
    let mut tools = matrix::tools(&profiles);
    if args.qemu != Path::new("qemu-system-x86_64") {
        tools.retain(|t| t.program != "qemu-system-x86_64");
    }
    prereq::ensure(&tools, &mut say)?;

    let keep_going = profiles.len() > 1;
    let mut prepared = Vec::new();
    for profile in &profiles {
        let kit = {
            let _t = crate::trace::span("kit");
            let (kit_args, profile) = (args.kit.clone(), profile.clone());
            until_interrupted(move || fetch_kit(&kit_args, &profile))?
        };
        let build_root = args.out.join("build").join(&profile.name);
        let verbose = args.verbose;
        let plan = {
            let _t = crate::trace::span("build");
            let (specs, filter, kit, build_root) = (
                specs.clone(),
                args.filter.clone(),
                kit.clone(),
                build_root.clone(),
            );
            until_interrupted(move || {
                Ok(plan::prepare(
                    &specs,
                    filter.as_deref(),
                    &kit,
                    &build_root,
                    keep_going,
                    &mut |log| {
                        if verbose {
                            eprint!("{log}");
                        }
                    },
                )?)
            })?
        };
        if children::interrupted() {
            return Err(Interrupted.into());
        }
        prepared.push((profile.clone(), kit, plan));
    }

    let artifacts = new_run_dir(&args.out)?;
    let mut runs = Vec::new();
    let mut unbuilt_count = 0;
    for (profile, kit, plan) in prepared {
        let memory = args.memory.unwrap_or(profile.memory_mib);
        if memory < profile.memory_min_mib {
            bail!(
                "--memory {memory} is too small for kernel profile `{}`: it needs at least {} MiB",
                profile.name,
                profile.memory_min_mib
            );
        }
        let mut extra = vec![profile.cmdline.clone(), args.append.clone()];
        if args.panic_on_warn {
            extra.push("panic_on_warn=1".into());
        }
        if args.panic_on_oops {
            extra.push("oops=panic".into());
        }
        let mut qemu = QemuConfig {
            binary: args.qemu.clone(),
            accel: Accel::Tcg,
            kernel: kit.vmlinuz.clone(),
            initrd: PathBuf::new(),
            extra_cmdline: extra
                .join(" ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            memory_mib: memory,
            smp: args.smp,
            console_socket: PathBuf::new(),
            qmp_socket: None,
            incoming: None,
            incoming_fd: None,
        };
        if let Some(first) = plan.tests.first() {
            qemu.initrd = first.initrd.clone();
            let cache = paths::cache_dir(args.kit.cache.clone());
            let key = accel::host_key(&args.qemu, &kit.release);
            let probe_dir = artifacts.join("kvm-probe").join(&profile.name);
            let decision = accel::decide(args.accel, &cache.join("accel.json"), &key, &mut || {
                probe_kvm(&qemu, &probe_dir)
            });
            if let Some(n) = &decision.notice {
                say(n);
            }
            qemu.accel = decision.accel;
        }
        let unbuilt = matrix::unbuilt_results(&plan.unbuilt, &profile, &kit);
        unbuilt_count += unbuilt.len();
        runs.push(runner::KernelRun {
            config: RunConfig {
                qemu,
                profile: profile.name.clone(),
                kernel_name: format!("{} ({})", profile.name, kit.release),
                release: kit.release.clone(),
                boot_timeout: Duration::from_secs_f64(
                    args.boot_timeout.unwrap_or(profile.boot_timeout_s),
                ),
                artifacts: artifacts.join(runner::dir_name(&profile.name)),
                echo_console: args.console,
                step_timeout_s: args.step_timeout,
                kernel_symbols: kit.system_map.clone().zip(kit.vmlinux.clone()),
                kmemleak: kit.has_option("CONFIG_DEBUG_KMEMLEAK"),
                launcher: launcher(args, &profile, &kit),
            },
            tests: plan.tests,
            unbuilt,
        });
    }
    let level = if args.quiet {
        Level::Quiet
    } else if args.verbose {
        Level::Verbose
    } else {
        Level::Normal
    };
    let human = if stdout_taken(args) {
        Human::stderr(level)
    } else {
        Human::stdout(level)
    };
    reporters.0.insert(0, Box::new(human));
    let jobs = args.jobs.unwrap_or_else(default_jobs);
    Ok((
        runner::run(&runs, &artifacts, jobs, reporters),
        unbuilt_count,
    ))
}

/// Cold boots with `--cold`, else restores of saved guests in the cache.
fn launcher(args: &TestArgs, profile: &KernelProfile, kit: &Kit) -> Arc<dyn Launcher> {
    if args.cold {
        return Arc::new(Cold);
    }
    Arc::new(Restore::new(
        paths::cache_dir(args.kit.cache.clone()).join("snapshots"),
        &profile.name,
        kit.busybox.clone(),
        Box::new(say),
    ))
}

/// Boots one guest under KVM with a short deadline.
fn probe_kvm(base: &QemuConfig, dir: &Path) -> Result<(), String> {
    let mut cfg = base.clone();
    cfg.accel = Accel::Kvm;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    say("probing KVM with a short boot (once per host)");
    match Guest::boot(&cfg, &GuestLogs::in_dir(dir), Duration::from_secs(10)) {
        Ok(_) => Ok(()),
        Err(e) => {
            let msg = e.to_string();
            Err(msg
                .lines()
                .next()
                .unwrap_or("boot failed")
                .chars()
                .take(160)
                .collect())
        }
    }
}

fn load_specs(paths: &[PathBuf]) -> Result<Vec<spec::LoadedSpec>> {
    let paths = if paths.is_empty() {
        let default = PathBuf::from("module");
        if !default.is_dir() {
            bail!(
                "no module directory given and ./module does not exist; run `modvm test <module dir or spec file>`"
            );
        }
        vec![default]
    } else {
        paths.to_vec()
    };
    let mut specs: Vec<spec::LoadedSpec> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for p in &paths {
        if !p.exists() {
            bail!("{}: no such file or directory", p.display());
        }
        let loaded = spec::load(p)?;
        // The same spec named twice (`module module/modvm.json`) runs once.
        let identity = std::fs::canonicalize(&loaded.path)
            .or_else(|_| std::fs::canonicalize(&loaded.dir))
            .unwrap_or_else(|_| loaded.path.clone());
        if !seen.insert(identity) {
            continue;
        }
        // Test names (`suite/test`) name reports and log directories.
        if let Some(other) = specs.iter().find(|s| s.suite == loaded.suite) {
            bail!(
                "{} and {} are both suite {:?}; give one a different `suite` in its {} (or rename its directory)",
                origin(other),
                origin(&loaded),
                loaded.suite,
                spec::SPEC_FILE
            );
        }
        specs.push(loaded);
    }
    Ok(specs)
}

/// Where a suite comes from, for messages.
fn origin(loaded: &spec::LoadedSpec) -> String {
    if loaded.smoke {
        format!("{} (no {})", loaded.dir.display(), spec::SPEC_FILE)
    } else {
        loaded.path.display().to_string()
    }
}

/// `<out>/runs/<UTC stamp>-<pid>`, plus a `latest` link to it.
fn new_run_dir(out: &Path) -> Result<PathBuf> {
    let runs = out.join("runs");
    let name = format!("{}-{}", utc_stamp(), std::process::id());
    let dir = runs.join(&name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let latest = runs.join("latest");
    let _ = std::fs::remove_file(&latest);
    let _ = std::os::unix::fs::symlink(&name, &latest);
    Ok(dir)
}

fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

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
        assert_eq!(a.accel, AccelMode::Auto);
        assert_eq!(a.kit.kernel, profile::DEFAULT_PROFILE);
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

    #[test]
    fn two_directories_with_one_suite_name_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let a = module_dir(root.path(), "p1/mod", None);
        let b = module_dir(root.path(), "p2/mod", None);
        let e = load_specs(&[a, b]).unwrap_err().to_string();
        assert!(
            e.contains("p1/mod (no modvm.json) and") && e.contains("both suite \"mod\""),
            "{e}"
        );
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
            (a.boot_timeout, a.step_timeout, a.memory),
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
            (a.boot_timeout, a.step_timeout, a.memory),
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
    fn stamp_has_date_shape() {
        let s = utc_stamp();
        assert_eq!(s.len(), 15);
        assert!(s.starts_with("20"));
    }
}
