//! Building a DKMS source tree the way `dkms build` does: the whole tree
//! (the directory holding `dkms.conf`) copied to
//! `<dkms_tree>/<PACKAGE_NAME>/<PACKAGE_VERSION>/build`, its patches
//! applied, `PRE_BUILD` run there, then `CLEAN` and the chosen `MAKE` with
//! `-jN KERNELRELEASE=<release>`, then `POST_BUILD`; the modules are the
//! ones `BUILT_MODULE_NAME`/`BUILT_MODULE_LOCATION` name, not whatever
//! `modules.order` lists. The dkms tree is modvm's own (inside the build
//! directory), so `${dkms_tree}` paths in a dkms.conf land in the copy.

use super::dkms_conf::{self, quote, ConfVars, FILE};
use super::{io_err, BuildError, Built, Stamp, Target};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What DKMS calls `$arch` (`uname -m`) for the guests modvm runs.
const ARCH: &str = crate::machine::Arch::DEFAULT.uname();

/// How many directories up from a module directory a `dkms.conf` is looked
/// for: a spec kept beside a module in a subdirectory of the tree.
const LEVELS: usize = 3;

/// The top of the DKMS tree `dir` belongs to: the nearest of `dir` and its
/// parents that holds a `dkms.conf`.
pub fn root_of(dir: &Path) -> Option<PathBuf> {
    let canonical = fs::canonicalize(dir).ok()?;
    canonical
        .ancestors()
        .take(LEVELS)
        .find(|d| d.join(FILE).is_file())
        .map(Path::to_path_buf)
}

/// `foo-1.2` → (`foo`, `1.2`), as DKMS names a tree under `/usr/src`; a
/// name without a version keeps it whole.
fn module_and_version(root: &Path) -> (String, String) {
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.rsplit_once('-') {
        Some((m, v)) if v.starts_with(|c: char| c.is_ascii_digit()) => (m.into(), v.into()),
        _ => (name, String::new()),
    }
}

/// Builds the tree at `root` for `target` in `build_dir`.
pub fn build(
    root: &Path,
    target: &Target,
    make_args: &[String],
    build_dir: &Path,
) -> Result<Built, BuildError> {
    let conf_path = root.join(FILE);
    let tree = build_dir.join(".modvm-dkms");
    fs::create_dir_all(&tree).map_err(io_err(&tree))?;
    let tree = fs::canonicalize(&tree).map_err(io_err(&tree))?;
    let headers = fs::canonicalize(target.headers).map_err(io_err(target.headers))?;
    let (module, module_version) = module_and_version(root);
    let source_tree = root.parent().unwrap_or(Path::new("/")).to_path_buf();
    let vars = ConfVars {
        kernelver: target.release,
        arch: ARCH,
        kernel_source_dir: &headers,
        dkms_tree: &tree,
        source_tree: &source_tree,
        module: &module,
        module_version: &module_version,
    };
    let conf = dkms_conf::read(&conf_path, &vars)?;
    let config = fs::read_to_string(headers.join(".config")).ok();
    if let Some(reason) = conf.exclusion(target.release, ARCH, config.as_deref()) {
        return Err(BuildError::Excluded {
            conf: conf_path,
            reason,
        });
    }
    let copy = tree
        .join(&conf.package_name)
        .join(&conf.package_version)
        .join("build");
    let sources = super::mirror(root, &copy)?;
    let modules: Vec<PathBuf> = conf.modules.iter().map(|m| copy.join(m.file())).collect();
    let stamp = Stamp::new(&copy, (sources, &headers, target.identity, make_args));
    if stamp.is_current() && modules.iter().all(|m| m.is_file()) {
        return Ok(Built {
            modules,
            log: "(unchanged since the last build)\n".into(),
        });
    }
    stamp.clear();
    let shell = Shell {
        copy: &copy,
        root,
        vars: &vars,
        conf: &conf_path,
    };
    let mut log = String::new();
    for patch in &conf.patches {
        let path = copy.join("patches").join(patch);
        if !path.is_file() {
            return Err(BuildError::Dkms {
                conf: conf_path.clone(),
                message: format!("PATCH {patch:?} is not in the tree's patches/ directory"),
            });
        }
        shell.run(
            "PATCH",
            &format!("patch -p1 < {}", quote(&path.to_string_lossy())),
            &mut log,
        )?;
    }
    shell.script("PRE_BUILD", &conf.pre_build, &mut log)?;
    if !conf.clean.trim().is_empty() {
        // As DKMS: a clean that fails (nothing built yet) is no error.
        let _ = shell.run("CLEAN", &conf.clean, &mut log);
    }
    let make = conf.make_command(&headers, &copy, target.release, super::jobs(), make_args);
    shell.run("MAKE", &make, &mut log).map_err(|e| match e {
        BuildError::DkmsStep { output, status, .. } => BuildError::Compile {
            dir: root.to_path_buf(),
            status,
            output,
        },
        other => other,
    })?;
    shell.script("POST_BUILD", &conf.post_build, &mut log)?;
    for (m, path) in conf.modules.iter().zip(&modules) {
        if !path.is_file() {
            return Err(BuildError::DkmsModuleMissing {
                conf: conf_path.clone(),
                module: m.file().display().to_string(),
                found: found_modules(&copy),
            });
        }
    }
    stamp.write()?;
    Ok(Built { modules, log })
}

/// Runs the tree's commands in the build copy, as DKMS does.
struct Shell<'a> {
    copy: &'a Path,
    root: &'a Path,
    vars: &'a ConfVars<'a>,
    conf: &'a Path,
}

impl Shell<'_> {
    fn run(&self, what: &'static str, command: &str, log: &mut String) -> Result<(), BuildError> {
        log.push_str(&format!("modvm: {what}: {command}\n"));
        let mut bash = Command::new("bash");
        bash.arg("-c")
            .arg(command)
            .current_dir(self.copy)
            .env("PWD", self.copy)
            .env("LC_ALL", "C")
            .env("kernelver", self.vars.kernelver)
            .env("arch", self.vars.arch)
            .env("kernel_source_dir", self.vars.kernel_source_dir)
            .env("dkms_tree", self.vars.dkms_tree)
            .env("source_tree", self.vars.source_tree)
            .env("module", self.vars.module)
            .env("module_version", self.vars.module_version);
        let (status, stdout, stderr) =
            super::run_captured(bash, None).map_err(|e| BuildError::Dkms {
                conf: self.conf.to_path_buf(),
                message: format!("cannot run bash for {what}: {e}"),
            })?;
        let output = super::to_original(
            &format!(
                "{}{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            ),
            self.copy,
            self.root,
        );
        log.push_str(&output);
        match status {
            Some(s) if s.success() => Ok(()),
            other => Err(BuildError::DkmsStep {
                conf: self.conf.to_path_buf(),
                step: what,
                status: other.map(|s| s.to_string()).unwrap_or_default(),
                output,
            }),
        }
    }

    /// `PRE_BUILD`/`POST_BUILD`: a script of the tree (with arguments),
    /// relative to the build copy.
    fn script(&self, what: &'static str, script: &str, log: &mut String) -> Result<(), BuildError> {
        let Some(program) = script.split_whitespace().next() else {
            return Ok(());
        };
        let path = self.copy.join(program);
        if !is_executable(&path) {
            return Err(BuildError::Dkms {
                conf: self.conf.to_path_buf(),
                message: format!(
                    "{what} {program:?} is not an executable file of the tree; `chmod +x {}`",
                    self.root.join(program).display()
                ),
            });
        }
        self.run(
            what,
            &format!("exec ./{}", script.trim_start_matches("./")),
            log,
        )
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The `.ko` files a build made, relative to the copy: what a wrong
/// `BUILT_MODULE_LOCATION` should have said.
fn found_modules(copy: &Path) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, base, out);
            } else if p.extension().is_some_and(|x| x == "ko") {
                if let Ok(rel) = p.strip_prefix(base) {
                    out.push(rel.display().to_string());
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(copy, copy, &mut out);
    out.sort();
    out
}
