//! Errno names as module authors write them (`"errno": "EINVAL"`) and the
//! text the guest's busybox `insmod` prints for each.
//!
//! insmod exits 1 whatever the errno, so its message is the only place the
//! errno shows. busybox prints `strerror(errno)` except for a few codes it
//! explains in module terms; the table holds the exact text for both.

/// (name, number, message printed by busybox insmod)
const TABLE: &[(&str, i32, &str)] = &[
    ("EPERM", 1, "Operation not permitted"),
    (
        "ENOENT",
        2,
        "unknown symbol in module, or unknown parameter",
    ),
    ("ESRCH", 3, "unknown symbol in module"),
    ("EINTR", 4, "Interrupted system call"),
    ("EIO", 5, "Input/output error"),
    ("ENXIO", 6, "No such device or address"),
    ("E2BIG", 7, "Argument list too long"),
    ("ENOEXEC", 8, "invalid module format"),
    ("EBADF", 9, "Bad file descriptor"),
    ("EAGAIN", 11, "Resource temporarily unavailable"),
    ("ENOMEM", 12, "Cannot allocate memory"),
    ("EACCES", 13, "Permission denied"),
    ("EFAULT", 14, "Bad address"),
    ("EBUSY", 16, "Device or resource busy"),
    ("EEXIST", 17, "File exists"),
    ("ENODEV", 19, "No such device"),
    ("ENOTDIR", 20, "Not a directory"),
    ("EINVAL", 22, "Invalid argument"),
    ("ENOSPC", 28, "No space left on device"),
    ("EROFS", 30, "Read-only file system"),
    ("EPIPE", 32, "Broken pipe"),
    ("EDOM", 33, "Numerical argument out of domain"),
    ("ERANGE", 34, "Numerical result out of range"),
    ("ENOSYS", 38, "Function not implemented"),
    ("ENODATA", 61, "No data available"),
    ("ETIME", 62, "Timer expired"),
    ("EPROTO", 71, "Protocol error"),
    ("EOVERFLOW", 75, "Value too large for defined data type"),
    ("EBADMSG", 74, "Bad message"),
    ("EOPNOTSUPP", 95, "Operation not supported"),
    ("EADDRINUSE", 98, "Address already in use"),
    ("ENETDOWN", 100, "Network is down"),
    ("ETIMEDOUT", 110, "Connection timed out"),
    ("EALREADY", 114, "Operation already in progress"),
    ("EINPROGRESS", 115, "Operation now in progress"),
    ("ECANCELED", 125, "Operation canceled"),
    ("ENOTSUPP", 524, "Unknown error 524"),
    ("EPROBE_DEFER", 517, "Unknown error 517"),
];

/// An errno the spec may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno {
    pub name: &'static str,
    pub number: i32,
    /// What busybox insmod prints after "can't insert '<file>': ".
    pub insmod_message: &'static str,
}

/// Looks up `EINVAL`, `-EINVAL`, `22` or `-22`.
pub fn lookup(text: &str) -> Option<Errno> {
    let t = text.trim().trim_start_matches('-');
    TABLE
        .iter()
        .find(|(name, number, _)| name.eq_ignore_ascii_case(t) || t.parse() == Ok(*number))
        .map(|(name, number, msg)| Errno {
            name,
            number: *number,
            insmod_message: msg,
        })
}

/// All names, for error messages.
pub fn names() -> Vec<&'static str> {
    TABLE.iter().map(|(n, _, _)| *n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_signs_all_work() {
        assert_eq!(lookup("EINVAL").unwrap().number, 22);
        assert_eq!(lookup("-EINVAL").unwrap().number, 22);
        assert_eq!(lookup("-19").unwrap().name, "ENODEV");
        assert_eq!(lookup("enodev").unwrap().insmod_message, "No such device");
        assert!(lookup("EWHAT").is_none());
    }

    #[test]
    fn busybox_specific_texts_are_kept() {
        assert_eq!(
            lookup("ENOENT").unwrap().insmod_message,
            "unknown symbol in module, or unknown parameter"
        );
    }
}
