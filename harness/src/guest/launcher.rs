//! Where a test's guest comes from: the runner asks a [`Launcher`] for a
//! ready guest and does not know whether it was booted or restored.
//!
//! * [`Cold`] boots QEMU on the test's own initramfs (its modules inside)
//!   with the test's switches on the kernel command line.
//! * [`Restore`] starts QEMU from a snapshot of a booted base guest (made
//!   on first use, then cached), sends the modules over the console, checks
//!   them and sets the switches through `/proc/sys`. A snapshot that cannot
//!   be restored is made again once; if that fails too, the run boots cold
//!   from then on and says why in one line.
//!
//! Every guest, restored or booted, starts from a pristine kernel: nothing a
//! test does reaches the snapshot, which is only ever read.

use super::deliver::{self, Payloads, Switches};
use super::qmp::{Qmp, QmpError};
use super::snapshot::{Recipe, Snapshot, SnapshotError};
use super::{BootError, Guest, GuestLogs};
use crate::children;
use crate::qemu::QemuConfig;
use crate::shipped::GuestFile;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a test needs from its guest.
pub struct LaunchRequest<'a> {
    /// The run's guest configuration with the test's CPUs; its `initrd` is
    /// chosen by the launcher.
    pub qemu: &'a QemuConfig,
    /// The test's initramfs, holding its files (for a cold boot).
    pub initrd: &'a Path,
    /// The test's files (modules, helpers, the spec's `files`), each at its
    /// path in the guest.
    pub files: &'a [GuestFile],
    /// Files the guest has from the start (the spec's `guest_packages`):
    /// part of the saved guest, which is keyed on them; in the test's
    /// initramfs for a cold boot.
    pub base_files: &'a [GuestFile],
    pub switches: Switches,
    pub logs: &'a GuestLogs,
    /// How long the guest may take to be ready.
    pub timeout: Duration,
}

/// How a guest was started, as reports show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    Booted,
    Restored,
}

/// Gives ready guests. Shared by the runner's workers.
pub trait Launcher: Send + Sync + std::fmt::Debug {
    fn launch(&self, request: &LaunchRequest<'_>) -> Result<(Guest, Start), BootError>;
}

/// Boots every guest.
#[derive(Debug, Default)]
pub struct Cold;

impl Launcher for Cold {
    fn launch(&self, request: &LaunchRequest<'_>) -> Result<(Guest, Start), BootError> {
        let mut qemu = request.qemu.clone();
        qemu.initrd = request.initrd.to_path_buf();
        let switches = request.switches.kernel_args();
        if !switches.is_empty() {
            qemu.machine.add_cmdline(&switches);
        }
        match Guest::boot(&qemu, request.logs, request.timeout) {
            Ok(g) => Ok((g, Start::Booted)),
            // Nothing of the test runs before its shell is up (its modules
            // are only files in the initramfs), so a kernel that crashed
            // while booting crashed on its own (Debian's 6.12 did so under
            // TCG about one boot in twenty before `Arch::tcg_cpu`). Booted
            // once more; the first boot's logs stay beside the test's as
            // `*.first-boot.log`.
            Err(_) if !children::interrupted() && crashed_while_booting(request.logs) => {
                keep_aside(request.logs, "first-boot");
                Guest::boot(&qemu, request.logs, request.timeout).map(|g| (g, Start::Booted))
            }
            Err(e) => Err(e),
        }
    }
}

/// Whether the kernel log of a boot that failed shows a crash.
fn crashed_while_booting(logs: &GuestLogs) -> bool {
    crate::runner::crash_in_log(&logs.kernel).is_some()
}

/// Moves the logs of a guest that did not start aside (`kernel.log` →
/// `kernel.<what>.log`: `first-boot`, `failed-restore`), so the guest
/// started after it writes its own and the failure can still be read.
fn keep_aside(logs: &GuestLogs, what: &str) {
    for path in [&logs.kernel, &logs.console, &logs.qemu_stderr] {
        let aside = path.with_extension(format!("{what}.log"));
        let _ = std::fs::rename(path, aside);
    }
}

/// How long a restore may take to give a ready guest (state loaded,
/// files delivered) before it counts as failed: one takes ~0.4 s, and the
/// files it sends are bounded by [`COLD_IS_FASTER`] (~2 s of UART). A
/// restored guest that hangs must cost seconds, not the boot timeout,
/// before the cold boot that replaces it.
const RESTORE_DEADLINE: Duration = Duration::from_secs(20);

/// One snapshot's state within a run.
enum Slot {
    /// Not looked at yet.
    Unknown,
    Ready(Snapshot),
    /// Could not be made or restored: boot cold.
    Broken,
}

/// Restores guests from snapshots kept in `root`.
pub struct Restore {
    root: PathBuf,
    profile: String,
    busybox: PathBuf,
    /// Files every guest's initramfs holds (the modules disk's drivers).
    base_files: Vec<crate::shipped::GuestFile>,
    payloads: Payloads,
    slots: Mutex<HashMap<String, Arc<Mutex<Slot>>>>,
    notice: Box<dyn Fn(&str) + Send + Sync>,
    told_too_big: AtomicBool,
    /// Reasons already given for booting a test cold.
    told_cold: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Restore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restore")
            .field("root", &self.root)
            .field("profile", &self.profile)
            .finish()
    }
}

impl Restore {
    /// `notice` gets the one-line reasons for falling back or waiting.
    pub fn new(
        root: PathBuf,
        profile: &str,
        busybox: PathBuf,
        base_files: Vec<crate::shipped::GuestFile>,
        notice: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Restore {
        Restore {
            root,
            profile: profile.to_string(),
            busybox,
            base_files,
            payloads: Payloads::default(),
            slots: Mutex::new(HashMap::new()),
            notice,
            told_too_big: AtomicBool::new(false),
            told_cold: Mutex::new(Vec::new()),
        }
    }

    fn recipe(&self, qemu: &QemuConfig, extra_base: &[GuestFile]) -> Recipe {
        let mut qemu = qemu.clone();
        qemu.initrd = PathBuf::new();
        // The saved guest never waits for a debugger; restores of it may.
        qemu.gdb = None;
        Recipe {
            root: self.root.clone(),
            profile: self.profile.clone(),
            qemu,
            busybox: self.busybox.clone(),
            base_files: self.base_files.iter().chain(extra_base).cloned().collect(),
        }
    }

    fn slot(&self, recipe: &Recipe) -> Arc<Mutex<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .entry(recipe.key().0)
            .or_insert_with(|| Arc::new(Mutex::new(Slot::Unknown)))
            .clone()
    }

    /// The snapshot to restore, made or checked once per run; `None` means
    /// boot cold. Workers asking for the same snapshot wait for the first.
    fn snapshot(&self, recipe: &Recipe, timeout: Duration) -> Option<Snapshot> {
        let slot = self.slot(recipe);
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Slot::Ready(s) => return Some(s.clone()),
            Slot::Broken => return None,
            Slot::Unknown => {}
        }
        let found = recipe.find();
        let damaged = {
            let _t = crate::trace::span("snapshot-check");
            found.as_ref().filter(|s| !s.intact())
        };
        if damaged.is_some() {
            (self.notice)(&format!(
                "the saved {} guest is damaged; saving it again",
                self.profile
            ));
        } else if let Some(s) = found {
            *slot = Slot::Ready(s.clone());
            return Some(s);
        } else {
            (self.notice)(&format!(
                "booting the {} guest once to save it (later runs restore it)",
                self.profile
            ));
        }
        match self.make(recipe, timeout, damaged) {
            Ok(s) => {
                *slot = Slot::Ready(s.clone());
                Some(s)
            }
            Err(e) => {
                self.cannot_save(&e);
                *slot = Slot::Broken;
                None
            }
        }
    }

    fn make(
        &self,
        recipe: &Recipe,
        timeout: Duration,
        discard: Option<&Snapshot>,
    ) -> Result<Snapshot, SnapshotError> {
        recipe.obtain(timeout, discard, &mut || {
            (self.notice)("waiting for another modvm run that is saving the same guest")
        })
    }

    fn cannot_save(&self, e: &SnapshotError) {
        if !children::interrupted() {
            (self.notice)(&format!(
                "cannot save a {} guest to restore ({e}); booting every guest cold",
                self.profile
            ));
        }
    }

    fn give_up(&self, why: &str) {
        if !children::interrupted() {
            (self.notice)(&format!(
                "cannot restore the saved {} guest ({why}); booting every guest cold",
                self.profile
            ));
        }
    }

    fn restore(
        &self,
        snapshot: &Snapshot,
        request: &LaunchRequest<'_>,
    ) -> Result<Guest, RestoreFailure> {
        let started = Instant::now();
        // A person at the debugger holds the guest for as long as they like.
        let deadline = match request.qemu.gdb {
            Some(_) => started + request.timeout,
            None => started + request.timeout.min(RESTORE_DEADLINE),
        };
        let payloads = request
            .files
            .iter()
            .map(|f| {
                let _t = crate::trace::span("module-prepare");
                self.payloads.get(f)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                RestoreFailure::Test(BootError::Io(std::io::Error::other(e.to_string())))
            })?;
        let bytes: usize = payloads.iter().map(|p| p.gzip.len()).sum();
        if bytes > COLD_IS_FASTER {
            return Err(RestoreFailure::TooBig(bytes));
        }
        let mut qemu = request.qemu.clone();
        qemu.initrd = snapshot.initrd();
        qemu.incoming = Some(snapshot.state());
        qemu.monitor = true;
        let span = crate::trace::span("qemu-start");
        let mut guest = Guest::start(&qemu, request.logs, deadline)
            .map_err(|e| RestoreFailure::Snapshot(e.to_string()))?;
        drop(span);
        let span = crate::trace::span("restore");
        // Nothing may be sent before the state is loaded: QEMU's UART would
        // take the first byte into its pre-load registers, which the load
        // then overwrites, and would never read the socket again.
        if let Some(stub) = &qemu.gdb {
            // `-S` holds the loaded guest until the debugger continues it.
            wait_status(&guest, deadline, |s| s != "inmigrate")
                .map_err(|e| RestoreFailure::Snapshot(format!("loading the saved state: {e}")))?;
            super::gdb::announce(stub, request.logs.dir(), deadline);
        }
        wait_status(&guest, deadline, |s| s == "running").map_err(|e| {
            let status = guest.wait_exit(Duration::from_millis(200));
            RestoreFailure::Snapshot(match status {
                Some(status) => format!("QEMU exited ({status}): {}", guest.qemu_stderr()),
                None => e.to_string(),
            })
        })?;
        drop(span);
        let _t = crate::trace::span("setup");
        match deliver::deliver(&mut guest, &payloads, request.switches, deadline) {
            Ok(taint) => {
                guest.release = snapshot.meta.release.clone();
                guest.boot_taint = taint;
                guest.boot_time = started.elapsed();
                Ok(guest)
            }
            Err(deliver::DeliverError::Console(e)) => {
                let e = guest.failed(e, request.timeout);
                Err(RestoreFailure::Snapshot(e.to_string()))
            }
            Err(e) => Err(RestoreFailure::Snapshot(e.to_string())),
        }
    }
}

/// Waits until the restored guest's run state (`running` once its state
/// is fully loaded; `paused` instead while `--gdb` holds it) satisfies `done`.
fn wait_status(
    guest: &Guest,
    deadline: Instant,
    done: impl Fn(&str) -> bool,
) -> Result<(), QmpError> {
    let path = guest.qmp_socket().expect("restored with a monitor");
    let mut qmp = Qmp::connect(path, deadline)?;
    let started = Instant::now();
    loop {
        let status = qmp.execute("query-status", None)?;
        if status
            .get("status")
            .and_then(|r| r.as_str())
            .is_some_and(&done)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(QmpError::Timeout);
        }
        // A restore takes ~0.1 s; a person at a debugger takes longer.
        let slow = started.elapsed() > Duration::from_secs(1);
        std::thread::sleep(Duration::from_millis(if slow { 50 } else { 2 }));
    }
}

/// Compressed bytes of files past which a cold boot (the files inside its
/// initramfs) is faster than a restore plus sending them over the UART
/// (~70 KiB/s: 0.36 s + 128 KiB ≈ a 2 s boot).
const COLD_IS_FASTER: usize = 128 * 1024;

/// Why a restore did not give a guest.
enum RestoreFailure {
    /// The test's files are big enough that booting them in is faster.
    TooBig(usize),
    /// The snapshot (or restoring it) is at fault: make it again or boot.
    Snapshot(String),
    /// The test's own input is at fault: booting would not help.
    Test(BootError),
}

impl Launcher for Restore {
    fn launch(&self, request: &LaunchRequest<'_>) -> Result<(Guest, Start), BootError> {
        if let Some(why) = request.qemu.machine.not_migratable() {
            let mut told = self.told_cold.lock().unwrap_or_else(|e| e.into_inner());
            if !told.contains(&why) {
                (self.notice)(&format!("{why}: tests with it boot cold"));
                told.push(why);
            }
            drop(told);
            return Cold.launch(request);
        }
        let recipe = self.recipe(request.qemu, request.base_files);
        let Some(snapshot) = self.snapshot(&recipe, request.timeout) else {
            return Cold.launch(request);
        };
        let why = match self.restore(&snapshot, request) {
            Ok(guest) => return Ok((guest, Start::Restored)),
            Err(RestoreFailure::Test(e)) => return Err(e),
            Err(RestoreFailure::TooBig(bytes)) => {
                if !self.told_too_big.swap(true, Ordering::Relaxed) {
                    (self.notice)(&format!(
                        "a test's files are {} KiB compressed: booting its guest with them is faster than sending them to a restored one",
                        bytes / 1024
                    ));
                }
                return Cold.launch(request);
            }
            Err(RestoreFailure::Snapshot(why)) => why,
        };
        if children::interrupted() {
            return Err(BootError::Console("interrupted".into()));
        }
        keep_aside(request.logs, "failed-restore");
        let why = format!("{why}; its logs are kept beside the test's as *.failed-restore.log");
        // Made again once per run; a snapshot that fails twice is not used.
        let slot = self.slot(&recipe);
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        let again = match &*slot {
            Slot::Ready(s) if s.meta.state_hash == snapshot.meta.state_hash => {
                (self.notice)(&format!(
                    "restoring the saved {} guest failed ({why}); saving it again",
                    self.profile
                ));
                match self.make(&recipe, request.timeout, Some(&snapshot)) {
                    Ok(s) => s,
                    Err(e) => {
                        self.cannot_save(&e);
                        *slot = Slot::Broken;
                        drop(slot);
                        return Cold.launch(request);
                    }
                }
            }
            Slot::Ready(s) => s.clone(),
            _ => {
                drop(slot);
                return Cold.launch(request);
            }
        };
        *slot = Slot::Ready(again.clone());
        drop(slot);
        match self.restore(&again, request) {
            Ok(guest) => Ok((guest, Start::Restored)),
            Err(RestoreFailure::Test(e)) => Err(e),
            Err(RestoreFailure::TooBig(_)) => Cold.launch(request),
            Err(RestoreFailure::Snapshot(why)) => {
                keep_aside(request.logs, "failed-restore-2");
                self.give_up(&why);
                let slot = self.slot(&recipe);
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Slot::Broken;
                Cold.launch(request)
            }
        }
    }
}

impl Switches {
    /// The kernel parameters a cold boot carries for these switches.
    pub fn kernel_args(&self) -> String {
        let mut a = Vec::new();
        if self.panic_on_warn {
            a.push("panic_on_warn=1");
        }
        if self.panic_on_oops {
            a.push("oops=panic");
        }
        a.join(" ")
    }
}
