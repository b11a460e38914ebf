//! Where a guest stream's raw bytes go: its log file, and with `--console`
//! also the terminal, each line prefixed with the stream's name.
//!
//! The file is capped at [`FILE_LIMIT`] bytes: a guest that prints without
//! end must not fill the disk of the machine running the tests.
//!
//! The shell console's sink shows people what ran, not the protocol: each
//! command as `$ command` (written by the console when it sends it), its
//! output, and `[exit N]` where its end marker was; the 0x1e-framed markers
//! themselves never reach the file or the terminal.

use std::fs::File;
use std::io::Write;

/// Bytes written to one log file before the rest is dropped.
pub const FILE_LIMIT: u64 = 32 * 1024 * 1024;

pub struct LogSink {
    file: Option<File>,
    written: u64,
    /// Prefix for lines echoed to stderr; `None` means no echo.
    echo: Option<&'static str>,
    /// Where the echo goes: stderr, or a buffer in tests.
    echo_to: Box<dyn Write + Send>,
    at_line_start: bool,
    /// Rewrites protocol markers (the shell console only).
    markers: Option<Markers>,
}

/// Where the marker rewriter is in the stream.
#[derive(Default)]
struct Markers {
    /// Inside a marker: its bytes so far.
    inside: Option<Vec<u8>>,
    /// A marker just ended: drop the newline the guest prints after it.
    skip_newline: bool,
}

/// Longest marker kept; longer is not a marker (a stray 0x1e in output).
const MAX_MARKER: usize = 256;

impl Markers {
    /// The bytes people should see for `bytes`.
    fn render(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        for &b in bytes {
            if let Some(m) = self.inside.as_mut() {
                if b == 0x1e {
                    let marker = String::from_utf8_lossy(m).into_owned();
                    self.inside = None;
                    self.skip_newline = true;
                    out.extend_from_slice(shown(&marker).as_bytes());
                } else if m.len() >= MAX_MARKER {
                    out.push(b'?');
                    out.append(m);
                    out.push(b);
                    self.inside = None;
                } else {
                    m.push(b);
                }
                continue;
            }
            if std::mem::take(&mut self.skip_newline) && b == b'\n' {
                continue;
            }
            if b == 0x1e {
                self.inside = Some(Vec::new());
            } else {
                out.push(b);
            }
        }
        out
    }
}

/// What a marker's text becomes: `[exit N]` for an end, a ready line, and
/// nothing for a begin (the console wrote the command already).
fn shown(marker: &str) -> String {
    let mut f = marker.split(' ');
    match f.next() {
        Some("end") => {
            let rc = f.nth(1).unwrap_or("?");
            format!("[exit {rc}]\n")
        }
        Some("ready") => format!("[guest ready: {}]\n", f.next().unwrap_or("")),
        Some("begin") => String::new(),
        _ => format!("[{marker}]\n"),
    }
}

impl LogSink {
    pub fn new(file: Option<File>, echo: Option<&'static str>) -> LogSink {
        LogSink {
            file,
            written: 0,
            echo,
            echo_to: Box::new(std::io::stderr()),
            at_line_start: true,
            markers: None,
        }
    }

    /// A sink for the shell console: protocol markers are rewritten for
    /// people (see the module's doc).
    pub fn console(file: Option<File>, echo: Option<&'static str>) -> LogSink {
        LogSink {
            markers: Some(Markers::default()),
            ..LogSink::new(file, echo)
        }
    }

    /// Records bytes; write errors are ignored (a full disk must not fail
    /// a test whose verdict comes from the in-memory stream).
    pub fn write(&mut self, bytes: &[u8]) {
        let rendered;
        let bytes = match self.markers.as_mut() {
            Some(m) => {
                rendered = m.render(bytes);
                &rendered[..]
            }
            None => bytes,
        };
        if let Some(f) = self.file.as_mut() {
            let room = FILE_LIMIT.saturating_sub(self.written);
            let n = (bytes.len() as u64).min(room) as usize;
            let _ = f.write_all(&bytes[..n]);
            self.written += n as u64;
            if n < bytes.len() {
                let _ = writeln!(
                    f,
                    "\n[modvm: this log stops here: it reached {} MiB]",
                    FILE_LIMIT >> 20
                );
                self.file = None;
            }
        }
        if let Some(prefix) = self.echo {
            let mut out = Vec::with_capacity(bytes.len() + 16);
            for &b in bytes {
                if b == 0x1e || b == b'\r' {
                    continue; // protocol framing, not for people
                }
                if self.at_line_start {
                    out.extend_from_slice(prefix.as_bytes());
                    self.at_line_start = false;
                }
                out.push(b);
                if b == b'\n' {
                    self.at_line_start = true;
                }
            }
            let _ = self.echo_to.write_all(&out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_gets_raw_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut s = LogSink::new(Some(File::create(&p).unwrap()), None);
        s.write(b"\x1eready\x1e\n");
        drop(s);
        assert_eq!(std::fs::read(&p).unwrap(), b"\x1eready\x1e\n");
    }

    #[test]
    fn console_file_shows_commands_and_statuses_not_markers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut s = LogSink::console(Some(File::create(&p).unwrap()), None);
        s.write(b"\x1eready 6.1.0 0\x1e\n$ echo hi\n\x1ebeg");
        s.write(b"in 1-abc\x1e\nhi\n\x1eend 1-abc 3 0\x1e\nrest");
        drop(s);
        assert_eq!(
            String::from_utf8(std::fs::read(&p).unwrap()).unwrap(),
            "[guest ready: 6.1.0]\n$ echo hi\nhi\n[exit 3]\nrest"
        );
    }

    #[test]
    fn echo_prefixes_every_line_across_writes_and_drops_framing() {
        let seen = crate::report::sample::SharedBuffer::default();
        let mut s = LogSink::console(None, Some("guest | "));
        s.echo_to = Box::new(seen.clone());
        s.write(b"\x1eready 6.1 0\x1e\nhel");
        s.write(b"lo\r\nwor");
        s.write(b"ld\n\x1eend 1-a 0 0\x1e\n");
        assert_eq!(
            seen.text(),
            "guest | [guest ready: 6.1]\nguest | hello\nguest | world\nguest | [exit 0]\n"
        );
    }

    #[test]
    fn file_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut s = LogSink::new(Some(File::create(&p).unwrap()), None);
        let block = vec![b'y'; 1 << 20];
        for _ in 0..(FILE_LIMIT >> 20) + 3 {
            s.write(&block);
        }
        drop(s);
        let len = std::fs::metadata(&p).unwrap().len();
        assert!(len > FILE_LIMIT && len < FILE_LIMIT + 100, "{len}");
    }
}
