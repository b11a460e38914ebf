//! What the file-writing reporters share: putting a report where the user
//! pointed, and remembering why writing it failed.
//!
//! A CI job that finds a half-written report would misread it as a broken
//! run, so a report for a regular file (or a new one) is written to a
//! temporary file beside the target and renamed over it. Anything else the
//! user names is written through, never replaced: `-` is stdout, and a
//! symlink, FIFO or device (`/dev/stdout`, a pipe to an uploader) stays what
//! it is and receives the bytes. The file is not synced to disk: a report
//! is for the next process to read, and a power cut is not what it guards
//! against. A new report gets the mode any new file
//! would (0666 less the umask) so another user, such as a CI uploader, can
//! read it; a replaced one keeps its mode. A reporter cannot return errors
//! through [`Reporter`](crate::outcome::Reporter), and the runner must keep
//! going when a report cannot be written, so the first failure is kept for
//! the caller to show at the end.

use std::fs::{OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The report path that means standard output.
pub const STDOUT: &str = "-";

/// Whether `path` names standard output rather than a file.
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == STDOUT
}

/// Puts `bytes` at `path` as described in the module documentation.
pub fn write_report(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if is_stdout(path) {
        let mut out = io::stdout().lock();
        return out.write_all(bytes).and_then(|()| out.flush());
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => write_atomic(path, bytes, Some(m.permissions())),
        Ok(_) => write_through(path, bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => write_atomic(path, bytes, None),
        Err(e) => Err(e),
    }
}

/// Opens what `path` names (following symlinks, creating the target of a
/// dangling one) and writes into it.
fn write_through(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o666)
        .open(path)?;
    f.write_all(bytes)?;
    f.flush()
}

/// Replaces `path` with `bytes` so that readers see the old file or the new
/// one, never a prefix. The parent directory is created when missing, since
/// report paths often point into a fresh output directory. `keep` is the
/// mode of the file being replaced; a new file is created 0666 and the
/// kernel applies the umask.
fn write_atomic(path: &Path, bytes: &[u8], keep: Option<Permissions>) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".modvm-report-")
        .permissions(Permissions::from_mode(0o666))
        .tempfile_in(dir)?;
    if let Some(p) = keep {
        tmp.as_file().set_permissions(p)?;
    }
    tmp.write_all(bytes)?;
    // No fsync: the rename alone keeps readers from seeing a prefix, and on
    // a disk busy with saved guests an fsync can wait for other files'
    // dirty data, time an interrupted run's bounded wind-down may not have.
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A reporter's first I/O failure, readable after the reporter itself has
/// been boxed into [`Reporters`](crate::outcome::Reporters) and is out of
/// reach. Clones share one slot.
#[derive(Debug, Clone, Default)]
pub struct ReportError(Arc<Mutex<Option<String>>>);

impl ReportError {
    /// The failure, as text for the user, when there was one.
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keeps `message` unless an earlier failure is already recorded: the
    /// first one is usually the cause of the rest.
    pub(crate) fn set_first(&self, message: String) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(message);
        }
    }
}

/// The first failure in two forms: the `io::Error` itself for a caller that
/// still owns the reporter, and its text in a shared slot for one that does
/// not.
#[derive(Debug, Default)]
pub(crate) struct FirstError {
    error: Option<io::Error>,
    shared: ReportError,
}

impl FirstError {
    pub(crate) fn record(&mut self, what: &str, error: io::Error) {
        if self.error.is_none() {
            self.shared.set_first(format!("{what}: {error}"));
            self.error = Some(error);
        }
    }

    pub(crate) fn get(&self) -> Option<&io::Error> {
        self.error.as_ref()
    }

    pub(crate) fn shared(&self) -> ReportError {
        self.shared.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::MetadataExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("r.txt");
        write_report(&path, b"one").unwrap();
        write_report(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("r.txt")]);
    }

    #[test]
    fn a_symlink_is_written_through_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        std::fs::write(&real, b"old").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_report(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");

        let dangling = dir.path().join("dangling.json");
        let target = dir.path().join("made.json");
        std::os::unix::fs::symlink(&target, &dangling).unwrap();
        write_report(&dangling, b"made").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"made");
    }

    #[test]
    fn a_replaced_file_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
        write_report(&path, b"new").unwrap();
        assert_eq!(mode(&path), 0o640);
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }

    #[test]
    fn a_new_file_is_not_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        write_report(&path, b"x").unwrap();
        // Whatever the umask of the test process, group/other read is
        // granted unless the umask removes it; 0600 was the bug.
        let umask = current_umask();
        assert_eq!(mode(&path), 0o666 & !umask);
    }

    fn current_umask() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line.split_whitespace().nth(1).unwrap(), 8).unwrap()
    }

    #[test]
    fn keeps_the_first_error_only() {
        let mut e = FirstError::default();
        let shared = e.shared();
        e.record("writing a", io::Error::other("first"));
        e.record("writing b", io::Error::other("second"));
        assert_eq!(e.get().unwrap().to_string(), "first");
        assert_eq!(shared.get().as_deref(), Some("writing a: first"));
    }
}
