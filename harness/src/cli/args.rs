//! The flags every command that starts a guest shares, and the parsers
//! that bound every number where it enters.

use crate::accel::AccelMode;
use crate::apt::mirror::{self, Mirror, Sources};
use crate::spec;
use clap::Args;
use std::path::PathBuf;

use super::KitArgs;

/// How to get and start guests: `test`, `run` and `shell` share these.
#[derive(Args, Debug, Clone)]
pub struct GuestArgs {
    #[command(flatten)]
    pub kit: KitArgs,
    /// CPU acceleration; `auto` uses KVM only after a probe boot proves it works.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: AccelMode,
    /// Where builds and per-test logs go.
    #[arg(long, default_value = "target/modvm")]
    pub out: PathBuf,
    /// Run directories kept under `<out>/runs` (the newest; 0 keeps all).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub keep_runs: usize,
    /// Seconds a guest may take to reach its shell (1 to 3600) [default: the kernel profile's, 60 for the Debian ones]
    #[arg(long, value_parser = boot_timeout_s)]
    pub boot_timeout: Option<f64>,
    /// Guest memory in MiB (96 to 65536) [default: the kernel profile's, 256 for the Debian ones]
    #[arg(long, value_parser = memory_mib)]
    pub memory: Option<u32>,
    /// Guest CPUs for tests whose spec sets no `smp` (1 to 16).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=spec::MAX_SMP as i64))]
    pub smp: u32,
    /// Boot every guest instead of restoring a saved one (the saved guests
    /// live in the cache under `snapshots/`).
    #[arg(long)]
    pub cold: bool,
    /// Extra kernel command-line parameters.
    #[arg(long, default_value = "")]
    pub append: String,
    /// QEMU binary.
    #[arg(long, default_value = crate::machine::Arch::DEFAULT.qemu_binary())]
    pub qemu: PathBuf,
    /// Stream every guest's console and kernel log to stderr while it runs.
    #[arg(long)]
    pub console: bool,
    /// Boot with `panic_on_warn=1`: a kernel WARNING ends the guest at once.
    #[arg(long)]
    pub panic_on_warn: bool,
    /// Boot with `oops=panic`: an oops ends the guest at once.
    #[arg(long)]
    pub panic_on_oops: bool,
    /// Open QEMU's gdb stub on 127.0.0.1:PORT (any free port without one)
    /// and hold each guest until a debugger continues it; prints the `gdb`
    /// command to attach. Turns deadlines off (boot, steps) and implies
    /// `-j 1`; the kernel boots with `nokaslr`.
    #[arg(long, value_name = "PORT", num_args = 0..=1, require_equals = true, default_missing_value = "0")]
    pub gdb: Option<u16>,
    /// A make variable for the module's build, e.g. `W=1`, `C=1`,
    /// `ccflags-y=-DDEBUG` (repeatable); changing them rebuilds.
    #[arg(long, value_name = "NAME=VALUE", value_parser = kbuild_arg)]
    pub kbuild_arg: Vec<String>,
}

/// Where Debian kernels and busybox come from: every command that may
/// fetch a kit takes these (and the environment variables, for CI).
#[derive(Args, Debug, Clone, Default)]
pub struct ArchiveArgs {
    /// A Debian archive to fetch the Debian kernels and busybox from,
    /// instead of the host's apt sources (e.g. http://HOST/debian; needed
    /// on hosts whose apt sources are not Debian's, such as Ubuntu).
    #[arg(long, env = "MODVM_DEBIAN_MIRROR", value_name = "URL", value_parser = mirror::parse_url, global = true)]
    pub debian_mirror: Option<String>,
    /// The keyring the archive's Release file must be signed with
    /// (with --debian-mirror) [default: /usr/share/keyrings/debian-archive-keyring.gpg]
    #[arg(long, env = "MODVM_DEBIAN_KEYRING", value_name = "FILE", value_parser = mirror::parse_keyring, global = true)]
    pub debian_keyring: Option<PathBuf>,
    /// The archive's suite for profiles that name none (with
    /// --debian-mirror) [default: the host's Debian release, else bookworm]
    #[arg(long, env = "MODVM_DEBIAN_SUITE", value_name = "SUITE", value_parser = mirror::parse_suite, global = true)]
    pub debian_suite: Option<String>,
}

impl ArchiveArgs {
    pub fn sources(&self) -> Sources {
        match &self.debian_mirror {
            None => Sources::Host,
            Some(url) => Sources::Mirror(Mirror {
                url: url.clone(),
                keyring: self
                    .debian_keyring
                    .clone()
                    .unwrap_or_else(|| mirror::DEFAULT_KEYRING.into()),
                suite: self.debian_suite.clone(),
            }),
        }
    }
}

fn kbuild_arg(text: &str) -> Result<String, String> {
    crate::kbuild::check_make_arg(text).map(|()| text.to_string())
}

/// Below this the cloud kernel does not reach its shell (64 MiB fails).
const MIN_MEMORY_MIB: u32 = 96;
/// 64 GiB: far beyond what a module test needs, and small enough that QEMU
/// reports a host shortage instead of an overflow.
const MAX_MEMORY_MIB: u32 = 65536;
/// An hour: a boot that takes longer has hung.
const MAX_BOOT_TIMEOUT_S: f64 = 3600.0;
/// A day: longer deadlines are typos, and `Duration` cannot hold every `f64`.
const MAX_STEP_TIMEOUT_S: f64 = 86400.0;

/// More guests than this at once is a typo: each needs its own memory
/// (256 MiB by default) and most of a CPU under TCG.
pub(super) const MAX_JOBS: usize = 64;

/// Parses seconds and checks them against a range at the edge, so that no
/// later `Duration` conversion can see NaN, infinity or an overflow.
pub(super) fn seconds_in(
    text: &str,
    min: f64,
    min_inclusive: bool,
    max: f64,
) -> Result<f64, String> {
    let range = if min_inclusive {
        format!("from {min} to {max} seconds")
    } else {
        format!("above {min} and at most {max} seconds")
    };
    let v: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds; allowed: {range}"))?;
    let above_min = if min_inclusive { v >= min } else { v > min };
    if v.is_finite() && above_min && v <= max {
        Ok(v)
    } else {
        Err(format!("{text} is out of range; allowed: {range}"))
    }
}

pub(super) fn boot_timeout_s(text: &str) -> Result<f64, String> {
    seconds_in(text, 1.0, true, MAX_BOOT_TIMEOUT_S)
}

pub(super) fn step_timeout_s(text: &str) -> Result<f64, String> {
    seconds_in(text, 0.0, false, MAX_STEP_TIMEOUT_S)
}

pub(super) fn memory_mib(text: &str) -> Result<u32, String> {
    let range = format!("from {MIN_MEMORY_MIB} to {MAX_MEMORY_MIB} MiB (the guest kernel needs at least {MIN_MEMORY_MIB})");
    match text.trim().parse::<u64>() {
        Ok(v) if (u64::from(MIN_MEMORY_MIB)..=u64::from(MAX_MEMORY_MIB)).contains(&v) => {
            Ok(v as u32)
        }
        Ok(_) => Err(format!("{text} is out of range; allowed: {range}")),
        Err(_) => Err(format!(
            "`{text}` is not a whole number of MiB; allowed: {range}"
        )),
    }
}

pub(super) fn jobs(text: &str) -> Result<usize, String> {
    let range = format!("from 1 to {MAX_JOBS} guests at once");
    match text.trim().parse::<u64>() {
        Ok(v) if (1..=MAX_JOBS as u64).contains(&v) => Ok(v as usize),
        Ok(_) => Err(format!("{text} is out of range; allowed: {range}")),
        Err(_) => Err(format!(
            "`{text}` is not a whole number of guests; allowed: {range}"
        )),
    }
}

/// One guest per CPU: under TCG each guest keeps a CPU busy.
pub(super) fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_JOBS)
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use super::*;
    use clap::Parser;

    fn fetch(args: &[&str]) -> Result<ArchiveArgs, clap::Error> {
        let mut all = vec!["modvm", "fetch"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all)?.command {
            Command::Fetch(a) => Ok(a.kit.archive),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn without_a_mirror_the_host_sources_are_used() {
        // The variables may be set where the tests run; flags are what is tested here.
        if std::env::var_os("MODVM_DEBIAN_MIRROR").is_none() {
            assert_eq!(fetch(&[]).unwrap().sources(), Sources::Host);
        }
    }

    #[test]
    fn a_mirror_gets_the_default_keyring_unless_one_is_named() {
        let a = fetch(&["--debian-mirror", "http://127.0.0.1:8/debian/"]).unwrap();
        let Sources::Mirror(m) = a.sources() else {
            panic!("{a:?}")
        };
        assert_eq!(m.url, "http://127.0.0.1:8/debian");
        if std::env::var_os("MODVM_DEBIAN_KEYRING").is_none() {
            assert_eq!(m.keyring, PathBuf::from(mirror::DEFAULT_KEYRING));
        }
        let a = fetch(&[
            "--debian-mirror=file:///srv/debian",
            "--debian-keyring=/k/x.gpg",
            "--debian-suite=trixie",
        ])
        .unwrap();
        let Sources::Mirror(m) = a.sources() else {
            panic!("{a:?}")
        };
        assert_eq!(
            (m.keyring, m.suite.as_deref()),
            (PathBuf::from("/k/x.gpg"), Some("trixie"))
        );
    }

    #[test]
    fn a_bad_mirror_url_is_a_usage_error_naming_the_fix() {
        for bad in ["ftp://m/debian", "http://m/deb ian", "debian"] {
            let e = fetch(&["--debian-mirror", bad]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
            let text = e.to_string();
            assert!(
                text.contains("--debian-mirror") && text.contains("http://HOST/debian"),
                "{text}"
            );
        }
    }

    #[test]
    fn every_command_that_fetches_takes_the_mirror() {
        for cmd in [
            &["test", "--debian-mirror", "http://h/debian"][..],
            &["run", "--debian-mirror", "http://h/debian", "--", "true"],
            &["shell", "--debian-mirror", "http://h/debian"],
            &["doctor", "--debian-mirror", "http://h/debian"],
            &[
                "kernels",
                "--debian-mirror",
                "http://h/debian",
                "fetch",
                "debug",
            ],
            &[
                "kernels",
                "fetch",
                "debug",
                "--debian-mirror",
                "http://h/debian",
            ],
        ] {
            let mut all = vec!["modvm"];
            all.extend_from_slice(cmd);
            Cli::try_parse_from(&all).unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        }
    }
}
