//! The guest kit of a kernel profile: kernel image, matching headers and a
//! static busybox, fetched once into the cache and used offline after that.
//!
//! Cache layout (under the cache root):
//! ```text
//! kernels/<profile>.lock          flock(2) held while fetching
//! kernels/<profile>/current.json  names the kit in use (written last, atomically)
//! kernels/<profile>/<kit>/        one extracted kit, renamed into place whole:
//!     kit.json, manifest.json     its record and shape (see record.rs, manifest.rs)
//!     root/                       the packages' files
//! apt/, apt-<suite>/               private apt state for the host's sources
//! apt-mirror-<key>/               private apt state for a named Debian archive
//! ```
//! A kit directory appears only by `rename(2)` of a fully extracted staging
//! directory, and `current.json` only by rename after that, so an interrupted
//! fetch leaves at most a `.staging-*` directory that nothing trusts (and the
//! next fetch removes). Concurrent runs serialise on the lock; a run that
//! waited re-reads `current.json` and finds the kit the other one made.
//! Every use checks the kit against its manifest; a damaged kit is named in
//! one line and fetched again.

mod archive;
pub mod busybox;
pub mod debian;
pub mod guest_modules;
pub mod guest_packages;
pub mod host;
pub mod local;
pub mod manifest;
pub mod profile;
pub mod record;
pub mod resolve;
pub mod source;
mod source_config;
pub mod symvers;

use crate::apt::{AptError, Sources};
use crate::lock::Lock;
pub use profile::{KernelProfile, Source};
pub use record::{CacheState, Kit};
use std::fs;
use std::path::{Path, PathBuf};

/// Why a kit could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    #[error(transparent)]
    Apt(#[from] AptError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "kernel profile `{profile}` is not in the cache ({cache}) and fetching it failed: {reason}"
    )]
    Unavailable {
        profile: String,
        cache: PathBuf,
        reason: String,
    },
    #[error("the cached kit of kernel profile `{profile}` is damaged ({damage}) and fetching it again failed ({reason}); run `modvm fetch --refresh` once the host's apt sources are reachable")]
    Damaged {
        profile: String,
        damage: String,
        reason: String,
    },
    #[error("the packages of `{profile}` do not contain {what}; check the recipe's package names")]
    Incomplete { profile: String, what: String },
    #[error("the running kernel {release} cannot be used: {problem}")]
    Host { release: String, problem: String },
    #[error("kernel profile `{profile}`: {problem}")]
    Local { profile: String, problem: String },
    #[error("cannot build kernel profile `{profile}`: {problem}")]
    Build { profile: String, problem: String },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KitError + '_ {
    move |source| KitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Progress callbacks for long steps (download, extraction).
pub trait Progress {
    /// A passing step (may be shown on a spinner and replaced).
    fn step(&mut self, message: &str);
    /// A line the user must see (damage found, something rebuilt).
    fn notice(&mut self, message: &str) {
        self.step(message)
    }
}

impl<F: FnMut(&str)> Progress for F {
    fn step(&mut self, message: &str) {
        self(message)
    }
}

/// What the cache holds for `profile`, checked against the kit's manifest
/// (no network, no lock, no writes).
pub fn inspect(cache: &Path, profile: &KernelProfile) -> CacheState {
    record::inspect(cache, &profile.name)
}

/// The kit already in the cache, if it is usable (no network, no lock).
pub fn cached(cache: &Path, profile: &KernelProfile) -> Option<Kit> {
    match inspect(cache, profile) {
        CacheState::Ready(kit) | CacheState::Unverified(kit) => Some(kit),
        CacheState::Missing | CacheState::Damaged(_) => None,
    }
}

/// The kit of `profile`, ready to use: from the cache (fetched first when
/// missing, damaged or when `refresh`, from `sources`) or from where the
/// source names.
pub fn ensure(
    cache: &Path,
    profile: &KernelProfile,
    refresh: bool,
    sources: &Sources,
    progress: &mut dyn Progress,
) -> Result<Kit, KitError> {
    match &profile.source {
        Source::Debian { .. } | Source::Source { .. } => {
            ensure_cached(cache, profile, refresh, sources, progress)
        }
        Source::Local { image, build } => {
            local::kit(profile, image, build, cache, sources, progress)
        }
        Source::Host => host::kit(&profile.name, cache, sources, progress),
    }
}

/// Whether the profile's kernel lives in modvm's cache (fetched or built).
pub fn is_cached_kind(profile: &KernelProfile) -> bool {
    matches!(
        profile.source,
        Source::Debian { .. } | Source::Source { .. }
    )
}

fn ensure_cached(
    cache: &Path,
    profile: &KernelProfile,
    refresh: bool,
    sources: &Sources,
    progress: &mut dyn Progress,
) -> Result<Kit, KitError> {
    // A source kit built from another fragment (modvm's own changed, or the
    // user edited theirs) lacks what the fragment now promises: build again.
    let refresh = refresh || source::is_stale(cache, profile);
    if !refresh {
        if let CacheState::Ready(kit) = inspect(cache, profile) {
            return Ok(kit);
        }
    }
    let kernels = cache.join("kernels");
    fs::create_dir_all(&kernels).map_err(io_err(&kernels))?;
    let lock_path = kernels.join(format!("{}.lock", profile.name));
    let _lock = Lock::exclusive(&lock_path, &mut || {
        progress.step("waiting for another modvm run to finish fetching this kernel")
    })
    .map_err(io_err(&lock_path))?;
    let mut damage = None;
    match inspect(cache, profile) {
        CacheState::Ready(kit) if !refresh => return Ok(kit),
        CacheState::Unverified(kit) if !refresh => {
            progress.step("recording a manifest of the cached kit (made by an older modvm)");
            match record::adopt(&kit) {
                Ok(()) => return Ok(kit),
                Err(d) => damage = Some(d),
            }
        }
        CacheState::Damaged(d) => damage = Some(d),
        _ => {}
    }
    if let Some(d) = &damage {
        progress.notice(&format!(
            "the cached kernel kit is damaged: {d}; fetching it again"
        ));
    } else {
        progress.notice(&format!(
            "fetching kernel profile {} into {}",
            profile.name,
            cache.display()
        ));
    }
    let made = match profile.source {
        Source::Source { .. } => source::build(cache, profile, sources, progress),
        _ => debian::fetch(cache, profile, damage.is_some(), sources, progress),
    };
    let kit = made.map_err(|e| match (archive::explain(e, sources), damage) {
        (KitError::Apt(a), Some(damage)) => KitError::Damaged {
            profile: profile.name.clone(),
            damage,
            reason: a.summary(),
        },
        (KitError::Apt(a), None) if cached(cache, profile).is_none() => KitError::Unavailable {
            profile: profile.name.clone(),
            cache: cache.to_path_buf(),
            reason: a.to_string(),
        },
        (e, _) => e,
    })?;
    progress.notice(&format!("kernel {} ({}) cached", kit.release, kit.version));
    Ok(kit)
}

/// The profile's cache directory and a fresh staging directory in it for
/// a kit being installed; what interrupted installs left there is removed
/// (a `.staging-*` directory is never a kit). [`commit_kit`] finishes it.
pub(crate) fn begin_kit(
    cache: &Path,
    profile: &str,
) -> Result<(PathBuf, tempfile::TempDir), KitError> {
    let dir = record::profile_dir(cache, profile);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    record::remove_stale_staging(&dir);
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(&dir)
        .map_err(io_err(&dir))?;
    Ok((dir, staging))
}

/// Makes a finished staging directory the profile's kit: renamed into
/// place whole, then named by `current.json` (written atomically), so a
/// reader sees the old kit or the new one, never half of one. With
/// `replaces_damaged`, the kit it supersedes is removed.
pub(crate) fn commit_kit(
    dir: &Path,
    staging: tempfile::TempDir,
    kit_name: &str,
    record: &record::Record,
    replaces_damaged: bool,
) -> Result<Kit, KitError> {
    let final_dir = dir.join(kit_name);
    let previous = fs::read(dir.join("current.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<record::Current>(&b).ok())
        .map(|c| dir.join(c.kit))
        .filter(|p| replaces_damaged && *p != final_dir);
    if final_dir.exists() {
        // A refresh or repair that resolved to the kit we already have.
        fs::remove_dir_all(&final_dir).map_err(io_err(&final_dir))?;
    }
    let staged = staging.keep();
    fs::rename(&staged, &final_dir).map_err(io_err(&final_dir))?;
    record::write_atomic(
        &dir.join("current.json"),
        &serde_json::to_vec(&record::Current {
            kit: kit_name.to_string(),
        })
        .expect("serialises"),
    )
    .map_err(io_err(dir))?;
    if let Some(old) = previous {
        // A damaged kit that the new one replaces is of no use to anyone.
        let _ = fs::remove_dir_all(old);
    }
    Ok(record.kit(&final_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_cache_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let p = profile::load(profile::DEFAULT_PROFILE).unwrap();
        assert!(cached(dir.path(), &p).is_none());
    }
}
