//! `modvm run [MODULE_DIR] -- COMMAND…`: one command in a fresh guest, in
//! `/modules` with the directory's modules, its output streamed to stdout
//! and its exit status passed through (scripts, `git bisect run`).

use super::prepare;
use super::{GuestArgs, Outcome};
use crate::guest::exec::Ended;
use crate::qemu::shell_quote;
use anyhow::{bail, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Exit status when the kernel crashed (or the guest died) during the
/// command: "bad" to `git bisect run`, which reserves 125 for "skip".
pub const CRASH_STATUS: u8 = 123;
/// Exit status when the command did not finish in time, as `timeout(1)`.
pub const TIMEOUT_STATUS: u8 = 124;

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The module directory whose modules the guest gets in /modules [default: module]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub guest: GuestArgs,
    /// Seconds the command may take (above 0, at most 86400).
    #[arg(long, default_value_t = 300.0, value_parser = super::args::step_timeout_s)]
    pub timeout: f64,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

pub fn run(args: RunArgs) -> Result<Outcome> {
    let prepare::OneGuest {
        mut guest,
        config,
        test,
        logs,
    } = prepare::one_guest(&args.guest, args.dir.as_deref(), "run", args.timeout)?;
    let command = args
        .command
        .iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let deadline = Instant::now()
        + match args.guest.gdb {
            Some(_) => crate::guest::gdb::NO_DEADLINE,
            None => Duration::from_secs_f64(args.timeout),
        };
    let mut stdout = std::io::stdout();
    let capture = guest.exec("run", &command, deadline, &mut |bytes| {
        // A closed stdout (`| head`) must not stop the guest's command.
        let _ = stdout.write_all(bytes).and_then(|_| stdout.flush());
    });
    drop(guest);
    let crashed = |why: &str| {
        prepare::report_crash(
            capture.crashes.clone(),
            why,
            &test.modules,
            config.kernel_symbols.as_ref(),
            &logs,
        )
    };
    Ok(match &capture.ended {
        Ended::Finished { exit, .. } if capture.crashes.is_empty() => {
            Outcome::Status((*exit).clamp(0, 255) as u8)
        }
        Ended::Finished { .. } => {
            crashed("the kernel reported a crash during the command");
            Outcome::Status(CRASH_STATUS)
        }
        Ended::TimedOut => {
            crashed(&format!(
                "the command did not finish within {:.1} s",
                args.timeout
            ));
            Outcome::Status(TIMEOUT_STATUS)
        }
        Ended::CrashedMidway => {
            crashed("the kernel crashed and the command did not finish");
            Outcome::Status(CRASH_STATUS)
        }
        Ended::GuestDied { qemu } => {
            crashed(&format!("the guest died during the command (QEMU: {qemu})"));
            Outcome::Status(CRASH_STATUS)
        }
        Ended::ConsoleFailed(msg) => bail!("the guest console failed: {msg}"),
    })
}
