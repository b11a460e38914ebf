//! What the file-writing reporters share: replacing a report in one step, and
//! remembering why writing it failed.
//!
//! A CI job that finds a half-written report would misread it as a broken
//! run, so reports are written to a temporary file beside the target and
//! renamed over it. A reporter cannot return errors through
//! [`Reporter`](crate::outcome::Reporter), and the runner must keep going
//! when a report cannot be written, so the first failure is kept for the
//! caller to show at the end.

use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Replaces `path` with `bytes` so that readers see the old file or the new
/// one, never a prefix. The parent directory is created when missing, since
/// report paths often point into a fresh output directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".modvm-report-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
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

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("r.txt");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("r.txt")]);
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
