//! Saved guests: boot once, save the state once the shell is ready, and
//! start later guests from that state instead of booting.
//!
//! A snapshot lives in `<cache>/snapshots/<profile>-<key>/`: `state` (QEMU's
//! migration stream), `initrd.cpio` (the base initramfs it booted, with no
//! modules: QEMU needs the same files at restore), `meta.json`, and the boot's
//! logs. The key hashes everything that went into the saved state: modvm's
//! version, the init script, the QEMU binary, kernel and busybox files (path,
//! size, modification time) and the whole QEMU command line, so a change to
//! any of them names another snapshot. A snapshot whose files do not match
//! its `meta.json` (deleted, truncated, rewritten) is made again. Once its
//! state has been read and found whole, `checked.json` vouches for it (see
//! [`crate::kernel::manifest::Vouch`]), so later runs compare the file's
//! stamp instead of reading 69 MB.

use super::qmp::{Qmp, QmpError};
use super::{BootError, Guest, GuestLogs};
use crate::initramfs::{self, InitramfsSpec};
use crate::kernel::manifest::{self, hash_file, Vouch};
use crate::lock::Lock;
use crate::qemu::{shell_quote, QemuConfig};
use crate::runner::{dir_name, stable_hash};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bumped when the layout or the restore protocol changes.
const FORMAT: u32 = 1;
/// The [`Vouch`] for the state file, beside it.
const CHECKED: &str = "checked.json";
/// How long saving may take (a 256 MiB guest takes well under a second).
const SAVE_DEADLINE: Duration = Duration::from_secs(60);

/// Zeroes the guest's free memory before it is saved. The saved state
/// holds every page that is not all zeros, and after boot most free pages
/// still hold what boot left in them (the compressed kernel, the unpacked
/// initramfs archive): a tmpfs filled with zeros and removed again turns
/// them into zero pages, which the state records as flags. What a test can
/// observe does not change (free memory has no defined content).
const SCRUB: &str = "n=$(awk '/MemFree/ {print int($2 / 1024) - 16}' /proc/meminfo)
mkdir -p /tmp/.scrub && mount -t tmpfs -o size=${n}m scrub /tmp/.scrub &&
dd if=/dev/zero of=/tmp/.scrub/zero bs=1M count=$n 2>/dev/null
rm -f /tmp/.scrub/zero; umount /tmp/.scrub; rmdir /tmp/.scrub
echo 3 > /proc/sys/vm/drop_caches";

/// Why a snapshot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the guest to save did not boot: {0}")]
    Boot(#[from] BootError),
    /// The kernel's own words, since the save's logs go with its staging
    /// directory.
    #[error("the guest to save did not boot: the kernel crashed during boot: {0}")]
    Crashed(String),
    #[error("the guest to save did not boot: the kernel crashed during boot twice: {0}; then {1}")]
    CrashedTwice(String, String),
    #[error("saving the guest failed: {0}")]
    Qmp(#[from] QmpError),
    #[error("saving the guest failed: migration ended as {0}")]
    Migration(String),
    #[error("cannot write the snapshot in {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A usable snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub dir: PathBuf,
    pub meta: Meta,
}

impl Snapshot {
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn initrd(&self) -> PathBuf {
        self.dir.join("initrd.cpio")
    }

    /// Whether the state file still has the content it was saved with:
    /// done once per run and snapshot, by its stamp when `checked.json`
    /// vouches for it, else by reading it whole (and vouching for it then).
    pub fn intact(&self) -> bool {
        self.intact_with(manifest::SETTLE)
    }

    fn intact_with(&self, settle: Duration) -> bool {
        let state = self.state();
        let Ok(meta) = std::fs::metadata(&state) else {
            return false;
        };
        let checked = self.dir.join(CHECKED);
        let vouch: Option<Vouch> = std::fs::read(&checked)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        match manifest::verify(&state, &meta, &self.meta.state_hash, vouch.as_ref(), settle) {
            Ok(None) => true,
            Ok(Some(vouch)) => {
                // Best effort; a vouch written into a snapshot saved anew
                // meanwhile names the old hash and counts for nothing.
                let bytes = serde_json::to_vec(&vouch).expect("vouch serialises");
                let _ = crate::kernel::record::write_atomic(&checked, &bytes);
                true
            }
            Err(_) => false,
        }
    }
}

/// What `meta.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub format: u32,
    /// What the key was computed from, for people.
    pub inputs: String,
    /// `uname -r` of the saved guest.
    pub release: String,
    /// Taint mask after boot.
    pub boot_taint: u64,
    pub boot_ms: u64,
    pub save_ms: u64,
    pub state_bytes: u64,
    pub state_hash: String,
    pub initrd_bytes: u64,
}

/// Where a run's snapshots of one kind live and what goes into them.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// `<cache>/snapshots`.
    pub root: PathBuf,
    /// Kernel profile name, for the directory's name.
    pub profile: String,
    /// The guest's configuration (its `initrd` is replaced by the base one).
    pub qemu: QemuConfig,
    pub busybox: PathBuf,
    /// Files of the base initramfs besides busybox and the init.
    pub base_files: Vec<crate::shipped::GuestFile>,
}

impl Recipe {
    /// The snapshot's directory name and the text its key hashes.
    pub fn key(&self) -> (String, String) {
        let mut inputs = vec![
            format!(
                "modvm {} snapshot format {FORMAT}",
                env!("CARGO_PKG_VERSION")
            ),
            format!("init {:016x}", stable_hash(initramfs::INIT.as_bytes())),
            file_identity("qemu", &resolve(&self.qemu.binary)),
            file_identity("kernel", &self.qemu.kernel),
            file_identity("busybox", &self.busybox),
        ];
        // The base initramfs's other files (the modules disk's drivers, a
        // spec's guest packages): one line for all, each by its place in
        // the guest, its mode and its file's identity.
        let base: Vec<String> = self
            .base_files
            .iter()
            .map(|f| format!("{} {:o} {}", f.guest, f.mode(), file_identity("", &f.host)))
            .collect();
        inputs.push(format!(
            "base files {} {:016x}",
            base.len(),
            stable_hash(base.join("\n").as_bytes())
        ));
        let mut placeholder = self.qemu.clone();
        placeholder.initrd = PathBuf::from("INITRD");
        placeholder.monitor = false;
        placeholder.incoming = None;
        let sockets = crate::qemu::Plumbing {
            console_socket: PathBuf::from("SOCKET"),
            scratch_dir: PathBuf::from("SCRATCH"),
            ..Default::default()
        };
        inputs.push(format!(
            "args {}",
            placeholder
                .args(&sockets)
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        ));
        let inputs = inputs.join("\n");
        let name = format!(
            "{}-{:016x}",
            dir_name(&self.profile),
            stable_hash(inputs.as_bytes())
        );
        (name, inputs)
    }

    /// The snapshot for this recipe if one is saved and its files match its
    /// record (sizes only: reading the state whole is [`Snapshot::intact`]).
    pub fn find(&self) -> Option<Snapshot> {
        let (name, inputs) = self.key();
        let dir = self.root.join(name);
        let meta: Meta =
            serde_json::from_slice(&std::fs::read(dir.join("meta.json")).ok()?).ok()?;
        let size = |f: &str| std::fs::metadata(dir.join(f)).map(|m| m.len()).ok();
        let ok = meta.format == FORMAT
            && meta.inputs == inputs
            && size("state") == Some(meta.state_bytes)
            && size("initrd.cpio") == Some(meta.initrd_bytes);
        ok.then_some(Snapshot { dir, meta })
    }

    /// Returns the saved snapshot, or boots a guest and saves one. Two runs
    /// that need the same snapshot take turns: the second finds the first's.
    /// `discard` names a snapshot found broken, to be made again.
    pub fn obtain(
        &self,
        timeout: Duration,
        discard: Option<&Snapshot>,
        waiting: &mut dyn FnMut(),
    ) -> Result<Snapshot, SnapshotError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SnapshotError::Io { path, source }
        };
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let (name, inputs) = self.key();
        let lock_path = self.root.join(format!("{name}.lock"));
        let _lock = Lock::exclusive(&lock_path, waiting).map_err(io(&lock_path))?;
        if let Some(found) = self.find() {
            let stale = discard.is_some_and(|d| d.meta.state_hash == found.meta.state_hash);
            if !stale {
                return Ok(found);
            }
        }
        // Staging directories of this name left by a run that was killed
        // while saving (under the lock, no one else is saving it now).
        let prefix = format!(".{name}-");
        for entry in std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        // A kernel that crashes while booting, before any module is near it,
        // is booted once more: some kernels do so now and then under TCG
        // (6.12 on QEMU 7.2, about one boot in ten), and one bad boot
        // should not cost a run its saved guest.
        let mut crashed = None;
        let (staging, meta) = loop {
            let staging = tempfile::Builder::new()
                .prefix(&format!(".{name}-"))
                .tempdir_in(&self.root)
                .map_err(io(&self.root))?;
            let saved = self.save(staging.path(), inputs.clone(), timeout);
            // A crash after the shell came up (while scrubbing, or as QEMU
            // is asked to save) shows only in the kernel log: the monitor
            // is gone with QEMU.
            let crash = match &saved {
                Ok(_) => None,
                Err(SnapshotError::Crashed(title)) => Some(title.clone()),
                Err(_) => {
                    crate::runner::crash_in_log(&staging.path().join("kernel.log")).map(|c| c.title)
                }
            };
            match (saved, crash) {
                (Ok(meta), _) => break (staging, meta),
                (Err(e), _) if crate::children::interrupted() => return Err(e),
                (Err(_), Some(title)) if crashed.is_none() => crashed = Some(title),
                (Err(_), Some(title)) => {
                    return Err(SnapshotError::CrashedTwice(
                        crashed.unwrap_or_default(),
                        title,
                    ))
                }
                (Err(e), None) => return Err(e),
            }
        };
        let dir = self.root.join(&name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        let staged = staging.keep();
        std::fs::rename(&staged, &dir).map_err(io(&dir))?;
        Ok(Snapshot { dir, meta })
    }

    /// Boots the base guest in `dir` and saves its state there.
    fn save(&self, dir: &Path, inputs: String, timeout: Duration) -> Result<Meta, SnapshotError> {
        let io = |path: PathBuf| move |source| SnapshotError::Io { path, source };
        let initrd = dir.join("initrd.cpio");
        initramfs::write(
            &InitramfsSpec {
                busybox: self.busybox.clone(),
                init: initramfs::INIT.to_string(),
                files: self.base_files.clone(),
            },
            &initrd,
        )
        .map_err(io(initrd.clone()))?;
        let mut qemu = self.qemu.clone();
        qemu.initrd = initrd.clone();
        qemu.monitor = true;
        qemu.incoming = None;
        let logs = GuestLogs::in_dir(dir);
        let mut guest = Guest::boot(&qemu, &logs, timeout).map_err(|e| {
            match crate::runner::crash_in_log(&logs.kernel) {
                Some(crash) => SnapshotError::Crashed(crash.title),
                None => e.into(),
            }
        })?;
        // Best effort: a guest that cannot scrub is saved larger, not lost.
        let tag = crate::console::new_tag("scrub");
        let _ = guest
            .console
            .run(&tag, SCRUB, Instant::now() + timeout, &mut || false);
        let started = Instant::now();
        let state = dir.join("state");
        let qmp_path = guest.qmp_socket().expect("started with a monitor");
        let mut qmp = Qmp::connect(qmp_path, started + SAVE_DEADLINE)?;
        qmp.execute("stop", None)?;
        // The guest is stopped: no dirty pages to chase, so no bandwidth cap.
        qmp.execute(
            "migrate-set-parameters",
            Some(json!({ "max-bandwidth": i64::MAX / 2 })),
        )?;
        let uri = format!("exec:cat > {}", shell_quote(&state.to_string_lossy()));
        qmp.execute("migrate", Some(json!({ "uri": uri })))?;
        loop {
            let status = qmp.execute("query-migrate", None)?;
            match status.get("status").and_then(|s| s.as_str()).unwrap_or("") {
                "completed" => break,
                "failed" | "cancelled" => {
                    let why = status
                        .get("error-desc")
                        .and_then(|s| s.as_str())
                        .unwrap_or("failed");
                    return Err(SnapshotError::Migration(why.to_string()));
                }
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        let save_ms = started.elapsed().as_millis() as u64;
        let boot_ms = guest.boot_time.as_millis() as u64;
        let (release, boot_taint) = (guest.release.clone(), guest.boot_taint);
        drop(guest);
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len());
        let meta = Meta {
            format: FORMAT,
            inputs,
            release,
            boot_taint,
            boot_ms,
            save_ms,
            state_bytes: size(&state).map_err(io(state.clone()))?,
            state_hash: hash_file(&state).map_err(io(state.clone()))?,
            initrd_bytes: size(&initrd).map_err(io(initrd.clone()))?,
        };
        let meta_path = dir.join("meta.json");
        std::fs::write(
            &meta_path,
            serde_json::to_vec_pretty(&meta).expect("meta serialises"),
        )
        .map_err(io(meta_path))?;
        Ok(meta)
    }
}

/// `name path size mtime` of a file, or `name path missing`.
fn file_identity(name: &str, path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) => {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!("{name} {} {} {mtime}", path.display(), m.len())
        }
        Err(_) => format!("{name} {} missing", path.display()),
    }
}

/// A program name as `PATH` finds it (the QEMU binary is usually named
/// bare); a path is taken as it is.
fn resolve(program: &Path) -> PathBuf {
    if program.components().count() > 1 {
        return program.to_path_buf();
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| program.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::Accel;

    fn recipe(root: &Path) -> Recipe {
        Recipe {
            root: root.to_path_buf(),
            profile: "p".into(),
            qemu: QemuConfig {
                binary: "qemu-system-x86_64".into(),
                accel: Accel::Tcg,
                machine: crate::machine::Machine {
                    arch: crate::machine::Arch::DEFAULT,
                    memory_mib: 256,
                    smp: 1,
                    cmdline: "quiet".into(),
                    devices: Vec::new(),
                },
                kernel: root.join("vmlinuz"),
                initrd: PathBuf::new(),
                monitor: false,
                incoming: None,
                gdb: None,
            },
            busybox: root.join("busybox"),
            base_files: Vec::new(),
        }
    }

    #[test]
    fn key_changes_with_every_input_and_not_with_per_guest_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vmlinuz"), b"k").unwrap();
        let base = recipe(dir.path());
        let key = base.key().0;
        let mut same = base.clone();
        same.qemu.monitor = true;
        same.qemu.initrd = "/other.cpio".into();
        assert_eq!(same.key().0, key);
        let changed: [fn(&mut Recipe); 8] = [
            |r| {
                r.base_files.push(crate::shipped::GuestFile::plain(
                    &r.busybox,
                    "/usr/sbin/x".into(),
                    Some(true),
                ))
            },
            |r| r.qemu.machine.memory_mib = 512,
            |r| r.qemu.machine.smp = 2,
            |r| r.qemu.accel = Accel::Kvm,
            |r| r.qemu.machine.cmdline = "quiet panic_on_warn=1".into(),
            |r| {
                r.qemu
                    .machine
                    .devices
                    .push(crate::machine::Device::ModulesDisk("/m.img".into()))
            },
            |r| r.busybox = "/other/busybox".into(),
            |r| std::fs::write(&r.qemu.kernel, b"longer").unwrap(),
        ];
        for change in changed {
            let mut r = base.clone();
            change(&mut r);
            assert_ne!(r.key().0, key, "{:?}", r.key().1);
        }
    }

    #[test]
    fn a_snapshot_whose_files_do_not_match_its_record_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let r = recipe(dir.path());
        let (name, inputs) = r.key();
        let snap = dir.path().join(&name);
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("state"), b"0123456789").unwrap();
        std::fs::write(snap.join("initrd.cpio"), b"cpio").unwrap();
        let meta = Meta {
            format: FORMAT,
            inputs,
            release: "6.1".into(),
            boot_taint: 0,
            boot_ms: 1,
            save_ms: 1,
            state_bytes: 10,
            state_hash: hash_file(&snap.join("state")).unwrap(),
            initrd_bytes: 4,
        };
        std::fs::write(snap.join("meta.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
        let found = r.find().expect("whole snapshot is found");
        assert!(found.intact());
        assert!(
            !snap.join(CHECKED).exists(),
            "just written: not vouched for"
        );
        assert!(found.intact_with(Duration::ZERO));
        assert!(snap.join(CHECKED).exists(), "read and settled: vouched for");
        assert!(found.intact_with(Duration::ZERO), "by its stamp");
        std::thread::sleep(Duration::from_millis(50));
        std::fs::write(snap.join("state"), b"01234x6789").unwrap();
        assert!(!r.find().unwrap().intact(), "same size, other bytes");
        std::fs::write(snap.join("state"), b"01234").unwrap();
        assert!(r.find().is_none(), "truncated");
        std::fs::write(snap.join("state"), b"0123456789").unwrap();
        std::fs::write(snap.join("meta.json"), b"{not json").unwrap();
        assert!(r.find().is_none(), "unreadable record");
    }
}
