//! Runs tests: one fresh guest per test, steps in order, results as events
//! (`schedule` runs several tests at once and orders their results).
//!
//! After every step the kernel log written during it is searched for crash
//! reports and the taint mask is compared with the one before, so a crash is
//! caught even when the command itself "succeeds". A crash ends the test
//! (its guest is discarded); the next test boots a fresh guest.

use crate::crash;
use crate::guest::exec::Ended;
use crate::guest::launcher::{LaunchRequest, Launcher};
use crate::guest::{BootError, Guest, GuestLogs};
use crate::klog::KernelLine;
use crate::outcome::{Crash, Event, Reporter, Status, StepResult, TestId, TestResult};
use crate::qemu::QemuConfig;
use crate::spec::{ExitExpect, Expect, Step, TestSpec};
use crate::symbolize;

mod fan_out;
mod faults;
mod kunit;
mod leaks;
mod repeat;
mod schedule;
mod spare;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Kernel lines kept with a test that ended abnormally.
const TAIL_LINES: usize = 40;
/// Kernel lines kept per step (a module that floods the log must not flood
/// the reports); crash detection sees them all before the cut.
const STEP_LINES: usize = 4000;

/// Everything tests of one run share.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// QEMU configuration; its `initrd` and kernel parameters are set per test.
    pub qemu: QemuConfig,
    /// Profile name, matched against a test's `kernels`.
    pub profile: String,
    /// For people: profile and release.
    pub kernel_name: String,
    /// `uname -r` of the kit's kernel.
    pub release: String,
    pub boot_timeout: Duration,
    /// Root of this kernel's artifacts (`<out>/runs/<stamp>/<profile>`).
    pub artifacts: PathBuf,
    /// Stream each guest's console and kernel log to stderr.
    pub echo_console: bool,
    /// Deadline of steps whose spec sets none, in seconds.
    pub step_timeout_s: f64,
    /// `System.map` and `vmlinux` of the kernel, for kernel frames.
    pub kernel_symbols: Option<(PathBuf, PathBuf)>,
    /// The kernel has kmemleak: scan for the modules' leaks.
    pub kmemleak: bool,
    /// Fault injection (`--faults`, a spec's `faults`).
    pub faults: Faults,
    /// Fresh-guest runs of each test (`--repeat`); 1: once.
    pub runs: u32,
    /// The kernel's `Module.symvers`, to say who exports an unknown symbol.
    pub symvers: PathBuf,
    /// Boots or restores each test's guest.
    pub launcher: std::sync::Arc<dyn Launcher>,
    /// Given the guest of a test that did not pass, before it is stopped
    /// (`modvm test --keep`).
    pub keep: Option<std::sync::Arc<dyn KeepGuest>>,
}

/// Drops the events of a test's extra runs (fault points, repeats): the
/// test's own live line says which one runs.
struct Quiet;

impl Reporter for Quiet {
    fn event(&mut self, _: &Event<'_>) {}
}

/// Fault injection in a run.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Every test (`--faults`), not only those whose spec asks.
    pub all: bool,
    /// Why this kernel cannot inject faults (its tests that ask are
    /// skipped with this reason).
    pub unsupported: Option<String>,
}

/// Looks at the guest a test that did not pass left behind, on the test's
/// worker thread, while the guest still exists (it may have died already:
/// a panic ends QEMU).
pub trait KeepGuest: Send + Sync + std::fmt::Debug {
    fn keep(&self, guest: &mut Guest, test: &PlannedTest, result: &TestResult);
}

/// A test ready to run: its spec, the initramfs holding its files, the
/// modules (for symbolising crash frames) and every file its guest gets.
#[derive(Debug, Clone)]
pub struct PlannedTest {
    pub suite: String,
    pub spec: TestSpec,
    pub initrd: PathBuf,
    pub modules: Vec<PathBuf>,
    /// Modules, helpers and the spec's files, as the guest gets them.
    pub files: Vec<crate::shipped::GuestFile>,
    /// Files every guest of the spec has from the start (its
    /// `guest_packages`): in the saved guest, not sent to a restored one.
    pub base_files: Vec<crate::shipped::GuestFile>,
    /// In-tree modules the test's modules depend on, `modprobe`d before
    /// its first step.
    pub kernel_deps: Vec<String>,
    /// Taint flags the test's own modules explain (`P`: not GPL).
    pub allowed_taint: u64,
}

impl PlannedTest {
    pub fn name(&self) -> String {
        format!("{}/{}", self.suite, self.spec.name)
    }
}

/// One kernel of a run: how to boot it, the tests planned on it, and the
/// results of tests that could not be planned on it (their module did not
/// build for this kernel), which are reported, not dropped.
#[derive(Debug)]
pub struct KernelRun {
    pub config: RunConfig,
    pub tests: Vec<PlannedTest>,
    pub unbuilt: Vec<TestResult>,
}

/// Runs every test on every kernel, `jobs` guests at a time; results reach
/// the reporter in plan order (see [`schedule`]).
pub use schedule::run;

/// The guest died because we killed it: say so, rather than "crash".
fn mark_interrupted(result: &mut TestResult) {
    const WHY: &str = "interrupted by the user";
    result.status = Status::Error;
    result.message = Some(WHY.into());
    result.crash = None;
    result.crash_detect_ms = None;
    if let Some(step) = result
        .steps
        .iter_mut()
        .rev()
        .find(|s| s.status != Status::Skip)
    {
        if step.status != Status::Pass {
            step.status = Status::Error;
            step.crashes.clear();
            step.failures = vec![WHY.into()];
        }
    }
}

/// Longest directory name [`dir_name`] returns, well under the 255 bytes
/// file systems allow for one path component.
const MAX_DIR_NAME: usize = 100;

/// One path component for a suite or test name, different for different
/// names (`a b` and `a_b` must not share a log directory) and never `.`,
/// `..` or hidden. Letters, digits, `-` and `.` stay; every other byte
/// becomes `_XX` (hex), so `_` always starts an escape and the mapping can
/// be undone. A leading `.` is escaped too. A long result keeps its start
/// and ends in `~` and a hash of the whole name (`~` never appears
/// otherwise).
pub fn dir_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'-' || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    if out.is_empty() {
        return "_".into();
    }
    if out.len() > MAX_DIR_NAME {
        out.truncate(MAX_DIR_NAME - 17);
        out.push_str(&format!("~{:016x}", stable_hash(name.as_bytes())));
    }
    out
}

/// FNV-1a: a hash that stays the same across runs and Rust releases, for
/// names on disk.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Runs one test on a guest of its own. The guest is started and dropped
/// on the calling thread, which must outlive it: QEMU's death signal is
/// tied to the thread that spawned it (see `schedule`).
fn run_test(
    config: &RunConfig,
    test: &PlannedTest,
    id: TestId,
    spare: &spare::Spare,
    reporter: &mut dyn Reporter,
) -> TestResult {
    let name = test.name();
    reporter.event(&Event::TestStarted { id, name: &name });
    let dir = config
        .artifacts
        .join(dir_name(&test.suite))
        .join(dir_name(&test.spec.name));
    if !test.spec.runs_on(&config.profile) {
        let mut result = empty_result(config, test, &dir);
        result.status = Status::Skip;
        result.message = Some(format!(
            "runs on {} only, not on {}",
            test.spec.kernels.join(", "),
            config.profile
        ));
        return result;
    }
    if config.faults.all || test.spec.faults.is_some() {
        return faults::run(config, test, id, spare, reporter, &dir);
    }
    if config.runs > 1 {
        return repeat::run(config, test, id, spare, reporter, &dir);
    }
    run_guest(config, test, &dir, id, reporter, None, &mut |_, _| {})
}

/// A result with nothing happened yet.
fn empty_result(config: &RunConfig, test: &PlannedTest, dir: &Path) -> TestResult {
    TestResult {
        name: test.name(),
        kernel: config.profile.clone(),
        kernel_release: config.release.clone(),
        status: Status::Error,
        duration_ms: 0,
        boot_ms: None,
        guest: None,
        steps: Vec::new(),
        message: None,
        crash: None,
        crash_detect_ms: None,
        kernel_tail: Vec::new(),
        cases: Vec::new(),
        artifacts: dir.to_path_buf(),
    }
}

/// Runs `test` once on a fresh guest whose logs go to `dir`. When the
/// step at `stop_at` fails cleanly (a non-zero exit, no crash), the test
/// ends there as a pass (an injected fault made `insmod` fail, and what
/// follows needs the module). `after` sees the guest once the steps ran.
fn run_guest(
    config: &RunConfig,
    test: &PlannedTest,
    dir: &Path,
    id: TestId,
    reporter: &mut dyn Reporter,
    stop_at: Option<usize>,
    after: &mut dyn FnMut(&mut Guest, &mut TestResult),
) -> TestResult {
    let name = test.name();
    let started = Instant::now();
    let dir = dir.to_path_buf();
    let mut result = empty_result(config, test, &dir);
    let mut qemu = config.qemu.clone();
    if let Some(n) = test.spec.smp {
        qemu.machine.smp = n;
    }
    qemu.machine.add_declared(&test.spec.devices);
    if let Err(e) = write_artifacts(&dir, test) {
        result.message = Some(format!("cannot write artifacts to {}: {e}", dir.display()));
        return result;
    }
    let mut logs = GuestLogs::in_dir(&dir);
    logs.echo = config.echo_console;
    let request = LaunchRequest {
        qemu: &qemu,
        initrd: &test.initrd,
        files: &test.files,
        base_files: &test.base_files,
        switches: test.spec.switches(),
        logs: &logs,
        timeout: config.boot_timeout,
    };
    match config.launcher.launch(&request) {
        Ok((mut guest, start)) => {
            result.guest = Some(start);
            result.boot_ms = Some(guest.boot_time.as_millis() as u64);
            reporter.event(&Event::Booted {
                id,
                name: &name,
                boot: guest.boot_time,
            });
            {
                let _t = crate::trace::span("steps");
                run_steps(
                    &mut guest,
                    test,
                    config,
                    id,
                    &name,
                    &mut result,
                    reporter,
                    stop_at,
                );
            }
            kunit::check_filter(&test.spec.kunit, &mut result);
            after(&mut guest, &mut result);
            if result.status != Status::Pass {
                result.kernel_tail = guest.klog.tail(TAIL_LINES);
                if let Some(keep) = &config.keep {
                    keep.keep(&mut guest, test, &result);
                }
            }
            let _t = crate::trace::span("stop");
            drop(guest);
        }
        Err(e) => {
            let tail = tail_of_file(&logs.kernel, 400);
            result.status = match e {
                BootError::Timeout(_) => Status::Timeout,
                _ => Status::Error,
            };
            result.message = Some(format!("boot failed: {e}"));
            if let Some(c) = crash::detect(&tail).into_iter().next() {
                result.status = Status::Crash;
                result.message = Some(format!("the kernel crashed during boot: {}", c.title));
                result.crash = Some(c);
            }
            result.kernel_tail = tail[tail.len().saturating_sub(TAIL_LINES)..].to_vec();
        }
    }
    apply_expect_crash(&test.spec, &mut result);
    result.duration_ms = started.elapsed().as_millis() as u64;
    result
}

/// A test that must crash passes when it crashed with a matching title.
fn apply_expect_crash(spec: &TestSpec, result: &mut TestResult) {
    let Some(want) = &spec.expect_crash else {
        return;
    };
    let title = result.crash.as_ref().map(|c| c.title.clone());
    match (result.status, title) {
        (Status::Crash, Some(t)) if t.contains(want.as_str()) => {
            result.status = Status::Pass;
            result.message = Some(format!("crashed as expected: {t}"));
        }
        (Status::Crash, Some(t)) => {
            result.message = Some(format!("expected a crash matching {want:?}, got: {t}"));
        }
        (Status::Pass | Status::Fail, _) => {
            result.status = Status::Fail;
            result.message = Some(format!(
                "expected a crash matching {want:?}; the test ended without one"
            ));
        }
        _ => {}
    }
}

/// The test's spec and the modules it loads, so that a failure can be
/// replayed from its directory alone (with `qemu-cmdline.txt`).
fn write_artifacts(dir: &Path, test: &PlannedTest) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("spec.json"),
        serde_json::to_vec_pretty(&test.spec).expect("spec serialises"),
    )?;
    let modules = dir.join("modules");
    std::fs::create_dir_all(&modules)?;
    for m in &test.modules {
        if let Some(name) = m.file_name() {
            std::fs::copy(m, modules.join(name))?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_steps(
    guest: &mut Guest,
    test: &PlannedTest,
    config: &RunConfig,
    test_id: TestId,
    name: &str,
    result: &mut TestResult,
    reporter: &mut dyn Reporter,
    stop_at: Option<usize>,
) {
    result.status = Status::Pass;
    let step_timeout_s = config.step_timeout_s;
    let kernel_symbols = config.kernel_symbols.as_ref();
    let mut taint = guest.boot_taint;
    let kmemleak = config.kmemleak && leaks::start(guest);
    let module_names = crate::kbuild::module_names(&test.modules);
    let rounds = test.spec.repeat;
    let mut failed_round = None;
    let mut debugged = crate::guest::gdb::LoadedModules::default();
    let mut placements = crate::placement::Placements::default();
    for round in 1..=rounds {
        for (i, step) in test.spec.steps.iter().enumerate() {
            let index = result.steps.len();
            let (id, description, label) = if rounds > 1 {
                (
                    format!("{round}.{}", i + 1),
                    format!("[{round}/{rounds}] {}", step.action),
                    format!("[{round}/{rounds}] {}", test.spec.step_label(i)),
                )
            } else {
                (
                    (i + 1).to_string(),
                    step.action.to_string(),
                    test.spec.step_label(i),
                )
            };
            if result.status != Status::Pass {
                // The rest of the round that failed is listed as skipped;
                // later rounds are not listed at all.
                if failed_round == Some(round) {
                    result.steps.push(StepResult {
                        label,
                        ..skipped(index, step, description)
                    });
                }
                continue;
            }
            reporter.event(&Event::StepStarted {
                id: test_id,
                name,
                index,
                description: &description,
            });
            let timeout = match config.qemu.gdb {
                // The user may sit in the debugger for as long as they like.
                Some(_) => crate::guest::gdb::NO_DEADLINE.as_secs_f64(),
                None => test.spec.timeout_of(step, step_timeout_s),
            };
            let outcome = run_step(
                guest,
                test.allowed_taint,
                &id,
                index,
                step,
                timeout,
                description,
                &mut taint,
            );
            let mut r = outcome.result;
            r.label = label;
            if let (Some(_), crate::spec::Action::Insmod(load), Status::Pass) =
                (&config.qemu.gdb, &step.action, r.status)
            {
                let name = crate::kbuild::module_name(&load.name);
                if let Some(ko) = crate::placement::ko_of(&name, &test.modules) {
                    debugged.loaded(guest, &name, ko, &result.artifacts);
                }
            }
            if kmemleak && r.status == Status::Pass {
                if let crate::spec::Action::Insmod(load) = &step.action {
                    let name = crate::kbuild::module_name(&load.name);
                    if let Some(ko) = crate::placement::ko_of(&name, &test.modules) {
                        if let Some(p) = crate::placement::read(guest, &name, ko) {
                            placements.record(p);
                        }
                    }
                }
            }
            let leaked = match (&step.action, kmemleak, r.status) {
                (crate::spec::Action::Rmmod(_), true, Status::Pass) => {
                    leaks::scan(guest, &module_names, placements.all())
                }
                _ => Vec::new(),
            };
            if !leaked.is_empty() {
                r.failures.push(format!("kmemleak: {}", leaked[0].title));
                r.crashes.extend(leaked);
                r.status = Status::Crash;
            }
            if r.status == Status::Fail && matches!(step.action, crate::spec::Action::Insmod(_)) {
                r.failures
                    .extend(unknown_symbols(&r.kernel_lines, &config.symvers));
            }
            symbolize_all(&mut r.crashes, &test.modules, kernel_symbols);
            let cases = kunit::judge(&mut r, outcome.cases, &test.spec.kunit, &test.modules);
            result.cases.extend(cases);
            if stop_at == Some(i)
                && r.status == Status::Fail
                && r.crashes.is_empty()
                && r.exit.is_some_and(|e| e != 0)
            {
                // Failed as the injected fault asked: what follows needs
                // the module, so the test ends here.
                r.status = Status::Pass;
                r.failures.clear();
                result.steps.push(r);
                for (k, later) in test.spec.steps.iter().enumerate().skip(i + 1) {
                    let index = result.steps.len();
                    result.steps.push(StepResult {
                        label: test.spec.step_label(k),
                        ..skipped(index, later, later.action.to_string())
                    });
                }
                return;
            }
            if r.status != Status::Pass {
                failed_round = Some(round);
                result.status = r.status;
                if let Some(c) = r.crashes.first() {
                    result.crash = Some(c.clone());
                    result.crash_detect_ms = outcome.crash_detect_ms;
                    result.message = Some(format!("{} during {}", c.title, r.label));
                } else if r.status != Status::Fail {
                    result.message = r.failures.first().cloned();
                } else {
                    result.message = failure_message(&r);
                }
            }
            result.steps.push(r);
        }
    }
}

/// For each `Unknown symbol X` the kernel logged, who exports `X`.
fn unknown_symbols(lines: &[KernelLine], symvers: &Path) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in lines {
        let Some((_, rest)) = l.text.split_once("Unknown symbol ") else {
            continue;
        };
        let symbol = rest.split_whitespace().next().unwrap_or_default();
        let why = crate::kernel::symvers::explain(symvers, symbol);
        if !symbol.is_empty() && !out.contains(&why) {
            out.push(why);
        }
    }
    out
}

/// A failed test's message: the step as its author sees it and its first
/// unmet expectation, so a report that shows only the message still says
/// what went wrong and where.
fn failure_message(r: &StepResult) -> Option<String> {
    r.failures.first().map(|f| format!("{}: {f}", r.label))
}

pub(crate) fn symbolize_all(
    crashes: &mut [Crash],
    modules: &[PathBuf],
    kernel_symbols: Option<&(PathBuf, PathBuf)>,
) {
    for c in crashes {
        symbolize::symbolize(&mut c.frames, modules);
        if let Some((map, vmlinux)) = kernel_symbols {
            symbolize::symbolize_kernel(&mut c.frames, map, vmlinux);
        }
    }
}

fn skipped(index: usize, step: &Step, description: String) -> StepResult {
    let (expected_exit, expected_errno) = match step.exit {
        ExitExpect::Status(c) => (c, None),
        ExitExpect::Errno(e) => (1, Some(e.name.to_string())),
    };
    StepResult {
        expected_exit,
        expected_errno,
        ..StepResult::empty(index, description, step.action.command(), Status::Skip)
    }
}

struct StepOutcome {
    result: StepResult,
    crash_detect_ms: Option<u64>,
    /// KUnit results in the step's kernel lines (all of them: the reports
    /// keep only [`STEP_LINES`]).
    cases: Vec<crate::outcome::CaseResult>,
}

#[allow(clippy::too_many_arguments)]
fn run_step(
    guest: &mut Guest,
    allowed_taint: u64,
    id: &str,
    index: usize,
    step: &Step,
    timeout_s: f64,
    description: String,
    taint: &mut u64,
) -> StepOutcome {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(timeout_s);
    let command = step.action.command();
    let mut r = StepResult {
        command: command.clone(),
        ..skipped(index, step, description)
    };
    let span = crate::trace::span("step-command");
    let capture = guest.exec(id, &command, deadline, &mut |_| {});
    drop(span);
    r.output = capture.output;
    let crash_detect_ms = first_crash_arrival(&capture.kernel_lines, &capture.crashes)
        .map(|t| t.elapsed().as_millis() as u64);
    r.crashes = capture.crashes;
    match capture.ended {
        Ended::Finished { exit, taint: after } => {
            r.exit = Some(exit);
            r.errno = errno_seen(step, exit, &r.output);
            r.taint = Some(after);
            r.failures = check(step, exit, &r.output, &capture.kernel_lines);
            if capture.dropped > 0 && !step.not_output.is_empty() {
                r.failures.push(format!(
                    "`not_output` cannot be checked: {} bytes of the output were dropped (only the first and last 64 KiB are kept); make the command print less",
                    capture.dropped
                ));
            }
            if let Some(msg) = crash::unexpected_taint(*taint, after, allowed_taint) {
                r.failures.push(msg.clone());
                if r.crashes.is_empty() {
                    r.crashes.push(Crash {
                        title: msg,
                        report: Vec::new(),
                        frames: Vec::new(),
                        fatal: false,
                    });
                }
            }
            *taint = after;
            r.status = if !r.crashes.is_empty() {
                Status::Crash
            } else if r.failures.is_empty() {
                Status::Pass
            } else {
                Status::Fail
            };
        }
        Ended::TimedOut => {
            r.status = crash_or(&r.crashes, Status::Timeout);
            r.failures.push(format!(
                "`{command}` did not finish within {timeout_s:.1} s"
            ));
        }
        Ended::CrashedMidway => {
            r.status = crash_or(&r.crashes, Status::Timeout);
            r.failures.push(format!(
                "`{command}` did not finish after the kernel reported a crash"
            ));
        }
        Ended::GuestDied { qemu } => {
            r.status = Status::Crash;
            if r.crashes.is_empty() {
                r.crashes.push(Crash {
                    title: "guest died without a crash report".into(),
                    report: Vec::new(),
                    frames: Vec::new(),
                    fatal: true,
                });
            }
            r.failures
                .push(format!("the guest died during `{command}` (QEMU: {qemu})"));
        }
        Ended::ConsoleFailed(msg) => {
            r.status = Status::Error;
            r.failures.push(format!("console failure: {msg}"));
        }
    }
    let cases = crate::kunit::parse(&capture.kernel_lines);
    r.kernel_lines = bounded(capture.kernel_lines);
    r.duration_ms = started.elapsed().as_millis() as u64;
    StepOutcome {
        result: r,
        crash_detect_ms,
        cases,
    }
}

fn crash_or(crashes: &[Crash], otherwise: Status) -> Status {
    if crashes.is_empty() {
        otherwise
    } else {
        Status::Crash
    }
}

/// When the first line of the first crash report reached modvm.
fn first_crash_arrival(lines: &[KernelLine], crashes: &[Crash]) -> Option<Instant> {
    let first = crashes.first()?.report.first()?;
    lines.iter().find(|l| &l.text == first)?.arrived
}

/// At most [`STEP_LINES`] of a step's kernel lines, for the reports: the
/// first and last halves, with a line saying how many were dropped between.
fn bounded(mut kept: Vec<KernelLine>) -> Vec<KernelLine> {
    if kept.len() > STEP_LINES {
        let dropped = kept.len() - STEP_LINES;
        kept.drain(STEP_LINES / 2..STEP_LINES / 2 + dropped);
        kept.insert(
            STEP_LINES / 2,
            KernelLine::parse(&format!(
                "[modvm: {dropped} kernel lines dropped here; the first and last {} are kept]",
                STEP_LINES / 2
            )),
        );
    }
    kept
}

/// The errno a failed insmod named, for the reports.
fn errno_seen(step: &Step, exit: i32, output: &str) -> Option<String> {
    if exit == 0 || !matches!(step.action, crate::spec::Action::Insmod(_)) {
        return None;
    }
    let (_, errno) = crate::errno::from_insmod_output(output)?;
    errno.map(|e| e.name.to_string())
}

/// Unmet expectations of a finished step.
pub fn check(step: &Step, exit: i32, output: &str, lines: &[KernelLine]) -> Vec<String> {
    let mut failures = Vec::new();
    let command = step.action.command();
    match step.exit {
        ExitExpect::Status(want) if exit != want => failures.push(format!(
            "`{command}` exited with status {exit}, expected {want}"
        )),
        ExitExpect::Errno(e) => {
            if exit == 0 {
                failures.push(format!(
                    "`{command}` succeeded, expected it to fail with {} ({})",
                    e.name, e.insmod_message
                ));
            } else if !output.contains(&format!(": {}", e.insmod_message)) {
                let said = match crate::errno::from_insmod_output(output) {
                    Some((text, Some(seen))) => format!("insmod said: {text} ({})", seen.name),
                    Some((text, None)) => format!("insmod said: {text}"),
                    None => format!("insmod exited with status {exit} and no error message"),
                };
                failures.push(format!(
                    "`{command}` failed, but not with {}: expected {} ({}), {said}",
                    e.name, e.name, e.insmod_message
                ));
            }
        }
        _ => {}
    }
    let output_lines: Vec<&str> = output.lines().collect();
    in_order(
        &step.output,
        &output_lines,
        "in the command's output",
        &mut failures,
    );
    absent(
        &step.not_output,
        &output_lines,
        "the command's output",
        &mut failures,
    );
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    in_order(&step.kernel_log, &texts, "in the kernel log", &mut failures);
    absent(
        &step.not_kernel_log,
        &texts,
        "the kernel log",
        &mut failures,
    );
    failures
}

fn in_order(expects: &[Expect], lines: &[&str], place: &str, failures: &mut Vec<String>) {
    let mut next = 0;
    for expect in expects {
        match lines[next..].iter().position(|l| expect.matches(l)) {
            Some(p) => next += p + 1,
            None => failures.push(if lines.iter().any(|l| expect.matches(l)) {
                format!("expected {expect} {place} after the previous expected line, but it came before it")
            } else {
                format!("expected {expect} {place}")
            }),
        }
    }
}

fn absent(expects: &[Expect], lines: &[&str], place: &str, failures: &mut Vec<String>) {
    for expect in expects {
        if let Some(l) = lines.iter().find(|l| expect.matches(l)) {
            failures.push(format!("{place} must not have {expect}, but had: {l}"));
        }
    }
}

/// The first crash in the end of a kernel log file: how a boot that
/// failed says whether its kernel crashed (the QEMU exit that follows a
/// panic does not say so).
pub(crate) fn crash_in_log(path: &Path) -> Option<crate::outcome::Crash> {
    crash::detect(&tail_of_file(path, 400)).into_iter().next()
}

/// The last `n` lines of a kernel log file.
pub(crate) fn tail_of_file(path: &Path, n: usize) -> Vec<KernelLine> {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| KernelLine::parse(l))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Action, ModuleLoad, Pattern};

    fn line(t: &str) -> KernelLine {
        KernelLine::parse(t)
    }

    fn step(expect: Vec<Expect>) -> Step {
        Step {
            kernel_log: expect,
            ..Step::action(Action::Rmmod("hello".into()))
        }
    }

    #[test]
    fn passing_step_has_no_failures() {
        let s = step(vec![
            Expect::Contains("one".into()),
            Expect::Regex(Pattern(regex::Regex::new("^two$").unwrap())),
        ]);
        let lines = vec![line("[1.0] one"), line("[1.1] noise"), line("[1.2] two")];
        assert!(check(&s, 0, "", &lines).is_empty());
    }

    #[test]
    fn order_matters() {
        let s = step(vec![
            Expect::Contains("two".into()),
            Expect::Contains("one".into()),
        ]);
        let lines = vec![line("one"), line("two")];
        let f = check(&s, 0, "", &lines);
        assert_eq!(f.len(), 1);
        assert!(f[0].contains("came before"), "{f:?}");
    }

    #[test]
    fn wrong_exit_and_missing_line_are_both_reported() {
        let s = step(vec![Expect::Contains("Goodbye".into())]);
        let f = check(&s, 1, "", &[line("Hello")]);
        assert_eq!(f.len(), 2);
        assert!(f[0].contains("exited with status 1, expected 0"));
        assert!(f[1].contains("\"Goodbye\""));
    }

    #[test]
    fn forbidden_lines_and_output_are_checked() {
        let s = Step {
            output: vec![Expect::Contains("count=3".into())],
            not_output: vec![Expect::Contains("error".into())],
            not_kernel_log: vec![Expect::Contains("leak".into())],
            ..Step::action(Action::Run("cat /proc/x".into()))
        };
        assert!(check(&s, 0, "who=a count=3\n", &[line("fine")]).is_empty());
        let f = check(&s, 0, "count=2\nerror here\n", &[line("a leak")]);
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(f[1].contains("must not have") && f[1].contains("error here"));
        assert!(f[2].contains("a leak"));
    }

    #[test]
    fn errno_expectation_reads_insmod_message() {
        let s = Step {
            exit: ExitExpect::Errno(crate::errno::lookup("EINVAL").unwrap()),
            ..Step::action(Action::Insmod(ModuleLoad::named("x")))
        };
        let said = "insmod: can't insert '/modules/x.ko': Invalid argument\n";
        assert!(check(&s, 1, said, &[]).is_empty());
        assert_eq!(check(&s, 0, "", &[]).len(), 1);
        let other = "insmod: can't insert '/modules/x.ko': No such device\n";
        let f = &check(&s, 1, other, &[])[0];
        assert!(
            f.ends_with(
                "not with EINVAL: expected EINVAL (Invalid argument), insmod said: No such device (ENODEV)"
            ),
            "{f}"
        );
        assert_eq!(errno_seen(&s, 1, other).as_deref(), Some("ENODEV"));
        assert_eq!(errno_seen(&s, 0, ""), None);
    }

    fn result(status: Status, title: Option<&str>) -> TestResult {
        TestResult {
            name: "s/t".into(),
            kernel: "k".into(),
            kernel_release: String::new(),
            status,
            duration_ms: 0,
            boot_ms: None,
            guest: None,
            steps: Vec::new(),
            message: None,
            crash: title.map(|t| Crash {
                title: t.into(),
                report: Vec::new(),
                frames: Vec::new(),
                fatal: true,
            }),
            crash_detect_ms: None,
            kernel_tail: Vec::new(),
            cases: Vec::new(),
            artifacts: PathBuf::new(),
        }
    }

    #[test]
    fn expect_crash_turns_a_matching_crash_into_a_pass() {
        let spec = TestSpec {
            expect_crash: Some("NULL pointer".into()),
            ..crate::spec::smoke_test(&["x".into()])
        };
        let mut r = result(
            Status::Crash,
            Some("BUG: kernel NULL pointer dereference in x_init"),
        );
        apply_expect_crash(&spec, &mut r);
        assert_eq!(r.status, Status::Pass);
        let mut r = result(Status::Crash, Some("WARNING in x_exit"));
        apply_expect_crash(&spec, &mut r);
        assert_eq!(r.status, Status::Crash);
        let mut r = result(Status::Pass, None);
        apply_expect_crash(&spec, &mut r);
        assert_eq!(r.status, Status::Fail);
    }

    #[test]
    fn dir_names_are_safe() {
        assert_eq!(dir_name("load-unload"), "load-unload");
        assert_eq!(dir_name("a b/c"), "a_20b_2fc");
        assert_eq!(dir_name(".."), "_2e.");
        assert_eq!(dir_name("."), "_2e");
        assert_eq!(dir_name(".hidden"), "_2ehidden");
        assert_eq!(dir_name(""), "_");
        assert_eq!(dir_name("a\nb\0"), "a_0ab_00");
    }

    #[test]
    fn dir_names_are_injective() {
        let names = [
            "a b", "a_b", "a_20b", "a/b", "a.b", "a", "A", "..", "_2e.", ".", "_", "", "é",
            "_c3_a9", "x~1", "x",
        ];
        let mut seen = std::collections::HashMap::new();
        for n in names {
            if let Some(other) = seen.insert(dir_name(n), n) {
                panic!("{n:?} and {other:?} both map to {:?}", dir_name(n));
            }
        }
    }

    #[test]
    fn long_dir_names_are_bounded_and_distinct() {
        let a = "x".repeat(300);
        let b = format!("{}y", "x".repeat(299));
        assert!(dir_name(&a).len() <= MAX_DIR_NAME, "{}", dir_name(&a));
        assert_ne!(dir_name(&a), dir_name(&b));
        let nul = "\0".repeat(300);
        assert!(dir_name(&nul).len() <= MAX_DIR_NAME);
        // A name just at the limit is kept whole; one byte more is hashed.
        assert_eq!(
            dir_name(&"x".repeat(MAX_DIR_NAME)),
            "x".repeat(MAX_DIR_NAME)
        );
        assert!(dir_name(&"x".repeat(MAX_DIR_NAME + 1)).contains('~'));
    }
}
