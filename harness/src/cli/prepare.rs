//! What every command that starts guests does first: load the specs, check
//! the host, get each kernel's kit, build the modules, make the run
//! directory, decide the accelerator and pick the launcher.

use super::matrix;
use super::{say, GuestArgs, Interrupted, KitArgs};
use crate::accel;
use crate::guest::launcher::{Cold, Launcher, Restore};
use crate::guest::{gdb, Guest, GuestLogs};
use crate::kernel::profile::KernelProfile;
use crate::kernel::{self, Kit};
use crate::lock::Lock;
use crate::machine::{Arch, Device, Machine};
use crate::outcome::Status;
use crate::qemu::{Accel, GdbStub, QemuConfig};
use crate::report::human::spinner;
use crate::runner::{self, RunConfig};
use crate::{children, paths, plan, prereq, spec};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub fn fetch_kit(args: &KitArgs, profile: &KernelProfile) -> Result<Kit> {
    let cache = paths::cache_dir(args.cache.clone());
    let mut progress = KitProgress { spinner: None };
    let sources = args.archive.sources();
    let kit = kernel::ensure(&cache, profile, args.refresh, &sources, &mut progress);
    if let Some(sp) = progress.spinner {
        sp.finish_and_clear();
    }
    kit.with_context(|| format!("cannot get the guest kernel `{}`", profile.name))
}

/// The `guest_packages` of every spec, fetched (or found in the cache)
/// once per distinct list.
pub(super) fn fetch_guest_packages(
    args: &KitArgs,
    specs: &[spec::LoadedSpec],
) -> Result<plan::GuestPackageFiles> {
    let mut out = plan::GuestPackageFiles::new();
    let cache = paths::cache_dir(args.cache.clone());
    let sources = args.archive.sources();
    for loaded in specs {
        let key = plan::package_key(&loaded.spec.guest_packages);
        if key.is_empty() || out.contains_key(&key) {
            continue;
        }
        let mut progress = KitProgress { spinner: None };
        let fetched = kernel::guest_packages::ensure(&cache, &sources, &key, &mut progress);
        if let Some(sp) = progress.spinner {
            sp.finish_and_clear();
        }
        let fetched = fetched.with_context(|| {
            format!(
                "cannot get the guest packages of {} ({})",
                loaded.path.display(),
                key.join(", ")
            )
        })?;
        out.insert(key, fetched.files);
    }
    Ok(out)
}

/// The host tools a kit's build tree runs for every module it builds.
pub fn kit_tools(kit: &Kit) -> Vec<prereq::Tool> {
    let config = std::fs::read_to_string(kit.headers.join(".config")).unwrap_or_default();
    prereq::for_kernel_config(&config)
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

/// Runs `work` on a thread of its own and stops waiting for it when the
/// user interrupts. A build or a download can take minutes, longer than the
/// interrupt handler's wind-down; waiting for them would let the process
/// exit without writing the reports.
pub fn until_interrupted<T: Send + 'static>(
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

/// A run ready to start: each kernel's guest settings and planned tests,
/// the run's artifacts directory, and how many results are modules that did
/// not build for a kernel of a matrix.
pub struct Prepared {
    pub runs: Vec<runner::KernelRun>,
    pub artifacts: PathBuf,
    pub unbuilt: usize,
    /// Held until the run ends: its directory is not pruned meanwhile.
    pub run_lock: Lock,
}

/// The error of `test` and `list` when the filters select nothing (exit 2
/// for both: a filter that matches nothing is a typo or a stale script).
pub fn no_test_matches(filters: &[String]) -> anyhow::Error {
    if filters.is_empty() {
        return anyhow::anyhow!("no test to run (`modvm list` shows the tests)");
    }
    let named: Vec<String> = filters.iter().map(|f| format!("{f:?}")).collect();
    anyhow::anyhow!(
        "no test matches --filter {} (`modvm list` without --filter shows every test)",
        named.join(" or ")
    )
}

/// What to prepare beyond the guest flags.
pub struct Request<'a> {
    pub paths: &'a [PathBuf],
    pub filter: &'a [String],
    pub step_timeout_s: f64,
    /// Show the module build's output.
    pub verbose: bool,
    /// Only this share of the selected tests (`--partition`).
    pub partition: Option<crate::partition::Partition>,
    /// Fault injection for every test (`--faults`).
    pub faults: bool,
    /// Fresh-guest runs of each test (`--repeat`).
    pub runs: u32,
}

/// Everything from the specs to the tests ready to run. `planned` receives
/// the selected tests' names as soon as they are known, for the reports of
/// a run that stops before running them.
pub fn prepare(
    args: &GuestArgs,
    request: &Request<'_>,
    planned: &mut Vec<String>,
) -> Result<Prepared> {
    let specs = load_specs(request.paths)?;
    let filter = request.filter;
    *planned = specs
        .iter()
        .flat_map(|s| plan::selected(s, filter))
        .collect();
    if planned.is_empty() {
        return Err(no_test_matches(filter));
    }
    if let Some(p) = request.partition {
        let selected = planned.len();
        *planned = p.take(planned.drain(..));
        say(&format!(
            "partition {p}: {} of the {selected} selected tests",
            planned.len()
        ));
    }
    // A share may be empty (more CI jobs than tests): nothing to run passes.
    let ours: std::collections::HashSet<String> = planned.iter().cloned().collect();
    let profiles = matrix::profiles(&args.kit.kernel, &mut say)?;
    matrix::check_spec_kernels(&specs, &profiles)?;
    check_raw_devices(&specs, &args.qemu)?;
    let mut tools = matrix::tools(&profiles);
    let qemu_binary = Arch::DEFAULT.qemu_binary();
    if args.qemu != Path::new(qemu_binary) {
        tools.retain(|t| t.program != qemu_binary);
    }
    if args.gdb.is_some() {
        tools.push(prereq::debugger());
    }
    prereq::ensure(&tools, &mut say)?;
    let gdb_port = gdb_port(args.gdb)?;
    let guest_packages = {
        let _t = crate::trace::span("guest-packages");
        let (kit_args, specs) = (args.kit.clone(), specs.clone());
        until_interrupted(move || fetch_guest_packages(&kit_args, &specs))?
    };

    let wants_faults = request.faults
        || specs
            .iter()
            .any(|s| s.spec.tests.iter().any(|t| t.faults.is_some()));
    let mut prepared = Vec::new();
    for profile in &profiles {
        let kit = {
            let _t = crate::trace::span("kit");
            let (kit_args, profile) = (args.kit.clone(), profile.clone());
            until_interrupted(move || fetch_kit(&kit_args, &profile))?
        };
        // What the kit's own build tree runs (pahole for BTF, its compiler):
        // known only now that its configuration is here.
        prereq::ensure(&kit_tools(&kit), &mut say)
            .with_context(|| format!("the headers of `{}` need host tools", profile.name))?;
        let guest_modules = {
            let _t = crate::trace::span("guest-modules");
            let (cache, kit) = (paths::cache_dir(args.kit.cache.clone()), kit.clone());
            until_interrupted(move || {
                let mut progress = KitProgress { spinner: None };
                let m = kernel::guest_modules::ensure(&cache, &kit, &mut progress);
                if let Some(sp) = progress.spinner {
                    sp.finish_and_clear();
                }
                Ok(m?)
            })?
        };
        let build_root = args.out.join("build").join(&profile.name);
        let verbose = request.verbose;
        // The helper goes into every guest of a kernel that can inject
        // faults, when any test asks for them.
        let (faults_helper, faults_unsupported) = if wants_faults {
            match crate::faults::unsupported(&kit) {
                Some(why) => (None, Some(why)),
                None => {
                    let _t = crate::trace::span("faults-helper");
                    let (kit, build_root) = (kit.clone(), build_root.clone());
                    let helper = until_interrupted(move || {
                        crate::faults::build_helper(&kit, &build_root).map_err(|e| {
                            anyhow::anyhow!("cannot build modvm's fault-injection helper: {e}")
                        })
                    })?;
                    (Some(helper), None)
                }
            }
        } else {
            (None, None)
        };
        let plan = {
            let _t = crate::trace::span("build");
            let (specs, filter, kit, build_root) = (
                specs.clone(),
                filter.to_vec(),
                kit.clone(),
                build_root.clone(),
            );
            let kbuild_args = args.kbuild_arg.clone();
            let guest_modules = guest_modules.clone();
            let guest_packages = guest_packages.clone();
            let faults_files: Vec<_> = faults_helper.into_iter().collect();
            until_interrupted(move || {
                Ok(plan::prepare(
                    &specs,
                    &filter,
                    &kit,
                    &kbuild_args,
                    &build_root,
                    guest_modules.as_ref(),
                    &guest_packages,
                    faults_files.as_slice(),
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
        prepared.push((
            profile.clone(),
            kit,
            plan,
            guest_modules,
            faults_unsupported,
        ));
    }

    let (artifacts, run_lock) = new_run_dir(&args.out, args.keep_runs)?;
    let mut runs = Vec::new();
    for (profile, kit, plan, guest_modules, faults_unsupported) in prepared {
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
        if gdb_port.is_some() {
            // Symbols (vmlinux, System.map) name the kernel's real addresses.
            extra.push("nokaslr".into());
        }
        let mut machine = Machine {
            arch: Arch::DEFAULT,
            memory_mib: memory,
            smp: args.smp,
            cmdline: String::new(),
            devices: guest_modules
                .as_ref()
                .map(|m| Device::ModulesDisk(m.image.clone()))
                .into_iter()
                .collect(),
        };
        machine.add_cmdline(&extra.join(" "));
        let mut qemu = QemuConfig {
            binary: args.qemu.clone(),
            accel: Accel::Tcg,
            machine,
            kernel: kit.vmlinuz.clone(),
            initrd: PathBuf::new(),
            monitor: false,
            incoming: None,
            gdb: None,
        };
        if let Some(first) = plan.tests.first() {
            qemu.initrd = first.initrd.clone();
            let cache = paths::cache_dir(args.kit.cache.clone());
            let key = accel::host_key(&args.qemu);
            let probe_dir = artifacts.join("kvm-probe").join(&profile.name);
            let decision = accel::decide(args.accel, &cache.join("accel.json"), &key, &mut || {
                probe_kvm(&qemu, &probe_dir)
            });
            if let Some(n) = &decision.notice {
                say(n);
            }
            qemu.accel = decision.accel;
        }
        if let Some(port) = gdb_port {
            qemu.gdb = Some(GdbStub {
                port,
                vmlinux: kit.vmlinux.clone(),
            });
            // To pause the guest after each insmod (see `guest::gdb`).
            qemu.monitor = true;
        }
        let unbuilt = matrix::unbuilt_results(&plan, &profile, &kit);
        runs.push(runner::KernelRun {
            config: RunConfig {
                qemu,
                profile: profile.name.clone(),
                kernel_name: format!("{} ({})", profile.name, kit.release),
                release: kit.release.clone(),
                boot_timeout: if gdb_port.is_some() {
                    gdb::NO_DEADLINE
                } else {
                    Duration::from_secs_f64(args.boot_timeout.unwrap_or(profile.boot_timeout_s))
                },
                artifacts: artifacts.join(runner::dir_name(&profile.name)),
                echo_console: args.console,
                step_timeout_s: request.step_timeout_s,
                kernel_symbols: kit.system_map.clone().zip(kit.vmlinux.clone()),
                kmemleak: kit.has_option("CONFIG_DEBUG_KMEMLEAK"),
                faults: runner::Faults {
                    all: request.faults,
                    unsupported: faults_unsupported,
                },
                runs: request.runs,
                symvers: kit.headers.join("Module.symvers"),
                launcher: launcher(args, &profile, &kit, guest_modules.as_ref()),
                keep: None,
            },
            tests: plan.tests,
            unbuilt,
        });
    }
    for run in &mut runs {
        run.tests.retain(|t| ours.contains(&t.name()));
        run.unbuilt.retain(|r| ours.contains(&r.name));
    }
    let unbuilt_count = runs
        .iter()
        .flat_map(|r| &r.unbuilt)
        .filter(|t| t.status == Status::Error)
        .count();
    Ok(Prepared {
        runs,
        artifacts,
        unbuilt: unbuilt_count,
        run_lock,
    })
}

/// The port for `--gdb` (0: any free one), checked free now so that a
/// taken port is named here rather than in QEMU's error.
fn gdb_port(wanted: Option<u16>) -> Result<Option<u16>> {
    match wanted {
        None => Ok(None),
        Some(0) => gdb::free_port()
            .map(Some)
            .context("cannot find a free loopback port for --gdb"),
        Some(port) if gdb::port_is_free(port) => Ok(Some(port)),
        Some(port) => bail!(
            "--gdb={port}: port {port} on 127.0.0.1 is in use; pick another port or give --gdb alone for a free one"
        ),
    }
}

/// Cold boots with `--cold`, else restores of saved guests in the cache.
fn launcher(
    args: &GuestArgs,
    profile: &KernelProfile,
    kit: &Kit,
    guest_modules: Option<&kernel::guest_modules::GuestModules>,
) -> Arc<dyn Launcher> {
    if args.cold {
        return Arc::new(Cold);
    }
    Arc::new(Restore::new(
        paths::cache_dir(args.kit.cache.clone()).join("snapshots"),
        &profile.name,
        kit.busybox.clone(),
        guest_modules.map(|m| m.boot.clone()).unwrap_or_default(),
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

pub fn load_specs(paths: &[PathBuf]) -> Result<Vec<spec::LoadedSpec>> {
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
        specs.push(loaded);
    }
    distinct_suites(&mut specs)?;
    Ok(specs)
}

/// Test names (`suite/test`) name reports and log directories, so no two
/// suites of a run may share a name. A suite named after its directory
/// (no `suite` in a spec) that meets another of the same name takes its
/// parent directories' names in front (`a/hello` and `b/hello` become
/// `a-hello` and `b-hello`), as many as it takes; two suites the specs
/// name alike are the author's to rename.
fn distinct_suites(specs: &mut [spec::LoadedSpec]) -> Result<()> {
    let mut depth = vec![1usize; specs.len()];
    // Each round lengthens at least one name, and a name cannot grow past
    // its path: bounded.
    loop {
        let clash = (0..specs.len()).find_map(|i| {
            (i + 1..specs.len())
                .find(|&j| specs[i].suite == specs[j].suite)
                .map(|j| (i, j))
        });
        let Some((i, j)) = clash else {
            return Ok(());
        };
        let mut renamed = false;
        for k in [i, j] {
            if specs[k].spec.suite.is_some() {
                continue;
            }
            if let Some(longer) = suite_from_path(&specs[k].dir, depth[k] + 1) {
                depth[k] += 1;
                specs[k].suite = longer;
                renamed = true;
            }
        }
        if !renamed {
            bail!(
                "{} and {} are both suite {:?}; give one a different `suite` in its {} (or rename its directory)",
                origin(&specs[i]),
                origin(&specs[j]),
                specs[i].suite,
                spec::SPEC_FILE
            );
        }
    }
}

/// The last `depth` components of the directory's real path joined by
/// `-`; `None` when the path has fewer, or one of them is not a printable
/// name.
fn suite_from_path(dir: &Path, depth: usize) -> Option<String> {
    let real = std::fs::canonicalize(dir).ok()?;
    let parts: Vec<String> = real
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    if parts.len() < depth {
        return None;
    }
    let tail = &parts[parts.len() - depth..];
    if tail
        .iter()
        .any(|p| p.chars().any(char::is_control) || p.contains('/'))
    {
        return None;
    }
    Some(tail.join("-"))
}

/// A spec's raw `qemu` devices must be models the QEMU binary has: asked
/// once (`-device help`), only when a spec has any, and said at the
/// device's place in the spec.
fn check_raw_devices(specs: &[spec::LoadedSpec], qemu: &Path) -> Result<()> {
    let wanted: Vec<(&spec::LoadedSpec, &spec::DeviceSpec)> = specs
        .iter()
        .flat_map(|s| s.spec.tests.iter().map(move |t| (s, t)))
        .flat_map(|(s, t)| t.devices.iter().map(move |d| (s, d)))
        .filter(|(_, d)| matches!(d, spec::DeviceSpec::Qemu(_)))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let help = std::process::Command::new(qemu)
        .args(["-device", "help"])
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run {} -device help", qemu.display()))?;
    let known = spec::devices::models_in_help(&String::from_utf8_lossy(&help.stdout));
    for (loaded, device) in wanted {
        let spec::DeviceSpec::Qemu(text) = device else {
            continue;
        };
        let model = text.split(',').next().unwrap_or_default();
        if !known.iter().any(|k| k == model) {
            return Err(spec::SpecError::at_value(
                &loaded.path,
                &loaded.text,
                text,
                0,
                format!(
                    "{} has no device `{model}` (`{} -device help` lists them)",
                    qemu.display(),
                    qemu.display()
                ),
            )
            .into());
        }
    }
    Ok(())
}

/// Where a suite comes from, for messages.
fn origin(loaded: &spec::LoadedSpec) -> String {
    if loaded.smoke {
        format!("{} (no {})", loaded.dir.display(), spec::SPEC_FILE)
    } else {
        loaded.path.display().to_string()
    }
}

/// `<out>/runs/<UTC stamp>-<pid>`, plus a `latest` link to it; runs
/// beyond the newest `keep` (0: all) are removed.
/// A lock file in every run directory, held while its run is in progress:
/// pruning (`--keep-runs`) by another run passes over a directory whose
/// lock it cannot take, so a run's artifacts and the report that names
/// them are never removed under it. The kernel drops the lock when the run
/// ends however it ends.
const RUN_LOCK: &str = ".in-progress.lock";

pub(super) fn new_run_dir(out: &Path, keep: usize) -> Result<(PathBuf, Lock)> {
    let runs = out.join("runs");
    let name = format!("{}-{}", utc_stamp(), std::process::id());
    let dir = runs.join(&name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let lock = Lock::try_exclusive(&dir.join(RUN_LOCK))
        .with_context(|| format!("cannot lock {}", dir.join(RUN_LOCK).display()))?;
    let latest = runs.join("latest");
    let _ = std::fs::remove_file(&latest);
    let _ = std::os::unix::fs::symlink(&name, &latest);
    if keep > 0 {
        for old in old_runs(&runs, keep) {
            if let Some(_in_use_by_none) = Lock::try_exclusive(&old.join(RUN_LOCK)) {
                let _ = std::fs::remove_dir_all(old);
            }
        }
    }
    Ok((dir, lock))
}

/// Run directories of `runs` beyond the newest `keep`. Only names modvm
/// gives (`YYYYMMDD-HHMMSS-<pid>`) count: anything else there is the
/// user's and stays.
pub(super) fn old_runs(runs: &Path, keep: usize) -> Vec<PathBuf> {
    let is_run = |n: &str| {
        let b = n.as_bytes();
        b.len() > 16
            && b[..8].iter().all(u8::is_ascii_digit)
            && b[8] == b'-'
            && b[9..15].iter().all(u8::is_ascii_digit)
            && b[15] == b'-'
            && b[16..].iter().all(u8::is_ascii_digit)
    };
    let mut names: Vec<String> = std::fs::read_dir(runs)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_run(n))
        .collect();
    names.sort();
    let extra = names.len().saturating_sub(keep);
    names[..extra].iter().map(|n| runs.join(n)).collect()
}

pub(super) fn utc_stamp() -> String {
    stamp_of(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    )
}

/// `YYYYMMDD-HHMMSS` (UTC) of `secs` since the epoch.
pub(super) fn stamp_of(secs: i64) -> String {
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

/// A single guest for a person or a one-off command (`run`, `shell`): the
/// guest, the settings it runs with, the test its modules came from and its
/// log directory.
pub struct OneGuest {
    pub guest: Guest,
    pub config: RunConfig,
    pub test: runner::PlannedTest,
    pub logs: PathBuf,
}

/// Prepares `dir` (default `module`) on one kernel and starts one guest
/// with its modules; `what` names the command in messages and its log
/// directory.
pub fn one_guest(
    args: &GuestArgs,
    dir: Option<&Path>,
    what: &str,
    step_timeout_s: f64,
) -> Result<OneGuest> {
    let paths = [dir.map_or_else(|| PathBuf::from("module"), Path::to_path_buf)];
    let request = Request {
        paths: &paths,
        filter: &[],
        step_timeout_s,
        verbose: false,
        partition: None,
        faults: false,
        runs: 1,
    };
    let Prepared { runs, .. } = prepare(args, &request, &mut Vec::new())?;
    let [kernel] = runs.as_slice() else {
        bail!(
            "`modvm {what}` starts one guest: --kernel names {} kernels; name one",
            runs.len()
        );
    };
    let Some(test) = kernel.tests.first() else {
        bail!("nothing to start: the module directory gave no test to take its modules from");
    };
    let config = &kernel.config;
    let logs_dir = config.artifacts.join(what);
    std::fs::create_dir_all(&logs_dir)
        .with_context(|| format!("cannot create {}", logs_dir.display()))?;
    let mut logs = GuestLogs::in_dir(&logs_dir);
    logs.echo = args.console;
    let launch = crate::guest::launcher::LaunchRequest {
        qemu: &config.qemu,
        initrd: &test.initrd,
        files: &test.files,
        base_files: &test.base_files,
        // `--panic-on-*` are on the kernel command line already.
        switches: crate::guest::deliver::Switches::default(),
        logs: &logs,
        timeout: config.boot_timeout,
    };
    let (guest, _) = config.launcher.launch(&launch).map_err(|e| {
        // A kernel that panicked while booting says so in its log; the
        // QEMU exit that followed does not.
        let why = match runner::crash_in_log(&logs.kernel) {
            Some(c) => format!(
                "the kernel crashed during boot: {}",
                crate::report::human::printable(&c.title)
            ),
            None => "the guest did not start".into(),
        };
        anyhow::Error::new(e).context(format!("{why} (logs in {})", logs_dir.display()))
    })?;
    Ok(OneGuest {
        guest,
        config: config.clone(),
        test: test.clone(),
        logs: logs_dir,
    })
}

/// Says why a guest's command or session ended badly, with each crash's
/// summary (module frames at file:line) and where the logs are.
pub fn report_crash(
    mut crashes: Vec<crate::outcome::Crash>,
    why: &str,
    modules: &[PathBuf],
    kernel_symbols: Option<&(PathBuf, PathBuf)>,
    logs: &Path,
) {
    runner::symbolize_all(&mut crashes, modules, kernel_symbols);
    say(why);
    for c in &crashes {
        for line in crate::report::human::crash_summary(c) {
            eprintln!("  {}", crate::report::human::printable(&line));
        }
    }
    say(&format!("console and kernel log: {}", logs.display()));
}
