//! Private directories for the guests' console sockets in `$TMPDIR` (socket
//! paths are limited to 108 bytes, so they cannot live with the logs).
//!
//! A run killed with SIGKILL cannot remove its directory, and nothing else
//! would: the name carries the owner's pid (`modvm-<pid>-XXXXXX`), and the
//! first guest of every run removes the directories of this user whose
//! owner no longer runs. A directory whose pid was reused by another
//! process is kept until that process is gone too; one without a pid in its
//! name is never touched.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Once;

const PREFIX: &str = "modvm-";

/// A new socket directory owned by this process; removed when dropped.
pub fn create() -> std::io::Result<tempfile::TempDir> {
    static SWEEP: Once = Once::new();
    let tmp = std::env::temp_dir();
    SWEEP.call_once(|| {
        sweep(&tmp);
    });
    tempfile::Builder::new()
        .prefix(&format!("{PREFIX}{}-", std::process::id()))
        .tempdir_in(&tmp)
}

/// Removes the socket directories in `dir` left by processes of this user
/// that are gone; returns how many. Errors are ignored: a directory that
/// cannot be removed now is tried again by the next run.
pub fn sweep(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let mut removed = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(owner_pid) else {
            continue;
        };
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != uid || pid == std::process::id() || alive(pid) {
            continue;
        }
        if std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The pid in `modvm-<pid>-<random>`.
fn owner_pid(name: &str) -> Option<u32> {
    let (pid, random) = name.strip_prefix(PREFIX)?.split_once('-')?;
    if random.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok().filter(|p| *p > 0)
}

/// Whether a process with this pid exists (EPERM: it does, as another user).
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_owner_pid() {
        assert_eq!(owner_pid("modvm-123-AbCdEf"), Some(123));
        assert_eq!(owner_pid("modvm-AbCdEf"), None, "old names are left alone");
        assert_eq!(owner_pid("modvm-12x-AbCdEf"), None);
        assert_eq!(owner_pid("modvm-123-"), None);
        assert_eq!(owner_pid("modvm-0-ab"), None);
        assert_eq!(owner_pid("other-123-ab"), None);
    }

    #[test]
    fn sweep_removes_only_directories_of_dead_owners() {
        let tmp = tempfile::tempdir().unwrap();
        let mut dead = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        dead.wait().unwrap();
        let gone = tmp.path().join(format!("modvm-{dead_pid}-aaaaaa"));
        let mine = tmp
            .path()
            .join(format!("modvm-{}-bbbbbb", std::process::id()));
        let parent = tmp.path().join(format!(
            "modvm-{}-cccccc",
            std::os::unix::process::parent_id()
        ));
        let unnamed = tmp.path().join("modvm-dddddd");
        let file = tmp.path().join(format!("modvm-{dead_pid}-file"));
        for d in [&gone, &mine, &parent, &unnamed] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(gone.join("ttyS0.sock"), "").unwrap();
        std::fs::write(&file, "").unwrap();
        assert_eq!(sweep(tmp.path()), 1);
        assert!(!gone.exists());
        for kept in [&mine, &parent, &unnamed, &file] {
            assert!(kept.exists(), "{} is kept", kept.display());
        }
    }
}
