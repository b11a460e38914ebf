//! Where a guest stream's raw bytes go: its log file, and with `--console`
//! also the terminal, each line prefixed with the stream's name.
//!
//! The file is capped at [`FILE_LIMIT`] bytes: a guest that prints without
//! end must not fill the disk of the machine running the tests.

use std::fs::File;
use std::io::Write;

/// Bytes written to one log file before the rest is dropped.
pub const FILE_LIMIT: u64 = 32 * 1024 * 1024;

pub struct LogSink {
    file: Option<File>,
    written: u64,
    /// Prefix for lines echoed to stderr; `None` means no echo.
    echo: Option<&'static str>,
    at_line_start: bool,
}

impl LogSink {
    pub fn new(file: Option<File>, echo: Option<&'static str>) -> LogSink {
        LogSink {
            file,
            written: 0,
            echo,
            at_line_start: true,
        }
    }

    /// Records bytes; write errors are ignored (a full disk must not fail
    /// a test whose verdict comes from the in-memory stream).
    pub fn write(&mut self, bytes: &[u8]) {
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
            let _ = std::io::stderr().write_all(&out);
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
