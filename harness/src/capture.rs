//! A bounded record of a stream: the first [`HEAD`] bytes, the last
//! [`TAIL`] bytes, and a count of what was dropped in between.
//!
//! A step's command may print without end (`yes`), and everything kept ends
//! up in memory, in the reports and on the terminal; the start of the output
//! usually says what went wrong and the end says how it ended, so those two
//! are what is kept.

use std::collections::VecDeque;

/// Bytes kept from the start of a stream.
pub const HEAD: usize = 64 * 1024;
/// Bytes kept from the end of a stream.
pub const TAIL: usize = 64 * 1024;

#[derive(Debug, Clone, Default)]
pub struct Capture {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    dropped: u64,
}

impl Capture {
    pub fn push(&mut self, mut bytes: &[u8]) {
        if self.head.len() < HEAD {
            let n = bytes.len().min(HEAD - self.head.len());
            self.head.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        if bytes.len() >= TAIL {
            self.dropped += (self.tail.len() + bytes.len() - TAIL) as u64;
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - TAIL..]);
            return;
        }
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(TAIL);
        self.tail.drain(..overflow);
        self.dropped += overflow as u64;
        self.tail.extend(bytes);
    }

    /// Bytes dropped between head and tail.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The kept bytes as text: UTF-8, with invalid sequences replaced by
    /// U+FFFD, and a line saying how many bytes were dropped where they were.
    /// Cuts never split a character: a partial one at a cut is left out.
    pub fn text(&self) -> String {
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        if self.dropped == 0 {
            let mut all = self.head.clone();
            all.extend_from_slice(&tail);
            return String::from_utf8_lossy(&all).into_owned();
        }
        let head = &self.head[..char_end(&self.head)];
        let tail = &tail[char_start(&tail)..];
        let mut text = String::from_utf8_lossy(head).into_owned();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!(
            "[modvm: {} bytes of output dropped here; the first {} KiB and the last {} KiB are kept]\n",
            self.dropped,
            HEAD / 1024,
            TAIL / 1024
        ));
        text.push_str(&String::from_utf8_lossy(tail));
        text
    }
}

/// Length of `b` without a UTF-8 sequence cut off at its end.
fn char_end(b: &[u8]) -> usize {
    match std::str::from_utf8(b) {
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        _ => b.len(),
    }
}

/// Offset past continuation bytes at the start of `b` (at most three: the
/// rest of a character whose start was dropped).
fn char_start(b: &[u8]) -> usize {
    b.iter()
        .take(3)
        .take_while(|c| (**c & 0xc0) == 0x80)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_streams_are_kept_whole() {
        let mut c = Capture::default();
        c.push("h\u{e9}".as_bytes());
        c.push(b"llo");
        assert_eq!(c.text(), "h\u{e9}llo");
        assert_eq!(c.dropped(), 0);
    }

    #[test]
    fn large_streams_keep_head_and_tail() {
        let mut c = Capture::default();
        c.push(b"START\n");
        for _ in 0..10_000 {
            c.push(&[b'x'; 100]);
        }
        c.push(b"\nEND\n");
        let t = c.text();
        assert!(t.starts_with("START\n"));
        assert!(t.ends_with("\nEND\n"));
        assert_eq!(c.dropped(), (6 + 1_000_000 + 5 - HEAD - TAIL) as u64);
        assert!(t.contains(&format!("[modvm: {} bytes of output dropped", c.dropped())));
        assert!(t.len() < HEAD + TAIL + 200);
    }

    #[test]
    fn one_huge_push_is_bounded_too() {
        let mut c = Capture::default();
        c.push(&vec![b'z'; 10 * (HEAD + TAIL)]);
        assert_eq!(c.dropped(), (9 * (HEAD + TAIL)) as u64);
        assert_eq!(c.text().matches('z').count(), HEAD + TAIL);
    }

    #[test]
    fn cuts_do_not_split_characters() {
        let mut c = Capture::default();
        let snowmen = "\u{2603}".repeat(HEAD); // 3 bytes each
        c.push(snowmen.as_bytes());
        let t = c.text();
        assert!(!t.contains('\u{fffd}'), "a split character was decoded");
        assert!(t.contains("dropped"));
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let mut c = Capture::default();
        c.push(&[b'a', 0xff, 0xfe, b'b', 0]);
        assert_eq!(c.text(), "a\u{fffd}\u{fffd}b\0");
    }
}
