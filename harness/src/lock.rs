//! Exclusive file locks (flock(2)) for state that several modvm runs share:
//! the kernel cache and the build directories.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Held while alive; released when the descriptor closes on drop, and by the
/// kernel if the process dies, so a killed run never leaves a stale lock.
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the lock on `path` (created if missing); if another process
    /// holds it, calls `waiting` once and waits until it is free, or until
    /// the user interrupts the run: a blocking flock would hold Ctrl-C's
    /// wind-down until the other run let go (a guest being saved takes
    /// many seconds), and the reports would not be written in time.
    pub fn exclusive(path: &Path, waiting: &mut dyn FnMut()) -> std::io::Result<Lock> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        let try_lock = || -> std::io::Result<bool> {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(true);
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EWOULDBLOCK) | Some(libc::EINTR) => Ok(false),
                _ => Err(e),
            }
        };
        if !try_lock()? {
            waiting();
            while !try_lock()? {
                if crate::children::interrupted() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::Interrupted,
                        format!("interrupted while waiting for {}", path.display()),
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        Ok(Lock { _file: file })
    }

    /// Takes the lock on `path` if no other process holds it; `None` when
    /// one does (or the file cannot be opened: someone else's business).
    pub fn try_exclusive(path: &Path) -> Option<Lock> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .ok()?;
        // SAFETY: flock on a descriptor we own.
        let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        taken.then_some(Lock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn trying_a_held_lock_fails_at_once_and_succeeds_once_it_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let first = Lock::try_exclusive(&path).unwrap();
        assert!(Lock::try_exclusive(&path).is_none());
        drop(first);
        assert!(Lock::try_exclusive(&path).is_some());
    }

    #[test]
    fn a_second_taker_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let first = Lock::exclusive(&path, &mut || panic!("free at first")).unwrap();
        let (tx, rx) = mpsc::channel();
        let p = path.clone();
        let t = std::thread::spawn(move || {
            let mut told = false;
            let _second = Lock::exclusive(&p, &mut || told = true).unwrap();
            tx.send(told).unwrap();
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "blocked while held"
        );
        drop(first);
        assert!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            "was told to wait"
        );
        t.join().unwrap();
    }
}
