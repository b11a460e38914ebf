//! The guest shell on ttyS0, driven with rexpect.
//!
//! rexpect's `read_until` sleeps 100 ms whenever its needle is not yet in the
//! buffer, which alone would cost more than a whole insmod/rmmod. So the
//! session is built with a zero timeout (each `exp_*` call is a non-blocking
//! check) and modvm does the waiting itself: [`Feed`] wraps the socket and
//! bumps a generation counter each time rexpect's reader thread comes back
//! for more bytes, which is exactly when everything read before has been
//! handed to rexpect. A waiter sleeps on that counter, so a marker is seen
//! within microseconds of its arrival.
//!
//! The protocol itself (markers framed by 0x1e, commands sent base64-encoded)
//! is described in `images/init`.

use crate::logsink::LogSink;
use base64::Engine;
use rexpect::error::Error as RexpectError;
use rexpect::session::StreamSession;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// How often a waiting command asks whether to give up early.
pub const ABORT_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// How long after the socket closed rexpect may take to report EOF.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// Marker framing byte (ASCII record separator).
const RS: char = '\u{1e}';

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
    pub output: String,
    /// `/proc/sys/kernel/tainted` right after the command.
    pub taint: u64,
}

#[derive(Default)]
struct FeedState {
    generation: u64,
    closed: bool,
}

type FeedSignal = Arc<(Mutex<FeedState>, Condvar)>;

/// The socket as rexpect's reader sees it: tees bytes to `console.log` and
/// signals progress (see the module docs).
struct Feed {
    inner: UnixStream,
    tee: LogSink,
    signal: FeedSignal,
}

impl Read for Feed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        bump(&self.signal, false);
        let r = self.inner.read(buf);
        match &r {
            Ok(0) | Err(_) => bump(&self.signal, true),
            Ok(n) => self.tee.write(&buf[..*n]),
        }
        r
    }
}

fn bump(signal: &FeedSignal, closed: bool) {
    let (lock, cond) = &**signal;
    let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
    st.generation += 1;
    st.closed |= closed;
    cond.notify_all();
}

/// A connected guest shell.
pub struct Console {
    session: StreamSession<UnixStream>,
    signal: FeedSignal,
}

enum Needle<'a> {
    Text(&'a str),
    Regex(&'a str),
}

impl Console {
    /// Wraps a connected ttyS0 socket; `tee` receives every byte read.
    pub fn new(stream: UnixStream, tee: LogSink) -> std::io::Result<Console> {
        let writer = stream.try_clone()?;
        let signal: FeedSignal = Arc::default();
        let feed = Feed {
            inner: stream,
            tee,
            signal: signal.clone(),
        };
        let session = rexpect::session::spawn_stream(feed, writer, Some(0));
        Ok(Console { session, signal })
    }

    /// Waits for the init's ready marker; returns the guest's kernel release
    /// and its taint mask after boot.
    pub fn wait_ready(&mut self, deadline: Instant) -> Result<(String, u64), ConsoleError> {
        let re = format!("{RS}ready ([^{RS} ]*) ([0-9]+){RS}");
        let (_, matched) = self.expect(Needle::Regex(&re), deadline, &mut || false)?;
        let fields: Vec<&str> = matched.trim_matches(['\n', RS]).split(' ').collect();
        Ok((
            fields.get(1).unwrap_or(&"").to_string(),
            fields.get(2).and_then(|t| t.parse().ok()).unwrap_or(0),
        ))
    }

    /// Runs one shell command in the guest as step `id`. `abort` is asked
    /// every [`ABORT_POLL`] while waiting; when it says true the wait ends
    /// with [`ConsoleError::Aborted`] (the runner uses it when the kernel log
    /// shows a crash that keeps the command from finishing).
    pub fn run(
        &mut self,
        id: &str,
        command: &str,
        deadline: Instant,
        abort: &mut dyn FnMut() -> bool,
    ) -> Result<CommandOutput, ConsoleError> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(command);
        self.session
            .send_line(&format!("s {id} {encoded}"))
            .map_err(|e| ConsoleError::Io(e.to_string()))?;
        self.session
            .flush()
            .map_err(|e| ConsoleError::Io(e.to_string()))?;
        self.expect(
            Needle::Text(&format!("{RS}begin {id}{RS}\n")),
            deadline,
            abort,
        )?;
        let end = format!("{RS}end {} ([0-9]+) ([0-9]+){RS}\n", regex::escape(id));
        let (output, matched) = self.expect(Needle::Regex(&end), deadline, abort)?;
        let fields: Vec<&str> = matched.trim_matches(['\n', RS]).split(' ').collect();
        let number = |i: usize| fields.get(i).and_then(|s| s.parse::<u64>().ok());
        Ok(CommandOutput {
            exit: number(2).unwrap_or(u64::MAX) as i32,
            taint: number(3).unwrap_or(0),
            output,
        })
    }

    /// Returns (text before the needle, the needle's match).
    fn expect(
        &mut self,
        needle: Needle<'_>,
        deadline: Instant,
        abort: &mut dyn FnMut() -> bool,
    ) -> Result<(String, String), ConsoleError> {
        let mut closed_since: Option<Instant> = None;
        loop {
            let generation = self.state().generation;
            let attempt = match needle {
                Needle::Text(t) => self
                    .session
                    .exp_string(t)
                    .map(|before| (before, t.to_string())),
                Needle::Regex(r) => self.session.exp_regex(r),
            };
            match attempt {
                Ok(found) => return Ok(found),
                Err(RexpectError::Timeout { got, .. }) => {
                    let seen = || got.replace(RS, "");
                    if abort() {
                        return Err(ConsoleError::Aborted { seen: seen() });
                    }
                    if self.state().closed {
                        // rexpect reports EOF a moment after the socket
                        // closes; don't wait for it longer than that.
                        let since = *closed_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > CLOSE_GRACE {
                            return Err(ConsoleError::Closed { seen: seen() });
                        }
                    }
                    let slice = deadline.min(Instant::now() + ABORT_POLL);
                    if !self.wait_for_bytes(generation, slice) && Instant::now() >= deadline {
                        return Err(if self.state().closed {
                            ConsoleError::Closed { seen: seen() }
                        } else {
                            ConsoleError::Timeout { seen: seen() }
                        });
                    }
                }
                Err(RexpectError::EOF { got, .. }) => {
                    return Err(ConsoleError::Closed {
                        seen: got.replace(RS, ""),
                    })
                }
                Err(e) => return Err(ConsoleError::Io(e.to_string())),
            }
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.signal.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleeps until rexpect has been handed newer bytes than `generation`.
    /// False on deadline; on a closed stream, true once (so the caller sees
    /// rexpect's EOF) — the closed flag makes the next call return at once.
    fn wait_for_bytes(&self, generation: u64, deadline: Instant) -> bool {
        let (lock, cond) = &*self.signal;
        let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if st.generation != generation {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            if st.closed {
                // rexpect's reader sends its EOF right after our read
                // returned 0; give it a moment to land.
                drop(st);
                std::thread::sleep(std::time::Duration::from_millis(2));
                st = lock.lock().unwrap_or_else(|e| e.into_inner());
                if st.closed && st.generation == generation {
                    st.generation += 1;
                }
                continue;
            }
            st = cond
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}
