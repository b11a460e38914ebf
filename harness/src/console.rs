//! The guest shell on ttyS0: sends commands, cuts their output out of the
//! byte stream by the protocol's markers (described in `images/init`).
//!
//! A reader thread moves the socket's bytes, in the chunks they arrive in, to
//! the caller over a bounded channel (and tees them into `console.log`); the
//! caller scans each chunk once for the marker it waits for. Three properties
//! follow from that shape and are why modvm does not use an expect library
//! here (rexpect keeps everything received in one growing buffer, rescans it
//! on every call and turns bytes into chars one by one):
//! * a deadline holds however fast the guest prints: the caller wakes at
//!   least every [`ABORT_POLL`] and checks the clock after every chunk;
//! * memory is bounded: a command's output is kept as a head and a tail
//!   ([`Capture`]), whatever it prints in between is counted and dropped;
//! * output is bytes until the end, then decoded as UTF-8 (lossily where
//!   invalid), so non-ASCII text matches what the command printed.
//!
//! Markers carry a per-step tag with a random nonce ([`new_tag`]) that the
//! command never sees, so no output can forge the end of a step.

use crate::capture::Capture;
use crate::logsink::LogSink;
use base64::Engine;
use memchr::memmem;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a waiting command asks whether to give up early, and the
/// longest a waiter sleeps without looking at the clock.
pub const ABORT_POLL: Duration = Duration::from_millis(50);

/// Marker framing byte (ASCII record separator).
const RS: u8 = 0x1e;

/// Chunks the reader may queue ahead of the caller; past that it blocks and
/// QEMU stops draining the guest's UART (back-pressure, not memory growth).
const QUEUED_CHUNKS: usize = 64;

/// Largest single read from the socket.
const CHUNK: usize = 64 * 1024;

/// Bytes kept from before the ready marker, for diagnostics only.
const PREAMBLE_KEEP: usize = 4096;

/// Why the console did not give what was asked for.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("no answer from the guest shell within the deadline")]
    Timeout { seen: String },
    #[error("the guest console closed (QEMU exited)")]
    Closed { seen: String },
    #[error("stopped waiting: the kernel reported a crash")]
    Aborted { seen: String },
    #[error("console I/O failed: {0}")]
    Io(String),
}

impl ConsoleError {
    /// Console text received since the last completed exchange.
    pub fn seen(&self) -> &str {
        match self {
            ConsoleError::Timeout { seen }
            | ConsoleError::Closed { seen }
            | ConsoleError::Aborted { seen } => seen,
            ConsoleError::Io(_) => "",
        }
    }
}

/// What one command printed and how it ended.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    pub exit: i32,
    /// Head and tail of the output, decoded (see [`Capture::text`]).
    pub output: String,
    /// Bytes of output dropped between head and tail.
    pub dropped: u64,
    /// `/proc/sys/kernel/tainted` right after the command.
    pub taint: u64,
}

/// A fresh marker tag for step `id`: the id for people, a random nonce so
/// that nothing the step's command prints can pass for its markers.
pub fn new_tag(id: &str) -> String {
    format!("{id}-{:016x}", nonce())
}

fn nonce() -> u64 {
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok()
    {
        return u64::from_ne_bytes(bytes);
    }
    // No /dev/urandom: std's per-process random hash keys, mixed with time.
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// What a wait for more bytes ended with.
enum Wait {
    /// Bytes were appended to `pending`, or a poll slice passed.
    More,
    Deadline,
    Aborted,
    Closed,
}

/// A connected guest shell.
pub struct Console {
    /// The log, shared with the reader thread.
    tee: Arc<Mutex<LogSink>>,
    writer: UnixStream,
    chunks: Receiver<Vec<u8>>,
    /// Received bytes not yet consumed by an exchange.
    pending: Vec<u8>,
    /// A marker ended the last chunk: the newline the guest prints after
    /// it is still to come, and is not output.
    newline_due: bool,
    closed: bool,
}

impl Console {
    /// Wraps a connected ttyS0 socket; `tee` receives every byte read, and
    /// each command as it is sent.
    pub fn new(stream: UnixStream, tee: LogSink) -> std::io::Result<Console> {
        let tee = Arc::new(Mutex::new(tee));
        let log = tee.clone();
        let writer = stream.try_clone()?;
        let (tx, rx) = mpsc::sync_channel(QUEUED_CHUNKS);
        std::thread::Builder::new()
            .name("modvm-console".into())
            .spawn(move || pump(stream, log, tx))?;
        Ok(Console {
            tee,
            writer,
            chunks: rx,
            pending: Vec::new(),
            newline_due: false,
            closed: false,
        })
    }

    /// Waits for the init's ready marker; returns the guest's kernel release
    /// and its taint mask after boot.
    pub fn wait_ready(&mut self, deadline: Instant) -> Result<(String, u64), ConsoleError> {
        self.wait_ready_or(deadline, &mut || false)
    }

    /// [`Console::wait_ready`], ending early with [`ConsoleError::Aborted`]
    /// when `abort` says so (asked every [`ABORT_POLL`]): a kernel that
    /// crashed while booting is not waited for until the deadline.
    pub fn wait_ready_or(
        &mut self,
        deadline: Instant,
        abort: &mut dyn FnMut() -> bool,
    ) -> Result<(String, u64), ConsoleError> {
        let start = b"\x1eready ";
        let finder = memmem::Finder::new(start);
        let mut poll = Poll::new(deadline);
        loop {
            if let Some(p) = finder.find(&self.pending) {
                let body = &self.pending[p + start.len()..];
                if let Some(close) = body.iter().position(|b| *b == RS) {
                    let text = String::from_utf8_lossy(&body[..close]).into_owned();
                    let mut fields = text.split(' ');
                    let release = fields.next().unwrap_or("").to_string();
                    let taint = fields.next().and_then(|t| t.parse().ok()).unwrap_or(0);
                    self.consume_marker(p + start.len() + close + 1);
                    return Ok((release, taint));
                }
            } else if self.pending.len() > PREAMBLE_KEEP {
                let cut = self.pending.len() - PREAMBLE_KEEP;
                self.pending.drain(..cut);
            }
            let capture = Capture::default();
            self.wait_or_fail(&mut poll, abort, &capture)?;
        }
    }

    /// Runs one shell command in the guest under marker tag `tag` (from
    /// [`new_tag`]). `abort` is asked every [`ABORT_POLL`] while waiting;
    /// when it says true the wait ends with [`ConsoleError::Aborted`] (the
    /// runner uses it when the kernel log shows a crash that keeps the
    /// command from finishing).
    pub fn run(
        &mut self,
        tag: &str,
        command: &str,
        deadline: Instant,
        abort: &mut dyn FnMut() -> bool,
    ) -> Result<CommandOutput, ConsoleError> {
        self.run_streaming(tag, command, deadline, abort, &mut |_| {})
    }

    /// [`Console::run`], handing the command's output to `stream` as it
    /// arrives (`modvm run` prints it live); the capture is kept as well.
    pub fn run_streaming(
        &mut self,
        tag: &str,
        command: &str,
        deadline: Instant,
        abort: &mut dyn FnMut() -> bool,
        stream: &mut dyn FnMut(&[u8]),
    ) -> Result<CommandOutput, ConsoleError> {
        self.log_command(command);
        let encoded = base64::engine::general_purpose::STANDARD.encode(command);
        self.send(format!("s {tag} {encoded}\n").as_bytes())?;
        self.exchange(tag, deadline, abort, &[], stream)
    }

    /// Like [`Console::run`], and once the guest announced the command,
    /// sends `input` on the console for the command to read from
    /// `/dev/ttyS0` (the shell's own stdin is `/dev/null`). Only modvm's own
    /// commands do this; the input must be lines of at most 4095 bytes (the
    /// tty's canonical limit) and should total some tens of KiB at most, so
    /// the guest's tty buffers never overflow.
    pub fn run_with_input(
        &mut self,
        tag: &str,
        command: &str,
        input: &[u8],
        deadline: Instant,
    ) -> Result<CommandOutput, ConsoleError> {
        self.log_command(command);
        let encoded = base64::engine::general_purpose::STANDARD.encode(command);
        self.send(format!("s {tag} {encoded}\n").as_bytes())?;
        self.exchange(tag, deadline, &mut || false, input, &mut |_| {})
    }

    /// `$ command` in the log (continuation lines as `> `), before it is
    /// sent, so it precedes the command's output there.
    fn log_command(&self, command: &str) {
        let mut shown = String::new();
        for (i, line) in command.lines().enumerate() {
            shown.push_str(if i == 0 { "$ " } else { "> " });
            shown.push_str(line);
            shown.push('\n');
        }
        self.tee
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write(shown.as_bytes());
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), ConsoleError> {
        self.writer
            .write_all(bytes)
            .and_then(|_| self.writer.flush())
            .map_err(|e| ConsoleError::Io(e.to_string()))
    }

    /// Waits for the begin marker of `tag`, sends `after_begin` (input the
    /// guest reads only once it announced the exchange), then collects the
    /// output up to the end marker.
    fn exchange(
        &mut self,
        tag: &str,
        deadline: Instant,
        abort: &mut dyn FnMut() -> bool,
        after_begin: &[u8],
        stream: &mut dyn FnMut(&[u8]),
    ) -> Result<CommandOutput, ConsoleError> {
        let mut poll = Poll::new(deadline);
        let mut capture = Capture::default();
        self.wait_begin(tag, &mut poll, abort)?;
        if !after_begin.is_empty() {
            self.send(after_begin)?;
        }

        let end = format!("\x1eend {tag} ");
        let finder = memmem::Finder::new(end.as_bytes());
        loop {
            match finder.find(&self.pending) {
                Some(p) => {
                    capture.push(&self.pending[..p]);
                    stream(&self.pending[..p]);
                    self.pending.drain(..p);
                    let body = &self.pending[end.len()..];
                    if let Some(close) = body.iter().position(|b| *b == RS) {
                        let text = String::from_utf8_lossy(&body[..close]).into_owned();
                        let mut fields = text.split(' ').map(|f| f.parse::<u64>().ok());
                        let exit = fields.next().flatten().unwrap_or(u64::from(u8::MAX));
                        let taint = fields.next().flatten().unwrap_or(0);
                        self.consume_marker(end.len() + close + 1);
                        return Ok(CommandOutput {
                            exit: exit.min(i32::MAX as u64) as i32,
                            output: capture.text(),
                            dropped: capture.dropped(),
                            taint,
                        });
                    }
                }
                None => {
                    // Keep what could be the start of a marker split
                    // across chunks; everything before it is output.
                    let keep = end.len() - 1;
                    let cut = self.pending.len().saturating_sub(keep);
                    capture.push(&self.pending[..cut]);
                    stream(&self.pending[..cut]);
                    self.pending.drain(..cut);
                }
            }
            self.wait_or_fail(&mut poll, abort, &capture)?;
        }
    }

    /// Waits for the begin marker of `tag` and drops everything up to it:
    /// anything before it is not the command's (and, with the tty's echo
    /// off, there should be nothing).
    fn wait_begin(
        &mut self,
        tag: &str,
        poll: &mut Poll,
        abort: &mut dyn FnMut() -> bool,
    ) -> Result<(), ConsoleError> {
        let begin = format!("\x1ebegin {tag}\x1e");
        let finder = memmem::Finder::new(begin.as_bytes());
        loop {
            if let Some(p) = finder.find(&self.pending) {
                self.consume_marker(p + begin.len());
                return Ok(());
            }
            let keep = begin.len() - 1;
            let cut = self.pending.len().saturating_sub(keep);
            self.pending.drain(..cut);
            self.wait_or_fail(poll, abort, &Capture::default())?;
        }
    }

    /// Hands the console to a person (`modvm shell`): starts `command` with
    /// the tty as its stdin and controlling terminal (protocol op `i`, see
    /// `images/init`) and returns once the guest announced it. From then on
    /// the caller moves bytes itself with [`Console::send_raw`] and
    /// [`Console::next_chunk`] and looks for the end marker of `tag` in
    /// what arrives.
    pub fn begin_interactive(
        &mut self,
        tag: &str,
        command: &str,
        deadline: Instant,
    ) -> Result<(), ConsoleError> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(command);
        self.send(format!("i {tag} {encoded}\n").as_bytes())?;
        self.wait_begin(tag, &mut Poll::new(deadline), &mut || false)
    }

    /// Writes bytes to the guest's tty as they are (keys typed by a person).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ConsoleError> {
        self.send(bytes)
    }

    /// The next bytes from the guest: what is left over from the last
    /// exchange first, then what arrives within `timeout` (`Ok(None)` when
    /// nothing did); [`ConsoleError::Closed`] once QEMU closed the socket.
    pub fn next_chunk(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, ConsoleError> {
        if !self.pending.is_empty() {
            return Ok(Some(std::mem::take(&mut self.pending)));
        }
        let closed = || ConsoleError::Closed {
            seen: String::new(),
        };
        if self.closed {
            return Err(closed());
        }
        match self.chunks.recv_timeout(timeout) {
            Ok(chunk) => {
                self.take_in(&chunk);
                Ok(Some(std::mem::take(&mut self.pending)).filter(|c| !c.is_empty()))
            }
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                self.closed = true;
                Err(closed())
            }
        }
    }

    /// Drops a marker of `len` bytes at the start of `pending`, with the
    /// newline the guest prints after it.
    fn consume_marker(&mut self, mut len: usize) {
        match self.pending.get(len) {
            Some(b'\n') => len += 1,
            Some(_) => {}
            // Split across reads: UART bytes often arrive one per read.
            None => self.newline_due = true,
        }
        self.pending.drain(..len.min(self.pending.len()));
    }

    /// Appends a received chunk to `pending`, without the newline of a
    /// marker that ended the chunk before.
    fn take_in(&mut self, chunk: &[u8]) {
        let mut chunk = chunk;
        if std::mem::take(&mut self.newline_due) && chunk.first() == Some(&b'\n') {
            chunk = &chunk[1..];
        }
        self.pending.extend_from_slice(chunk);
    }

    fn wait_or_fail(
        &mut self,
        poll: &mut Poll,
        abort: &mut dyn FnMut() -> bool,
        capture: &Capture,
    ) -> Result<(), ConsoleError> {
        let why = self.wait(poll, abort);
        if let Wait::More = why {
            return Ok(());
        }
        // What arrived so far, undecided bytes included.
        let mut c = capture.clone();
        c.push(&self.pending);
        let seen = c.text();
        Err(match why {
            Wait::Deadline => ConsoleError::Timeout { seen },
            Wait::Closed => ConsoleError::Closed { seen },
            _ => ConsoleError::Aborted { seen },
        })
    }

    /// Appends the next chunk(s) to `pending`, or reports why there are
    /// none. The clock is read on every call, so a stream that never pauses
    /// still meets its deadline.
    fn wait(&mut self, poll: &mut Poll, abort: &mut dyn FnMut() -> bool) -> Wait {
        let now = Instant::now();
        if now >= poll.deadline {
            return Wait::Deadline;
        }
        if now >= poll.next_abort_check {
            if abort() {
                return Wait::Aborted;
            }
            poll.next_abort_check = now + ABORT_POLL;
        }
        if self.closed {
            return Wait::Closed;
        }
        let until = poll.deadline.min(poll.next_abort_check);
        match self
            .chunks
            .recv_timeout(until.saturating_duration_since(now))
        {
            Ok(chunk) => {
                self.take_in(&chunk);
                // Take what else is queued in one go (fewer scans), up to
                // a bound so the deadline is still looked at often.
                while self.pending.len() < 4 * CHUNK {
                    match self.chunks.try_recv() {
                        Ok(more) => self.take_in(&more),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            self.closed = true;
                            break;
                        }
                    }
                }
                Wait::More
            }
            Err(RecvTimeoutError::Timeout) => Wait::More,
            Err(RecvTimeoutError::Disconnected) => {
                self.closed = true;
                Wait::Closed
            }
        }
    }
}

/// One exchange's deadline and when `abort` is next due.
struct Poll {
    deadline: Instant,
    next_abort_check: Instant,
}

impl Poll {
    fn new(deadline: Instant) -> Poll {
        Poll {
            deadline,
            next_abort_check: Instant::now() + ABORT_POLL,
        }
    }
}

/// The reader thread: socket → `console.log` and the channel. Ends when the
/// socket closes (QEMU exited) or the console is dropped.
///
/// QEMU's emulated UART writes to the socket one byte per system call, so
/// a chatty guest would otherwise cost a read, a log write and a wake-up per
/// byte. While bytes stream in (reads less than [`BURST`] apart) the thread
/// pauses for [`GATHER`] between reads to take them in larger pieces; a
/// quiet console, where markers arrive, pays nothing.
fn pump(mut stream: UnixStream, tee: Arc<Mutex<LogSink>>, tx: SyncSender<Vec<u8>>) {
    let mut buf = vec![0u8; CHUNK];
    let mut last_read = Instant::now();
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                tee.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .write(&buf[..n]);
                if tx.send(buf[..n].to_vec()).is_err() {
                    return;
                }
                let now = Instant::now();
                if now - last_read < BURST && n < CHUNK / 2 {
                    std::thread::sleep(GATHER);
                }
                last_read = now;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Reads closer together than this mean the guest is streaming output.
const BURST: Duration = Duration::from_millis(1);
/// Pause between reads while streaming.
const GATHER: Duration = Duration::from_micros(500);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// A console whose "guest" is the other end of a socket pair.
    fn pair() -> (Console, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        (
            Console::new(ours, LogSink::new(None, None)).unwrap(),
            theirs,
        )
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    /// Reads the command line the console sent and returns its tag.
    fn read_tag(guest: &mut UnixStream) -> String {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while guest.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
            line.push(b[0]);
        }
        let line = String::from_utf8(line).unwrap();
        line.split(' ').nth(1).unwrap().to_string()
    }

    #[test]
    fn ready_marker_gives_release_and_taint() {
        let (mut c, mut g) = pair();
        g.write_all(b"noise\x1eready 6.1.0-test 4096\x1e\n")
            .unwrap();
        assert_eq!(c.wait_ready(soon()).unwrap(), ("6.1.0-test".into(), 4096));
    }

    #[test]
    fn output_between_markers_is_decoded_utf8() {
        let (mut c, mut g) = pair();
        let t = std::thread::spawn(move || {
            let tag = read_tag(&mut g);
            let reply =
                format!("\x1ebegin {tag}\x1e\nh\u{e9}llo \u{2603}\n\x1eend {tag} 3 4096\x1e\n");
            // Byte by byte: markers and characters split across reads.
            for b in reply.as_bytes() {
                g.write_all(&[*b]).unwrap();
            }
            g
        });
        let tag = new_tag("1");
        let out = c.run(&tag, "echo", soon(), &mut || false).unwrap();
        assert_eq!(out.output, "h\u{e9}llo \u{2603}\n");
        assert_eq!((out.exit, out.taint, out.dropped), (3, 4096, 0));
        drop(t.join());
    }

    #[test]
    fn a_forged_end_marker_is_output() {
        let (mut c, mut g) = pair();
        let t = std::thread::spawn(move || {
            let tag = read_tag(&mut g);
            let id = tag.split('-').next().unwrap().to_string();
            let reply = format!(
                "\x1ebegin {tag}\x1e\n\x1eend {id} 0 0\x1e\n\x1eend {id}-0000000000000000 0 0\x1e\n\x1eend {tag} 3 0\x1e\n"
            );
            g.write_all(reply.as_bytes()).unwrap();
            g
        });
        let out = c.run(&new_tag("1"), "x", soon(), &mut || false).unwrap();
        assert_eq!(out.exit, 3);
        assert!(out.output.contains("end 1 0 0"), "{:?}", out.output);
        drop(t.join());
    }

    #[test]
    fn endless_output_meets_the_deadline_with_bounded_memory() {
        let (mut c, mut g) = pair();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let t = std::thread::spawn(move || {
            let tag = read_tag(&mut g);
            g.write_all(format!("\x1ebegin {tag}\x1e\n").as_bytes())
                .unwrap();
            let block = b"y\n".repeat(32 * 1024);
            while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
                if g.write_all(&block).is_err() {
                    break;
                }
            }
        });
        let started = Instant::now();
        let deadline = started + Duration::from_millis(500);
        let e = c
            .run(&new_tag("1"), "yes", deadline, &mut || false)
            .unwrap_err();
        let late = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(c);
        let _ = t.join();
        assert!(matches!(e, ConsoleError::Timeout { .. }), "{e:?}");
        assert!(late < Duration::from_secs(3), "took {late:?}");
        assert!(
            e.seen().contains("bytes of output dropped"),
            "{}",
            &e.seen()[..200]
        );
        assert!(e.seen().len() < 200 * 1024);
    }

    #[test]
    fn closed_socket_ends_the_wait() {
        let (mut c, g) = pair();
        drop(g);
        let e = c.wait_ready(soon()).unwrap_err();
        assert!(matches!(e, ConsoleError::Closed { .. }), "{e:?}");
    }

    #[test]
    fn abort_is_asked_while_bytes_keep_coming() {
        let (mut c, mut g) = pair();
        let t = std::thread::spawn(move || {
            let tag = read_tag(&mut g);
            g.write_all(format!("\x1ebegin {tag}\x1e\n").as_bytes())
                .unwrap();
            while g.write_all(b"chatter\n").is_ok() {}
        });
        let e = c.run(&new_tag("1"), "x", soon(), &mut || true).unwrap_err();
        assert!(matches!(e, ConsoleError::Aborted { .. }), "{e:?}");
        drop(c);
        let _ = t.join();
    }

    /// Random bytes mixed with pieces of the protocol (markers of other
    /// tags, truncated markers, stray framing bytes).
    fn hostile_payload(rng: &mut Rng, id: &str) -> Vec<u8> {
        let pieces: [&[u8]; 8] = [
            b"\x1e",
            b"\x1eend ",
            b"\x1ebegin ",
            b"\x1eready 6.1 0\x1e\n",
            b"\n",
            "\u{e9}\u{2603}".as_bytes(),
            &[0xff, 0xc3],
            b"\x1eend 1-00000000000000ff 0 0\x1e\n",
        ];
        let mut p = Vec::new();
        for _ in 0..rng.below(200) {
            match rng.below(4) {
                0 => p.extend_from_slice(pieces[rng.below(pieces.len())]),
                1 => p.extend_from_slice(format!("\x1eend {id} 0 0\x1e\n").as_bytes()),
                _ => p.extend((0..rng.below(64)).map(|_| rng.next_u64() as u8)),
            }
        }
        p
    }

    #[test]
    fn hostile_streams_never_panic_and_the_real_end_wins() {
        let mut rng = Rng(0x5eed_cafe_f00d_0001);
        for round in 0..200 {
            let (mut c, mut g) = pair();
            let payload = hostile_payload(&mut rng, "1");
            let seed = rng.next_u64();
            let sent = payload.clone();
            let t = std::thread::spawn(move || {
                let tag = read_tag(&mut g);
                let mut rng = Rng(seed | 1);
                let mut all = format!("\x1ebegin {tag}\x1e\n").into_bytes();
                all.extend_from_slice(&sent);
                all.extend_from_slice(format!("\x1eend {tag} 7 9\x1e\n").as_bytes());
                let mut rest = &all[..];
                while !rest.is_empty() {
                    let n = (1 + rng.below(300)).min(rest.len());
                    g.write_all(&rest[..n]).unwrap();
                    rest = &rest[n..];
                }
                g
            });
            let out = c.run(&new_tag("1"), "x", soon(), &mut || false);
            let out = out.unwrap_or_else(|e| panic!("round {round}: {e:?}"));
            assert_eq!((out.exit, out.taint), (7, 9), "round {round}");
            assert_eq!(
                out.output,
                String::from_utf8_lossy(&payload),
                "round {round}"
            );
            drop(t.join());
        }
    }

    #[test]
    fn garbage_without_an_end_times_out_on_time() {
        let mut rng = Rng(0x0bad_beef_0000_0002);
        for _ in 0..5 {
            let (mut c, mut g) = pair();
            let payload = hostile_payload(&mut rng, "1");
            let t = std::thread::spawn(move || {
                let tag = read_tag(&mut g);
                let _ = g.write_all(format!("\x1ebegin {tag}\x1e\n").as_bytes());
                let _ = g.write_all(&payload);
                g
            });
            let started = Instant::now();
            let deadline = started + Duration::from_millis(200);
            let e = c
                .run(&new_tag("1"), "x", deadline, &mut || false)
                .unwrap_err();
            assert!(matches!(e, ConsoleError::Timeout { .. }), "{e:?}");
            assert!(started.elapsed() < Duration::from_secs(2));
            drop(t.join());
        }
    }

    #[test]
    fn tags_differ() {
        assert_ne!(new_tag("1"), new_tag("1"));
        assert!(new_tag("2.3").starts_with("2.3-"));
    }
}

#[cfg(test)]
mod feed_tests;
