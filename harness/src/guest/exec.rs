//! One command in a guest, as the runner, `modvm run` and the shell's
//! neighbours need it: [`Guest::exec`] sends the command, waits for its end
//! marker or its deadline, gives up early when the kernel reported a crash
//! that keeps the command from finishing, and returns what it printed, how
//! it ended and the kernel lines written meanwhile, with the crashes found
//! in them. Nothing outside this file and `console.rs` speaks the protocol.

use super::Guest;
use crate::console::{self, ConsoleError};
use crate::crash;
use crate::klog::{marker, KernelLine, KernelLog};
use crate::outcome::Crash;
use std::time::{Duration, Instant};

/// How long after a command's end marker its kernel-log marker may lag.
const KLOG_GRACE: Duration = Duration::from_secs(2);
/// How long a command may go on after the kernel reported a crash before
/// it is given up (a WARNING lets the command finish; a lockup never does).
const CRASH_GRACE: Duration = Duration::from_secs(1);
/// How long to wait for QEMU to close the kernel log after the guest died,
/// so the whole panic report is in.
const DEATH_GRACE: Duration = Duration::from_secs(2);
/// Lines before the new ones that the crash watcher searches again, so a
/// report whose header arrived in an earlier batch is still recognised.
const WATCH_CONTEXT: usize = 64;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It finished: its exit status and the taint mask right after.
    Finished { exit: i32, taint: u64 },
    /// Its deadline passed.
    TimedOut,
    /// The kernel reported a crash and the command did not finish within
    /// a second of it.
    CrashedMidway,
    /// QEMU exited (a panic ends it): its exit status.
    GuestDied { qemu: String },
    /// The console itself failed.
    ConsoleFailed(String),
}

/// What one command did.
#[derive(Debug)]
pub struct StepCapture {
    pub ended: Ended,
    /// Head and tail of its output, decoded.
    pub output: String,
    /// Output bytes dropped between head and tail.
    pub dropped: u64,
    /// Every kernel line written while it ran (the caller bounds them).
    pub kernel_lines: Vec<KernelLine>,
    /// Crash reports among those lines.
    pub crashes: Vec<Crash>,
}

impl Guest {
    /// Runs `command` under step id `id` (people read it in the kernel log
    /// markers); `stream` gets its output as it arrives.
    pub fn exec(
        &mut self,
        id: &str,
        command: &str,
        deadline: Instant,
        stream: &mut dyn FnMut(&[u8]),
    ) -> StepCapture {
        let from = self.klog.len();
        let mut watch = CrashWatch::new(self.klog.clone(), from);
        let tag = console::new_tag(id);
        let cut = StepCut {
            begin: marker(id, "begin"),
            end: marker(&tag, "end"),
        };
        let outcome = self.console.run_streaming(
            &tag,
            command,
            deadline,
            &mut || watch.crashed_long_ago(),
            stream,
        );
        let (ended, output, dropped) = match outcome {
            Ok(out) => (
                Ended::Finished {
                    exit: out.exit,
                    taint: out.taint,
                },
                out.output,
                out.dropped,
            ),
            Err(e) => {
                let seen = e.seen().to_string();
                let ended = match e {
                    ConsoleError::Timeout { .. } => Ended::TimedOut,
                    ConsoleError::Aborted { .. } => Ended::CrashedMidway,
                    ConsoleError::Closed { .. } => {
                        // Let QEMU finish writing the panic before reading it.
                        self.klog
                            .wait_until(Instant::now() + DEATH_GRACE, |_| false);
                        Ended::GuestDied {
                            qemu: self
                                .wait_exit(Duration::from_millis(500))
                                .unwrap_or_else(|| "still running".into()),
                        }
                    }
                    ConsoleError::Io(msg) => Ended::ConsoleFailed(msg),
                };
                (ended, seen, 0)
            }
        };
        let grace = match ended {
            Ended::Finished { .. } => Instant::now() + KLOG_GRACE,
            _ => Instant::now(),
        };
        let kernel_lines = step_lines(&self.klog, from, &cut, grace);
        let crashes = crash::detect(&kernel_lines);
        StepCapture {
            ended,
            output,
            dropped,
            kernel_lines,
            crashes,
        }
    }
}

/// Watches the kernel log while a command runs, to give up on a command
/// that a crash keeps from finishing.
pub(crate) struct CrashWatch {
    klog: KernelLog,
    from: usize,
    seen_len: usize,
    crashed_at: Option<Instant>,
}

impl CrashWatch {
    pub(crate) fn new(klog: KernelLog, from: usize) -> CrashWatch {
        CrashWatch {
            klog,
            from,
            seen_len: from,
            crashed_at: None,
        }
    }

    pub(crate) fn crashed_long_ago(&mut self) -> bool {
        if self.crashed_at.is_none() {
            let len = self.klog.len();
            if len != self.seen_len {
                // Only the new lines (with a little context before them) are
                // searched, so a chatty step costs linear time, not quadratic.
                let start = self.seen_len.saturating_sub(WATCH_CONTEXT).max(self.from);
                self.seen_len = len;
                if !crash::detect(&self.klog.lines_from(start)).is_empty() {
                    self.crashed_at = Some(Instant::now());
                }
            }
        }
        self.crashed_at.is_some_and(|t| t.elapsed() >= CRASH_GRACE)
    }
}

/// The kernel-log lines that delimit one step: the begin line names the
/// step's id, the end line its secret tag (see `images/init`).
struct StepCut {
    begin: String,
    end: String,
}

/// Kernel lines between the step's begin and end markers (or up to now).
fn step_lines(klog: &KernelLog, from: usize, cut: &StepCut, deadline: Instant) -> Vec<KernelLine> {
    klog.wait_until(deadline, |lines| {
        lines.iter().skip(from).any(|l| l.text == cut.end)
    });
    let lines = klog.lines_from(from);
    let start = lines
        .iter()
        .position(|l| l.text == cut.begin)
        .map(|p| p + 1)
        .unwrap_or(0);
    lines[start..]
        .iter()
        .take_while(|l| l.text != cut.end)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logsink::LogSink;

    #[test]
    fn step_lines_are_cut_at_markers() {
        let data = "[0.1] before\n[0.2] modvm-mark 2 begin\n[0.3] inside\n[0.4] modvm-mark 2 end\n[0.5] after\n";
        let log = KernelLog::start(
            std::io::Cursor::new(data.as_bytes().to_vec()),
            LogSink::new(None, None),
        );
        let cut = StepCut {
            begin: marker("2", "begin"),
            end: marker("2", "end"),
        };
        let got = step_lines(&log, 0, &cut, Instant::now() + Duration::from_secs(5));
        assert_eq!(
            got.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
            vec!["inside"]
        );
    }
}
