//! The guest's kernel log, streamed from its own UART (ttyS1, QEMU's stdout).
//!
//! A reader thread turns bytes into [`KernelLine`]s as they arrive, tees the
//! raw bytes into the test's `kernel.log`, and wakes whoever waits for a line.
//! Steps are cut out of the stream by the `modvm-mark <id> begin|end` lines
//! that the guest writes to `/dev/kmsg` around each command.

use crate::logsink::LogSink;
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// One printk record as printed on the console.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KernelLine {
    /// Seconds since boot, from the `[    1.234567]` prefix when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<f64>,
    pub text: String,
    /// When the host received the line (to measure crash-report latency).
    #[serde(skip)]
    pub arrived: Option<Instant>,
}

impl KernelLine {
    /// Splits the console timestamp off a line.
    pub fn parse(raw: &str) -> KernelLine {
        let raw = raw.trim_end_matches(['\r', '\n']);
        if let Some(rest) = raw.strip_prefix('[') {
            if let Some(end) = rest.find(']') {
                if let Ok(t) = rest[..end].trim().parse::<f64>() {
                    let text = rest[end + 1..]
                        .strip_prefix(' ')
                        .unwrap_or(&rest[end + 1..]);
                    return KernelLine {
                        time: Some(t),
                        text: text.to_string(),
                        arrived: None,
                    };
                }
            }
        }
        KernelLine {
            time: None,
            text: raw.to_string(),
            arrived: None,
        }
    }
}

impl std::fmt::Display for KernelLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.time {
            Some(t) => write!(f, "[{t:12.6}] {}", self.text),
            None => f.write_str(&self.text),
        }
    }
}

#[derive(Default)]
struct State {
    lines: Vec<KernelLine>,
    closed: bool,
}

/// Shared, growing view of the kernel log.
#[derive(Clone)]
pub struct KernelLog {
    shared: Arc<(Mutex<State>, Condvar)>,
}

/// The marker line the guest writes to `/dev/kmsg` around step `id`.
pub fn marker(id: &str, edge: &str) -> String {
    format!("modvm-mark {id} {edge}")
}

impl KernelLog {
    /// Starts the reader thread over `source`, copying raw bytes to `tee`.
    pub fn start(source: impl Read + Send + 'static, tee: LogSink) -> KernelLog {
        let log = KernelLog {
            shared: Arc::new((Mutex::new(State::default()), Condvar::new())),
        };
        let shared = log.shared.clone();
        std::thread::spawn(move || pump(source, tee, &shared));
        log
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of complete lines so far.
    pub fn len(&self) -> usize {
        self.state().lines.len()
    }

    /// True when no line has arrived yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once QEMU closed the stream (the guest is gone).
    pub fn closed(&self) -> bool {
        self.state().closed
    }

    /// Lines `from..` (clamped).
    pub fn lines_from(&self, from: usize) -> Vec<KernelLine> {
        let st = self.state();
        st.lines[from.min(st.lines.len())..].to_vec()
    }

    /// The last `n` lines, for diagnostics.
    pub fn tail(&self, n: usize) -> Vec<KernelLine> {
        let st = self.state();
        st.lines[st.lines.len().saturating_sub(n)..].to_vec()
    }

    /// Index of the first line at or after `from` whose text is exactly `text`.
    pub fn find_from(&self, from: usize, text: &str) -> Option<usize> {
        let st = self.state();
        st.lines
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, l)| l.text == text)
            .map(|(i, _)| i)
    }

    /// Waits until `done` holds for the lines, the stream closes, or the
    /// deadline passes. Returns whether `done` held.
    pub fn wait_until(
        &self,
        deadline: Instant,
        mut done: impl FnMut(&[KernelLine]) -> bool,
    ) -> bool {
        let (lock, cond) = &*self.shared;
        let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if done(&st.lines) {
                return true;
            }
            let now = Instant::now();
            if st.closed || now >= deadline {
                return false;
            }
            st = cond
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

fn pump(mut source: impl Read, mut tee: LogSink, shared: &(Mutex<State>, Condvar)) {
    let mut buf = [0u8; 8192];
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        tee.write(&buf[..n]);
        partial.extend_from_slice(&buf[..n]);
        let mut fresh = Vec::new();
        let now = Instant::now();
        while let Some(pos) = partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial.drain(..=pos).collect();
            let mut parsed = KernelLine::parse(&String::from_utf8_lossy(&line));
            parsed.arrived = Some(now);
            fresh.push(parsed);
        }
        if !fresh.is_empty() {
            let (lock, cond) = shared;
            lock.lock()
                .unwrap_or_else(|e| e.into_inner())
                .lines
                .extend(fresh);
            cond.notify_all();
        }
    }
    let (lock, cond) = shared;
    let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
    if !partial.is_empty() {
        st.lines
            .push(KernelLine::parse(&String::from_utf8_lossy(&partial)));
    }
    st.closed = true;
    cond.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_timestamp_prefix() {
        let l = KernelLine::parse("[    2.345678] Hello, Kernel World!\r\n");
        assert_eq!(l.time, Some(2.345678));
        assert_eq!(l.text, "Hello, Kernel World!");
    }

    #[test]
    fn keeps_lines_without_timestamp() {
        let l = KernelLine::parse("[ oops] not a time");
        assert_eq!(l.time, None);
        assert_eq!(l.text, "[ oops] not a time");
    }

    #[test]
    fn stream_splits_lines_and_closes() {
        let data = b"[    0.1] a\r\n[    0.2] modvm-mark 1 begin\npartial".to_vec();
        let log = KernelLog::start(std::io::Cursor::new(data), LogSink::new(None, None));
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(!log.wait_until(deadline, |l| l.len() > 3));
        assert!(log.closed());
        let lines = log.lines_from(0);
        assert_eq!(lines.len(), 3);
        assert_eq!(log.find_from(0, &marker("1", "begin")), Some(1));
        assert_eq!(lines[2].text, "partial");
    }
}
