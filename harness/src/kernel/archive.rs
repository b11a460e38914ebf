//! Which apt a kit's Debian packages come through: the host's sources
//! (a Debian host), or the Debian archive the user named. Each kind keeps
//! its state apart under the cache, since their package lists differ.

use super::{KitError, Progress};
use crate::apt::os_release::OsRelease;
use crate::apt::{self, Apt, Sources};
use crate::lock::Lock;
use std::path::Path;

/// apt for a profile's packages (`suite`: the profile's own suite, e.g.
/// `bookworm-backports`), its lists updated. Fails before anything runs
/// when the host has no apt or the named archive's keyring is missing.
pub(super) fn updated_apt(
    cache: &Path,
    sources: &Sources,
    suite: Option<&str>,
    progress: &mut dyn Progress,
) -> Result<Apt, KitError> {
    apt::check_tools()?;
    let host = OsRelease::of_host();
    let suites = match sources {
        Sources::Mirror(mirror) => mirror.suites(suite, &host),
        Sources::Host => Vec::new(),
    };
    let (root, step) = match (sources, suite) {
        (Sources::Host, None) => (
            cache.join("apt"),
            "updating private package lists from the host's apt sources".to_string(),
        ),
        (Sources::Host, Some(s)) => (
            cache.join(format!("apt-{s}")),
            format!("updating private package lists (the host's apt sources and {s})"),
        ),
        (Sources::Mirror(mirror), _) => (
            mirror.state_dir(cache, &suites),
            format!(
                "updating private package lists from the Debian archive at {} ({})",
                mirror.url,
                suites.join(", ")
            ),
        ),
    };
    // Runs that share this state take turns, from before its files are
    // written until their apt is dropped (apt itself refuses a second
    // update instead of waiting, and an update under another run's reads
    // changes the lists it reads).
    let lock_path = root.join("turn.lock");
    let turn = std::fs::create_dir_all(&root)
        .and_then(|()| {
            Lock::exclusive(&lock_path, &mut || {
                progress.notice("waiting for another modvm run that uses the same package lists")
            })
        })
        .map_err(super::io_err(&lock_path))?;
    let apt = match (sources, suite) {
        (Sources::Host, None) => Apt::new(&root),
        (Sources::Host, Some(s)) => {
            Apt::with_suite(&root, s).map_err(|e| apt::explain_for_host(e, &host))?
        }
        (Sources::Mirror(mirror), _) => Apt::mirror(&root, mirror, &suites)?,
    }
    .hold(turn);
    progress.step(&step);
    apt.update(&mut |m: &str| progress.notice(m))?;
    Ok(apt)
}

/// A package the host's sources lack, explained for a host that is not
/// Debian (see [`apt::explain_for_host`]); other errors pass unchanged.
pub(super) fn explain(e: KitError, sources: &Sources) -> KitError {
    match (e, sources) {
        (KitError::Apt(a), Sources::Host) => {
            KitError::Apt(apt::explain_for_host(a, &OsRelease::of_host()))
        }
        (e, _) => e,
    }
}
