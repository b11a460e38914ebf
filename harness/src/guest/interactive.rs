//! A person at a guest's shell (`modvm shell`, `modvm test --keep`): the
//! console is handed over with protocol op `i` (see `images/init`), which
//! runs `sh -i` in a session of its own with ttyS0 as its controlling
//! terminal, so job control and ^C work in the guest as on any console.
//!
//! When stdin is a terminal it is put in raw mode for the session (a guard
//! puts it back on every way out): every key, ^C and ^Z included, goes to
//! the guest's tty, whose line discipline does what a local one would. Only
//! [`ESCAPE`] (^]) stays on the host and leaves at once. When stdin is not
//! a terminal (a pipe, a test) its bytes go over as they are, and its end
//! is sent as `exit` (see [`Session::end_of_input`]).
//!
//! The kernel log has its own UART, so its lines are written between the
//! console's bytes as `[kernel] …` lines, each on a line of its own.
//! Crashes in it end the session: a panic ends the guest, an oops leaves it
//! running but not to be trusted.

use super::exec::CrashWatch;
use super::Guest;
use crate::children;
use crate::console::{self, ConsoleError};
use crate::crash;
use crate::klog::{KernelLine, KernelLog};
use crate::outcome::Crash;
use std::io::Write;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// The key that leaves the session at once, as for `telnet` and
/// `virsh console`: Ctrl-].
pub const ESCAPE: u8 = 0x1d;
/// How the escape key is written for people.
pub const ESCAPE_NAME: &str = "Ctrl-]";
/// How long the guest may take to start the shell.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest the loop sleeps before looking at the other streams.
const TICK: Duration = Duration::from_millis(20);
/// How long to wait for QEMU to finish writing a panic after it died.
const DEATH_GRACE: Duration = Duration::from_secs(2);
/// Longest marker the scanner holds back while waiting for its end.
const MAX_MARKER: usize = 128;
const STDIN: RawFd = 0;
const EOT: u8 = 0x04;

/// How a session ended.
#[derive(Debug)]
pub enum Left {
    /// The guest shell exited (`exit`, ^D) with this status.
    Exited(i32),
    /// The person pressed [`ESCAPE`].
    Escaped,
    /// The kernel reported a crash; the guest may or may not still run.
    Crashed(Vec<Crash>),
    /// QEMU exited without a crash report (its exit status).
    GuestDied(String),
    /// The console failed, or the shell did not start.
    ConsoleFailed(String),
    /// modvm was told to stop (SIGTERM, SIGHUP).
    Interrupted,
}

/// Gives the person at stdin the guest's shell until one of the ways in
/// [`Left`] ends it. Kernel lines from the start of the session on are
/// shown, and searched for crashes.
pub fn attach(guest: &mut Guest) -> Left {
    let tty = unsafe { libc::isatty(STDIN) } == 1;
    let size = if tty { window_size(STDIN) } else { None };
    let tag = console::new_tag("shell");
    let ask_key = format!("{:016x}", crate::runner::stable_hash(tag.as_bytes()));
    let from = guest.klog.len();
    let setup = setup_command(size, &ask_key);
    if let Err(e) = guest
        .console
        .begin_interactive(&tag, &setup, Instant::now() + START_TIMEOUT)
    {
        return match e {
            ConsoleError::Closed { .. } => died(guest, from),
            other => Left::ConsoleFailed(other.to_string()),
        };
    }
    // Raw only once the shell is there, and back before anyone prints.
    let _raw = if tty {
        RawMode::enter(STDIN).ok()
    } else {
        None
    };
    let mut session = Session {
        out: Screen {
            raw: _raw.is_some(),
            at_line_start: true,
        },
        scanner: Scanner::new(&tag, &ask_key),
        shown: from,
        watch: CrashWatch::new(guest.klog.clone(), from),
        stdin_open: true,
        last_sent: b'\n',
    };
    session.run(guest, from)
}

struct Session {
    out: Screen,
    scanner: Scanner,
    /// Kernel lines shown so far.
    shown: usize,
    watch: CrashWatch,
    stdin_open: bool,
    /// The last byte sent from stdin.
    last_sent: u8,
}

impl Session {
    fn run(&mut self, guest: &mut Guest, from: usize) -> Left {
        loop {
            if children::interrupted() {
                return Left::Interrupted;
            }
            if self.stdin_open && readable(STDIN, TICK) {
                let mut buf = [0u8; 4096];
                // SAFETY: read(2) into a buffer of the given length.
                let n = unsafe { libc::read(STDIN, buf.as_mut_ptr().cast(), buf.len()) };
                let sent = match n {
                    n if n > 0 => {
                        let keys = &buf[..n as usize];
                        self.last_sent = keys[keys.len() - 1];
                        match keys.iter().position(|b| *b == ESCAPE) {
                            Some(p) if self.out.raw => {
                                let _ = guest.console.send_raw(&keys[..p]);
                                return Left::Escaped;
                            }
                            _ => guest.console.send_raw(keys),
                        }
                    }
                    _ if n < 0
                        && std::io::Error::last_os_error().kind()
                            == std::io::ErrorKind::Interrupted =>
                    {
                        Ok(())
                    }
                    _ => {
                        self.stdin_open = false;
                        guest.console.send_raw(self.end_of_input())
                    }
                };
                if let Err(e) = sent {
                    return Left::ConsoleFailed(e.to_string());
                }
            } else if !self.stdin_open {
                std::thread::sleep(TICK);
            }
            loop {
                match guest.console.next_chunk(Duration::ZERO) {
                    Ok(Some(bytes)) => {
                        for piece in self.scanner.feed(&bytes) {
                            match piece {
                                Piece::Text(t) => self.out.text(&t),
                                Piece::End(status) => {
                                    self.show_kernel(&guest.klog);
                                    return Left::Exited(status);
                                }
                                Piece::AskSize => {
                                    let (rows, cols) = window_size(STDIN).unwrap_or((24, 80));
                                    let answer = format!("{rows} {cols}\n");
                                    if let Err(e) = guest.console.send_raw(answer.as_bytes()) {
                                        return Left::ConsoleFailed(e.to_string());
                                    }
                                }
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(ConsoleError::Closed { .. }) => {
                        let left = died(guest, from);
                        self.show_kernel(&guest.klog);
                        return left;
                    }
                    Err(e) => return Left::ConsoleFailed(e.to_string()),
                }
            }
            self.show_kernel(&guest.klog);
            if self.watch.crashed_long_ago() {
                return Left::Crashed(crash::detect(&guest.klog.lines_from(from)));
            }
        }
    }

    /// What stands for the end of stdin. A terminal's end (a hang-up) is
    /// ^D. Piped input arrives at once, long before the guest shell reads
    /// it, while its tty is still in canonical mode, where ^D would be
    /// taken as a line end and never reach the shell as end of input; so
    /// the input is ended with `exit` on a line of its own.
    fn end_of_input(&self) -> &'static [u8] {
        match (self.out.raw, self.last_sent) {
            (true, _) => &[EOT],
            (false, b'\n') => b"exit\n",
            (false, _) => b"\nexit\n",
        }
    }

    fn show_kernel(&mut self, klog: &KernelLog) {
        let lines = klog.lines_from(self.shown);
        self.shown += lines.len();
        for line in lines {
            self.out.kernel(&line);
        }
    }
}

/// After the console closed: the crash that ended the guest, if the
/// kernel reported one, else QEMU's exit.
fn died(guest: &mut Guest, from: usize) -> Left {
    guest
        .klog
        .wait_until(Instant::now() + DEATH_GRACE, |_| false);
    let crashes = crash::detect(&guest.klog.lines_from(from));
    if !crashes.is_empty() {
        return Left::Crashed(crashes);
    }
    Left::GuestDied(
        guest
            .wait_exit(Duration::from_millis(500))
            .unwrap_or_else(|| "still running".into()),
    )
}

/// The host's stdout, tracking whether the cursor is at a line's start so
/// that a kernel line never lands in the middle of the guest's output.
struct Screen {
    raw: bool,
    at_line_start: bool,
}

impl Screen {
    fn write(&mut self, bytes: &[u8]) {
        let mut out = std::io::stdout().lock();
        // A closed stdout must not end the session (the guest shell may
        // still be wanted, and Drop cleans up either way).
        let _ = out.write_all(bytes).and_then(|_| out.flush());
    }

    fn text(&mut self, bytes: &[u8]) {
        if let Some(last) = bytes.last() {
            self.at_line_start = *last == b'\n';
            self.write(bytes);
        }
    }

    fn kernel(&mut self, line: &KernelLine) {
        let nl = if self.raw { "\r\n" } else { "\n" };
        let lead = if self.at_line_start { "" } else { nl };
        self.write(format!("{lead}[kernel] {}{nl}", line.text).as_bytes());
        self.at_line_start = true;
    }
}

/// The guest-side start of the session: sane tty modes, the host
/// terminal's size, a `resize` command that asks the host for it again,
/// then the shell in `/modules`.
fn setup_command(size: Option<(u16, u16)>, ask_key: &str) -> String {
    let (rows, cols) = size.unwrap_or((24, 80));
    format!(
        "stty sane; stty rows {rows} cols {cols}\n\
         cat >/bin/resize <<'EOF'\n\
         #!/bin/sh\n\
         # Sets this tty's size to the host terminal's: modvm answers the question.\n\
         modes=$(stty -g)\n\
         stty -echo\n\
         printf '\\036winsize {ask_key}\\036'\n\
         read -r rows cols\n\
         stty \"$modes\"\n\
         stty rows \"$rows\" cols \"$cols\"\n\
         EOF\n\
         chmod +x /bin/resize\n\
         cd /modules 2>/dev/null || cd /\n\
         export TERM=linux HOME=/ PS1='\\w \\$ '\n\
         exec sh -i\n"
    )
}

/// What the scanner found in the console's bytes.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    /// Output for the screen.
    Text(Vec<u8>),
    /// The session's end marker, with the shell's exit status.
    End(i32),
    /// `resize` in the guest asks for the host terminal's size.
    AskSize,
}

/// Cuts the end marker and `resize`'s question out of the byte stream,
/// holding back only what could still become one of them, so the prompt is
/// shown as soon as it arrives.
struct Scanner {
    end: Vec<u8>,
    ask: Vec<u8>,
    held: Vec<u8>,
}

impl Scanner {
    fn new(tag: &str, ask_key: &str) -> Scanner {
        Scanner {
            end: format!("\x1eend {tag} ").into_bytes(),
            ask: format!("\x1ewinsize {ask_key}\x1e").into_bytes(),
            held: Vec::new(),
        }
    }

    fn feed(&mut self, chunk: &[u8]) -> Vec<Piece> {
        let mut buf = std::mem::take(&mut self.held);
        buf.extend_from_slice(chunk);
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        let mut i = 0;
        while i < buf.len() {
            if buf[i] != 0x1e {
                text.push(buf[i]);
                i += 1;
                continue;
            }
            let rest = &buf[i..];
            if rest.starts_with(&self.ask) {
                flush(&mut text, &mut pieces);
                pieces.push(Piece::AskSize);
                i += self.ask.len();
                continue;
            }
            if rest.starts_with(&self.end) {
                let body = &rest[self.end.len()..];
                if let Some(close) = body.iter().position(|b| *b == 0x1e) {
                    let status = String::from_utf8_lossy(&body[..close])
                        .split(' ')
                        .next()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(255);
                    flush(&mut text, &mut pieces);
                    pieces.push(Piece::End(status));
                    return pieces;
                }
                if rest.len() < MAX_MARKER {
                    self.held = rest.to_vec();
                    break;
                }
            } else if rest.len() < self.end.len().max(self.ask.len())
                && (self.end.starts_with(rest) || self.ask.starts_with(rest))
            {
                self.held = rest.to_vec();
                break;
            }
            text.push(buf[i]);
            i += 1;
        }
        flush(&mut text, &mut pieces);
        pieces
    }
}

fn flush(text: &mut Vec<u8>, pieces: &mut Vec<Piece>) {
    if !text.is_empty() {
        pieces.push(Piece::Text(std::mem::take(text)));
    }
}

/// True when `fd` has input (or its end) within `timeout`.
fn readable(fd: RawFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll(2) on one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as libc::c_int) };
    n > 0 && p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

/// Rows and columns of the terminal on `fd`.
fn window_size(fd: RawFd) -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ fills a winsize.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// The terminal in raw mode until dropped, whatever way the session ends.
struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    fn enter(fd: RawFd) -> std::io::Result<RawMode> {
        // SAFETY: tcgetattr/cfmakeraw/tcsetattr on a termios we own.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut saved) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(fd, libc::TCSANOW, &raw) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(RawMode { fd, saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: puts back the modes read in `enter`.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner() -> Scanner {
        Scanner::new("shell-1", "k")
    }

    fn text(s: &str) -> Piece {
        Piece::Text(s.as_bytes().to_vec())
    }

    #[test]
    fn text_passes_at_once_and_the_end_marker_ends() {
        let mut s = scanner();
        assert_eq!(s.feed(b"/modules # "), vec![text("/modules # ")]);
        assert_eq!(
            s.feed(b"exit\r\n\x1eend shell-1 0 4096\x1e\n"),
            vec![text("exit\r\n"), Piece::End(0)]
        );
    }

    #[test]
    fn a_marker_split_anywhere_is_still_found_and_never_shown() {
        let all = b"ab\x1eend shell-1 7 0\x1e";
        for cut in 0..all.len() {
            let mut s = scanner();
            let mut got = s.feed(&all[..cut]);
            got.extend(s.feed(&all[cut..]));
            let shown: Vec<u8> = got
                .iter()
                .filter_map(|p| match p {
                    Piece::Text(t) => Some(t.clone()),
                    _ => None,
                })
                .flatten()
                .collect();
            assert_eq!(shown, b"ab", "cut at {cut}");
            assert_eq!(got.last(), Some(&Piece::End(7)), "cut at {cut}");
        }
    }

    #[test]
    fn another_tag_or_a_lone_separator_is_text() {
        let mut s = scanner();
        assert_eq!(
            s.feed(b"\x1eend shell-2 0 0\x1e x"),
            vec![text("\x1eend shell-2 0 0\x1e x")]
        );
        assert_eq!(s.feed(b"a\x1eb"), vec![text("a\x1eb")]);
    }

    #[test]
    fn the_size_question_is_answered_not_shown() {
        let mut s = scanner();
        assert_eq!(
            s.feed(b"x\x1ewinsize k\x1ey"),
            vec![text("x"), Piece::AskSize, text("y")]
        );
    }

    #[test]
    fn a_separator_at_the_end_is_held_until_known() {
        let mut s = scanner();
        assert_eq!(s.feed(b"x\x1e"), vec![text("x")]);
        assert_eq!(s.feed(b"q"), vec![text("\x1eq")]);
    }

    #[test]
    fn setup_sets_the_size_and_starts_an_interactive_shell() {
        let c = setup_command(Some((50, 132)), "k");
        assert!(c.contains("stty rows 50 cols 132"), "{c}");
        assert!(c.contains("winsize k"), "{c}");
        assert!(c.trim_end().ends_with("exec sh -i"), "{c}");
    }
}
