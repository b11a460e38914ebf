//! A kit as it lies in the cache: its record (`kit.json`), its manifest and
//! the state they add up to, resolved against wherever the cache is now.
//!
//! Everything a kit records is relative to its own directory, so a cache
//! copied or restored at another path (as CI caches are) works where it
//! lands. The one absolute reference Debian ships, the headers `Makefile`'s
//! `include` of the `-common` tree, is rewritten at install to a path
//! relative to the `Makefile` itself. The absolute paths kit.json still
//! carries are only for an older modvm sharing the cache; this one ignores
//! them.

use crate::kernel::manifest::{self, Manifest, MANIFEST};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// A ready-to-use kit (paths absolute, under where the cache is now).
#[derive(Debug, Clone, PartialEq)]
pub struct Kit {
    pub profile: String,
    /// `uname -r` of the kernel, e.g. `6.1.0-56-cloud-amd64`.
    pub release: String,
    /// Debian version of the image package, e.g. `6.1.192-2`.
    pub version: String,
    /// The kit's own directory.
    pub dir: PathBuf,
    pub vmlinuz: PathBuf,
    /// Headers tree to pass as `make -C`.
    pub headers: PathBuf,
    pub busybox: PathBuf,
    /// `System.map` of the kernel, where the source has one (for
    /// symbolising kernel frames).
    pub system_map: Option<PathBuf>,
    /// The kernel with DWARF, where the source has it (the `debug` build).
    pub vmlinux: Option<PathBuf>,
    /// Release plus a hash of the kernel's configuration: modules built
    /// for one kernel are never reused for a rebuilt one.
    pub identity: String,
}

impl Kit {
    /// Whether the kernel was configured with `option` (`CONFIG_…`) built
    /// in, from the build tree's `.config`; false when it cannot be read.
    pub fn has_option(&self, option: &str) -> bool {
        std::fs::read_to_string(self.headers.join(".config"))
            .is_ok_and(|c| c.lines().any(|l| l == format!("{option}=y")))
    }

    /// Whether `option` is built in or as a module (`=y` or `=m`).
    pub fn builds_option(&self, option: &str) -> bool {
        std::fs::read_to_string(self.headers.join(".config")).is_ok_and(|c| {
            c.lines()
                .any(|l| l == format!("{option}=y") || l == format!("{option}=m"))
        })
    }

    /// `<release>+<hash of config>`; the release alone when no
    /// configuration file can be read.
    pub fn identity_of(release: &str, config: &Path) -> String {
        match manifest::hash_file(config) {
            Ok(h) => format!("{release}+{h}"),
            Err(_) => release.to_string(),
        }
    }
}

/// `kit.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub profile: String,
    pub release: String,
    pub version: String,
    /// Relative to the kit directory; absent in kits of an older modvm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Files>,
    /// Absolute, as installed: read only by an older modvm.
    pub vmlinuz: PathBuf,
    pub headers: PathBuf,
    pub busybox: PathBuf,
}

/// Where a kit's parts are, relative to its directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Files {
    pub vmlinuz: String,
    pub headers: String,
    pub busybox: String,
}

impl Files {
    /// The layout every modvm has extracted kits into.
    pub fn standard(release: &str) -> Files {
        Files {
            vmlinuz: format!("root/boot/vmlinuz-{release}"),
            headers: format!("root/usr/src/linux-headers-{release}"),
            busybox: "root/bin/busybox".into(),
        }
    }
}

impl Record {
    pub fn new(profile: &str, release: &str, version: &str, dir: &Path) -> Record {
        let files = Files::standard(release);
        Record {
            profile: profile.into(),
            release: release.into(),
            version: version.into(),
            vmlinuz: dir.join(&files.vmlinuz),
            headers: dir.join(&files.headers),
            busybox: dir.join(&files.busybox),
            files: Some(files),
        }
    }

    /// The kit this record describes, in `dir`.
    pub fn kit(&self, dir: &Path) -> Kit {
        let files = self
            .files
            .clone()
            .unwrap_or_else(|| Files::standard(&self.release));
        Kit {
            profile: self.profile.clone(),
            release: self.release.clone(),
            version: self.version.clone(),
            dir: dir.to_path_buf(),
            vmlinuz: dir.join(&files.vmlinuz),
            headers: dir.join(&files.headers),
            busybox: dir.join(&files.busybox),
            system_map: Some(dir.join(format!("root/boot/System.map-{}", self.release)))
                .filter(|p| p.is_file()),
            vmlinux: Some(dir.join(format!("root/boot/vmlinux-{}", self.release)))
                .filter(|p| p.is_file()),
            identity: Kit::identity_of(
                &self.release,
                &dir.join(format!("root/boot/config-{}", self.release)),
            ),
        }
    }
}

/// `current.json`: names the kit in use.
#[derive(Serialize, Deserialize)]
pub struct Current {
    pub kit: String,
}

/// What the cache holds for a profile.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheState {
    /// Nothing fetched yet.
    Missing,
    /// Matches its manifest.
    Ready(Kit),
    /// Made by a modvm that recorded no manifest; its parts exist, the rest
    /// is checked (and a manifest recorded) by [`adopt`].
    Unverified(Kit),
    /// Something differs from what was installed; says what.
    Damaged(String),
}

/// The profile's directory under the cache.
pub fn profile_dir(cache: &Path, profile: &str) -> PathBuf {
    cache.join("kernels").join(profile)
}

/// Reads and checks the kit the cache names (no network, no lock, no writes).
pub fn inspect(cache: &Path, profile: &str) -> CacheState {
    let dir = profile_dir(cache, profile);
    let current_path = dir.join("current.json");
    let current: Current = match fs::read(&current_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return CacheState::Missing,
        Err(e) => return damaged(&current_path, &e.to_string()),
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(c) => c,
            Err(e) => return damaged(&current_path, &format!("unreadable ({e})")),
        },
    };
    let kit_dir = dir.join(&current.kit);
    let record_path = kit_dir.join("kit.json");
    let record: Record = match fs::read(&record_path) {
        Err(e) => return damaged(&record_path, &e.to_string()),
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(e) => return damaged(&record_path, &format!("unreadable ({e})")),
        },
    };
    let kit = record.kit(&kit_dir);
    let manifest_path = kit_dir.join(MANIFEST);
    match fs::read(&manifest_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && record.files.is_none() => {
            match missing_part(&kit) {
                Some(part) => damaged(&part, "missing"),
                None => CacheState::Unverified(kit),
            }
        }
        Err(e) => damaged(&manifest_path, &e.to_string()),
        Ok(bytes) => match serde_json::from_slice::<Manifest>(&bytes) {
            Err(e) => damaged(&manifest_path, &format!("unreadable ({e})")),
            Ok(manifest) => match manifest::check(&kit_dir, &manifest) {
                None => CacheState::Ready(kit),
                Some(report) => CacheState::Damaged(format!("{}/{report}", kit_dir.display())),
            },
        },
    }
}

fn damaged(path: &Path, what: &str) -> CacheState {
    CacheState::Damaged(format!("{}: {what}", path.display()))
}

fn missing_part(kit: &Kit) -> Option<PathBuf> {
    [
        kit.vmlinuz.clone(),
        kit.busybox.clone(),
        kit.headers.join("Makefile"),
    ]
    .into_iter()
    .find(|p| !p.is_file())
}

/// Writes the record and manifest of the kit extracted under `dir/root`
/// (the manifest last, so a kit without one is never taken for checked).
pub fn install(dir: &Path, record: &Record) -> std::io::Result<()> {
    let files = record.files.clone().expect("new records name their files");
    write_atomic(
        &dir.join("kit.json"),
        &serde_json::to_vec_pretty(record).expect("record serialises"),
    )?;
    let manifest = manifest::record(
        dir,
        "root",
        &[&files.vmlinuz, &files.busybox, &files.headers],
    )?;
    write_atomic(
        &dir.join(MANIFEST),
        &serde_json::to_vec(&manifest).expect("manifest serialises"),
    )
}

/// Brings a kit of an older modvm up to date in place: checks that its
/// kernel image and busybox are whole, points its headers `Makefile` into
/// the kit itself, then records its manifest. Call under the profile lock.
/// `Err` says what is damaged.
pub fn adopt(kit: &Kit) -> Result<(), String> {
    if let Err(e) = whole_bzimage(&kit.vmlinuz) {
        return Err(format!("{}: {e}", kit.vmlinuz.display()));
    }
    if let Err(e) = whole_elf(&kit.busybox) {
        return Err(format!("{}: {e}", kit.busybox.display()));
    }
    let kit_name = kit
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let root = kit.dir.join("root");
    let depth = kit
        .headers
        .strip_prefix(&root)
        .map_or(0, |p| p.iter().count());
    let makefile = kit.headers.join("Makefile");
    let text = fs::read_to_string(&makefile).map_err(|e| format!("{}: {e}", makefile.display()))?;
    let fixed = relative_includes(&text, depth, &kit_name);
    for target in include_targets(&fixed) {
        if !kit.headers.join(&target).is_file() {
            return Err(format!(
                "{}: missing (included by {})",
                kit.headers.join(&target).display(),
                makefile.display()
            ));
        }
    }
    let io = |e: std::io::Error| format!("cannot update {}: {e}", kit.dir.display());
    if fixed != text {
        write_atomic(&makefile, fixed.as_bytes()).map_err(io)?;
    }
    let record = Record::new(&kit.profile, &kit.release, &kit.version, &kit.dir);
    install(&kit.dir, &record).map_err(io)
}

/// Rewrites absolute `include` lines of a headers `Makefile` `depth`
/// directories below the kit root into paths relative to the `Makefile`'s
/// own directory. Both Debian's `/usr/...` and an older modvm's
/// `<cache>/.../<kit>/root/usr/...` are understood.
pub fn relative_includes(text: &str, depth: usize, kit_name: &str) -> String {
    let marker = format!("/{kit_name}/root/");
    text.lines()
        .map(|l| match l.strip_prefix("include /") {
            Some(rest) => {
                let full = format!("/{rest}");
                let inside = match full.rfind(&marker) {
                    Some(i) if !kit_name.is_empty() => &full[i + marker.len()..],
                    _ => rest,
                };
                format!(
                    "include $(dir $(lastword $(MAKEFILE_LIST))){}{inside}",
                    "../".repeat(depth)
                )
            }
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The relative include targets of a rewritten `Makefile`.
fn include_targets(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("include $(dir $(lastword $(MAKEFILE_LIST)))"))
        .map(str::to_string)
        .collect()
}

/// A bzImage is as long as its setup header says (setup sectors plus
/// `syssize` paragraphs); a truncated one is shorter.
pub fn whole_bzimage(path: &Path) -> Result<(), String> {
    let data = fs::read(path).map_err(|e| e.to_string())?;
    if data.len() < 0x1f8 || !crate::machine::Arch::DEFAULT.is_kernel_image(&data) {
        return Err(format!("not a kernel image ({} bytes)", data.len()));
    }
    let setup = match data[0x1f1] {
        0 => 4,
        n => n as u64,
    };
    let syssize = u32::from_le_bytes(data[0x1f4..0x1f8].try_into().expect("4 bytes")) as u64;
    let needed = (setup + 1) * 512 + syssize * 16;
    if (data.len() as u64) < needed {
        return Err(format!(
            "has {} bytes, its header needs {needed}",
            data.len()
        ));
    }
    Ok(())
}

/// An ELF file reaches at least the end of its section header table (which
/// linkers put last); a truncated one does not.
pub fn whole_elf(path: &Path) -> Result<(), String> {
    let data = fs::read(path).map_err(|e| e.to_string())?;
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        return Err(format!("not a 64-bit ELF program ({} bytes)", data.len()));
    }
    let u64_at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().expect("8 bytes"));
    let u16_at = |o: usize| u16::from_le_bytes(data[o..o + 2].try_into().expect("2 bytes")) as u64;
    let needed = u64_at(0x28) + u16_at(0x3a) * u16_at(0x3c);
    if (data.len() as u64) < needed {
        return Err(format!(
            "has {} bytes, its header needs {needed}",
            data.len()
        ));
    }
    Ok(())
}

/// Removes what interrupted installs left in a profile's directory: a
/// `.staging-*` directory is never a kit (kits appear only by rename).
pub fn remove_stale_staging(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".staging-") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Replaces `path` by rename, so readers see the old or the new content.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    fs::write(&tmp, data)?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_include_becomes_relative_to_the_makefile() {
        let t = "include /usr/src/linux-headers-6.1.0-56-common/Makefile\n";
        assert_eq!(
            relative_includes(t, 3, "k"),
            "include $(dir $(lastword $(MAKEFILE_LIST)))../../../usr/src/linux-headers-6.1.0-56-common/Makefile\n"
        );
    }

    #[test]
    fn an_older_modvm_include_becomes_relative_too() {
        let t =
            "include /home/u/.cache/modvm/kernels/p/linux-image-x_1/root/usr/src/h-common/Makefile";
        assert_eq!(
            relative_includes(t, 3, "linux-image-x_1"),
            "include $(dir $(lastword $(MAKEFILE_LIST)))../../../usr/src/h-common/Makefile\n"
        );
        let out = relative_includes(t, 3, "linux-image-x_1");
        assert_eq!(relative_includes(&out, 3, "linux-image-x_1"), out);
        assert_eq!(
            include_targets(&out),
            ["../../../usr/src/h-common/Makefile"]
        );
    }

    #[test]
    fn old_records_without_files_resolve_to_the_standard_layout() {
        let old = r#"{"profile":"p","release":"6.1.0-56-cloud-amd64","version":"1",
            "vmlinuz":"/gone/boot/vmlinuz","headers":"/gone/h","busybox":"/gone/bb"}"#;
        let r: Record = serde_json::from_str(old).unwrap();
        let kit = r.kit(Path::new("/now/kit"));
        assert_eq!(
            kit.vmlinuz,
            Path::new("/now/kit/root/boot/vmlinuz-6.1.0-56-cloud-amd64")
        );
        assert_eq!(kit.busybox, Path::new("/now/kit/root/bin/busybox"));
    }

    #[test]
    fn new_records_resolve_against_where_the_kit_is_now() {
        let r = Record::new("p", "6.1.0-56-cloud-amd64", "1", Path::new("/then/kit"));
        let back: Record = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        let kit = back.kit(Path::new("/now/kit"));
        assert_eq!(
            kit.headers,
            Path::new("/now/kit/root/usr/src/linux-headers-6.1.0-56-cloud-amd64")
        );
        // An older modvm reads the absolute fields.
        assert_eq!(back.busybox, Path::new("/then/kit/root/bin/busybox"));
    }

    /// A kit as an older modvm left it at `old`, now lying under `cache`.
    fn old_kit(cache: &Path, old: &Path) -> PathBuf {
        let pdir = profile_dir(cache, "p");
        let dir = pdir.join("k_1");
        let root = dir.join("root");
        let headers = root.join("usr/src/linux-headers-r");
        fs::create_dir_all(root.join("boot")).unwrap();
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::create_dir_all(&headers).unwrap();
        fs::create_dir_all(root.join("usr/src/linux-headers-common")).unwrap();
        let mut img = vec![0u8; 4096];
        img[0x1f1] = 3;
        img[0x1f4..0x1f8].copy_from_slice(&128u32.to_le_bytes());
        img[0x202..0x206].copy_from_slice(b"HdrS");
        fs::write(root.join("boot/vmlinuz-r"), &img).unwrap();
        let mut elf = vec![0u8; 1000];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        fs::write(root.join("bin/busybox"), &elf).unwrap();
        fs::write(root.join("usr/src/linux-headers-common/Makefile"), "all:\n").unwrap();
        let old_dir = old.join("kernels/p/k_1");
        fs::write(
            headers.join("Makefile"),
            format!(
                "include {}/root/usr/src/linux-headers-common/Makefile\n",
                old_dir.display()
            ),
        )
        .unwrap();
        let mut record = Record::new("p", "r", "1", &old_dir);
        record.files = None;
        fs::write(dir.join("kit.json"), serde_json::to_vec(&record).unwrap()).unwrap();
        fs::write(pdir.join("current.json"), r#"{"kit":"k_1"}"#).unwrap();
        dir
    }

    #[test]
    fn an_empty_cache_is_missing() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(inspect(d.path(), "p"), CacheState::Missing);
    }

    #[test]
    fn an_old_kit_elsewhere_is_adopted_then_checked() {
        let d = tempfile::tempdir().unwrap();
        let dir = old_kit(d.path(), Path::new("/where/it/was"));
        let CacheState::Unverified(kit) = inspect(d.path(), "p") else {
            panic!("{:?}", inspect(d.path(), "p"))
        };
        assert_eq!(kit.busybox, dir.join("root/bin/busybox"));
        adopt(&kit).unwrap();
        let makefile = fs::read_to_string(kit.headers.join("Makefile")).unwrap();
        assert_eq!(
            makefile,
            "include $(dir $(lastword $(MAKEFILE_LIST)))../../../usr/src/linux-headers-common/Makefile\n"
        );
        assert_eq!(inspect(d.path(), "p"), CacheState::Ready(kit.clone()));
        fs::write(&kit.busybox, b"x").unwrap();
        let CacheState::Damaged(what) = inspect(d.path(), "p") else {
            panic!()
        };
        assert_eq!(
            what,
            format!(
                "{}/root/bin/busybox has 1 bytes, expected 1000",
                dir.display()
            )
        );
    }

    #[test]
    fn an_old_kit_with_a_truncated_busybox_is_not_adopted() {
        let d = tempfile::tempdir().unwrap();
        let dir = old_kit(d.path(), Path::new("/old"));
        let busybox = dir.join("root/bin/busybox");
        let mut elf = fs::read(&busybox).unwrap();
        elf[0x28..0x30].copy_from_slice(&900u64.to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&2u16.to_le_bytes());
        fs::write(&busybox, &elf).unwrap();
        let CacheState::Unverified(kit) = inspect(d.path(), "p") else {
            panic!()
        };
        let e = adopt(&kit).unwrap_err();
        assert_eq!(
            e,
            format!(
                "{}: has 1000 bytes, its header needs 1028",
                busybox.display()
            )
        );
        assert!(!dir.join(MANIFEST).exists());
    }

    #[test]
    fn an_old_kit_without_its_common_tree_is_not_adopted() {
        let d = tempfile::tempdir().unwrap();
        let dir = old_kit(d.path(), Path::new("/old"));
        fs::remove_dir_all(dir.join("root/usr/src/linux-headers-common")).unwrap();
        let CacheState::Unverified(kit) = inspect(d.path(), "p") else {
            panic!()
        };
        let e = adopt(&kit).unwrap_err();
        assert!(e.contains("linux-headers-common/Makefile: missing"), "{e}");
    }

    #[test]
    fn unreadable_records_are_damage_not_absence() {
        let d = tempfile::tempdir().unwrap();
        let dir = old_kit(d.path(), Path::new("/old"));
        fs::write(dir.join("kit.json"), "{garbage").unwrap();
        let CacheState::Damaged(what) = inspect(d.path(), "p") else {
            panic!()
        };
        assert!(what.contains("kit.json: unreadable"), "{what}");
        fs::write(profile_dir(d.path(), "p").join("current.json"), "").unwrap();
        let CacheState::Damaged(what) = inspect(d.path(), "p") else {
            panic!()
        };
        assert!(what.contains("current.json: unreadable"), "{what}");
    }

    #[test]
    fn truncated_images_are_caught_by_their_headers() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("vmlinuz");
        let mut img = vec![0u8; 4096];
        img[0x1f1] = 3;
        img[0x1f4..0x1f8].copy_from_slice(&((4096u32 - 2048) / 16).to_le_bytes());
        img[0x202..0x206].copy_from_slice(b"HdrS");
        fs::write(&f, &img).unwrap();
        assert_eq!(whole_bzimage(&f), Ok(()));
        fs::write(&f, &img[..3000]).unwrap();
        assert_eq!(
            whole_bzimage(&f),
            Err("has 3000 bytes, its header needs 4096".into())
        );

        let mut elf = vec![0u8; 1000];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[0x28..0x30].copy_from_slice(&800u64.to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        fs::write(&f, &elf[..992]).unwrap();
        assert_eq!(whole_elf(&f), Ok(()));
        fs::write(&f, &elf[..900]).unwrap();
        assert_eq!(
            whole_elf(&f),
            Err("has 900 bytes, its header needs 992".into())
        );
    }
}
