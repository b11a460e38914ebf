//! `modvm shell [MODULE_DIR]`: a root shell in a fresh guest, in `/modules`
//! with the directory's modules, for trying things by hand; a crash sends
//! the person back to the host with its summary.

use super::prepare;
use super::run::CRASH_STATUS;
use super::{say, GuestArgs, Interrupted, Outcome};
use crate::guest::interactive::{self, Left, ESCAPE_NAME};
use crate::guest::Guest;
use crate::outcome::TestResult;
use crate::runner::{KeepGuest, PlannedTest};
use anyhow::{bail, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct ShellArgs {
    /// The module directory whose modules the guest gets in /modules [default: module]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub guest: GuestArgs,
}

pub fn shell(args: ShellArgs) -> Result<Outcome> {
    let prepare::OneGuest {
        mut guest,
        config,
        test,
        logs: dir,
    } = prepare::one_guest(
        &args.guest,
        args.dir.as_deref(),
        "shell",
        crate::spec::DEFAULT_STEP_TIMEOUT_S,
    )?;
    let names: Vec<String> = test
        .modules
        .iter()
        .filter_map(|m| m.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    say(&format!(
        "{}: a root shell in /modules, which holds {}",
        config.kernel_name,
        if names.is_empty() {
            "no module".to_string()
        } else {
            names.join(", ")
        }
    ));
    say(&format!(
        "leave with `exit`, end of input (Ctrl-D) or {ESCAPE_NAME}; after resizing the window, run `resize`"
    ));
    let left = interactive::attach(&mut guest);
    drop(guest);
    if crate::children::interrupted() {
        // SIGTERM/SIGHUP killed the guest: not a crash of the module.
        return Err(Interrupted.into());
    }
    let (crashes, why) = match left {
        Left::Exited(_) | Left::Escaped => return Ok(Outcome::Success),
        Left::Interrupted => return Err(Interrupted.into()),
        Left::ConsoleFailed(msg) => bail!(
            "the guest console failed: {msg} (console and kernel log: {})",
            dir.display()
        ),
        Left::Crashed(c) => (c, "the kernel crashed".to_string()),
        Left::GuestDied(qemu) => (Vec::new(), format!("the guest died (QEMU: {qemu})")),
    };
    report_crash(
        crashes,
        &why,
        &test.modules,
        config.kernel_symbols.as_ref(),
        &dir,
    );
    Ok(Outcome::Status(CRASH_STATUS))
}

/// Says why the session ended (on a line of its own: the person's prompt
/// may still be open), with the crashes and where the logs are.
pub(crate) fn report_crash(
    crashes: Vec<crate::outcome::Crash>,
    why: &str,
    modules: &[PathBuf],
    kernel_symbols: Option<&(PathBuf, PathBuf)>,
    logs: &Path,
) {
    eprintln!();
    prepare::report_crash(crashes, why, modules, kernel_symbols, logs);
}

/// `modvm test --keep`: a shell in the guest of a test that did not pass,
/// as the test left it; the run goes on when the shell ends.
#[derive(Debug)]
pub(crate) struct KeepShell {
    pub kernel_symbols: Option<(PathBuf, PathBuf)>,
}

impl KeepGuest for KeepShell {
    fn keep(&self, guest: &mut Guest, test: &PlannedTest, result: &TestResult) {
        let name = test.name();
        let status = result.status.label();
        if guest.klog.closed() || guest.wait_exit(Duration::ZERO).is_some() {
            say(&format!(
                "{name}: {status}; its guest is gone (the kernel panicked), so there is no shell to keep"
            ));
            return;
        }
        let why = result
            .steps
            .iter()
            .find_map(|s| s.failures.first())
            .or(result.message.as_ref())
            .map(|w| format!(": {w}"))
            .unwrap_or_default();
        say(&format!(
            "{name}: {status}{why}\nmodvm: its guest is kept: a shell in /modules as the test left it"
        ));
        say(&format!(
            "the run goes on after `exit`, end of input (Ctrl-D) or {ESCAPE_NAME}"
        ));
        match interactive::attach(guest) {
            Left::Exited(_) | Left::Escaped | Left::Interrupted => {}
            Left::Crashed(crashes) => report_crash(
                crashes,
                "the kernel crashed",
                &test.modules,
                self.kernel_symbols.as_ref(),
                &result.artifacts,
            ),
            Left::GuestDied(qemu) => say(&format!("the guest died (QEMU: {qemu})")),
            Left::ConsoleFailed(msg) => say(&format!("the guest console failed: {msg}")),
        }
    }
}
