//! `dkms.conf`: what a DKMS source tree says about its own build.
//!
//! A dkms.conf is a bash fragment, not a key=value file: Debian's
//! packages compute values (`MAKE` from `$kernelver`), source the kernel's
//! `.config` and branch on it. So it is read as DKMS reads it, sourced by
//! bash with the variables DKMS defines (`dkms_conf.sh`), and only the
//! results come back here; what DKMS decides with regular expressions
//! (`MAKE_MATCH`, `PATCH_MATCH`, `BUILD_EXCLUSIVE_KERNEL/ARCH`) is decided
//! by bash too, so the two cannot disagree on a pattern.

use super::BuildError;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The file DKMS reads from the top of a source tree.
pub const FILE: &str = "dkms.conf";

/// How long sourcing a dkms.conf may take: it is meant to set variables,
/// and one that waits on something would otherwise hang the run.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

const DRIVER: &str = include_str!("dkms_conf.sh");

/// A module the tree's build makes: `<location>/<name>.ko` in the build
/// copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltModule {
    pub name: String,
    /// Relative to the build directory; empty for its top.
    pub location: String,
}

impl BuiltModule {
    /// The `.ko` file, relative to the build directory.
    pub fn file(&self) -> PathBuf {
        Path::new(&self.location).join(format!("{}.ko", self.name))
    }
}

/// What DKMS would take from one dkms.conf for one kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DkmsConf {
    pub package_name: String,
    pub package_version: String,
    /// The `MAKE[n]` chosen for this kernel; empty when the file sets none
    /// (DKMS then runs kbuild on the build directory).
    pub make: String,
    pub clean: String,
    pub pre_build: String,
    pub post_build: String,
    /// `PATCH[n]` that apply to this kernel, in order.
    pub patches: Vec<String>,
    pub modules: Vec<BuiltModule>,
    pub exclusive_kernel: String,
    pub exclusive_kernel_min: String,
    pub exclusive_kernel_max: String,
    pub exclusive_arch: String,
    pub exclusive_config: String,
    /// `BUILD_EXCLUSIVE_KERNEL` / `_ARCH` did not match (bash's verdict).
    pub excluded_kernel: bool,
    pub excluded_arch: bool,
}

/// The variables DKMS defines for a dkms.conf.
#[derive(Debug, Clone)]
pub struct ConfVars<'a> {
    pub kernelver: &'a str,
    pub arch: &'a str,
    pub kernel_source_dir: &'a Path,
    pub dkms_tree: &'a Path,
    pub source_tree: &'a Path,
    pub module: &'a str,
    pub module_version: &'a str,
}

/// Sources `conf` with bash and returns what DKMS would use.
pub fn read(conf: &Path, vars: &ConfVars) -> Result<DkmsConf, BuildError> {
    let invalid = |message: String| BuildError::Dkms {
        conf: conf.to_path_buf(),
        message,
    };
    let mut bash = Command::new("bash");
    bash.arg("-c")
        .arg(DRIVER)
        .arg("dkms.conf")
        .arg(conf)
        .arg(vars.kernelver)
        .arg(vars.arch)
        .arg(vars.kernel_source_dir)
        .arg(vars.dkms_tree)
        .arg(vars.source_tree)
        .arg(vars.module)
        .arg(vars.module_version)
        .current_dir(conf.parent().unwrap_or(Path::new(".")))
        .env("LC_ALL", "C");
    let (status, stdout, stderr) = super::run_captured(bash, Some(READ_TIMEOUT))
        .map_err(|e| invalid(format!("cannot run bash to read it: {e} (install bash)")))?;
    let Some(status) = status else {
        return Err(invalid(format!(
            "reading it took more than {} s; a dkms.conf only sets variables",
            READ_TIMEOUT.as_secs()
        )));
    };
    if !status.success() {
        return Err(invalid(format!(
            "bash could not read it ({status}): {}",
            String::from_utf8_lossy(&stderr).trim()
        )));
    }
    let conf_text = parse(&stdout);
    check(&conf_text).map_err(invalid)?;
    Ok(conf_text)
}

/// The driver's NUL-separated name/value pairs.
fn parse(out: &[u8]) -> DkmsConf {
    let mut c = DkmsConf::default();
    let fields: Vec<String> = out
        .split(|b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    for pair in fields.chunks_exact(2) {
        let value = pair[1].clone();
        match pair[0].as_str() {
            "PACKAGE_NAME" => c.package_name = value,
            "PACKAGE_VERSION" => c.package_version = value,
            "CLEAN" => c.clean = value,
            "PRE_BUILD" => c.pre_build = value,
            "POST_BUILD" => c.post_build = value,
            "BUILD_EXCLUSIVE_KERNEL" => c.exclusive_kernel = value,
            "BUILD_EXCLUSIVE_KERNEL_MIN" => c.exclusive_kernel_min = value,
            "BUILD_EXCLUSIVE_KERNEL_MAX" => c.exclusive_kernel_max = value,
            "BUILD_EXCLUSIVE_ARCH" => c.exclusive_arch = value,
            "BUILD_EXCLUSIVE_CONFIG" => c.exclusive_config = value,
            "make_command" => c.make = value,
            "excluded_kernel" => c.excluded_kernel = true,
            "excluded_arch" => c.excluded_arch = true,
            "patch" => c.patches.push(value),
            "module_name" => c.modules.push(BuiltModule {
                name: value,
                location: String::new(),
            }),
            "module_location" => {
                if let Some(m) = c.modules.last_mut() {
                    m.location = value;
                }
            }
            _ => {}
        }
    }
    c
}

/// What DKMS itself refuses, said with the fix.
fn check(c: &DkmsConf) -> Result<(), String> {
    for (field, value) in [
        ("PACKAGE_NAME", &c.package_name),
        ("PACKAGE_VERSION", &c.package_version),
    ] {
        if value.is_empty() {
            return Err(format!("it sets no {field}; DKMS needs one too"));
        }
        if value.contains('/')
            || value == "."
            || value == ".."
            || value.chars().any(char::is_control)
        {
            return Err(format!(
                "{field} {value:?} is not a plain name (it becomes a directory name)"
            ));
        }
    }
    if c.modules.is_empty() {
        return Err(
            "it names no module: set BUILT_MODULE_NAME[0] (and DEST_MODULE_LOCATION[0])".into(),
        );
    }
    for (i, m) in c.modules.iter().enumerate() {
        if m.name.is_empty() {
            return Err(format!("BUILT_MODULE_NAME[{i}] is empty"));
        }
        if m.name.ends_with(".ko") || m.name.ends_with(".o") || m.name.contains('/') {
            return Err(format!(
                "BUILT_MODULE_NAME[{i}] {:?} must be a module name without path or .ko",
                m.name
            ));
        }
        if Path::new(&m.location).is_absolute()
            || Path::new(&m.location)
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(format!(
                "BUILT_MODULE_LOCATION[{i}] {:?} must be a path inside the source tree",
                m.location
            ));
        }
    }
    Ok(())
}

impl DkmsConf {
    /// Why DKMS would not build this tree for the kernel, or `None`.
    /// `config` is the kernel's `.config` text (`None` when the kit has
    /// none, where DKMS skips the config check as well).
    pub fn exclusion(&self, release: &str, arch: &str, config: Option<&str>) -> Option<String> {
        if self.excluded_kernel {
            return Some(format!(
                "BUILD_EXCLUSIVE_KERNEL {:?} does not match kernel {release}",
                self.exclusive_kernel
            ));
        }
        if !self.exclusive_kernel_min.is_empty()
            && version_cmp(release, &self.exclusive_kernel_min).is_lt()
        {
            return Some(format!(
                "BUILD_EXCLUSIVE_KERNEL_MIN is {}, kernel {release} is older",
                self.exclusive_kernel_min
            ));
        }
        if !self.exclusive_kernel_max.is_empty()
            && version_cmp(release, &self.exclusive_kernel_max).is_gt()
        {
            return Some(format!(
                "BUILD_EXCLUSIVE_KERNEL_MAX is {}, kernel {release} is newer",
                self.exclusive_kernel_max
            ));
        }
        if self.excluded_arch {
            return Some(format!(
                "BUILD_EXCLUSIVE_ARCH {:?} does not match {arch}",
                self.exclusive_arch
            ));
        }
        let config = config?;
        let set = |option: &str| {
            config.lines().any(|l| {
                l.strip_prefix(option)
                    .and_then(|r| r.strip_prefix('='))
                    .is_some_and(|v| v == "y" || v == "m")
            })
        };
        for want in self.exclusive_config.split_whitespace() {
            match want.strip_prefix('!') {
                Some(option) if set(option) => {
                    return Some(format!(
                        "BUILD_EXCLUSIVE_CONFIG wants {option} off, and this kernel has it"
                    ))
                }
                None if !set(want) => {
                    return Some(format!(
                        "BUILD_EXCLUSIVE_CONFIG needs {want}, which this kernel does not have"
                    ))
                }
                _ => {}
            }
        }
        None
    }

    /// The command DKMS runs to build: the tree's own `MAKE` (or kbuild on
    /// the build directory) with `-jN KERNELRELEASE=<release>` put after its
    /// leading `make`, as DKMS does; `extra` are the user's make variables,
    /// appended shell-quoted.
    pub fn make_command(
        &self,
        kernel_source_dir: &Path,
        build: &Path,
        release: &str,
        jobs: usize,
        extra: &[String],
    ) -> String {
        let base = if self.make.trim().is_empty() {
            format!(
                "make -C {} M={}",
                quote(&kernel_source_dir.to_string_lossy()),
                quote(&build.to_string_lossy())
            )
        } else {
            self.make.clone()
        };
        let mut command = match base.strip_prefix("make") {
            Some(rest) => format!("make -j{jobs} KERNELRELEASE={}{rest}", quote(release)),
            None => base,
        };
        for arg in extra {
            command.push(' ');
            command.push_str(&quote(arg));
        }
        command
    }
}

/// Single-quotes a word for bash.
pub fn quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=+:,@%".contains(c))
    {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Orders kernel versions as `sort -V` does for the usual forms
/// (`6.1.0-56-cloud-amd64` against `5.18`): numbers compare as numbers,
/// and a version that is a prefix of another is older.
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |v: &str| -> Vec<u64> {
        v.split(['.', '-', '+', '~', '_'])
            .map_while(|p| p.parse::<u64>().ok())
            .collect()
    };
    parts(a).cmp(&parts(b))
}

#[cfg(test)]
mod tests;
