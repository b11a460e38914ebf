//! Building modules out of tree against a kit's headers.
//!
//! The module's sources are mirrored into a build directory (only files whose
//! content changed are copied, so make's own incremental build still works)
//! and built there with `make -C <headers> M=<build dir> modules`. The user's
//! module directory is only ever read.

mod dkms;
pub mod dkms_conf;
pub(crate) mod elf;

use crate::children;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Why a module did not build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{dir} has no Kbuild, Makefile or dkms.conf: nothing says how to build it; add a Kbuild file with `obj-m := <name>.o`"
    )]
    NoKbuild { dir: PathBuf },
    #[error("{conf}: {message}")]
    Dkms { conf: PathBuf, message: String },
    /// The tree's `BUILD_EXCLUSIVE_*` rules out this kernel: a skip, as
    /// DKMS skips it, not a failure.
    #[error("{conf}: not built for this kernel: {reason}")]
    Excluded { conf: PathBuf, reason: String },
    #[error("{conf}: {step} failed ({status}):\n{output}")]
    DkmsStep {
        conf: PathBuf,
        step: &'static str,
        status: String,
        output: String,
    },
    #[error("{conf}: the build made no {module} (BUILT_MODULE_NAME/BUILT_MODULE_LOCATION); it made: {}", if found.is_empty() { "no .ko file".to_string() } else { found.join(", ") })]
    DkmsModuleMissing {
        conf: PathBuf,
        module: String,
        found: Vec<String>,
    },
    #[error("cannot run make: {0} (install make)")]
    NoMake(std::io::Error),
    #[error("building {dir} failed (make exited with {status}); the compiler said:\n{output}")]
    Compile {
        dir: PathBuf,
        status: String,
        output: String,
    },
    #[error("building {dir} produced no .ko file; does its Kbuild set obj-m?")]
    NoModules { dir: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The result of a build.
#[derive(Debug, Clone)]
pub struct Built {
    /// The `.ko` files this build made, in kbuild's order.
    pub modules: Vec<PathBuf>,
    /// make's output (for `--verbose`).
    pub log: String,
}

/// Files that are build products, never mirrored from the source tree.
fn is_build_product(name: &str) -> bool {
    name.starts_with('.')
        || [".o", ".ko", ".mod", ".mod.c", ".order", ".symvers", ".cmd"]
            .iter()
            .any(|ext| name.ends_with(ext))
        || name == "modules.order"
        || name == "Module.symvers"
}

/// Mirrors sources from `src` into `dst`, copying only changed files, and
/// returns a fingerprint of the sources (names and contents).
///
/// A source directory that holds the build directory itself (`--out` inside
/// the module's directory) is not mirrored: it would copy itself forever.
pub fn mirror(src: &Path, dst: &Path) -> Result<u64, BuildError> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    fs::create_dir_all(dst).map_err(io_err(dst))?;
    let root = fs::canonicalize(dst).map_err(io_err(dst))?;
    mirror_into(src, dst, &root, &mut hasher)?;
    Ok(hasher.finish())
}

fn mirror_into(
    src: &Path,
    dst: &Path,
    root: &Path,
    hasher: &mut impl Hasher,
) -> Result<(), BuildError> {
    fs::create_dir_all(dst).map_err(io_err(dst))?;
    let mut entries = fs::read_dir(src)
        .map_err(io_err(src))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err(src))?;
    entries.sort_by_key(|e| e.file_name());
    remove_vanished(&entries, dst)?;
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_build_product(&name) || name == "target" {
            continue;
        }
        let from = entry.path();
        let to = dst.join(&name);
        name.hash(hasher);
        if from.is_dir() {
            if fs::canonicalize(&from).is_ok_and(|f| root.starts_with(f)) {
                continue;
            }
            mirror_into(&from, &to, root, hasher)?;
        } else if from.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let data = fs::read(&from).map_err(io_err(&from))?;
            data.hash(hasher);
            if fs::read(&to).ok().as_deref() != Some(&data[..]) {
                fs::write(&to, &data).map_err(io_err(&to))?;
            }
            // Scripts a Kbuild runs keep their executable bit (DKMS trees
            // ship such scripts).
            let mode = fs::metadata(&from)
                .map_err(io_err(&from))?
                .permissions()
                .mode()
                & 0o7777;
            mode.hash(hasher);
            if fs::metadata(&to).map_err(io_err(&to))?.permissions().mode() & 0o7777 != mode {
                fs::set_permissions(&to, fs::Permissions::from_mode(mode | 0o600))
                    .map_err(io_err(&to))?;
            }
        }
    }
    Ok(())
}

/// Removes sources from the mirror that are gone from the user's directory,
/// so a deleted file is not built (a `.c` or a `Kbuild` in a subdirectory
/// could still name a module). Build products stay: make cleans up after
/// itself and `modules.order` says which `.ko` files are current.
fn remove_vanished(entries: &[fs::DirEntry], dst: &Path) -> Result<(), BuildError> {
    let present: std::collections::HashSet<_> = entries.iter().map(|e| e.file_name()).collect();
    for entry in fs::read_dir(dst).map_err(io_err(dst))? {
        let entry = entry.map_err(io_err(dst))?;
        let name = entry.file_name();
        if present.contains(&name) || is_build_product(&name.to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type().map_err(io_err(&path))?.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(io_err(&path))?;
    }
    Ok(())
}

/// The kernel a module is built for.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The build tree to pass as `make -C` (DKMS's `kernel_source_dir`).
    pub headers: &'a Path,
    /// The kit's identity (release and configuration hash): a rebuilt
    /// kernel at the same headers path never reuses `.ko` files.
    pub identity: &'a str,
    /// `uname -r` (DKMS's `kernelver`).
    pub release: &'a str,
}

/// Builds the module in `src` for `target`, working in `build_dir`. A
/// directory inside a DKMS tree (a `dkms.conf` in it or above it) builds
/// as DKMS builds it. `make_args` are the user's variables for kbuild
/// (`W=1`, checked by [`check_make_arg`]); they are part of the
/// fingerprint, so changing them rebuilds.
pub fn build(
    src: &Path,
    target: &Target,
    make_args: &[String],
    build_dir: &Path,
) -> Result<Built, BuildError> {
    if let Some(root) = dkms::root_of(src) {
        return dkms::build(&root, target, make_args, build_dir);
    }
    if !src.join("Kbuild").is_file() && !src.join("Makefile").is_file() {
        return Err(BuildError::NoKbuild {
            dir: src.to_path_buf(),
        });
    }
    let sources = mirror(src, build_dir)?;
    let build_abs = fs::canonicalize(build_dir).map_err(io_err(build_dir))?;
    let headers = target.headers;
    // Even a no-op kbuild run costs most of a second; skip it when neither
    // the sources nor the headers changed since the last good build.
    let stamp = Stamp::new(&build_abs, (sources, headers, target.identity, make_args));
    if stamp.is_current() {
        if let Ok(modules) = built_modules(&build_abs) {
            if !modules.is_empty() {
                return Ok(Built {
                    modules,
                    log: "(unchanged since the last build)\n".into(),
                });
            }
        }
    }
    stamp.clear();
    // make runs in the copy, so a relative headers path (`--cache rel`)
    // must not be taken from there.
    let headers_abs = fs::canonicalize(headers).unwrap_or_else(|_| headers.to_path_buf());
    let mut make = Command::new("make");
    make.arg("-C")
        .arg(&headers_abs)
        .arg(format!("M={}", build_abs.display()))
        .arg(format!("-j{}", jobs()))
        .args(make_args)
        .arg("modules")
        // Inside the copy, as DKMS runs it: Kbuilds that use `$(PWD)` or
        // relative paths find their own tree wherever modvm was started.
        .current_dir(&build_abs)
        .env("PWD", &build_abs)
        .env("LC_ALL", "C");
    let (status, stdout, stderr) = run_captured(make, None).map_err(BuildError::NoMake)?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    let status = status.expect("no deadline");
    if !status.success() {
        return Err(BuildError::Compile {
            dir: src.to_path_buf(),
            status: status.to_string(),
            output: to_original(&log, &build_abs, src),
        });
    }
    let modules = built_modules(&build_abs)?;
    if modules.is_empty() {
        return Err(BuildError::NoModules {
            dir: src.to_path_buf(),
        });
    }
    stamp.write()?;
    Ok(Built { modules, log })
}

/// The compiler names the build copy; the author edits the original.
fn to_original(log: &str, copy: &Path, original: &Path) -> String {
    match fs::canonicalize(original) {
        Ok(original) => log.replace(
            &format!("{}/", copy.display()),
            &format!("{}/", original.display()),
        ),
        Err(_) => log.to_string(),
    }
}

/// Runs a build command with its output captured; with a `limit`, a
/// command still running then is killed and the status is `None`. The
/// command and whatever it starts stop with modvm (Ctrl-C, SIGTERM,
/// SIGKILL), like the guests do.
fn run_captured(
    mut cmd: Command,
    limit: Option<Duration>,
) -> std::io::Result<(Option<ExitStatus>, Vec<u8>, Vec<u8>)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    children::arm(&mut cmd);
    let mut child = cmd.spawn()?;
    let pid = child.id();
    children::register(pid);
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = read(child.stdout.take().map(|p| Box::new(p) as _));
    let err = read(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = limit.map(|l| Instant::now() + l);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Ok(Some(s)),
            Ok(None) if deadline.is_some_and(|d| Instant::now() >= d) => {
                // SAFETY: plain kill(2) of the child's own process group.
                unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
                let _ = child.kill();
                let _ = child.wait();
                break Ok(None);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => break Err(e),
        }
    };
    children::unregister(pid);
    let status = status?;
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    Ok((status, stdout, stderr))
}

/// The fingerprint of the last successful build, kept in the build copy.
struct Stamp {
    path: PathBuf,
    text: String,
}

impl Stamp {
    fn new(copy: &Path, inputs: impl Hash) -> Stamp {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        inputs.hash(&mut hasher);
        Stamp {
            path: copy.join(STAMP),
            text: format!("{:016x}\n", hasher.finish()),
        }
    }

    fn is_current(&self) -> bool {
        fs::read_to_string(&self.path).ok().as_deref() == Some(self.text.as_str())
    }

    fn clear(&self) {
        let _ = fs::remove_file(&self.path);
    }

    fn write(&self) -> Result<(), BuildError> {
        fs::write(&self.path, &self.text).map_err(io_err(&self.path))
    }
}

/// Variables modvm sets itself or that move the build elsewhere: given
/// again they would build the wrong tree or put the `.ko` files where modvm
/// does not look.
const RESERVED_MAKE_VARS: &[&str] = &["M", "O", "KBUILD_EXTMOD", "KBUILD_OUTPUT", "SUBDIRS"];

/// Checks one `--kbuild-arg`: only a make variable (`NAME=VALUE`, also
/// `+=`, `:=`), never an option or a target, and none that modvm's build
/// depends on.
pub fn check_make_arg(arg: &str) -> Result<(), String> {
    let usage = "pass make variables only, like `W=1`, `C=1` or `ccflags-y=-DDEBUG`";
    let Some(eq) = arg.find('=') else {
        return Err(format!(
            "`{arg}` is not a make variable: {usage} (modvm chooses the target and the options)"
        ));
    };
    let name = arg[..eq].trim_end_matches([':', '+', '?']);
    let valid = !name.is_empty()
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(format!("`{arg}` is not a make variable: {usage}"));
    }
    if RESERVED_MAKE_VARS.contains(&name) {
        return Err(format!(
            "`{arg}`: modvm sets `{name}` itself (it builds in its own copy of the module, with `-C` the kernel's build tree and `M=` that copy); {usage}"
        ));
    }
    Ok(())
}

/// Records the fingerprint of the last successful build in the build dir.
const STAMP: &str = ".modvm-build-stamp";

/// The `.ko` files this build made, in kbuild's order. `modules.order` is
/// rewritten by every build with exactly the modules the Kbuild names now,
/// so a `.ko` left over from a renamed or removed module is never picked
/// up. Entries are `dir/name.o` (or `.ko` in older kernels), relative to the
/// build directory.
fn built_modules(dir: &Path) -> Result<Vec<PathBuf>, BuildError> {
    let order = dir.join("modules.order");
    let text = match fs::read_to_string(&order) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&order)(e)),
    };
    let mut modules = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let rel = line.strip_suffix(".o").map(|s| format!("{s}.ko"));
        let path = dir.join(rel.as_deref().unwrap_or(line));
        if !path.is_file() {
            return Err(BuildError::Io {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "listed in modules.order but not built",
                ),
            });
        }
        if !modules.contains(&path) {
            modules.push(path);
        }
    }
    Ok(modules)
}

/// The modules in an order insmod accepts: each after the modules it
/// depends on (the `depends=` entry of its `.modinfo`), ties by name.
/// Returns file stems (`my-dash`, what insmod loads from `/modules`); the
/// kernel's name for a module has `_` for `-` ([`module_name`]).
pub fn load_order(modules: &[PathBuf]) -> Vec<String> {
    let mut pending: Vec<(String, String, Vec<String>)> = modules
        .iter()
        .filter_map(|p| {
            let stem = p.file_stem()?.to_string_lossy().into_owned();
            let deps = fs::read(p).map(|b| modinfo_depends(&b)).unwrap_or_default();
            Some((module_name(&stem), stem, deps))
        })
        .collect();
    pending.sort();
    let names: Vec<String> = pending.iter().map(|(n, _, _)| n.clone()).collect();
    let mut loaded: Vec<String> = Vec::new();
    let mut order: Vec<String> = Vec::new();
    while !pending.is_empty() {
        let ready = pending
            .iter()
            .position(|(_, _, deps)| {
                deps.iter()
                    .all(|d| loaded.contains(d) || !names.contains(d))
            })
            .unwrap_or(0); // a cycle: load in name order and let insmod say why
        let (name, stem, _) = pending.remove(ready);
        loaded.push(name);
        order.push(stem);
    }
    order
}

/// The kernel's name for the module in `<stem>.ko`: kbuild turns `-` into
/// `_` (`my-dash.ko` is `my_dash` to rmmod and lsmod).
pub fn module_name(stem: &str) -> String {
    stem.replace('-', "_")
}

/// The kernel's names of the modules in these `.ko` files, in order.
pub fn module_names(kos: &[PathBuf]) -> Vec<String> {
    kos.iter()
        .filter_map(|m| m.file_stem())
        .map(|s| module_name(&s.to_string_lossy()))
        .collect()
}

/// The modules a built module depends on (its `.modinfo` `depends=`).
pub fn depends_of(ko: &Path) -> Vec<String> {
    fs::read(ko)
        .map(|b| modinfo_depends(&b))
        .unwrap_or_default()
}

/// Whether the module declares a licence the kernel does not count as GPL
/// compatible, so that loading it taints the kernel `P` (the list is the
/// kernel's `license_is_gpl_compatible`).
pub fn is_proprietary(ko: &Path) -> bool {
    const GPL: [&str; 6] = [
        "GPL",
        "GPL v2",
        "GPL and additional rights",
        "Dual BSD/GPL",
        "Dual MIT/GPL",
        "Dual MPL/GPL",
    ];
    let Ok(bytes) = fs::read(ko) else {
        return false;
    };
    match modinfo_field(&bytes, "license") {
        Some(l) => !GPL.contains(&l.as_str()),
        // No licence at all taints P as well.
        None => true,
    }
}

/// Whether the module holds KUnit suites, which the kernel runs when it is
/// loaded (see [`elf::KUNIT_SUITES`]).
pub(crate) fn has_kunit_suites(ko: &Path) -> bool {
    elf::has_section(ko, elf::KUNIT_SUITES)
}

/// Whether any object a build left in `dir` (or one level below) holds
/// KUnit suites: what a module that did not link says about itself.
pub(crate) fn objects_have_kunit_suites(dir: &Path) -> bool {
    let objects = |d: &Path| -> Vec<PathBuf> {
        fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    };
    let mut candidates = objects(dir);
    let subdirs: Vec<PathBuf> = candidates.iter().filter(|p| p.is_dir()).cloned().collect();
    for d in subdirs {
        candidates.extend(objects(&d));
    }
    candidates
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "o" || e == "ko"))
        .any(|p| has_kunit_suites(p))
}

/// A `key=value` entry of a module's `.modinfo`.
fn modinfo_field(ko: &[u8], key: &str) -> Option<String> {
    let needle = format!("\0{key}=");
    let needle = needle.as_bytes();
    let at = ko.windows(needle.len()).position(|w| w == needle)?;
    let rest = &ko[at + needle.len()..];
    let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// The `depends=a,b` field kbuild writes into a module's `.modinfo`.
fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    modinfo_field(ko, "depends")
        .unwrap_or_default()
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| d.replace('-', "_"))
        .collect()
}

fn jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_skips_build_products_and_keeps_unchanged_files() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        fs::write(src.path().join("hello.c"), "int x;").unwrap();
        fs::write(src.path().join("Kbuild"), "obj-m := hello.o").unwrap();
        fs::write(src.path().join("hello.ko"), "stale").unwrap();
        fs::write(src.path().join(".hello.o.cmd"), "x").unwrap();
        mirror(src.path(), dst.path()).unwrap();
        assert!(dst.path().join("hello.c").is_file());
        assert!(!dst.path().join("hello.ko").exists());
        assert!(!dst.path().join(".hello.o.cmd").exists());

        let before = fs::metadata(dst.path().join("hello.c"))
            .unwrap()
            .modified()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        mirror(src.path(), dst.path()).unwrap();
        let after = fs::metadata(dst.path().join("hello.c"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(before, after, "unchanged files are not rewritten");
    }

    #[test]
    fn a_build_directory_inside_the_sources_is_not_mirrored() {
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("hello.c"), "int x;").unwrap();
        let dst = src.path().join("out").join("build").join("hello");
        mirror(src.path(), &dst).unwrap();
        mirror(src.path(), &dst).unwrap();
        assert!(dst.join("hello.c").is_file());
        assert!(!dst.join("out").exists());
    }

    #[test]
    fn load_order_puts_dependencies_first() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("a_user.ko");
        let base = dir.path().join("z_base.ko");
        fs::write(
            &user,
            b"\x7fELF\0license=GPL\0depends=z_base\0name=a_user\0",
        )
        .unwrap();
        fs::write(&base, b"\x7fELF\0depends=\0name=z_base\0").unwrap();
        assert_eq!(load_order(&[user, base]), vec!["z_base", "a_user"]);
    }

    #[test]
    fn mirror_removes_sources_gone_from_the_user_directory() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        fs::write(src.path().join("alpha.c"), "int a;").unwrap();
        fs::create_dir(src.path().join("sub")).unwrap();
        fs::write(src.path().join("sub/Kbuild"), "obj-m := s.o").unwrap();
        mirror(src.path(), dst.path()).unwrap();
        fs::write(dst.path().join("alpha.o"), "object").unwrap();
        fs::remove_file(src.path().join("alpha.c")).unwrap();
        fs::remove_dir_all(src.path().join("sub")).unwrap();
        fs::write(src.path().join("beta.c"), "int b;").unwrap();
        mirror(src.path(), dst.path()).unwrap();
        assert!(!dst.path().join("alpha.c").exists());
        assert!(!dst.path().join("sub").exists());
        assert!(dst.path().join("beta.c").is_file());
        assert!(
            dst.path().join("alpha.o").exists(),
            "build products are make's business"
        );
    }

    #[test]
    fn built_modules_come_from_modules_order_not_a_glob() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("alpha.ko"), "left over").unwrap();
        fs::write(dir.path().join("beta.ko"), "new").unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/my-dash.ko"), "new").unwrap();
        let abs = dir.path().join("beta.ko");
        fs::write(
            dir.path().join("modules.order"),
            format!("{}\nsub/my-dash.o\n", abs.display()),
        )
        .unwrap();
        assert_eq!(
            built_modules(dir.path()).unwrap(),
            vec![abs, dir.path().join("sub/my-dash.ko")]
        );
    }

    #[test]
    fn a_module_in_modules_order_that_is_missing_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("modules.order"), "gone.o\n").unwrap();
        let e = built_modules(dir.path()).unwrap_err().to_string();
        assert!(e.contains("gone.ko") && e.contains("modules.order"), "{e}");
    }

    #[test]
    fn load_order_gives_file_stems_and_matches_dependencies_by_module_name() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("a-user.ko");
        let base = dir.path().join("z-base.ko");
        fs::write(&user, b"\x7fELF\0depends=z_base\0name=a_user\0").unwrap();
        fs::write(&base, b"\x7fELF\0depends=\0name=z_base\0").unwrap();
        assert_eq!(load_order(&[user, base]), vec!["z-base", "a-user"]);
    }

    #[test]
    fn a_directory_without_kbuild_is_refused() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let target = Target {
            headers: Path::new("/nonexistent"),
            identity: "k",
            release: "6.1.0",
        };
        let e = build(src.path(), &target, &[], dst.path()).unwrap_err();
        assert!(matches!(e, BuildError::NoKbuild { .. }));
    }
}

#[cfg(test)]
mod make_arg_tests {
    use super::check_make_arg;

    #[test]
    fn make_variables_pass_and_what_would_break_the_build_is_refused() {
        for ok in [
            "W=1",
            "C=1",
            "ccflags-y=-DDEBUG -O1",
            "KCFLAGS+=-g",
            "V:=1",
            "LLVM=",
        ] {
            assert_eq!(check_make_arg(ok), Ok(()), "{ok}");
        }
        for (bad, words) in [
            ("M=/tmp", "modvm sets `M` itself"),
            ("O=out", "modvm sets `O` itself"),
            ("KBUILD_EXTMOD+=x", "sets `KBUILD_EXTMOD`"),
            ("-C", "not a make variable"),
            ("-Cdir=x", "not a make variable"),
            ("clean", "not a make variable"),
            ("=1", "not a make variable"),
            ("a b=1", "not a make variable"),
        ] {
            let e = check_make_arg(bad).unwrap_err();
            assert!(e.contains(words), "{bad}: {e}");
        }
    }
}
