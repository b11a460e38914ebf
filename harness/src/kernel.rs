//! The guest kit of a kernel profile: kernel image, matching headers and a
//! static busybox, fetched once into the cache and used offline after that.
//!
//! Cache layout (under the cache root):
//! ```text
//! kernels/<profile>.lock          flock(2) held while fetching
//! kernels/<profile>/current.json  names the kit in use (written last, atomically)
//! kernels/<profile>/<kit>/        one extracted kit, renamed into place whole:
//!     kit.json, manifest.json     its record and shape (see kit_record, kit_manifest)
//!     root/                       the packages' files
//! apt/                            private apt lists
//! ```
//! A kit directory appears only by `rename(2)` of a fully extracted staging
//! directory, and `current.json` only by rename after that, so an interrupted
//! fetch leaves at most a `.staging-*` directory that nothing trusts (and the
//! next fetch removes). Concurrent runs serialise on the lock; a run that
//! waited re-reads `current.json` and finds the kit the other one made.
//! Every use checks the kit against its manifest; a damaged kit is named in
//! one line and fetched again.

use crate::apt::{self, Apt, AptError, PackageInfo};
use crate::kit_record::{self, Current, Record};
pub use crate::kit_record::{CacheState, Kit};
use crate::lock::Lock;
use crate::profile::KernelProfile;
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
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KitError + '_ {
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
    kit_record::inspect(cache, &profile.name)
}

/// The kit already in the cache, if it is usable (no network, no lock).
pub fn cached(cache: &Path, profile: &KernelProfile) -> Option<Kit> {
    match inspect(cache, profile) {
        CacheState::Ready(kit) | CacheState::Unverified(kit) => Some(kit),
        CacheState::Missing | CacheState::Damaged(_) => None,
    }
}

/// Returns the cached kit, fetching it first when missing, damaged or when
/// `refresh`.
pub fn ensure(
    cache: &Path,
    profile: &KernelProfile,
    refresh: bool,
    progress: &mut dyn Progress,
) -> Result<Kit, KitError> {
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
            match kit_record::adopt(&kit) {
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
    let kit = fetch(cache, profile, damage.is_some(), progress).map_err(|e| match (e, damage) {
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

/// Downloads and installs the newest kit; `replaces_damaged` lets it remove
/// the kit it supersedes.
fn fetch(
    cache: &Path,
    profile: &KernelProfile,
    replaces_damaged: bool,
    progress: &mut dyn Progress,
) -> Result<Kit, KitError> {
    let apt = Apt::new(&cache.join("apt"));
    progress.step("updating private package lists from the host's apt sources");
    apt.update(&mut |m: &str| progress.notice(m))?;
    let image = follow_meta(&apt, &profile.image_package, "linux-image-")?;
    let headers = follow_meta(&apt, &profile.headers_package, "linux-headers-")?;
    let mut packages = vec![image.clone(), headers.clone()];
    for dep in &headers.depends {
        if dep.starts_with("linux-headers-") || dep.starts_with("linux-kbuild-") {
            packages.push(apt.show(dep)?);
        }
    }
    packages.push(apt.show("busybox-static")?);

    let dir = kit_record::profile_dir(cache, &profile.name);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    remove_stale_staging(&dir);
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(&dir)
        .map_err(io_err(&dir))?;
    let debs_dir = staging.path().join("debs");
    fs::create_dir_all(&debs_dir).map_err(io_err(&debs_dir))?;
    let total: u64 = packages.iter().map(|p| p.size).sum();
    progress.step(&format!(
        "downloading {} packages ({:.1} MiB): {}",
        packages.len(),
        total as f64 / 1048576.0,
        packages
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let debs = apt.download(&packages, &debs_dir)?;
    let kit_name = format!("{}_{}", image.name, image.version);
    let final_dir = dir.join(&kit_name);
    let root = staging.path().join("root");
    for deb in &debs {
        progress.step(&format!(
            "extracting {}",
            deb.file_name().unwrap_or_default().to_string_lossy()
        ));
        apt::extract(deb, &root)?;
    }
    fs::remove_dir_all(&debs_dir).map_err(io_err(&debs_dir))?;

    let release = image
        .name
        .strip_prefix("linux-image-")
        .unwrap_or(&image.name)
        .trim_end_matches("-unsigned")
        .to_string();
    let record = Record::new(&profile.name, &release, &image.version, &final_dir);
    let files = record.files.clone().expect("new records name their files");
    let incomplete = |what: &str| KitError::Incomplete {
        profile: profile.name.clone(),
        what: what.trim_start_matches("root/").to_string(),
    };
    let staged = |rel: &str| staging.path().join(rel);
    let makefile_rel = format!("{}/Makefile", files.headers);
    for rel in [&makefile_rel, &files.vmlinuz, &files.busybox] {
        if !staged(rel).is_file() {
            return Err(incomplete(rel));
        }
    }
    let makefile = staged(&makefile_rel);
    let text = fs::read_to_string(&makefile).map_err(io_err(&makefile))?;
    let depth = Path::new(&files.headers).iter().count() - 1;
    fs::write(
        &makefile,
        kit_record::relative_includes(&text, depth, &kit_name),
    )
    .map_err(io_err(&makefile))?;
    progress.step("recording the kit's manifest");
    kit_record::install(staging.path(), &record).map_err(io_err(staging.path()))?;

    let previous = fs::read(dir.join("current.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Current>(&b).ok())
        .map(|c| dir.join(c.kit))
        .filter(|p| replaces_damaged && *p != final_dir);
    if final_dir.exists() {
        // A refresh or repair that resolved to the kit we already have.
        fs::remove_dir_all(&final_dir).map_err(io_err(&final_dir))?;
    }
    let staged_dir = staging.keep();
    fs::rename(&staged_dir, &final_dir).map_err(io_err(&final_dir))?;
    kit_record::write_atomic(
        &dir.join("current.json"),
        &serde_json::to_vec(&Current { kit: kit_name }).expect("serialises"),
    )
    .map_err(io_err(&dir))?;
    if let Some(old) = previous {
        // A damaged kit that the new one replaces is of no use to anyone.
        let _ = fs::remove_dir_all(old);
    }
    Ok(record.kit(&final_dir))
}

/// Follows a meta-package (e.g. `linux-image-cloud-amd64`) to the versioned
/// package of the same flavour it depends on (`linux-image-6.1.0-56-cloud-amd64`);
/// a versioned package has no such dependency and is returned as it is.
fn follow_meta(apt: &Apt, package: &str, prefix: &str) -> Result<PackageInfo, KitError> {
    let info = apt.show(package)?;
    match flavoured_target(&info, prefix) {
        Some(target) => Ok(apt.show(&target)?),
        None => Ok(info),
    }
}

/// The dependency that shares the package's prefix and flavour suffix.
fn flavoured_target(info: &PackageInfo, prefix: &str) -> Option<String> {
    let parts: Vec<&str> = info.name.rsplitn(3, '-').collect();
    if parts.len() < 3 {
        return None;
    }
    let flavour = format!("-{}-{}", parts[1], parts[0]);
    info.depends
        .iter()
        .find(|d| d.starts_with(prefix) && d.ends_with(&flavour) && **d != info.name)
        .cloned()
}

fn remove_stale_staging(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".staging-") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, depends: &[&str]) -> PackageInfo {
        PackageInfo {
            name: name.into(),
            version: "1".into(),
            depends: depends.iter().map(|d| d.to_string()).collect(),
            size: 0,
        }
    }

    #[test]
    fn meta_package_is_followed_to_its_flavour() {
        let meta = info(
            "linux-image-cloud-amd64",
            &["linux-image-6.1.0-56-cloud-amd64"],
        );
        assert_eq!(
            flavoured_target(&meta, "linux-image-").as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        let bpo = info(
            "linux-image-6.12-cloud-amd64",
            &["linux-image-6.12.95+deb12-cloud-amd64"],
        );
        assert_eq!(
            flavoured_target(&bpo, "linux-image-").as_deref(),
            Some("linux-image-6.12.95+deb12-cloud-amd64")
        );
    }

    #[test]
    fn versioned_package_is_kept() {
        let hdr = info(
            "linux-headers-6.1.0-56-cloud-amd64",
            &["linux-headers-6.1.0-56-common", "linux-kbuild-6.1"],
        );
        assert_eq!(flavoured_target(&hdr, "linux-headers-"), None);
        let img = info("linux-image-6.1.0-56-cloud-amd64", &["kmod", "linux-base"]);
        assert_eq!(flavoured_target(&img, "linux-image-"), None);
    }

    #[test]
    fn missing_cache_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let p = crate::profile::load(crate::profile::DEFAULT_PROFILE).unwrap();
        assert!(cached(dir.path(), &p).is_none());
    }
}
