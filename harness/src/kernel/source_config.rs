//! The `.config` of a kernel built from source: a starting configuration
//! (a make target such as `tinyconfig`, or Debian's own configuration of a
//! flavour), trimmed to the modules the recipe keeps, with the recipe's
//! fragment merged on top and checked.
//!
//! Debian's configurations build well over a thousand modules; a sanitizer
//! build of all of them takes hours on a small host. `make localmodconfig`
//! with a module list the recipe gives keeps the built-in part as Debian
//! has it and only the named modules (and what they need), which is what a
//! test guest loads.

use super::profile::{KernelProfile, Source};
use super::KitError;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How the starting configuration is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Base {
    /// `make <target>`.
    Target(String),
    /// Debian's configuration of this flavour, from `linux-config-<series>`.
    Debian(String),
}

impl Base {
    pub(super) fn of(base_config: &Option<String>, debian_config: &Option<String>) -> Base {
        match (debian_config, base_config) {
            (Some(flavour), _) => Base::Debian(flavour.clone()),
            (None, Some(target)) => Base::Target(target.clone()),
            (None, None) => Base::Target("tinyconfig".to_string()),
        }
    }

    /// For progress lines: `tinyconfig`, `Debian's cloud-amd64 config`.
    pub(super) fn describe(&self) -> String {
        match self {
            Base::Target(t) => t.clone(),
            Base::Debian(f) => format!("Debian's {f} config"),
        }
    }
}

/// The Debian package holding the configurations for `linux-source-<series>`.
pub(super) fn config_package(source_package: &str) -> Option<String> {
    source_package
        .strip_prefix("linux-source-")
        .filter(|s| !s.is_empty())
        .map(|series| format!("linux-config-{series}"))
}

/// The file of `flavour` inside an unpacked `linux-config-*` package (Debian
/// names them `config.<arch>_<featureset>_<flavour>.xz`), or the flavours
/// the package has when it lacks that one.
pub(super) fn debian_config_file(pkg: &Path, flavour: &str) -> Result<PathBuf, Vec<String>> {
    let mut flavours = Vec::new();
    let src = pkg.join("usr/src");
    for dir in fs::read_dir(&src).into_iter().flatten().flatten() {
        for file in fs::read_dir(dir.path()).into_iter().flatten().flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if let Some(f) = name
                .strip_prefix("config.amd64_none_")
                .and_then(|n| n.strip_suffix(".xz"))
            {
                if f == flavour {
                    return Ok(file.path());
                }
                flavours.push(f.to_string());
            }
        }
    }
    flavours.sort();
    Err(flavours)
}

/// What `make localmodconfig` reads as the loaded modules: `lsmod`'s output.
pub(super) fn lsmod_text(modules: &[String]) -> String {
    let mut text = String::from("Module                  Size  Used by\n");
    for m in modules {
        text.push_str(&format!("{} 0 0\n", m.replace('-', "_")));
    }
    text
}

/// The modules `localmodconfig` could not keep, with the options each
/// needs, from its "module X did not have configs CONFIG_A CONFIG_B" lines.
pub(super) fn modules_without_configs(output: &str) -> Vec<(String, Vec<String>)> {
    output
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("module ")?;
            let (name, configs) = rest.split_once(" did not have configs")?;
            Some((
                name.to_string(),
                configs.split_whitespace().map(str::to_string).collect(),
            ))
        })
        .collect()
}

/// Of the modules `localmodconfig` could not keep, those the final
/// configuration still lacks (the fragment may turn their option on), each
/// with the options that would build it.
pub(super) fn still_unbuildable(missing: &[(String, Vec<String>)], config: &str) -> Vec<String> {
    let set: BTreeSet<&str> = config
        .lines()
        .filter_map(|l| {
            let (name, value) = l.split_once('=')?;
            (value == "y" || value == "m").then_some(name)
        })
        .collect();
    missing
        .iter()
        .filter(|(_, configs)| !configs.iter().any(|c| set.contains(c.as_str())))
        .map(|(m, configs)| format!("{m} ({} is off)", configs.join(" or ")))
        .collect()
}

/// `CONFIG_X=...` lines of the fragment that the final `.config` lacks:
/// Kconfig drops an option whose dependencies are unmet without a word.
pub fn dropped_options(fragment: &str, config: &str) -> Vec<String> {
    let have: std::collections::HashSet<&str> = config.lines().collect();
    fragment
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("CONFIG_") && l.contains('='))
        .filter(|l| !have.contains(l))
        .map(str::to_string)
        .collect()
}

/// Whether the configuration builds any module (a tinyconfig one does not,
/// and then there is no module tree to install).
pub(super) fn has_modules(config: &str) -> bool {
    config
        .lines()
        .any(|l| l.starts_with("CONFIG_") && l.ends_with("=m"))
}

/// Names of the recipe's `modules` that the built kernel has neither as a
/// module nor built in (a misspelt name is not reported by
/// `localmodconfig`), from the build's `modules.order` and
/// `modules.builtin`.
pub(super) fn not_built(modules: &[String], order_and_builtin: &str) -> Vec<String> {
    let built: BTreeSet<String> = order_and_builtin
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .map(|f| {
            f.trim_end_matches(".o")
                .trim_end_matches(".ko")
                .replace('-', "_")
        })
        .collect();
    modules
        .iter()
        .filter(|m| !built.contains(&m.replace('-', "_")))
        .cloned()
        .collect()
}

/// The hash a source kit's directory name ends in: of what identifies its
/// configuration (see [`identity`]). The build names the kit with it and
/// the staleness check compares against it, so both must come from here.
pub(super) fn config_hash(profile: &KernelProfile, fragment_text: &str) -> String {
    super::manifest::hash_bytes(identity(profile, fragment_text).as_bytes())
}

/// What identifies a source kit's configuration: the fragment's text, plus
/// the Debian flavour and module list when the recipe has them (kept out of
/// the text otherwise, so a recipe without them keeps its kit).
fn identity(profile: &KernelProfile, fragment_text: &str) -> String {
    let mut text = fragment_text.to_string();
    if let Source::Source {
        debian_config,
        modules,
        ..
    } = &profile.source
    {
        if let Some(f) = debian_config {
            text.push_str(&format!("\n# modvm: debian_config {f}\n"));
        }
        if !modules.is_empty() {
            text.push_str(&format!("\n# modvm: modules {}\n", modules.join(" ")));
        }
    }
    text
}

/// `make ARGS` in the kernel tree, with messages kbuild's scripts can parse.
pub(super) fn make(tree: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("make");
    c.current_dir(tree).args(args).env("LC_ALL", "C");
    c
}

/// One logged command of the build, failing with the end of the log.
pub(super) type Run<'a> = dyn FnMut(&str, &mut Command) -> Result<(), KitError> + 'a;

/// Makes `tree/.config`: the base, the kept modules, the fragment, checked;
/// [`Configure::run`] returns its text.
pub(super) struct Configure<'a> {
    pub tree: &'a Path,
    pub base: &'a Base,
    /// The Debian configuration file, unpacked, for [`Base::Debian`].
    pub debian_file: Option<&'a Path>,
    pub modules: &'a [String],
    pub fragment_name: &'a str,
    pub fragment_path: &'a Path,
    pub fragment_text: &'a str,
    pub log_path: &'a Path,
}

impl Configure<'_> {
    pub(super) fn run(
        &self,
        run: &mut Run,
        fail: &dyn Fn(String) -> KitError,
    ) -> Result<String, KitError> {
        let tree = self.tree;
        let make = |args: &[&str]| make(tree, args);
        match (self.base, self.debian_file) {
            (Base::Target(target), _) => run(&format!("make {target}"), &mut make(&[target]))?,
            (Base::Debian(flavour), Some(file)) => {
                let out = Command::new("xz")
                    .arg("-dc")
                    .arg(file)
                    .output()
                    .map_err(|e| fail(format!("cannot run xz: {e}")))?;
                if !out.status.success() {
                    return Err(fail(format!(
                        "cannot unpack Debian's {flavour} config {}: {}",
                        file.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
                let config = tree.join(".config");
                fs::write(&config, &out.stdout)
                    .map_err(|e| fail(format!("{}: {e}", config.display())))?;
                run("make olddefconfig", &mut make(&["olddefconfig"]))?;
            }
            (Base::Debian(_), None) => unreachable!("a Debian base comes with its file"),
        }
        let mut missing = Vec::new();
        if !self.modules.is_empty() {
            let lsmod = tree.join("modvm.lsmod");
            fs::write(&lsmod, lsmod_text(self.modules))
                .map_err(|e| fail(format!("{}: {e}", lsmod.display())))?;
            let before = fs::metadata(self.log_path).map_or(0, |m| m.len());
            run(
                "make localmodconfig",
                &mut make(&["localmodconfig", &format!("LSMOD={}", lsmod.display())]),
            )?;
            let log = fs::read(self.log_path).unwrap_or_default();
            let added =
                String::from_utf8_lossy(&log[(before as usize).min(log.len())..]).into_owned();
            missing = modules_without_configs(&added);
        }
        run(
            "merging the fragment",
            Command::new(tree.join("scripts/kconfig/merge_config.sh"))
                .current_dir(tree)
                .args(["-m", "-O", ".", ".config"])
                .arg(self.fragment_path),
        )?;
        run("make olddefconfig", &mut make(&["olddefconfig"]))?;
        let config = fs::read_to_string(tree.join(".config"))
            .map_err(|e| fail(format!("{}: {e}", tree.join(".config").display())))?;
        let dropped = dropped_options(self.fragment_text, &config);
        if !dropped.is_empty() {
            return Err(fail(format!(
                "these options of {} did not survive `make olddefconfig` (their dependencies are unmet): {}",
                self.fragment_name,
                dropped.join(", ")
            )));
        }
        let unbuildable = still_unbuildable(&missing, &config);
        if !unbuildable.is_empty() {
            return Err(fail(format!(
                "the recipe's `modules` names modules this configuration does not build: {}; turn the option on (as `=m`) in a fragment of the recipe (now {}) or drop the module",
                unbuildable.join(", "),
                self.fragment_name
            )));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_options_are_named() {
        let fragment = "# c\nCONFIG_A=y\nCONFIG_B=y\nCONFIG_N=4\n";
        let config = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_N=4\n";
        assert_eq!(dropped_options(fragment, config), vec!["CONFIG_B=y"]);
    }

    #[test]
    fn the_base_is_a_target_or_a_debian_flavour() {
        assert_eq!(Base::of(&None, &None), Base::Target("tinyconfig".into()));
        assert_eq!(
            Base::of(&Some("defconfig".into()), &None),
            Base::Target("defconfig".into())
        );
        let d = Base::of(&None, &Some("cloud-amd64".into()));
        assert_eq!(d.describe(), "Debian's cloud-amd64 config");
        assert_eq!(
            config_package("linux-source-6.1").as_deref(),
            Some("linux-config-6.1")
        );
        assert_eq!(config_package("linux-source-"), None);
        assert_eq!(config_package("linux-6.1"), None);
    }

    #[test]
    fn the_flavour_file_is_found_or_the_others_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("usr/src/linux-config-6.1");
        fs::create_dir_all(&src).unwrap();
        for f in [
            "config.amd64_none_amd64.xz",
            "config.amd64_none_cloud-amd64.xz",
            "config.amd64_rt_amd64.xz",
        ] {
            fs::write(src.join(f), "").unwrap();
        }
        assert_eq!(
            debian_config_file(dir.path(), "cloud-amd64").unwrap(),
            src.join("config.amd64_none_cloud-amd64.xz")
        );
        assert_eq!(
            debian_config_file(dir.path(), "cloud").unwrap_err(),
            vec!["amd64".to_string(), "cloud-amd64".to_string()]
        );
    }

    #[test]
    fn modules_localmodconfig_could_not_keep_are_checked_against_the_result() {
        let out = "  HOSTCC  x\nusing config: '.config'\nmodule usbcore did not have configs CONFIG_USB\nmodule xhci_pci did not have configs CONFIG_USB_XHCI_PCI CONFIG_X\n";
        let missing = modules_without_configs(out);
        assert_eq!(
            missing,
            vec![
                ("usbcore".to_string(), vec!["CONFIG_USB".to_string()]),
                (
                    "xhci_pci".to_string(),
                    vec!["CONFIG_USB_XHCI_PCI".to_string(), "CONFIG_X".to_string()]
                )
            ]
        );
        // The fragment turned USB on; xHCI stays off.
        let config = "CONFIG_USB=m\n# CONFIG_USB_XHCI_PCI is not set\nCONFIG_X=n\n";
        assert_eq!(
            still_unbuildable(&missing, config),
            vec!["xhci_pci (CONFIG_USB_XHCI_PCI or CONFIG_X is off)"]
        );
    }

    #[test]
    fn lsmod_lines_and_built_modules() {
        let mods = vec![
            "dm-mod".to_string(),
            "x_tables".to_string(),
            "nosuch".to_string(),
        ];
        assert_eq!(
            lsmod_text(&mods),
            "Module                  Size  Used by\ndm_mod 0 0\nx_tables 0 0\nnosuch 0 0\n"
        );
        let order = "drivers/md/dm-mod.ko\nkernel/crypto/cbc.ko\n";
        assert_eq!(
            not_built(&mods, order),
            vec!["x_tables".to_string(), "nosuch".to_string()]
        );
        let order = "drivers/md/dm-mod.o\nnet/netfilter/x_tables.o\n";
        assert_eq!(not_built(&mods, order), vec!["nosuch"]);
        assert!(has_modules("CONFIG_A=y\nCONFIG_B=m\n"));
        assert!(!has_modules("CONFIG_A=y\n# CONFIG_B is not set\n"));
    }
}
