//! Every QEMU process modvm starts ends with modvm.
//!
//! Three layers, because each covers a way of dying the others miss:
//! * `Drop` of the guest kills and reaps its QEMU (normal return, errors, panics);
//! * a Ctrl-C / SIGTERM handler kills every registered child before exiting,
//!   since `exit` from a signal handler runs no destructors;
//! * `PR_SET_PDEATHSIG(SIGKILL)` makes the kernel kill QEMU when modvm itself
//!   is killed with SIGKILL, where no code of ours runs at all.
//!
//! Children also get a process group of their own, so a Ctrl-C typed at the
//! terminal reaches modvm (which then cleans up) rather than racing QEMU's own
//! signal handling.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::{Mutex, Once};

static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static HANDLER: Once = Once::new();

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

/// On Ctrl-C, SIGTERM or SIGHUP: kill the guests, say so, exit 130.
fn install_interrupt_handler() {
    HANDLER.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            kill_all();
            eprintln!("\nmodvm: interrupted; guests stopped");
            std::process::exit(130);
        });
    });
}
