//! The guest kit of a kernel profile: kernel image, matching headers and a
//! static busybox, fetched once into the cache and used offline after that.
//!
//! Cache layout (under the cache root):
//! ```text
//! kernels/<profile>.lock          flock(2) held while fetching
//! kernels/<profile>/current.json  names the kit in use (written last, atomically)
//! kernels/<profile>/<kit>/        one extracted kit, renamed into place whole
//! apt/                            private apt lists
//! ```
//! A kit directory appears only by `rename(2)` of a fully extracted staging
//! directory, and `current.json` only by rename after that, so an interrupted
//! fetch leaves at most a `.staging-*` directory that nothing trusts (and the
//! next fetch removes). Concurrent runs serialise on the lock; a run that
//! waited re-reads `current.json` and finds the kit the other one made.

use crate::apt::{self, Apt, AptError, PackageInfo};
use crate::lock::Lock;
use crate::profile::KernelProfile;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// A ready-to-use kit (paths absolute).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Kit {
    pub profile: String,
    /// `uname -r` of the kernel, e.g. `6.1.0-56-cloud-amd64`.
    pub release: String,
    /// Debian version of the image package, e.g. `6.1.192-2`.
    pub version: String,
    pub vmlinuz: PathBuf,
    /// Headers tree to pass as `make -C`.
    pub headers: PathBuf,
    pub busybox: PathBuf,
}

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
    #[error("the packages of `{profile}` do not contain {what}; check the recipe's package names")]
    Incomplete { profile: String, what: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KitError + '_ {
    move |source| KitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Serialize, Deserialize)]
struct Current {
    kit: String,
}

/// Progress callbacks for long steps (download, extraction).
pub trait Progress {
    fn step(&mut self, message: &str);
}

impl<F: FnMut(&str)> Progress for F {
    fn step(&mut self, message: &str) {
        self(message)
    }
}

/// The kit already in the cache, if any (no network, no lock).
pub fn cached(cache: &Path, profile: &KernelProfile) -> Option<Kit> {
    let dir = cache.join("kernels").join(&profile.name);
    let current: Current =
        serde_json::from_slice(&fs::read(dir.join("current.json")).ok()?).ok()?;
    let kit: Kit =
        serde_json::from_slice(&fs::read(dir.join(&current.kit).join("kit.json")).ok()?).ok()?;
    (kit.vmlinuz.is_file() && kit.busybox.is_file() && kit.headers.is_dir()).then_some(kit)
}

/// Returns the cached kit, fetching it first when missing or when `refresh`.
pub fn ensure(
    cache: &Path,
    profile: &KernelProfile,
    refresh: bool,
    progress: &mut dyn Progress,
) -> Result<Kit, KitError> {
    if !refresh {
        if let Some(kit) = cached(cache, profile) {
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
    if !refresh {
        if let Some(kit) = cached(cache, profile) {
            return Ok(kit);
        }
    }
    fetch(cache, profile, progress).map_err(|e| match (e, cached(cache, profile)) {
        (KitError::Apt(a), None) => KitError::Unavailable {
            profile: profile.name.clone(),
            cache: cache.to_path_buf(),
            reason: a.to_string(),
        },
        (e, _) => e,
    })
}

fn fetch(
    cache: &Path,
    profile: &KernelProfile,
    progress: &mut dyn Progress,
) -> Result<Kit, KitError> {
    let apt = Apt::new(&cache.join("apt"));
    progress.step("updating private package lists from the host's apt sources");
    apt.update()?;
    let image = follow_meta(&apt, &profile.image_package, "linux-image-")?;
    let headers = follow_meta(&apt, &profile.headers_package, "linux-headers-")?;
    let mut packages = vec![image.clone(), headers.clone()];
    for dep in &headers.depends {
        if dep.starts_with("linux-headers-") || dep.starts_with("linux-kbuild-") {
            packages.push(apt.show(dep)?);
        }
    }
    packages.push(apt.show("busybox-static")?);

    let dir = cache.join("kernels").join(&profile.name);
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
    let staged_headers = root
        .join("usr/src")
        .join(format!("linux-headers-{release}"));
    let incomplete = |what: String| KitError::Incomplete {
        profile: profile.name.clone(),
        what,
    };
    if !staged_headers.join("Makefile").is_file() {
        return Err(incomplete(format!(
            "usr/src/linux-headers-{release}/Makefile"
        )));
    }
    let vmlinuz_rel = Path::new("boot").join(format!("vmlinuz-{release}"));
    if !root.join(&vmlinuz_rel).is_file() {
        return Err(incomplete(vmlinuz_rel.display().to_string()));
    }
    if !root.join("bin/busybox").is_file() {
        return Err(incomplete("bin/busybox".into()));
    }
    // Rewrite absolute references after the move, against the final path.
    let final_root = final_dir.join("root");
    let kit = Kit {
        profile: profile.name.clone(),
        release: release.clone(),
        version: image.version.clone(),
        vmlinuz: final_root.join(&vmlinuz_rel),
        headers: final_root
            .join("usr/src")
            .join(format!("linux-headers-{release}")),
        busybox: final_root.join("bin/busybox"),
    };
    relocate_makefile(&staged_headers.join("Makefile"), &final_root)?;
    let kit_json = staging.path().join("kit.json");
    fs::write(
        &kit_json,
        serde_json::to_vec_pretty(&kit).expect("kit serialises"),
    )
    .map_err(io_err(&kit_json))?;

    if final_dir.exists() {
        // A refresh that resolved to the kit we already have.
        fs::remove_dir_all(&final_dir).map_err(io_err(&final_dir))?;
    }
    let staged = staging.keep();
    fs::rename(&staged, &final_dir).map_err(io_err(&final_dir))?;
    let current_tmp = dir.join(".current.json.tmp");
    fs::write(
        &current_tmp,
        serde_json::to_vec(&Current { kit: kit_name }).expect("serialises"),
    )
    .map_err(io_err(&current_tmp))?;
    fs::rename(&current_tmp, dir.join("current.json")).map_err(io_err(&dir))?;
    Ok(kit)
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

/// Debian's headers `Makefile` includes the `-common` tree by absolute path;
/// point it into the kit instead.
fn relocate_makefile(makefile: &Path, final_root: &Path) -> Result<(), KitError> {
    let text = fs::read_to_string(makefile).map_err(io_err(makefile))?;
    let fixed = relocate_includes(&text, final_root);
    fs::write(makefile, fixed).map_err(io_err(makefile))
}

/// Rewrites `include /usr/...` lines to `include <root>/usr/...`.
pub fn relocate_includes(text: &str, root: &Path) -> String {
    text.lines()
        .map(|l| match l.strip_prefix("include /") {
            Some(rest) => format!("include {}", root.join(rest).display()),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
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
    fn makefile_include_is_relocated() {
        let t = "include /usr/src/linux-headers-6.1.0-56-common/Makefile\n";
        let out = relocate_includes(t, Path::new("/cache/kit/root"));
        assert_eq!(
            out,
            "include /cache/kit/root/usr/src/linux-headers-6.1.0-56-common/Makefile\n"
        );
    }

    #[test]
    fn missing_cache_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let p = crate::profile::load(crate::profile::DEFAULT_PROFILE).unwrap();
        assert!(cached(dir.path(), &p).is_none());
    }
}
