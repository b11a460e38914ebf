//! The static busybox that every guest's initramfs carries, for kernel
//! sources that bring none (host, local): Debian's `busybox-static`, fetched
//! once into the cache with the same private apt state as the Debian kits.

use super::record::{whole_elf, write_atomic};
use super::{io_err, KitError, Progress};
use crate::apt::{self, Apt};
use crate::lock::Lock;
use std::fs;
use std::path::{Path, PathBuf};

/// `<cache>/busybox/busybox`, fetched when missing or damaged. `updated`
/// is apt state whose lists the caller has just updated (so they are not
/// updated twice); without it the cache's own is updated when needed.
pub fn ensure(
    cache: &Path,
    updated: Option<&Apt>,
    progress: &mut dyn Progress,
) -> Result<PathBuf, KitError> {
    let dir = cache.join("busybox");
    let target = dir.join("busybox");
    if whole_elf(&target).is_ok() {
        return Ok(target);
    }
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let lock_path = dir.join(".lock");
    let _lock = Lock::exclusive(&lock_path, &mut || {
        progress.step("waiting for another modvm run to fetch busybox")
    })
    .map_err(io_err(&lock_path))?;
    if whole_elf(&target).is_ok() {
        return Ok(target);
    }
    if target.exists() {
        progress.notice(&format!(
            "{} is damaged; fetching it again",
            target.display()
        ));
    }
    let own;
    let apt = match updated {
        Some(apt) => apt,
        None => {
            own = Apt::new(&cache.join("apt"));
            progress.step("updating private package lists from the host's apt sources");
            own.update(&mut |m: &str| progress.notice(m))?;
            &own
        }
    };
    let package = apt.show("busybox-static")?;
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(&dir)
        .map_err(io_err(&dir))?;
    progress.step("downloading busybox-static");
    let debs = apt.download(&[package], staging.path())?;
    let root = staging.path().join("root");
    for deb in &debs {
        apt::extract(deb, &root)?;
    }
    let extracted = root.join("bin/busybox");
    let data = fs::read(&extracted).map_err(|_| KitError::Incomplete {
        profile: "busybox".into(),
        what: "bin/busybox".into(),
    })?;
    write_atomic(&target, &data).map_err(io_err(&target))?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).map_err(io_err(&target))?;
    Ok(target)
}
