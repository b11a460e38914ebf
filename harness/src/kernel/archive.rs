//! Which apt a kit's Debian packages come through: the host's sources
//! (a Debian host), or the Debian archive the user named. Each kind keeps
//! its state apart under the cache, since their package lists differ.

use super::{KitError, Progress};
use crate::apt::os_release::OsRelease;
use crate::apt::{self, Apt, Sources};
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
    let (apt, step) = match sources {
        Sources::Host => match suite {
            None => (
                Apt::new(&cache.join("apt")),
                "updating private package lists from the host's apt sources".to_string(),
            ),
            Some(s) => (
                Apt::with_suite(&cache.join(format!("apt-{s}")), s)
                    .map_err(|e| apt::explain_for_host(e, &host))?,
                format!("updating private package lists (the host's apt sources and {s})"),
            ),
        },
        Sources::Mirror(mirror) => {
            let suites = mirror.suites(suite, &host);
            let apt = Apt::mirror(&mirror.state_dir(cache, &suites), mirror, &suites)?;
            (
                apt,
                format!(
                    "updating private package lists from the Debian archive at {} ({})",
                    mirror.url,
                    suites.join(", ")
                ),
            )
        }
    };
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
