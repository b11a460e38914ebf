//! Kernels built from a Debian `linux-source-*` package and a config
//! fragment kept beside the recipe (the `debug` sanitizer kernels). How the
//! `.config` is made is `source_config.rs`; this file downloads, builds and
//! turns the result into a kit, with the kernel's modules installed under
//! `root/lib/modules` when the configuration has any.
//!
//! The build happens in a `.staging-*` directory of the profile's cache and
//! becomes a kit only by `rename(2)` once it finished and was checked, so an
//! interrupted build is never taken for a finished one. The kit's name
//! carries the source version and a hash of the fragment (and of the
//! recipe's edits), so a changed fragment builds a new kit.

use super::busybox;
use super::profile::{Fragments, KernelProfile, Source};
use super::record::{self, Files, Record};
use super::source_config::{self, Base, Configure};
use super::{io_err, Kit, KitError, Progress};
use crate::apt::{self, Sources};
use crate::children;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Fragments of the built-in profiles, compiled in.
const BUILTIN_FRAGMENTS: &[(&str, &str)] = &[
    (
        "debug.config",
        include_str!("../../../images/kernels/debug.config"),
    ),
    (
        "debian-debug.config",
        include_str!("../../../images/kernels/debian-debug.config"),
    ),
];

/// Host programs a kernel build needs besides make and the compiler, with
/// the Debian package of each (`libelf-dev` is checked by its header).
const BUILD_TOOLS: &[(&str, &str)] = &[
    ("flex", "flex"),
    ("bison", "bison"),
    ("bc", "bc"),
    ("/usr/include/gelf.h", "libelf-dev"),
    ("perl", "perl"),
    ("xz", "xz-utils"),
    // certs/extract-cert, built when the configuration has a keyring
    // (Debian's configurations do).
    ("/usr/include/openssl/opensslv.h", "libssl-dev"),
];

/// The text of the recipe's fragments, in merge order: files beside a
/// user's recipe, or built-in ones.
pub(super) fn fragment_text(
    profile: &KernelProfile,
    fragments: &Fragments,
) -> Result<String, KitError> {
    let texts = fragments
        .names()
        .into_iter()
        .map(|name| one_fragment(profile, name))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(texts.join("\n"))
}

/// A fragment beside the recipe, else modvm's own of that name (so a
/// recipe of one's own can build on `debug.config`).
fn one_fragment(profile: &KernelProfile, fragment: &str) -> Result<String, KitError> {
    let path = profile.base.join(fragment);
    let builtin = BUILTIN_FRAGMENTS.iter().find(|(n, _)| *n == fragment);
    if let Some((_, text)) = builtin {
        if profile.base.as_os_str().is_empty() || !path.exists() {
            return Ok(text.to_string());
        }
    }
    fs::read_to_string(&path).map_err(|e| KitError::Build {
        profile: profile.name.clone(),
        problem: format!("cannot read the config fragment {}: {e}", path.display()),
    })
}

/// Missing build tools, as the package names to install.
pub fn missing_tools() -> Vec<&'static str> {
    BUILD_TOOLS
        .iter()
        .filter(|(tool, _)| {
            if tool.starts_with('/') {
                !Path::new(tool).is_file()
            } else {
                crate::prereq::find(tool).is_none()
            }
        })
        .map(|(_, package)| *package)
        .collect()
}

/// Whether the cached kit of a source profile was built from another text
/// of its fragment (or another Debian flavour or module list) than the
/// profile has now (the kit's directory name ends in their hash). False
/// when nothing is cached or the fragment cannot be read: the build then
/// says why.
pub(super) fn is_stale(cache: &Path, profile: &KernelProfile) -> bool {
    let Source::Source { fragment, .. } = &profile.source else {
        return false;
    };
    let (Some(kit), Ok(text)) = (
        super::cached(cache, profile),
        fragment_text(profile, fragment),
    ) else {
        return false;
    };
    let hash = source_config::config_hash(profile, &text);
    let name = kit.dir.file_name().unwrap_or_default().to_string_lossy();
    !name.ends_with(&hash[..12])
}

/// Builds the profile's kernel into a new kit of the cache; called under
/// the profile's lock.
pub(super) fn build(
    cache: &Path,
    profile: &KernelProfile,
    sources: &Sources,
    progress: &mut dyn Progress,
) -> Result<Kit, KitError> {
    let Source::Source {
        package,
        fragment,
        base_config,
        debian_config,
        modules,
        kmemleak_min_age_ms,
    } = &profile.source
    else {
        unreachable!("source::build is only called for source profiles");
    };
    let fail = |problem: String| KitError::Build {
        profile: profile.name.clone(),
        problem,
    };
    let missing = missing_tools();
    if !missing.is_empty() {
        return Err(fail(format!(
            "building a kernel needs {}: install with `sudo apt-get install {}`",
            missing.join(", "),
            missing.join(" ")
        )));
    }
    let fragment_text = fragment_text(profile, fragment)?;
    let apt = super::archive::updated_apt(cache, sources, None, progress)?;
    let busybox = busybox::ensure(cache, Some(&apt), sources, progress)?;
    let info = apt.show(package)?;
    let base = Base::of(base_config, debian_config);
    // Debian's configuration of the same upload as the source.
    let config_info = match &base {
        Base::Debian(_) => {
            let name = source_config::config_package(package).ok_or_else(|| {
                fail(format!(
                    "`debian_config` needs a `linux-source-<version>` package, not `{package}`"
                ))
            })?;
            let config_info = apt.show(&name)?;
            if config_info.version != info.version {
                return Err(fail(format!(
                    "{} is at version {} but {} at {}: Debian's config must come from the same upload as the source; try again after `apt-get update` reaches both",
                    info.name, info.version, config_info.name, config_info.version
                )));
            }
            Some(config_info)
        }
        Base::Target(_) => None,
    };

    let (dir, staging) = super::begin_kit(cache, &profile.name)?;
    let root = staging.path();
    progress.step(&format!(
        "downloading {} ({:.1} MiB)",
        info.name,
        info.size as f64 / 1048576.0
    ));
    let debs_dir = root.join("debs");
    fs::create_dir_all(&debs_dir).map_err(io_err(&debs_dir))?;
    let wanted: Vec<_> = std::iter::once(info.clone())
        .chain(config_info.iter().cloned())
        .collect();
    let debs = apt.download(&wanted, &debs_dir)?;
    // Other runs wait for the package lists while this apt is held; the
    // build takes many minutes and needs no more packages.
    drop(apt);
    progress.step(&format!("extracting {}", info.name));
    let pkg = root.join("pkg");
    for deb in &debs {
        apt::extract(deb, &pkg)?;
    }
    let tarball = fs::read_dir(pkg.join("usr/src"))
        .map_err(io_err(&pkg))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains(".tar"))
        .ok_or_else(|| fail(format!("{} holds no source tarball in usr/src", info.name)))?;
    let tree = root.join("linux");
    fs::create_dir_all(&tree).map_err(io_err(&tree))?;
    let log_path = dir.join("build.log");
    let mut log = fs::File::create(&log_path).map_err(io_err(&log_path))?;
    let mut run = |what: &str, cmd: &mut Command| -> Result<(), KitError> {
        run_logged(cmd, &mut log, &log_path).map_err(|tail| {
            fail(format!(
                "{what} failed; the end of {}:\n{tail}",
                log_path.display()
            ))
        })
    };
    run(
        "unpacking the source",
        Command::new("tar")
            .arg("-xf")
            .arg(&tarball)
            .arg("-C")
            .arg(&tree)
            .arg("--strip-components=1"),
    )?;
    let debian_file = match &base {
        Base::Debian(flavour) => Some(source_config::debian_config_file(&pkg, flavour).map_err(
            |have| {
                fail(format!(
                    "{} has no `{flavour}` config for amd64; it has: {}",
                    config_info.as_ref().map_or("", |c| c.name.as_str()),
                    have.join(", ")
                ))
            },
        )?),
        Base::Target(_) => None,
    };
    let _ = fs::remove_dir_all(&debs_dir);

    if let Some(ms) = kmemleak_min_age_ms {
        set_kmemleak_min_age(&tree, *ms).map_err(fail)?;
    }
    let fragment_name = fragment.describe();
    progress.step(&format!(
        "configuring ({}{} + {fragment_name})",
        base.describe(),
        if modules.is_empty() {
            String::new()
        } else {
            format!(", {} modules kept", modules.len())
        },
    ));
    let fragment_path = root.join("fragment.config");
    fs::write(&fragment_path, &fragment_text).map_err(io_err(&fragment_path))?;
    let config = Configure {
        tree: &tree,
        base: &base,
        debian_file: debian_file.as_deref(),
        modules,
        fragment_name: &fragment_name,
        fragment_path: &fragment_path,
        fragment_text: &fragment_text,
        log_path: &log_path,
    }
    .run(&mut run, &fail)?;
    let _ = fs::remove_dir_all(&pkg);
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    progress.step(&format!(
        "building the kernel with make -j{jobs} (takes minutes; log: {})",
        log_path.display()
    ));
    run(
        "building the kernel",
        &mut source_config::make(&tree, &[&format!("-j{jobs}"), "bzImage", "modules"]),
    )?;
    let release = fs::read_to_string(tree.join("include/config/kernel.release"))
        .map_err(io_err(&tree))?
        .trim()
        .to_string();
    progress.notice(&format!(
        "built kernel {release} in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    if source_config::has_modules(&config) {
        install_modules(&tree, &root.join("root"), &release, &mut run)?;
        let built = ["modules.order", "modules.builtin"]
            .map(|f| fs::read_to_string(tree.join(f)).unwrap_or_default())
            .join("\n");
        let absent = source_config::not_built(modules, &built);
        if !absent.is_empty() {
            progress.notice(&format!(
                "the recipe's `modules` names modules this kernel does not have: {} (misspelt?)",
                absent.join(", ")
            ));
        }
    }

    let fragment_hash = source_config::config_hash(profile, &fragment_text);
    let kit_name = format!("{}_{}_{}", info.name, info.version, &fragment_hash[..12]);
    let final_dir = dir.join(&kit_name);
    let boot = root.join("root/boot");
    let bin = root.join("root/bin");
    for d in [&boot, &bin] {
        fs::create_dir_all(d).map_err(io_err(d))?;
    }
    let copies = [
        ("arch/x86/boot/bzImage", format!("vmlinuz-{release}")),
        ("System.map", format!("System.map-{release}")),
        (".config", format!("config-{release}")),
    ];
    for (from, to) in copies {
        let (from, to) = (tree.join(from), boot.join(to));
        fs::copy(&from, &to).map_err(io_err(&from))?;
    }
    // Moved, not copied: hundreds of MiB with DWARF, and nothing builds
    // against the tree's copy.
    let vmlinux = tree.join("vmlinux");
    fs::rename(&vmlinux, boot.join(format!("vmlinux-{release}"))).map_err(io_err(&vmlinux))?;
    fs::copy(&busybox, bin.join("busybox")).map_err(io_err(&busybox))?;
    progress.step("removing the build's object files (out-of-tree builds need the rest)");
    trim_tree(&tree).map_err(io_err(&tree))?;
    let _ = fs::remove_file(&fragment_path);
    let files = Files {
        vmlinuz: format!("root/boot/vmlinuz-{release}"),
        headers: "linux".into(),
        busybox: "root/bin/busybox".into(),
    };
    let record = Record {
        profile: profile.name.clone(),
        release: release.clone(),
        version: info.version.clone(),
        vmlinuz: final_dir.join(&files.vmlinuz),
        headers: final_dir.join(&files.headers),
        busybox: final_dir.join(&files.busybox),
        files: Some(files),
    };
    progress.step("recording the kit's manifest");
    record::install(root, &record).map_err(io_err(root))?;
    super::commit_kit(&dir, staging, &kit_name, &record, false)
}

/// Installs the kernel's modules into the kit's `root/lib/modules/<release>`
/// (stripped: the guest's modules disk holds them, and the build tree
/// keeps the ones with debug information), without the `build` and
/// `source` links, which would point into the staging directory.
fn install_modules(
    tree: &Path,
    root: &Path,
    release: &str,
    run: &mut source_config::Run,
) -> Result<(), KitError> {
    let mod_path = format!("INSTALL_MOD_PATH={}", root.display());
    run(
        "installing the modules",
        &mut source_config::make(tree, &["modules_install", &mod_path, "INSTALL_MOD_STRIP=1"]),
    )?;
    let dir = root.join("lib/modules").join(release);
    for link in ["build", "source"] {
        let _ = fs::remove_file(dir.join(link));
    }
    Ok(())
}

/// Drops what only the kernel's own link needed: every object file (with
/// `vmlinux` moved to `root/boot`, 2 of a Debian-config kernel's 4 GiB).
/// An out-of-tree build reads the configuration, headers,
/// `Module.symvers`, scripts and tools, and the in-tree `.ko` files stay
/// for symbolising their frames.
fn trim_tree(dir: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            trim_tree(&entry.path())?;
        } else if kind.is_file() && entry.file_name().to_string_lossy().ends_with(".o") {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Runs `cmd` with its output appended to `log`; on failure returns the
/// last lines of the log (the part that says what went wrong). The child
/// dies with modvm, like every other.
fn run_logged(cmd: &mut Command, log: &mut fs::File, log_path: &Path) -> Result<(), String> {
    let out = log.try_clone().map_err(|e| e.to_string())?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let _ = writeln!(log, "$ {cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    children::arm(cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    children::register(child.id());
    let status = child.wait();
    children::unregister(child.id());
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("({s})\n{}", tail(log_path, 40))),
        Err(e) => Err(e.to_string()),
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// kmemleak ignores objects younger than `MSECS_MIN_AGE` (5000 ms): a
/// module's leak would need a 5 s wait after the test. A checked edit of
/// that one `#define`; an unexpected source says so instead of guessing.
fn set_kmemleak_min_age(tree: &Path, ms: u32) -> Result<(), String> {
    let path = tree.join("mm/kmemleak.c");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut found = false;
    let edited: Vec<String> = text
        .lines()
        .map(|l| {
            let mut words = l.split_whitespace();
            if words.next() == Some("#define") && words.next() == Some("MSECS_MIN_AGE") {
                found = true;
                let rest: Vec<&str> = words.skip(1).collect();
                format!("#define MSECS_MIN_AGE\t\t{ms}\t{}", rest.join(" "))
            } else {
                l.to_string()
            }
        })
        .collect();
    if !found {
        return Err(format!(
            "{} has no `#define MSECS_MIN_AGE`; drop `kmemleak_min_age_ms` from the recipe for this kernel",
            path.display()
        ));
    }
    fs::write(&path, edited.join("\n") + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_keeps_all_but_object_files() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        fs::create_dir_all(t.join("net/core")).unwrap();
        for f in [
            "net/core/dev.o",
            "net/core/dev.c",
            "vmlinux.o",
            "Module.symvers",
            "x.ko",
        ] {
            fs::write(t.join(f), "").unwrap();
        }
        trim_tree(t).unwrap();
        assert!(!t.join("net/core/dev.o").exists() && !t.join("vmlinux.o").exists());
        for f in ["net/core/dev.c", "Module.symvers", "x.ko"] {
            assert!(t.join(f).exists(), "{f}");
        }
    }

    #[test]
    fn kmemleak_edit_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("mm")).unwrap();
        let f = dir.path().join("mm/kmemleak.c");
        fs::write(
            &f,
            "x\n#define MSECS_MIN_AGE\t\t5000\t/* minimum object age */\ny\n",
        )
        .unwrap();
        set_kmemleak_min_age(dir.path(), 0).unwrap();
        let t = fs::read_to_string(&f).unwrap();
        assert!(
            t.contains("#define MSECS_MIN_AGE\t\t0\t/* minimum object age */"),
            "{t}"
        );
        fs::write(&f, "nothing here\n").unwrap();
        assert!(set_kmemleak_min_age(dir.path(), 0)
            .unwrap_err()
            .contains("MSECS_MIN_AGE"));
    }

    #[test]
    fn the_builtin_fragment_turns_on_the_sanitizers() {
        let text = BUILTIN_FRAGMENTS[0].1;
        for opt in [
            "CONFIG_KASAN=y",
            "CONFIG_DEBUG_KMEMLEAK=y",
            "CONFIG_PROVE_LOCKING=y",
        ] {
            assert!(text.lines().any(|l| l == opt), "{opt}");
        }
    }
}
