//! Debian packages a spec asks for in its guests (`guest_packages`:
//! `iptables`, `e2fsprogs`, `ethtool` …): fetched with the same private apt
//! state as the kits, with the libraries they depend on, unpacked (no
//! maintainer scripts) and cached; their files join the guest's initramfs,
//! so a saved guest holds them and is keyed on them.

use super::{archive, io_err, KitError, Progress};
use crate::apt::{AptError, Sources};
use crate::lock::Lock;
use crate::shipped::GuestFile;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Bumped when what is kept of a package changes.
const FORMAT: u32 = 2;

/// Packages a busybox guest has no use for, or that only configure a
/// system (their maintainer scripts never run here): not fetched even when
/// a package depends on them.
const LEFT_OUT: &[&str] = &[
    "adduser",
    "base-files",
    "base-passwd",
    "debconf",
    "debianutils",
    "dpkg",
    "init-system-helpers",
    "install-info",
    "libc-bin",
    "login",
    "lsb-base",
    "passwd",
    // Depended on for helper scripts (xtables-addons-common's GeoIP
    // tools), 50 MB with its modules; a spec that runs perl asks for it.
    "perl",
    "perl-base",
    "sysvinit-utils",
    "ucf",
];

/// Parts of a package tree the guest does not need: documentation,
/// translations, and glibc's character-set converters (8 MB).
const DROPPED_DIRS: &[&str] = &[
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/bug",
    "usr/lib/x86_64-linux-gnu/gconv",
];

/// Paths the guest owns: a package's file there would shadow modvm's.
const GUEST_OWNED: &[&str] = &["init", "bin/busybox", "modules", "lib/modules"];

/// Most packages a spec may ask for by name.
pub const MAX_PACKAGES: usize = 32;

/// The unpacked packages as the guest gets them.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestPackages {
    /// `name=version` of every package fetched (the asked-for ones and
    /// their dependencies), sorted.
    pub packages: Vec<String>,
    pub files: Vec<GuestFile>,
}

/// The packages named in `names` with their dependencies, from the cache or
/// fetched into it.
pub fn ensure(
    cache: &Path,
    sources: &Sources,
    names: &[String],
    progress: &mut dyn Progress,
) -> Result<GuestPackages, KitError> {
    let wanted: BTreeSet<String> = names.iter().cloned().collect();
    let list: Vec<String> = wanted.iter().cloned().collect();
    let key =
        super::manifest::hash_bytes(format!("{FORMAT} {sources:?} {}", list.join(" ")).as_bytes());
    let root = cache.join("guest-packages");
    fs::create_dir_all(&root).map_err(io_err(&root))?;
    let dir = root.join(&key);
    if let Some(found) = load(&dir) {
        return Ok(found);
    }
    let lock_path = root.join(format!("{key}.lock"));
    let _lock = Lock::exclusive(&lock_path, &mut || {
        progress.notice("waiting for another modvm run that is fetching the same guest packages")
    })
    .map_err(io_err(&lock_path))?;
    if let Some(found) = load(&dir) {
        return Ok(found);
    }
    let apt = archive::updated_apt(cache, sources, None, progress)?;
    progress.step(&format!("resolving guest packages: {}", list.join(", ")));
    let mut infos = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut queue: Vec<(String, bool)> = list.iter().map(|n| (n.clone(), true)).collect();
    while let Some((name, asked)) = queue.pop() {
        if !seen.insert(name.clone()) || (!asked && LEFT_OUT.contains(&name.as_str())) {
            continue;
        }
        match apt.show(&name) {
            Ok(info) => {
                queue.extend(info.depends.iter().map(|d| (d.clone(), false)));
                infos.push(info);
            }
            // A dependency by a virtual name (`debconf-2.0`): provided by
            // something the guest does not need.
            Err(AptError::NotFound(_) | AptError::NotInMirror { .. }) if !asked => {}
            Err(e) => return Err(e.into()),
        }
    }
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(&root)
        .map_err(io_err(&root))?;
    let debs_dir = staging.path().join("debs");
    let tree = staging.path().join("root");
    fs::create_dir_all(&debs_dir).map_err(io_err(&debs_dir))?;
    let bytes: u64 = infos.iter().map(|i| i.size).sum();
    progress.step(&format!(
        "downloading {} guest packages ({:.1} MiB)",
        infos.len(),
        bytes as f64 / (1 << 20) as f64
    ));
    let debs = apt.download(&infos, &debs_dir)?;
    drop(apt);
    for deb in &debs {
        crate::apt::extract(deb, &tree)?;
    }
    fs::remove_dir_all(&debs_dir).map_err(io_err(&debs_dir))?;
    let mut packages: Vec<String> = infos
        .iter()
        .map(|i| format!("{}={}", i.name, i.version))
        .collect();
    packages.sort();
    fs::write(staging.path().join("packages"), packages.join("\n") + "\n")
        .map_err(io_err(staging.path()))?;
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
    }
    let staged = staging.keep();
    fs::rename(&staged, &dir).map_err(io_err(&dir))?;
    load(&dir).ok_or_else(|| KitError::Io {
        path: dir.clone(),
        source: std::io::Error::other("the unpacked guest packages cannot be read back"),
    })
}

/// A finished package directory, or `None`.
fn load(dir: &Path) -> Option<GuestPackages> {
    let packages: Vec<String> = fs::read_to_string(dir.join("packages"))
        .ok()?
        .lines()
        .map(str::to_string)
        .collect();
    let root = dir.join("root");
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    files.sort_by(|a, b| a.guest.cmp(&b.guest));
    Some(GuestPackages { packages, files })
}

/// The regular files of the tree, and its symbolic links as the files they
/// lead to inside the tree (the initramfs holds no links; libraries and
/// the dynamic loader are reached through them).
fn collect(root: &Path, dir: &Path, out: &mut Vec<GuestFile>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let rel_text = rel.to_string_lossy();
        if DROPPED_DIRS.iter().any(|d| rel_text == *d) || GUEST_OWNED.iter().any(|g| rel_text == *g)
        {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            collect(root, &path, out);
        } else if let Some(target) = resolve_inside(root, &path) {
            out.push(GuestFile::plain(&target, format!("/{rel_text}"), None));
        }
    }
}

/// Follows `path` (a file or a chain of links, absolute ones taken as
/// relative to `root`) to a regular file inside `root`.
fn resolve_inside(root: &Path, path: &Path) -> Option<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..16 {
        let meta = fs::symlink_metadata(&current).ok()?;
        if meta.is_file() {
            return Some(current);
        }
        if !meta.file_type().is_symlink() {
            return None;
        }
        let target = fs::read_link(&current).ok()?;
        let next = if target.is_absolute() {
            root.join(target.strip_prefix("/").ok()?)
        } else {
            current.parent()?.join(target)
        };
        // Lexically inside the tree: no `..` out of it.
        let mut clean = PathBuf::new();
        for c in next.components() {
            match c {
                std::path::Component::ParentDir => {
                    clean.pop();
                }
                other => clean.push(other),
            }
        }
        if !clean.starts_with(root) {
            return None;
        }
        current = clean;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_become_the_files_they_lead_to_inside_the_tree() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("lib/x86_64-linux-gnu")).unwrap();
        fs::create_dir_all(root.join("lib64")).unwrap();
        fs::create_dir_all(root.join("usr/share/doc/p")).unwrap();
        fs::write(root.join("lib/x86_64-linux-gnu/ld.so"), b"ld").unwrap();
        fs::write(root.join("usr/share/doc/p/README"), b"doc").unwrap();
        std::os::unix::fs::symlink(
            "/lib/x86_64-linux-gnu/ld.so",
            root.join("lib64/ld-linux-x86-64.so.2"),
        )
        .unwrap();
        std::os::unix::fs::symlink("ld.so", root.join("lib/x86_64-linux-gnu/ld.so.1")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("lib/escape")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/shadow", root.join("lib/up")).unwrap();
        fs::write(root.join("init"), b"not ours").unwrap();
        let mut files = Vec::new();
        collect(root, root, &mut files);
        let mut guest: Vec<&str> = files.iter().map(|f| f.guest.as_str()).collect();
        guest.sort();
        assert_eq!(
            guest,
            [
                "/lib/x86_64-linux-gnu/ld.so",
                "/lib/x86_64-linux-gnu/ld.so.1",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
        for f in &files {
            assert_eq!(fs::read(&f.host).unwrap(), b"ld", "{f:?}");
        }
    }
}
