//! The command line: parses arguments, prepares a run, hands it to the runner.

use crate::accel::{self, AccelMode};
use crate::guest::{Guest, GuestLogs};
use crate::kernel::{self, Kit};
use crate::outcome::{Reporters, Summary};
use crate::profile::{self, KernelProfile};
use crate::qemu::{Accel, QemuConfig};
use crate::report::human::{spinner, Human, Level};
use crate::report::json::Json;
use crate::report::junit::Junit;
use crate::report::ktap::Ktap;
use crate::report::ReportError;
use crate::runner::{self, RunConfig};
use crate::{children, paths, plan, prereq, spec};
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
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
    Test(TestArgs),
    /// List the tests `test` would run, without building or booting.
    List(ListArgs),
    /// Fetch the guest kernel kit into the cache (done by `test` when needed).
    Fetch(KitArgs),
    /// Check the host prerequisites and say how to fix what is missing.
    Doctor(KitArgs),
}

#[derive(Args, Debug, Clone)]
pub struct KitArgs {
    /// Kernel profile: a built-in name or the path of a recipe file.
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
    /// Seconds a guest may take to reach its shell.
    #[arg(long, default_value_t = 60.0)]
    pub boot_timeout: f64,
    /// Seconds a step may take when its spec sets no `timeout_s`.
    #[arg(long, default_value_t = spec::DEFAULT_STEP_TIMEOUT_S)]
    pub step_timeout: f64,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 256)]
    pub memory: u32,
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
        Command::Test(args) => test(args),
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
                    println!("{name:<40} {origin}");
                    n += 1;
                }
            }
            eprintln!("{n} test{}", if n == 1 { "" } else { "s" });
            Ok(true)
        }
        Command::Fetch(args) => {
            let profile = profile::load(&args.kernel)?;
            // Fetching needs only apt's tools, not the compiler or QEMU.
            let tools: Vec<_> = prereq::required(&profile.compiler)
                .into_iter()
                .filter(|t| ["apt-get", "dpkg-deb"].contains(&t.program.as_str()))
                .collect();
            prereq::ensure(&tools, &mut say)?;
            let kit = fetch_kit(&args, &profile)?;
            println!(
                "{}: {} ({}) ready in {}",
                kit.profile,
                kit.release,
                kit.version,
                kit.dir.display()
            );
            Ok(true)
        }
        Command::Doctor(args) => doctor(&args),
    }
}

/// Below this the cloud kernel does not reach its shell (64 MiB fails).
const MIN_MEMORY_MIB: u32 = 96;

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

fn doctor(args: &KitArgs) -> Result<bool> {
    let profile = profile::load(&args.kernel)?;
    let tools = prereq::required(&profile.compiler);
    let mut ok = true;
    for t in &tools {
        match prereq::find(&t.program) {
            Some(p) => println!("ok       {:<20} {}", t.program, p.display()),
            None => {
                ok = false;
                println!(
                    "MISSING  {:<20} {}: install with `sudo apt-get install {}`",
                    t.program, t.why, t.package
                );
            }
        }
    }
    match accel::kvm_device_problem() {
        None => println!(
            "ok       {:<20} openable; `--accel auto` probes it before use",
            "/dev/kvm"
        ),
        Some(p) => println!(
            "note     {:<20} {p}: guests run under TCG (slower, works)",
            "/dev/kvm"
        ),
    }
    let cache = paths::cache_dir(args.cache.clone());
    let mut kit_damaged = false;
    match kernel::inspect(&cache, &profile) {
        kernel::CacheState::Ready(kit) => println!("ok       {:<20} {} ({}) in {}", "kernel", kit.release, kit.version, kit.dir.display()),
        kernel::CacheState::Unverified(kit) => println!(
            "ok       {:<20} {} ({}) in {} (made by an older modvm; checked and given a manifest on the next `modvm test` or `modvm fetch`)",
            "kernel", kit.release, kit.version, kit.dir.display()
        ),
        kernel::CacheState::Damaged(damage) => {
            println!(
                "DAMAGED  {:<20} {damage}; `modvm fetch` fetches it again",
                "kernel"
            );
            kit_damaged = true;
        }
        kernel::CacheState::Missing => println!(
            "note     {:<20} `{}` not cached yet in {}; `modvm fetch` or the first `modvm test` downloads it",
            "kernel",
            profile.name,
            cache.display()
        ),
    }
    if !ok {
        if prereq::can_self_install() {
            println!("(running as root on Debian: `modvm test` installs missing tools itself)");
        }
        bail!("some host prerequisites are missing (see above)");
    }
    if kit_damaged {
        bail!("the cached kernel kit is damaged (see above)");
    }
    Ok(true)
}

fn test(args: TestArgs) -> Result<bool> {
    if !(args.step_timeout > 0.0 && args.boot_timeout > 0.0) {
        bail!("--step-timeout and --boot-timeout take a positive number of seconds");
    }
    if args.memory < MIN_MEMORY_MIB {
        bail!(
            "--memory {} is too small: the guest kernel needs at least {MIN_MEMORY_MIB} MiB",
            args.memory
        );
    }
    let specs = load_specs(&args.paths)?;
    let filter = args.filter.as_deref();
    if specs.iter().all(|s| plan::selected(s, filter).is_empty()) {
        bail!(
            "no test matches the filter {:?} (`modvm list` shows the tests)",
            filter.unwrap_or_default()
        );
    }
    let profile = profile::load(&args.kit.kernel)?;
    let mut tools = prereq::required(&profile.compiler);
    if args.qemu != Path::new("qemu-system-x86_64") {
        tools.retain(|t| t.program != "qemu-system-x86_64");
    }
    prereq::ensure(&tools, &mut say)?;
    let kit = fetch_kit(&args.kit, &profile)?;

    let build_root = args.out.join("build").join(&profile.name);
    let verbose = args.verbose;
    let planned = plan::prepare(&specs, filter, &kit, &build_root, &mut |log| {
        if verbose {
            eprint!("{log}");
        }
    })?;

    let artifacts = new_run_dir(&args.out)?;
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
        initrd: planned[0].initrd.clone(),
        extra_cmdline: extra
            .join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        memory_mib: args.memory,
        console_socket: PathBuf::new(),
    };
    let cache = paths::cache_dir(args.kit.cache.clone());
    let key = accel::host_key(&args.qemu, &kit.release);
    let decision = accel::decide(args.accel, &cache.join("accel.json"), &key, &mut || {
        probe_kvm(&qemu, &artifacts.join("kvm-probe"))
    });
    if let Some(n) = &decision.notice {
        say(n);
    }
    qemu.accel = decision.accel;

    let config = RunConfig {
        qemu,
        profile: profile.name.clone(),
        kernel_name: format!("{} ({})", profile.name, kit.release),
        boot_timeout: Duration::from_secs_f64(args.boot_timeout.max(1.0)),
        artifacts,
        echo_console: args.console,
        step_timeout_s: args.step_timeout,
    };
    let level = if args.quiet {
        Level::Quiet
    } else if args.verbose {
        Level::Verbose
    } else {
        Level::Normal
    };
    let human = if args.ktap {
        Human::stderr(level)
    } else {
        Human::stdout(level)
    };
    let mut reporters = Reporters(vec![Box::new(human)]);
    let mut outputs: Vec<(String, ReportError)> = Vec::new();
    if let Some(path) = &args.json {
        let r = Json::new(path.clone());
        outputs.push((format!("JSON report {}", path.display()), r.error_handle()));
        reporters.0.push(Box::new(r));
    }
    if let Some(path) = &args.junit {
        let r = Junit::new(path.clone());
        outputs.push((format!("JUnit report {}", path.display()), r.error_handle()));
        reporters.0.push(Box::new(r));
    }
    if args.ktap {
        let r = Ktap::stdout();
        outputs.push(("KTAP output".to_string(), r.error_handle()));
        reporters.0.push(Box::new(r));
    }
    let summary: Summary = runner::run(&config, &planned, &mut reporters);
    for (what, handle) in outputs {
        if let Some(e) = handle.get() {
            bail!("cannot write the {what}: {e}");
        }
    }
    if children::interrupted() {
        return Err(Interrupted.into());
    }
    // Tests that modvm could not run say nothing about the module: when
    // nothing else failed, that is an environment problem (exit 2).
    if summary.errors > 0 && summary.failed + summary.crashed + summary.timed_out == 0 {
        bail!(
            "{} test{} could not run (see the errors above)",
            summary.errors,
            if summary.errors == 1 { "" } else { "s" }
        );
    }
    Ok(summary.ok())
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
    let mut specs = Vec::new();
    for p in &paths {
        if !p.exists() {
            bail!("{}: no such file or directory", p.display());
        }
        specs.push(spec::load(p)?);
    }
    Ok(specs)
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
    fn bad_accel_is_a_usage_error() {
        assert!(Cli::try_parse_from(["modvm", "test", "--accel", "xen"]).is_err());
    }

    #[test]
    fn stamp_has_date_shape() {
        let s = utc_stamp();
        assert_eq!(s.len(), 15);
        assert!(s.starts_with("20"));
    }
}
