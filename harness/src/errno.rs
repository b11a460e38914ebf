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

/// The errno with this number, as a spec may write it (`"errno": 22`).
pub fn by_number(number: i64) -> Option<Errno> {
    let n = i32::try_from(number.checked_abs()?).ok()?;
    TABLE
        .iter()
        .find(|(_, num, _)| *num == n)
        .map(|(name, number, msg)| Errno {
            name,
            number: *number,
            insmod_message: msg,
        })
}

/// What busybox insmod said went wrong: the text after
/// "can't insert '<file>': " on its error line, and the errno whose message
/// it is (when the table knows it). insmod's exit status is 1 whatever the
/// errno, so this is the only place a report can name the errno seen.
pub fn from_insmod_output(output: &str) -> Option<(String, Option<Errno>)> {
    let line = output.lines().find(|l| l.contains("can't insert '"))?;
    let after = &line[line.find("can't insert '")? + "can't insert '".len()..];
    let said = after.split_once("': ")?.1.trim_end();
    let errno = TABLE
        .iter()
        .find(|(_, _, msg)| *msg == said)
        .map(|(name, number, msg)| Errno {
            name,
            number: *number,
            insmod_message: msg,
        });
    Some((said.to_string(), errno))
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
    fn numbers_map_to_names() {
        assert_eq!(by_number(22).unwrap().name, "EINVAL");
        assert_eq!(by_number(-19).unwrap().name, "ENODEV");
        assert!(by_number(23).is_none(), "not in the table");
        assert!(by_number(i64::MIN).is_none());
    }

    #[test]
    fn insmod_output_names_the_errno_seen() {
        let out = "insmod: can't insert '/modules/x.ko': No such device\n";
        let (said, e) = from_insmod_output(out).unwrap();
        assert_eq!(said, "No such device");
        assert_eq!(e.unwrap().name, "ENODEV");
        let out = "insmod: can't insert '/modules/x.ko': unknown symbol in module\n";
        assert_eq!(from_insmod_output(out).unwrap().1.unwrap().name, "ESRCH");
        let odd = "insmod: can't insert '/modules/x.ko': Something new\n";
        assert_eq!(
            from_insmod_output(odd).unwrap(),
            ("Something new".into(), None)
        );
        assert!(from_insmod_output("fine\n").is_none());
    }

    #[test]
    fn busybox_specific_texts_are_kept() {
        assert_eq!(
            lookup("ENOENT").unwrap().insmod_message,
            "unknown symbol in module, or unknown parameter"
        );
    }
}
