//! The command line at its edges, through the real binary: numbers out of
//! range, a reader that went away, errors said once.

mod common;

use common::*;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

#[test]
fn huge_or_infinite_numbers_are_usage_errors_not_panics() {
    for args in [
        ["--boot-timeout", "inf"],
        ["--step-timeout", "1e300"],
        ["--step-timeout", "1e19"],
        ["--memory", "4294967296"],
    ] {
        let out = modvm(&["test", args[0], args[1]], &[]);
        assert_eq!(out.code, 2, "{args:?}: {}", out.all());
        assert!(!out.stderr.contains("panicked"), "{args:?}: {}", out.all());
        assert!(
            out.stderr.contains("allowed: "),
            "the message names the range: {}",
            out.all()
        );
    }
}

/// A pipe whose reader is already closed: the first write fails with EPIPE,
/// as with `modvm list | head -1` once `head` has its line, but every time.
fn closed_pipe() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills two fresh descriptors that we then own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    write
}

#[test]
fn list_and_doctor_into_a_closed_pipe_end_cleanly() {
    for args in [&["list", "module", "module"][..], &["doctor"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_modvm"))
            .args(args)
            .current_dir(repo())
            .stdin(Stdio::null())
            .stdout(Stdio::from(closed_pipe()))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {stderr}");
    }
}

#[test]
fn an_error_is_printed_once() {
    // A cache that cannot be written (sysfs refuses new directories, even
    // to root): the OS error used to follow its own message a second time.
    let out = modvm(&["fetch", "--cache", "/sys/modvm-cache"], &[]);
    assert_eq!(out.code, 2, "{}", out.all());
    let error = out
        .stderr
        .lines()
        .find(|l| l.starts_with("modvm: error:"))
        .unwrap_or_else(|| panic!("no error line: {}", out.all()));
    let os = error.rsplit(": ").next().unwrap();
    assert!(os.contains("os error"), "{error}");
    assert_eq!(error.matches(os).count(), 1, "{error}");
}
