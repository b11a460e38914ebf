//! Every QEMU process modvm starts ends with modvm.
//!
//! Three layers, because each covers a way of dying the others miss:
//! * `Drop` of the guest kills and reaps its QEMU (normal return, errors, panics);
//! * a Ctrl-C / SIGTERM handler kills every registered child at once (then
//!   lets the run write its reports, and exits 130);
//! * `PR_SET_PDEATHSIG(SIGKILL)` makes the kernel kill QEMU when modvm itself
//!   is killed with SIGKILL, where no code of ours runs at all.
//!
//! Children also get a process group of their own, so a Ctrl-C typed at the
//! terminal reaches modvm (which then cleans up) rather than racing QEMU's own
//! signal handling.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static HANDLER: Once = Once::new();
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Arms `cmd` so the child dies with us and sits in its own process group.
///
/// The death signal is tied to the *thread* that forks, so children must be
/// spawned from a thread that lives as long as the child is wanted (modvm
/// spawns from the thread that owns the guest).
pub fn arm(cmd: &mut Command) {
    // SAFETY: the closure only calls async-signal-safe libc functions.
    let parent = std::process::id() as libc::pid_t;
    unsafe {
        cmd.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Records a running child so that an interrupt can kill it.
pub fn register(pid: u32) {
    install_interrupt_handler();
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
    if interrupted() {
        // Spawned while the handler was already stopping everything.
        kill_all();
    }
}

/// Forgets a child that has been reaped.
pub fn unregister(pid: u32) {
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| *p != pid);
}

/// Sends SIGKILL to every registered child's process group.
pub fn kill_all() {
    let pids = LIVE.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for pid in pids {
        // SAFETY: plain kill(2); the group id equals the child's pid (setpgid(0, 0)).
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
}

/// Whether the user interrupted the run (Ctrl-C, SIGTERM, SIGHUP).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// How long the run may take to wind down (write its reports) after an
/// interrupt before the process exits regardless. The guests are killed at
/// once; this only bounds the reports' writing, which does not sync them to
/// disk (an fsync can wait for other files' dirty data on a busy disk).
const WIND_DOWN: Duration = Duration::from_secs(10);

/// On Ctrl-C, SIGTERM or SIGHUP: kill the guests at once and let the run
/// wind down, so the test in progress is reported as interrupted and the
/// JSON/JUnit reports still get written; exit 130 after [`WIND_DOWN`] in any
/// case, or at once on a second interrupt.
pub fn install_interrupt_handler() {
    HANDLER.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                kill_all();
                std::process::exit(130);
            }
            kill_all();
            eprintln!("\nmodvm: interrupted; guests stopped");
            std::thread::spawn(|| {
                std::thread::sleep(WIND_DOWN);
                kill_all();
                std::process::exit(130);
            });
        });
    });
}
