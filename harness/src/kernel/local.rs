//! A kernel the user built: its bzImage and the build tree it came from
//! (`make bzImage modules_prepare`), used in place.

use super::profile::KernelProfile;
use super::record::{whole_bzimage, Kit};
use super::{busybox, KitError, Progress};
use crate::apt::Sources;
use std::path::{Path, PathBuf};

/// The kit of a local profile; `Err` when a part is missing or when the
/// image and the build tree are not the same kernel (modules built against
/// the tree would be refused by the image: "disagrees about version of
/// symbol" or a vermagic mismatch).
pub fn kit(
    profile: &KernelProfile,
    image: &Path,
    build: &Path,
    cache: &Path,
    sources: &Sources,
    progress: &mut dyn Progress,
) -> Result<Kit, KitError> {
    let image = resolve(&profile.base, image);
    let build = resolve(&profile.base, build);
    let bad = |problem: String| KitError::Local {
        profile: profile.name.clone(),
        problem,
    };
    whole_bzimage(&image).map_err(|e| bad(format!("{}: {e}", image.display())))?;
    let release_file = build.join("include/config/kernel.release");
    let release = std::fs::read_to_string(&release_file)
        .map(|s| s.trim().to_string())
        .map_err(|e| {
            bad(format!(
                "{}: {e}; is {} a kernel build tree? run `make modules_prepare` in it",
                release_file.display(),
                build.display()
            ))
        })?;
    let image_release = image_release(&image).ok_or_else(|| {
        bad(format!(
            "{}: no version string in the image",
            image.display()
        ))
    })?;
    if image_release != release {
        return Err(bad(format!(
            "vermagic mismatch: {} is kernel {image_release}, but the build tree {} is for {release}; point `image` at the bzImage that tree built (arch/x86/boot/bzImage) or rebuild",
            image.display(),
            build.display()
        )));
    }
    let busybox = busybox::ensure(cache, None, sources, progress)?;
    Ok(Kit {
        profile: profile.name.clone(),
        release: release.clone(),
        version: "local".into(),
        dir: build.clone(),
        vmlinuz: image,
        headers: build.clone(),
        busybox,
        system_map: Some(build.join("System.map")).filter(|p| p.is_file()),
        vmlinux: Some(build.join("vmlinux")).filter(|p| p.is_file()),
        identity: Kit::identity_of(&release, &build.join(".config")),
    })
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The release at the start of the image's version string (the setup
/// header's `kernel_version` field points at "6.1.0 (user@host) #1 ...").
pub fn image_release(image: &Path) -> Option<String> {
    let data = std::fs::read(image).ok()?;
    let at = u16::from_le_bytes(data.get(0x20e..0x210)?.try_into().ok()?) as usize + 0x200;
    let text = data.get(at..at + 256.min(data.len().saturating_sub(at)))?;
    let end = text.iter().position(|b| *b == 0 || *b == b' ')?;
    Some(String::from_utf8_lossy(&text[..end]).into_owned())
}
