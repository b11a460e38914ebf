//! `modvm shell [MODULE_DIR]`: a root shell in a fresh guest, in `/modules`
//! with the directory's modules, for trying things by hand; a crash sends
//! the person back to the host with its summary.

use super::prepare::{self, Prepared};
use super::run::CRASH_STATUS;
use super::{say, GuestArgs, Interrupted, Outcome};
use crate::guest::deliver::Switches;
use crate::guest::interactive::{self, Left, ESCAPE_NAME};
use crate::guest::launcher::LaunchRequest;
use crate::guest::{Guest, GuestLogs};
use crate::outcome::TestResult;
use crate::report::human::crash_summary;
use crate::runner::{KeepGuest, PlannedTest};
use anyhow::{bail, Context, Result};
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
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("module"));
    let paths = [dir];
    let request = prepare::Request {
        paths: &paths,
        filter: None,
        step_timeout_s: crate::spec::DEFAULT_STEP_TIMEOUT_S,
        verbose: false,
    };
    let Prepared { runs, .. } = prepare::prepare(&args.guest, &request, &mut Vec::new())?;
    let [kernel] = runs.as_slice() else {
        bail!(
            "`modvm shell` starts one guest: --kernel names {} kernels; name one",
            runs.len()
        );
    };
    let Some(test) = kernel.tests.first() else {
        bail!("nothing to start: the module directory gave no test to take its modules from");
    };
    let config = &kernel.config;
    let dir = config.artifacts.join("shell");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut logs = GuestLogs::in_dir(&dir);
    logs.echo = args.guest.console;
    let launch = LaunchRequest {
        qemu: &config.qemu,
        initrd: &test.initrd,
        files: &test.files,
        switches: Switches::default(),
        logs: &logs,
        timeout: config.boot_timeout,
    };
    let (mut guest, _) = config
        .launcher
        .launch(&launch)
        .with_context(|| format!("the guest did not start (logs in {})", dir.display()))?;
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

/// Says why the session ended, with each crash's summary (module frames at
/// file:line) and where the logs are.
pub(crate) fn report_crash(
    mut crashes: Vec<crate::outcome::Crash>,
    why: &str,
    modules: &[PathBuf],
    kernel_symbols: Option<&(PathBuf, PathBuf)>,
    logs: &Path,
) {
    crate::runner::symbolize_all(&mut crashes, modules, kernel_symbols);
    eprintln!();
    say(why);
    for c in &crashes {
        for line in crash_summary(c) {
            eprintln!("  {line}");
        }
    }
    say(&format!("console and kernel log: {}", logs.display()));
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
