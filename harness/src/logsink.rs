//! Where a guest stream's raw bytes go: its log file, and with `--console`
//! also the terminal, each line prefixed with the stream's name.

use std::fs::File;
use std::io::Write;

pub struct LogSink {
    file: Option<File>,
    /// Prefix for lines echoed to stderr; `None` means no echo.
    echo: Option<&'static str>,
    at_line_start: bool,
}

impl LogSink {
    pub fn new(file: Option<File>, echo: Option<&'static str>) -> LogSink {
        LogSink {
            file,
            echo,
            at_line_start: true,
        }
    }

    /// Records bytes; write errors are ignored (a full disk must not fail
    /// a test whose verdict comes from the in-memory stream).
    pub fn write(&mut self, bytes: &[u8]) {
        if let Some(f) = self.file.as_mut() {
            let _ = f.write_all(bytes);
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
}
