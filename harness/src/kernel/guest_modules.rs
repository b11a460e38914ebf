//! The kernel's own modules for the guest, so that `modprobe` and the
//! kernel's `request_module()` work there and a test module's in-tree
//! dependencies (`x_tables`, `dm-mod`, `libcrc32c` …) can be loaded.
//!
//! They reach the guest on a read-only ext4 disk (virtio-blk, serial
//! `modvm-modules`), mounted at `/lib/modules` by the init before the guest
//! is saved. A disk, not the initramfs: the cloud kernels' trees are 90 MiB
//! uncompressed and would sit in guest RAM and in every saved state; on a
//! disk only the blocks a test reads are ever loaded. virtio-blk, not NVMe
//! (which both Debian kernels have built in), because QEMU cannot migrate
//! an NVMe controller and the saved guest is a migration stream. The few
//! modules the disk itself needs (`virtio_pci`, `virtio_blk`, and `ext4`
//! where they are not built in) travel in the initramfs and are loaded by
//! the init first.
//!
//! Built once per kit under `<cache>/guest-modules/<profile>-<key>/`
//! (`modules.ext4`, `boot/NN-name.ko`, `meta.json`): the tree is copied,
//! compressed modules are unpacked (busybox's `insmod` hands the kernel
//! plain ELF; an `.ko.xz` makes the kernel log `Invalid ELF header magic`
//! before busybox retries), `depmod` indexes it and `mke2fs -d` writes the
//! image. The directory appears by rename, whole, so an interrupted build
//! leaves nothing that is trusted.

use super::{io_err, Kit, KitError, Progress};
use crate::lock::Lock;
use crate::shipped::GuestFile;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bumped when the disk's layout or the boot list changes.
const FORMAT: u32 = 2;
/// Where the boot modules go in the initramfs.
const BOOT_DIR: &str = "/lib/modvm-boot";
/// What the disk needs, in load order.
const DISK_NEEDS: [&str; 3] = ["virtio_pci", "virtio_blk", "ext4"];

/// Loaded before `ext4` where the kernel has them as modules: ext4 asks the
/// crypto API for `crc32c` (a soft dependency, not in `modules.dep`), and
/// before the disk is mounted nothing can load it on demand (Debian's
/// generic flavour has it as a module, the cloud one built in).
const DISK_SOFT_NEEDS: [&str; 1] = ["crc32c_generic"];

/// A kit's modules as the guest gets them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestModules {
    /// The read-only ext4 image holding `<release>/…`.
    pub image: PathBuf,
    /// Modules the init loads before it mounts the disk, in order, plus the
    /// marker that tells the init a disk is attached.
    pub boot: Vec<GuestFile>,
    /// Names of every module on the disk (`-` written `_`).
    pub names: HashSet<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    format: u32,
    release: String,
    /// Boot modules' file names under `boot/`, in load order.
    boot: Vec<String>,
    modules: Vec<String>,
}

/// The guest modules of `kit`, built on first use; `None` when the kit has
/// no module tree (the `debug` kernel is built without modules; a local
/// build tree has them uninstalled).
pub fn ensure(
    cache: &Path,
    kit: &Kit,
    progress: &mut dyn Progress,
) -> Result<Option<GuestModules>, KitError> {
    let Some(src) = tree_of(kit) else {
        return Ok(None);
    };
    let root = cache.join("guest-modules");
    fs::create_dir_all(&root).map_err(io_err(&root))?;
    let order = fs::metadata(src.join("modules.order")).ok();
    let inputs = format!(
        "{FORMAT} {} {} {:?}",
        kit.identity,
        src.display(),
        order.map(|m| (m.len(), m.modified().ok()))
    );
    let key = super::manifest::hash_bytes(inputs.as_bytes());
    let dir = root.join(format!("{}-{key}", kit.profile));
    if let Some(found) = load(&dir) {
        return Ok(found);
    }
    let lock_path = root.join(format!("{}.lock", kit.profile));
    let _lock = Lock::exclusive(&lock_path, &mut || {
        progress.step("waiting for another modvm run to finish the guest's module disk")
    })
    .map_err(io_err(&lock_path))?;
    if let Some(found) = load(&dir) {
        return Ok(found);
    }
    progress.step(&format!(
        "writing the disk of {}'s own modules for the guest (once)",
        kit.release
    ));
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(&root)
        .map_err(io_err(&root))?;
    let meta = build(kit, &src, staging.path()).map_err(|problem| KitError::Build {
        profile: kit.profile.clone(),
        problem: format!("the guest's module disk: {problem}"),
    })?;
    let meta_path = staging.path().join("meta.json");
    fs::write(
        &meta_path,
        serde_json::to_vec_pretty(&meta).expect("meta serialises"),
    )
    .map_err(io_err(&meta_path))?;
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
    }
    let staged = staging.keep();
    fs::rename(&staged, &dir).map_err(io_err(&dir))?;
    remove_superseded(&root, &kit.profile, &dir);
    Ok(load(&dir).flatten())
}

/// Disks of the same profile written for an older kit or format: a guest
/// still running from one keeps its open file; new runs never pick them.
fn remove_superseded(root: &Path, profile: &str, current: &Path) {
    let prefix = format!("{profile}-");
    for entry in fs::read_dir(root).into_iter().flatten().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name
            .strip_prefix(&prefix)
            .is_some_and(|key| key.len() == 16 && key.chars().all(|c| c.is_ascii_hexdigit()));
        if ours && path != current && path.is_dir() {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// The kit's `lib/modules/<release>`: inside a Debian kit, or beside the
/// host kernel's build tree.
fn tree_of(kit: &Kit) -> Option<PathBuf> {
    let inside = kit.dir.join("root/lib/modules").join(&kit.release);
    let beside = kit.headers.parent().map(Path::to_path_buf);
    [Some(inside), beside]
        .into_iter()
        .flatten()
        .find(|d| d.join("kernel").is_dir() && d.ends_with(&kit.release))
}

/// A finished disk in `dir`; `Some(None)` never happens, `None` when there
/// is none (or it is incomplete and gets rebuilt).
fn load(dir: &Path) -> Option<Option<GuestModules>> {
    let meta: Meta = serde_json::from_slice(&fs::read(dir.join("meta.json")).ok()?).ok()?;
    let image = dir.join("modules.ext4");
    if meta.format != FORMAT || !image.is_file() {
        return None;
    }
    let mut boot = vec![GuestFile::plain(
        &dir.join("meta.json"),
        format!("{BOOT_DIR}/disk.json"),
        Some(false),
    )];
    for name in &meta.boot {
        let host = dir.join("boot").join(name);
        if !host.is_file() {
            return None;
        }
        boot.push(GuestFile::plain(
            &host,
            format!("{BOOT_DIR}/{name}"),
            Some(false),
        ));
    }
    Some(Some(GuestModules {
        image,
        boot,
        names: meta.modules.into_iter().collect(),
    }))
}

fn build(kit: &Kit, src: &Path, out: &Path) -> Result<Meta, String> {
    let tree_root = out.join("tree");
    let tree = tree_root.join("lib/modules").join(&kit.release);
    let mut compressed: BTreeMap<&str, Vec<PathBuf>> = BTreeMap::new();
    copy_tree(src, &tree, &mut compressed)
        .map_err(|e| format!("copying {}: {e}", src.display()))?;
    for (tool, paths) in &compressed {
        for chunk in paths.chunks(500) {
            let mut cmd = Command::new(tool);
            cmd.args(["-d", "-q", "-f", "--"]).args(chunk);
            if *tool == "zstd" {
                cmd.arg("--rm");
            }
            run(&mut cmd)?;
        }
    }
    let mut depmod = Command::new("depmod");
    depmod.arg("-b").arg(&tree_root);
    if let Some(map) = kit.system_map.as_ref().filter(|m| m.is_file()) {
        depmod.arg("-F").arg(map);
    }
    run(depmod.arg(&kit.release))?;
    let deps = fs::read_to_string(tree.join("modules.dep"))
        .map_err(|e| format!("depmod wrote no modules.dep: {e}"))?;
    let builtin = fs::read_to_string(tree.join("modules.builtin")).unwrap_or_default();
    let graph = parse_deps(&deps);
    let builtin: HashSet<String> = builtin.lines().map(name_of).collect();
    let order = boot_order(&graph, &builtin)?;
    let boot_dir = out.join("boot");
    fs::create_dir_all(&boot_dir).map_err(|e| e.to_string())?;
    let mut boot = Vec::new();
    for (i, name) in order.iter().enumerate() {
        let file = format!("{i:02}-{name}.ko");
        fs::copy(tree.join(&graph[name].0), boot_dir.join(&file))
            .map_err(|e| format!("copying {name}: {e}"))?;
        boot.push(file);
    }
    // Room for the files as they are now (unpacked, indexed), each in whole
    // 4 KiB blocks, and for the file system itself.
    let (bytes, files) = tree_size(&tree).map_err(|e| e.to_string())?;
    let kib = bytes / 1024 * 11 / 10 + 16 * 1024;
    let image = out.join("modules.ext4");
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-O", "^has_journal", "-m", "0"])
        .args([
            "-L",
            crate::machine::device::MODULES_DISK_SERIAL,
            "-E",
            "root_owner=0:0",
            "-N",
        ])
        .arg((files * 2 + 1024).to_string())
        .arg("-d")
        .arg(tree_root.join("lib/modules"))
        .arg(&image)
        .arg(format!("{kib}k")))?;
    fs::remove_dir_all(&tree_root).map_err(|e| e.to_string())?;
    let mut modules: Vec<String> = graph.keys().cloned().collect();
    modules.sort();
    Ok(Meta {
        format: FORMAT,
        release: kit.release.clone(),
        boot,
        modules,
    })
}

/// Copies the tree without its `build`/`source` links, noting compressed
/// modules by the tool that unpacks them.
fn copy_tree(
    src: &Path,
    dst: &Path,
    compressed: &mut BTreeMap<&'static str, Vec<PathBuf>>,
) -> std::io::Result<()> {
    fs::create_dir_all(dst)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let to = dst.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &to, compressed)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), &to)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let tool = if name.ends_with(".ko.xz") {
                Some("xz")
            } else if name.ends_with(".ko.zst") {
                Some("zstd")
            } else if name.ends_with(".ko.gz") {
                Some("gzip")
            } else {
                None
            };
            if let Some(tool) = tool {
                compressed.entry(tool).or_default().push(to);
            }
        }
    }
    Ok(())
}

/// Bytes in whole 4 KiB blocks, and entries, of the tree under `dir`.
fn tree_size(dir: &Path) -> std::io::Result<(u64, u64)> {
    let (mut bytes, mut entries) = (0, 0);
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        entries += 1;
        if entry.file_type()?.is_dir() {
            let (b, e) = tree_size(&entry.path())?;
            bytes += b + 4096;
            entries += e;
        } else {
            bytes += entry.metadata()?.len().div_ceil(4096) * 4096;
        }
    }
    Ok((bytes, entries))
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `kernel/net/netfilter/x_tables.ko` → `x_tables`; `dm-mod.ko` → `dm_mod`.
pub fn name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split('.').next().unwrap_or(file);
    stem.replace('-', "_")
}

/// `modules.dep` as name → (path, dependency names).
fn parse_deps(text: &str) -> BTreeMap<String, (String, Vec<String>)> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(path, deps)| {
            let deps = deps.split_whitespace().map(name_of).collect();
            (name_of(path), (path.trim().to_string(), deps))
        })
        .collect()
}

/// The modules the disk needs loaded, dependencies first; an error when the
/// kernel has neither a module nor a built-in for one of them.
fn boot_order(
    graph: &BTreeMap<String, (String, Vec<String>)>,
    builtin: &HashSet<String>,
) -> Result<Vec<String>, String> {
    let mut order = Vec::new();
    for soft in DISK_SOFT_NEEDS {
        if !builtin.contains(soft) && graph.contains_key(soft) {
            visit(soft, graph, &mut order);
        }
    }
    for need in DISK_NEEDS {
        if builtin.contains(need) {
            continue;
        }
        if !graph.contains_key(need) {
            return Err(format!(
                "the kernel has no {need}, built in or as a module, to read the disk with"
            ));
        }
        visit(need, graph, &mut order);
    }
    Ok(order)
}

fn visit(name: &str, graph: &BTreeMap<String, (String, Vec<String>)>, order: &mut Vec<String>) {
    if order.iter().any(|n| n == name) {
        return;
    }
    if let Some((_, deps)) = graph.get(name) {
        for d in deps {
            visit(d, graph, order);
        }
    }
    order.push(name.to_string());
}

/// The in-tree modules (on the disk, not among `own`) that the modules in
/// `kos` name in their `.modinfo` `depends=`, each once, in first-seen order.
pub fn in_tree_dependencies(
    depends: &[Vec<String>],
    own: &[String],
    disk: &GuestModules,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in depends.iter().flatten() {
        let d = d.replace('-', "_");
        if !own.contains(&d) && disk.names.contains(&d) && !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised() {
        assert_eq!(name_of("kernel/drivers/md/dm-mod.ko.xz"), "dm_mod");
        assert_eq!(name_of("kernel/net/netfilter/x_tables.ko"), "x_tables");
    }

    #[test]
    fn boot_modules_come_dependencies_first_and_skip_builtins() {
        let deps = "kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n\
kernel/drivers/virtio/virtio_pci_modern_dev.ko:\n\
kernel/drivers/virtio/virtio_ring.ko:\n\
kernel/drivers/virtio/virtio.ko:\n\
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n";
        let graph = parse_deps(deps);
        let builtin: HashSet<String> = ["kernel/fs/ext4/ext4.ko"]
            .iter()
            .map(|p| name_of(p))
            .collect();
        assert_eq!(
            boot_order(&graph, &builtin).unwrap(),
            [
                "virtio_pci_modern_dev",
                "virtio_ring",
                "virtio",
                "virtio_pci",
                "virtio_blk"
            ]
        );
        // crc32c as a module (the generic flavour) goes before ext4.
        let generic = parse_deps(&format!(
            "{deps}kernel/crypto/crc32c_generic.ko:\nkernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko\nkernel/fs/jbd2/jbd2.ko:\n"
        ));
        assert_eq!(
            boot_order(&generic, &HashSet::new()).unwrap(),
            [
                "crc32c_generic",
                "virtio_pci_modern_dev",
                "virtio_ring",
                "virtio",
                "virtio_pci",
                "virtio_blk",
                "jbd2",
                "ext4"
            ]
        );
        let none = parse_deps("kernel/drivers/virtio/virtio_pci.ko:\n");
        let err = boot_order(&none, &HashSet::new()).unwrap_err();
        assert!(err.contains("virtio_blk"), "{err}");
    }

    #[test]
    fn only_in_tree_dependencies_are_loaded() {
        let disk = GuestModules {
            image: PathBuf::new(),
            boot: Vec::new(),
            names: ["x_tables", "dm_mod"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let depends = vec![
            vec!["x_tables".to_string(), "my_base".to_string()],
            vec!["dm-mod".to_string(), "x_tables".to_string()],
        ];
        assert_eq!(
            in_tree_dependencies(&depends, &["my_base".to_string()], &disk),
            ["x_tables", "dm_mod"]
        );
    }
}
