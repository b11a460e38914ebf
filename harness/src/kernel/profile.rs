//! Kernel profiles: which guest kernel a test runs on and where it comes from.
//!
//! A profile is a small JSON recipe (see `images/kernels/` and
//! `docs/kernels.md`). The built-in ones are compiled into the binary so
//! modvm works from any directory; `--kernel` also takes the path of a
//! recipe file. Guest settings that depend on the kernel (memory floor, boot
//! deadline, extra kernel parameters) live here too.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One kernel recipe.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KernelProfile {
    /// Short name used on the command line, in reports and in the cache.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Where the kernel, its build tree and busybox come from.
    pub source: Source,
    /// Kernel parameters added to modvm's own.
    #[serde(default)]
    pub cmdline: String,
    /// The compiler the kernel's build tree was configured with.
    #[serde(default = "default_compiler")]
    pub compiler: String,
    /// Smallest guest memory this kernel reaches its shell with (MiB).
    #[serde(default = "default_memory_min")]
    pub memory_min_mib: u32,
    /// Guest memory when `--memory` is not given (MiB).
    #[serde(default = "default_memory")]
    pub memory_mib: u32,
    /// Boot deadline when `--boot-timeout` is not given (seconds).
    #[serde(default = "default_boot_timeout")]
    pub boot_timeout_s: f64,
    /// The directory of the recipe file, against which relative paths in
    /// `source` are resolved (not part of the recipe); empty for built-in
    /// recipes.
    #[serde(skip)]
    pub base: PathBuf,
}

/// Where a profile's kernel comes from; one file per kind in `kernel/`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Source {
    /// Debian's packages, through apt with private state (`kernel/debian.rs`).
    Debian {
        /// Kernel image package; a meta-package (`linux-image-cloud-amd64`)
        /// is followed to the versioned package it depends on.
        image: String,
        /// Matching headers package (also followed if meta).
        headers: String,
        /// Another suite of the host's Debian archive, e.g.
        /// `bookworm-backports`; packages missing there come from the
        /// host's own suites.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        suite: Option<String>,
    },
    /// Built once from a Debian `linux-source-*` package and a config
    /// fragment, then cached (`kernel/source.rs`).
    Source {
        /// e.g. `linux-source-6.1`.
        package: String,
        /// Config fragment applied on top of the starting configuration: a
        /// file beside the recipe (for built-in profiles, one in
        /// `images/kernels/`), or a list of them, merged in order.
        fragment: Fragments,
        /// The make target that gives the starting configuration
        /// (`tinyconfig` when neither this nor `debian_config` is given).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base_config: Option<String>,
        /// Start from Debian's own configuration of this flavour
        /// (`cloud-amd64`, `amd64`), taken from the `linux-config-*`
        /// package of the source's version, instead of a make target.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        debian_config: Option<String>,
        /// Keep only these of the starting configuration's modules, and
        /// what they need (`make localmodconfig`): a distribution's config
        /// builds thousands of modules a test guest never loads.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        modules: Vec<String>,
        /// Lower kmemleak's minimum object age (a checked edit of
        /// `mm/kmemleak.c`), so leaks are reported right after a test.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kmemleak_min_age_ms: Option<u32>,
    },
    /// A kernel image and its build tree that the user built
    /// (`make bzImage modules_prepare`; `kernel/local.rs`).
    Local {
        /// The bzImage, e.g. `arch/x86/boot/bzImage` of the tree.
        image: PathBuf,
        /// The build tree (`make -C` target for out-of-tree modules).
        build: PathBuf,
    },
    /// The machine's running kernel (`kernel/host.rs`).
    Host,
}

/// A recipe's config fragment, or several merged in order (later lines win).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(untagged)]
pub enum Fragments {
    One(String),
    Many(Vec<String>),
}

impl Fragments {
    pub fn names(&self) -> Vec<&str> {
        match self {
            Fragments::One(n) => vec![n.as_str()],
            Fragments::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }

    /// For messages: `debug.config + debian-debug.config`.
    pub fn describe(&self) -> String {
        self.names().join(" + ")
    }
}

impl Source {
    /// A word for listings and messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Debian { .. } => "debian",
            Source::Source { .. } => "source",
            Source::Local { .. } => "local",
            Source::Host => "host",
        }
    }
}

fn default_compiler() -> String {
    "gcc-12".to_string()
}

fn default_memory_min() -> u32 {
    96
}

fn default_memory() -> u32 {
    256
}

fn default_boot_timeout() -> f64 {
    60.0
}

/// The profile used when none is named.
pub const DEFAULT_PROFILE: &str = "debian-6.1-cloud";

const BUILTIN: &[(&str, &str)] = &[
    (
        "debian-6.1-cloud",
        include_str!("../../../images/kernels/debian-6.1-cloud.json"),
    ),
    (
        "debian-6.12-cloud",
        include_str!("../../../images/kernels/debian-6.12-cloud.json"),
    ),
    (
        "debian-6.1-generic",
        include_str!("../../../images/kernels/debian-6.1-generic.json"),
    ),
    (
        "debian-6.12-generic",
        include_str!("../../../images/kernels/debian-6.12-generic.json"),
    ),
    ("debug", include_str!("../../../images/kernels/debug.json")),
    (
        "debian-6.1-debug",
        include_str!("../../../images/kernels/debian-6.1-debug.json"),
    ),
    ("host", include_str!("../../../images/kernels/host.json")),
];

/// Why a profile could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("unknown kernel profile `{name}`{hint}; built-in profiles: {known}. Or give the path of a recipe file (see docs/kernels.md)")]
    Unknown {
        name: String,
        hint: String,
        known: String,
    },
    #[error("cannot read kernel recipe {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: invalid kernel recipe: {message}")]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
}

/// Names of the built-in profiles.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

/// Resolves one `--kernel` entry: a built-in name, or a path to a recipe.
pub fn load(name_or_path: &str) -> Result<KernelProfile, ProfileError> {
    if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
        // An empty base: files a built-in recipe names are compiled in.
        return parse(
            text,
            &format!("images/kernels/{name_or_path}.json"),
            Path::new(""),
        );
    }
    let path = Path::new(name_or_path);
    if name_or_path.ends_with(".json") || name_or_path.contains('/') {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        return parse(&text, &path.display().to_string(), base);
    }
    Err(unknown(name_or_path))
}

/// The error for a profile name that names nothing, with a suggestion.
pub fn unknown(name: &str) -> ProfileError {
    let hint = builtin_names()
        .into_iter()
        .map(|k| (crate::spec::edit_distance(name, k), k))
        .filter(|(d, k)| *d <= 3.max(k.len() / 3))
        .min()
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    ProfileError::Unknown {
        name: name.to_string(),
        hint,
        known: builtin_names().join(", "),
    }
}

/// Whether `name` is a profile a spec's `kernels` may name: a built-in, or
/// one of the profiles of this run.
pub fn is_known(name: &str, this_run: &[KernelProfile]) -> bool {
    builtin_names().contains(&name) || this_run.iter().any(|p| p.name == name)
}

fn parse(text: &str, origin: &str, base: &Path) -> Result<KernelProfile, ProfileError> {
    let mut p: KernelProfile = serde_json::from_str(text).map_err(|e| ProfileError::Invalid {
        path: origin.to_string(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let invalid = |message: String| ProfileError::Invalid {
        path: origin.to_string(),
        line: 1,
        column: 1,
        message,
    };
    if p.name.is_empty()
        || !p
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || p.name.starts_with('.')
    {
        return Err(invalid(format!(
            "`name` {:?} must be letters, digits, `-`, `_` or `.` (it names a cache directory)",
            p.name
        )));
    }
    if !(p.boot_timeout_s > 0.0 && p.boot_timeout_s <= 3600.0) {
        return Err(invalid(format!(
            "`boot_timeout_s` must be above 0 and at most 3600, not {}",
            p.boot_timeout_s
        )));
    }
    if p.memory_min_mib < 32 || p.memory_mib < p.memory_min_mib || p.memory_mib > 65536 {
        return Err(invalid(format!(
            "`memory_mib` ({}) must be at least `memory_min_mib` ({}, itself at least 32) and at most 65536",
            p.memory_mib, p.memory_min_mib
        )));
    }
    if let Source::Source {
        base_config,
        debian_config,
        fragment,
        modules,
        ..
    } = &p.source
    {
        if base_config.is_some() && debian_config.is_some() {
            return Err(invalid(
                "`base_config` and `debian_config` both give the starting configuration; keep one"
                    .to_string(),
            ));
        }
        if fragment.names().is_empty() {
            return Err(invalid(
                "`fragment` is an empty list; name at least one config fragment".to_string(),
            ));
        }
        if let Some(bad) = modules.iter().find(|m| {
            m.is_empty()
                || !m
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        }) {
            return Err(invalid(format!(
                "`modules` entry {bad:?} is not a module name (letters, digits, `_`, `-`, as `lsmod` shows them)"
            )));
        }
    }
    p.base = base.to_path_buf();
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_parse() {
        for name in builtin_names() {
            let p = load(name).unwrap();
            assert_eq!(p.name, name);
        }
        let p = load(DEFAULT_PROFILE).unwrap();
        assert_eq!(p.compiler, "gcc-12");
        assert_eq!(p.source.kind(), "debian");
        assert_eq!(load("host").unwrap().source, Source::Host);
    }

    #[test]
    fn unknown_name_lists_the_known_ones_and_suggests() {
        let e = load("nope").unwrap_err().to_string();
        assert!(e.contains("debian-6.1-cloud"), "{e}");
        let e = load("debian-6.1-clod").unwrap_err().to_string();
        assert!(e.contains("did you mean `debian-6.1-cloud`?"), "{e}");
    }

    #[test]
    fn recipe_errors_carry_a_position() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.json");
        std::fs::write(
            &f,
            "{\n  \"name\": \"x\",\n  \"source\": {\"kind\": \"debian\", \"imag\": \"y\"}\n}",
        )
        .unwrap();
        let e = load(f.to_str().unwrap()).unwrap_err().to_string();
        // serde places errors inside a tagged `source` at its end.
        assert!(e.contains("k.json:4:"), "{e}");
        assert!(e.contains("unknown field `imag`"), "{e}");
    }

    #[test]
    fn local_paths_are_relative_to_the_recipe() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("mine.json");
        std::fs::write(
            &f,
            r#"{"name": "mine", "source": {"kind": "local", "image": "linux/arch/x86/boot/bzImage", "build": "linux"}}"#,
        )
        .unwrap();
        let p = load(f.to_str().unwrap()).unwrap();
        assert_eq!(p.base, dir.path());
        assert!(matches!(p.source, Source::Local { .. }));
    }

    #[test]
    fn bad_names_and_numbers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.json");
        for (body, words) in [
            (r#"{"name": "../x", "source": {"kind": "host"}}"#, "`name`"),
            (
                r#"{"name": "x", "boot_timeout_s": 0, "source": {"kind": "host"}}"#,
                "boot_timeout_s",
            ),
            (
                r#"{"name": "x", "memory_mib": 64, "source": {"kind": "host"}}"#,
                "memory_mib",
            ),
            (
                r#"{"name": "x", "source": {"kind": "source", "package": "linux-source-6.1", "fragment": "f", "base_config": "defconfig", "debian_config": "cloud-amd64"}}"#,
                "keep one",
            ),
            (
                r#"{"name": "x", "source": {"kind": "source", "package": "linux-source-6.1", "fragment": []}}"#,
                "empty list",
            ),
            (
                r#"{"name": "x", "source": {"kind": "source", "package": "p", "fragment": "f", "modules": ["ok", "x 1 0\nevil"]}}"#,
                "not a module name",
            ),
        ] {
            std::fs::write(&f, body).unwrap();
            let e = load(f.to_str().unwrap()).unwrap_err().to_string();
            assert!(e.contains(words), "{e}");
        }
    }

    /// Every recipe shown in docs/kernels.md is one modvm takes, and the
    /// examples cover every kind of source.
    #[test]
    fn the_documented_recipes_parse() {
        let doc = include_str!("../../../docs/kernels.md");
        let mut kinds = Vec::new();
        for (i, block) in doc.split("```json\n").skip(1).enumerate() {
            let json = block.split("```").next().unwrap();
            let p = parse(json, &format!("docs/kernels.md block {i}"), Path::new(""))
                .unwrap_or_else(|e| panic!("{e}\n{json}"));
            kinds.push(p.source.kind());
        }
        for kind in ["debian", "source", "local", "host"] {
            assert!(kinds.contains(&kind), "no example of `{kind}`: {kinds:?}");
        }
    }
}
