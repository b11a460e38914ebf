//! Kits from Debian's packages: the kernel image, its headers (with their
//! `-common` tree and `linux-kbuild`) and busybox-static, downloaded with
//! apt into private state and extracted with `dpkg-deb`.

use super::record::{self, Record};
use super::{io_err, KernelProfile, Kit, KitError, Progress};
use crate::apt::{self, Apt, PackageInfo, Sources};
use std::fs;
use std::path::Path;

/// Downloads and installs the newest kit; `replaces_damaged` lets it remove
/// the kit it supersedes.
pub(super) fn fetch(
    cache: &Path,
    profile: &KernelProfile,
    replaces_damaged: bool,
    sources: &Sources,
    progress: &mut dyn Progress,
) -> Result<Kit, KitError> {
    let super::profile::Source::Debian {
        image,
        headers,
        suite,
    } = &profile.source
    else {
        unreachable!("debian::fetch is only called for Debian profiles");
    };
    let apt = super::archive::updated_apt(cache, sources, suite.as_deref(), progress)?;
    let image = follow_meta(&apt, image, "linux-image-")?;
    let headers = follow_meta(&apt, headers, "linux-headers-")?;
    let mut packages = vec![image.clone(), headers.clone()];
    for dep in &headers.depends {
        if dep.starts_with("linux-headers-") || dep.starts_with("linux-kbuild-") {
            packages.push(apt.show(dep)?);
        }
    }
    packages.push(apt.show("busybox-static")?);

    let (dir, staging) = super::begin_kit(cache, &profile.name)?;
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
        record::relative_includes(&text, depth, &kit_name),
    )
    .map_err(io_err(&makefile))?;
    progress.step("recording the kit's manifest");
    record::install(staging.path(), &record).map_err(io_err(staging.path()))?;

    super::commit_kit(&dir, staging, &kit_name, &record, replaces_damaged)
}

/// Follows a meta-package (e.g. `linux-image-cloud-amd64`) to the versioned
/// package of the same flavour it depends on (`linux-image-6.1.0-56-cloud-amd64`);
/// a versioned package has no such dependency and is returned as it is.
pub(super) fn follow_meta(apt: &Apt, package: &str, prefix: &str) -> Result<PackageInfo, KitError> {
    let info = apt.show(package)?;
    match flavoured_target(&info, prefix) {
        Some(target) => Ok(apt.show(&target)?),
        None => Ok(info),
    }
}

/// The dependency that shares the package's prefix and flavour suffix:
/// `linux-image-cloud-amd64` → `linux-image-6.1.0-56-cloud-amd64`,
/// `linux-image-amd64` → `linux-image-6.1.0-56-amd64` (and not the cloud
/// one, whose name also ends in `-amd64`), `linux-image-6.12-cloud-amd64`
/// → `linux-image-6.12.95+deb12-cloud-amd64`.
fn flavoured_target(info: &PackageInfo, prefix: &str) -> Option<String> {
    let tail = info.name.strip_prefix(prefix)?;
    // A leading version in the meta-package's name (`6.12-`) is not part
    // of the flavour.
    let flavour = match tail.split_once('-') {
        Some((first, rest)) if first.starts_with(|c: char| c.is_ascii_digit()) => rest,
        _ => tail,
    };
    let is_version = |v: &str| {
        !v.is_empty()
            && v.split('-')
                .all(|part| part.starts_with(|c: char| c.is_ascii_digit()))
    };
    info.depends
        .iter()
        .find(|d| {
            **d != info.name
                && d.strip_prefix(prefix)
                    .and_then(|r| r.strip_suffix(flavour))
                    .and_then(|r| r.strip_suffix('-'))
                    .is_some_and(is_version)
        })
        .cloned()
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
        let generic = info(
            "linux-image-amd64",
            &[
                "linux-image-6.1.0-56-cloud-amd64",
                "linux-image-6.1.0-56-amd64",
            ],
        );
        assert_eq!(
            flavoured_target(&generic, "linux-image-").as_deref(),
            Some("linux-image-6.1.0-56-amd64")
        );
        let img = info("linux-image-6.1.0-56-cloud-amd64", &["kmod", "linux-base"]);
        assert_eq!(flavoured_target(&img, "linux-image-"), None);
    }
}
