//! One throw-away guest: a QEMU process, its shell console and its kernel log.
//!
//! A test gets its guest from a [`launcher::Launcher`]: a cold boot
//! ([`Guest::boot`]) or a restore of a saved guest ([`snapshot`]); the
//! runner does not know which.

pub mod deliver;
pub mod exec;
pub mod gdb;
pub mod interactive;
pub mod launcher;
pub mod qmp;
pub mod snapshot;

use crate::children;
use crate::console::{Console, ConsoleError};
use crate::klog::KernelLog;
use crate::logsink::LogSink;
use crate::qemu::{Plumbing, QemuConfig};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a guest did not come up.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("QEMU exited during boot ({status}): {}", explain_exit(status, stderr))]
    QemuExited { status: String, stderr: String },
    #[error("the guest did not reach its shell within {0:.1?}")]
    Timeout(Duration),
    #[error("the guest console failed during boot: {0}")]
    Console(String),
    #[error("cannot prepare the guest's run directory: {0}")]
    Io(#[from] std::io::Error),
}

/// QEMU's own words when it has any. Without them, a clean exit is the
/// guest's doing (a reset or power-off, which `-no-reboot` turns into an
/// exit); any other status is the QEMU binary's, not the kernel's.
fn explain_exit(status: &str, stderr: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    if !stderr.is_empty() {
        stderr.to_string()
    } else if status == std::process::ExitStatus::from_raw(0).to_string() {
        "no error from QEMU: the guest reset or powered off before its shell started (see kernel.log; if the kernel printed nothing there, its image is likely damaged: `modvm fetch --refresh` fetches it again)".into()
    } else {
        "QEMU failed without an error message: the binary is not a working qemu-system-x86_64 (check `--qemu`) or it was killed".into()
    }
}

/// Files a guest writes its streams into.
#[derive(Debug, Clone)]
pub struct GuestLogs {
    pub console: PathBuf,
    pub kernel: PathBuf,
    pub qemu_stderr: PathBuf,
    /// The QEMU command line as run, for people re-running it by hand.
    pub cmdline: PathBuf,
    /// Also stream both to stderr (`--console`).
    pub echo: bool,
}

impl GuestLogs {
    /// The standard names inside a test's artifacts directory.
    pub fn in_dir(dir: &Path) -> GuestLogs {
        GuestLogs {
            console: dir.join("console.log"),
            kernel: dir.join("kernel.log"),
            qemu_stderr: dir.join("qemu.stderr"),
            cmdline: dir.join("qemu-cmdline.txt"),
            echo: false,
        }
    }

    /// The directory the logs are in (`--gdb` writes its scripts there).
    pub fn dir(&self) -> &Path {
        self.cmdline.parent().unwrap_or(Path::new("."))
    }
}

/// A running guest whose shell has proven it reads input.
pub struct Guest {
    child: Child,
    pub console: Console,
    pub klog: KernelLog,
    /// `uname -r` inside the guest.
    pub release: String,
    /// Kernel taint mask once booted (the baseline for taint checks).
    pub boot_taint: u64,
    pub boot_time: Duration,
    stderr_path: PathBuf,
    qmp_socket: Option<PathBuf>,
    // Holds the console socket's directory until the guest is gone.
    _run_dir: tempfile::TempDir,
}

impl Guest {
    /// Starts QEMU and waits for the guest's ready marker.
    ///
    /// `config.console_socket` is ignored: the socket lives in a private
    /// short-lived directory (socket paths are limited to 108 bytes).
    pub fn boot(
        config: &QemuConfig,
        logs: &GuestLogs,
        timeout: Duration,
    ) -> Result<Guest, BootError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut guest = Guest::start(config, logs, deadline)?;
        // A kernel that crashed while booting will not print the marker:
        // stop waiting as soon as its log shows a fatal crash.
        let klog = &guest.klog;
        let mut crashed = || {
            crate::crash::detect(&klog.tail(200))
                .iter()
                .any(|c| c.fatal)
        };
        match guest.console.wait_ready_or(deadline, &mut crashed) {
            Ok((release, taint)) => {
                guest.release = release;
                guest.boot_taint = taint;
                guest.boot_time = started.elapsed();
                Ok(guest)
            }
            Err(e) => Err(guest.failed(e, timeout)),
        }
    }

    /// Starts QEMU and connects its console, without waiting for anything
    /// from the guest (a restored guest has no ready marker to print).
    pub fn start(
        config: &QemuConfig,
        logs: &GuestLogs,
        deadline: Instant,
    ) -> Result<Guest, BootError> {
        let run_dir = crate::sockdir::create()?;
        let mut plumbing = Plumbing {
            console_socket: run_dir.path().join("ttyS0.sock"),
            qmp_socket: config.monitor.then(|| run_dir.path().join("qmp.sock")),
            incoming_fd: None,
            scratch_dir: run_dir.path().to_path_buf(),
        };
        config.machine.create_scratch_disks(&plumbing.scratch_dir)?;
        std::fs::write(&logs.cmdline, config.display() + "\n")?;
        // A saved state goes to QEMU as an open descriptor, inheritable in
        // the child only (other guests spawned meanwhile must not get it).
        let state = config.incoming.as_ref().map(File::open).transpose()?;
        if let Some(f) = &state {
            plumbing.incoming_fd = Some(f.as_raw_fd());
        }

        let mut cmd = Command::new(&config.binary);
        cmd.args(config.args(&plumbing))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&logs.qemu_stderr)?);
        children::arm(&mut cmd);
        if let Some(fd) = plumbing.incoming_fd {
            // SAFETY: fcntl and prctl on this process, between fork and
            // exec; both async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // Transparent huge pages make a restore faster at the
                    // median and 3x slower now and then (97 ms median, 390
                    // ms worst, 152 ms mean over 20; without: 121, 128,
                    // 122): a suite pays the mean. Best effort.
                    libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().map_err(|source| BootError::Spawn {
            binary: config.binary.display().to_string(),
            source,
        })?;
        children::register(child.id());
        let stdout = child.stdout.take().expect("stdout is piped");
        let klog = KernelLog::start(
            stdout,
            LogSink::new(
                Some(File::create(&logs.kernel)?),
                logs.echo.then_some("kernel| "),
            ),
        );
        let timeout = deadline.saturating_duration_since(Instant::now());
        let stream = match connect(&plumbing.console_socket, &mut child, deadline) {
            Ok(s) => s,
            Err(e) => return Err(finish_failed_boot(child, &logs.qemu_stderr, e, timeout)),
        };
        let console = Console::new(
            stream,
            LogSink::console(
                Some(File::create(&logs.console)?),
                logs.echo.then_some("guest | "),
            ),
        )?;
        // A restored guest is announced once its state is loaded.
        if let (Some(stub), None) = (&config.gdb, &config.incoming) {
            gdb::announce(stub, logs.dir(), deadline);
        }
        Ok(Guest {
            child,
            console,
            klog,
            release: String::new(),
            boot_taint: 0,
            boot_time: Duration::ZERO,
            stderr_path: logs.qemu_stderr.clone(),
            qmp_socket: plumbing.qmp_socket.clone(),
            _run_dir: run_dir,
        })
    }

    /// Why the guest did not come up, after a failed wait on its console:
    /// QEMU's own exit and error when it ended, else the console's failure.
    pub fn failed(mut self, e: ConsoleError, timeout: Duration) -> BootError {
        if let Some(status) = self.wait_exit(Duration::from_millis(200)) {
            return BootError::QemuExited {
                status,
                stderr: read_trimmed(&self.stderr_path),
            };
        }
        match e {
            ConsoleError::Timeout { .. } => BootError::Timeout(timeout),
            other => BootError::Console(other.to_string()),
        }
    }

    /// The QEMU monitor's socket, when the guest was started with one.
    pub fn qmp_socket(&self) -> Option<&Path> {
        self.qmp_socket.as_deref()
    }

    /// QEMU's exit status if it has exited within `grace`.
    pub fn wait_exit(&mut self, grace: Duration) -> Option<String> {
        let until = Instant::now() + grace;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.to_string());
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// QEMU's own error output so far.
    pub fn qemu_stderr(&self) -> String {
        read_trimmed(&self.stderr_path)
    }

    /// Process id of QEMU (for tests that check nothing outlives modvm).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

fn stop(child: &mut Child) {
    // SAFETY: kill(2) on the child's own process group (see children::arm).
    unsafe {
        libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
    children::unregister(child.id());
}

enum ConnectError {
    Exited(String),
    Timeout,
}

/// QEMU creates the socket a moment after it starts; poll until it accepts.
fn connect(path: &Path, child: &mut Child, deadline: Instant) -> Result<UnixStream, ConnectError> {
    loop {
        if let Ok(s) = UnixStream::connect(path) {
            return Ok(s);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(ConnectError::Exited(status.to_string()));
        }
        if Instant::now() >= deadline {
            return Err(ConnectError::Timeout);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn finish_failed_boot(
    mut child: Child,
    stderr_path: &Path,
    e: ConnectError,
    timeout: Duration,
) -> BootError {
    stop(&mut child);
    match e {
        ConnectError::Exited(status) => BootError::QemuExited {
            status,
            stderr: read_trimmed(stderr_path),
        },
        ConnectError::Timeout => BootError::Timeout(timeout),
    }
}

/// QEMU's stderr without its own "waiting for connection" notice.
fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.contains("info: QEMU waiting for connection"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn status(raw: i32) -> String {
        std::process::ExitStatus::from_raw(raw).to_string()
    }

    #[test]
    fn an_exit_is_explained_by_qemu_first_then_by_its_status() {
        assert_eq!(
            explain_exit(&status(256), "qemu: bad option"),
            "qemu: bad option"
        );
        assert!(explain_exit(&status(0), "").contains("the guest reset or powered off"));
        for failed in [status(256), status(9)] {
            let why = explain_exit(&failed, "");
            assert!(why.contains("check `--qemu`"), "{failed}: {why}");
            assert!(!why.contains("fetch --refresh"), "{failed}: {why}");
        }
    }
}
