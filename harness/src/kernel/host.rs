//! The machine's running kernel, as virtme-ng uses it: the image in
//! `/boot/vmlinuz-$(uname -r)` and the build tree in
//! `/lib/modules/$(uname -r)/build` (the distribution's headers package).

use super::{busybox, KitError, Progress};
use crate::apt::Sources;
use crate::kernel::record::Kit;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The host kernel's kit; `Err` names the release and the missing path.
pub fn kit(
    profile: &str,
    cache: &Path,
    sources: &Sources,
    progress: &mut dyn Progress,
) -> Result<Kit, KitError> {
    let (release, image, build) = located()?;
    let busybox = busybox::ensure(cache, None, sources, progress)?;
    let map = PathBuf::from(format!("/boot/System.map-{release}"));
    Ok(Kit {
        profile: profile.to_string(),
        identity: Kit::identity_of(&release, &build.join(".config")),
        release,
        version: "host".into(),
        dir: build.clone(),
        vmlinuz: image,
        headers: build,
        busybox,
        system_map: File::open(&map).is_ok().then_some(map),
        vmlinux: None,
    })
}

/// Why the running kernel cannot be used, if it cannot (no fetch, no
/// writes): for `--kernel all` and `doctor`.
pub fn problem() -> Option<String> {
    located().err().map(|e| e.to_string())
}

/// The running kernel's release, image and build tree, checked usable.
fn located() -> Result<(String, PathBuf, PathBuf), KitError> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .map_err(|e| KitError::Host {
            release: "?".into(),
            problem: format!("cannot read /proc/sys/kernel/osrelease: {e}"),
        })?;
    let image = PathBuf::from(format!("/boot/vmlinuz-{release}"));
    let build = PathBuf::from(format!("/lib/modules/{release}/build"));
    check(&release, &image, &build)?;
    Ok((release, image, build))
}

/// Says exactly what is missing or unreadable, and what to do.
fn check(release: &str, image: &Path, build: &Path) -> Result<(), KitError> {
    let problem = if !image.exists() {
        Some(format!(
            "{} does not exist; install the distribution's kernel image package for {release}, or use another profile",
            image.display()
        ))
    } else if let Err(e) = File::open(image) {
        Some(format!(
            "{} is not readable ({e}); many distributions make it readable by root only: run modvm as root, or `sudo chmod a+r {}`",
            image.display(),
            image.display()
        ))
    } else if !build.join("Makefile").is_file() {
        Some(format!(
            "{} has no Makefile; install the headers of the running kernel (on Debian or Ubuntu: `sudo apt-get install linux-headers-{release}`)",
            build.display()
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(KitError::Host {
            release: release.to_string(),
            problem,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_image_is_named_with_the_release() {
        let dir = tempfile::tempdir().unwrap();
        let e = check("9.9.9-test", &dir.path().join("vmlinuz"), dir.path()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("9.9.9-test") && text.contains("vmlinuz"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_build_tree_says_which_headers_to_install() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("vmlinuz");
        std::fs::write(&image, "x").unwrap();
        let e = check("9.9.9-test", &image, &dir.path().join("build")).unwrap_err();
        assert!(e.to_string().contains("linux-headers-9.9.9-test"), "{e}");
    }
}
