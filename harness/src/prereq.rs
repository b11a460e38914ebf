//! Host prerequisites: what modvm needs on the host, and how to get it.

use crate::machine::Arch;
use std::path::PathBuf;
use std::process::Command;

/// One host tool.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub program: String,
    /// Debian package that provides it.
    pub package: String,
    pub why: String,
}

/// Tools needed to fetch, build and boot with a profile's compiler.
pub fn required(compiler: &str) -> Vec<Tool> {
    let t = |program: &str, package: &str, why: &str| Tool {
        program: program.into(),
        package: package.into(),
        why: why.into(),
    };
    vec![
        t(
            Arch::DEFAULT.qemu_binary(),
            Arch::DEFAULT.qemu_package(),
            "boots the guest",
        ),
        t("make", "make", "builds the module (kbuild)"),
        t(
            compiler,
            compiler,
            "the compiler the kernel headers were configured with",
        ),
        t("apt-get", "apt", "fetches the guest kernel and busybox"),
        t("dpkg-deb", "dpkg", "unpacks the fetched packages"),
        t(
            "addr2line",
            "binutils",
            "symbolises crash frames to file:line",
        ),
        t(
            "depmod",
            "kmod",
            "indexes the kernel's own modules for the guest's modprobe",
        ),
        t(
            "mke2fs",
            "e2fsprogs",
            "writes the disk that carries the kernel's own modules",
        ),
        t("xz", "xz-utils", "unpacks the kernel's compressed modules"),
    ]
}

/// Tools a kernel's build tree runs for every out-of-tree module, read from
/// its `.config` (`config`, the file's text): `pahole` where modules get
/// BTF (Debian's 6.12 headers stop at the BTF step without it), and the
/// compiler the configuration names, when it is not a plain `gcc`/`cc`.
pub fn for_kernel_config(config: &str) -> Vec<Tool> {
    let mut tools = Vec::new();
    let value = |key: &str| {
        config
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    };
    if value("CONFIG_DEBUG_INFO_BTF_MODULES") == Some("y") {
        tools.push(Tool {
            program: "pahole".into(),
            package: "pahole".into(),
            why: "the kernel's headers run it to add BTF to every module".into(),
        });
    }
    let compiler = value("CONFIG_CC_VERSION_TEXT")
        .map(|v| v.trim_matches('"'))
        .and_then(|v| v.split_whitespace().next());
    if let Some(cc) = compiler {
        // `x86_64-linux-gnu-gcc-12` and `gcc-12` both come with `gcc-12`.
        let package = cc.rsplit_once("-gcc").map_or(cc, |(_, v)| v);
        let package = if package.starts_with('-') {
            format!("gcc{package}")
        } else {
            package.to_string()
        };
        if package.starts_with("gcc-") && package[4..].chars().all(|c| c.is_ascii_digit()) {
            tools.push(Tool {
                program: cc.into(),
                package,
                why: "the compiler the kernel headers were configured with".into(),
            });
        }
    }
    tools
}

/// The debugger `--gdb` prints a command for (not needed otherwise).
pub fn debugger() -> Tool {
    Tool {
        program: "gdb".into(),
        package: "gdb".into(),
        why: "debugs the guest kernel and modules (--gdb)".into(),
    }
}

/// Full path of `program` on PATH.
pub fn find(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The tools that are not on PATH.
pub fn missing(tools: &[Tool]) -> Vec<Tool> {
    tools
        .iter()
        .filter(|t| find(&t.program).is_none())
        .cloned()
        .collect()
}

/// The command a person runs to install `tools`.
pub fn install_hint(tools: &[Tool]) -> String {
    let mut pkgs: Vec<&str> = tools.iter().map(|t| t.package.as_str()).collect();
    pkgs.dedup();
    format!("sudo apt-get install {}", pkgs.join(" "))
}

/// Why prerequisites could not be met.
#[derive(Debug, thiserror::Error)]
pub enum PrereqError {
    #[error("missing host tools: {names}\n  install them with: {hint}\n  (`modvm doctor` lists every prerequisite)")]
    Missing { names: String, hint: String },
    #[error("installing {packages} with apt-get failed:\n{output}")]
    InstallFailed { packages: String, output: String },
}

/// True where modvm may install packages itself: root on a Debian-family host.
pub fn can_self_install() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() == 0 };
    root && std::path::Path::new("/etc/debian_version").exists()
}

/// Makes sure every tool is there, installing with apt-get when allowed.
pub fn ensure(tools: &[Tool], say: &mut dyn FnMut(&str)) -> Result<(), PrereqError> {
    let missing = missing(tools);
    if missing.is_empty() {
        return Ok(());
    }
    let names = missing
        .iter()
        .map(|t| t.program.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if !can_self_install() {
        return Err(PrereqError::Missing {
            names,
            hint: install_hint(&missing),
        });
    }
    let packages: Vec<String> = missing.iter().map(|t| t.package.clone()).collect();
    say(&format!(
        "installing missing host tools ({names}) with apt-get: {}",
        packages.join(" ")
    ));
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
    };
    let mut out = install();
    if !matches!(&out, Ok(o) if o.status.success()) {
        // Fresh machines often have empty package lists.
        let _ = Command::new("apt-get").args(["update", "-q"]).output();
        out = install();
    }
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Err(PrereqError::InstallFailed {
                packages: packages.join(" "),
                output: String::from_utf8_lossy(&o.stderr).into_owned(),
            })
        }
        Err(e) => {
            return Err(PrereqError::InstallFailed {
                packages: packages.join(" "),
                output: e.to_string(),
            })
        }
    }
    let still = missing_names(tools);
    if !still.is_empty() {
        return Err(PrereqError::Missing {
            hint: install_hint(&self::missing(tools)),
            names: still,
        });
    }
    Ok(())
}

fn missing_names(tools: &[Tool]) -> String {
    missing(tools)
        .iter()
        .map(|t| t.program.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_names_packages() {
        let tools = required("gcc-12");
        assert_eq!(
            install_hint(&tools[..2]),
            "sudo apt-get install qemu-system-x86 make"
        );
    }

    #[test]
    fn kernel_config_names_pahole_and_the_compiler() {
        let debian_6_12 = "CONFIG_CC_VERSION_TEXT=\"x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0\"\nCONFIG_DEBUG_INFO_BTF_MODULES=y\n";
        let tools = for_kernel_config(debian_6_12);
        let names: Vec<(&str, &str)> = tools
            .iter()
            .map(|t| (t.program.as_str(), t.package.as_str()))
            .collect();
        assert_eq!(
            names,
            [("pahole", "pahole"), ("x86_64-linux-gnu-gcc-12", "gcc-12")]
        );
        let debian_6_1 = "CONFIG_CC_VERSION_TEXT=\"gcc-12 (Debian 12.2.0-14) 12.2.0\"\n# CONFIG_DEBUG_INFO_BTF_MODULES is not set\n";
        let tools = for_kernel_config(debian_6_1);
        assert_eq!(tools.len(), 1);
        assert_eq!(
            (tools[0].program.as_str(), tools[0].package.as_str()),
            ("gcc-12", "gcc-12")
        );
        // A plain `gcc` is the profile's business; nothing for no config.
        assert!(for_kernel_config("CONFIG_CC_VERSION_TEXT=\"gcc (GCC) 14\"").is_empty());
        assert!(for_kernel_config("").is_empty());
    }

    #[test]
    fn sh_is_found_and_nonsense_is_missing() {
        assert!(find("sh").is_some());
        let t = Tool {
            program: "modvm-no-such-tool".into(),
            package: "x".into(),
            why: "test".into(),
        };
        assert_eq!(missing(std::slice::from_ref(&t)), vec![t]);
    }
}
