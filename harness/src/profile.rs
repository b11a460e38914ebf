//! Kernel profiles: which guest kernel a test runs on and how it is obtained.
//!
//! A profile is a small JSON recipe (see `images/kernels/`). The built-in ones
//! are compiled into the binary so modvm works from any directory; a user can
//! point `--kernel` at a recipe file of their own.

use serde::Deserialize;
use std::path::Path;

/// One kernel recipe.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KernelProfile {
    /// Short name used on the command line, in reports and in the cache.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Debian package of the kernel image; a meta-package (such as
    /// `linux-image-cloud-amd64`) is followed to the versioned package it
    /// depends on at fetch time.
    pub image_package: String,
    /// Debian package of the matching headers (also followed if meta).
    pub headers_package: String,
    /// Kernel parameters added to modvm's own.
    #[serde(default)]
    pub cmdline: String,
    /// The compiler the headers were configured with (Debian pins one).
    #[serde(default = "default_compiler")]
    pub compiler: String,
}

fn default_compiler() -> String {
    "gcc-12".to_string()
}

/// The profile used when none is named.
pub const DEFAULT_PROFILE: &str = "debian-6.1-cloud";

const BUILTIN: &[(&str, &str)] = &[(
    "debian-6.1-cloud",
    include_str!("../../images/kernels/debian-6.1-cloud.json"),
)];

/// Why a profile could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("unknown kernel profile `{name}`; built-in profiles: {known}. Or give the path of a recipe file (see images/kernels/)")]
    Unknown { name: String, known: String },
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

/// Resolves `--kernel`: a built-in name, or a path to a recipe file.
pub fn load(name_or_path: &str) -> Result<KernelProfile, ProfileError> {
    if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
        return parse(text, &format!("images/kernels/{name_or_path}.json"));
    }
    let path = Path::new(name_or_path);
    if name_or_path.ends_with(".json") || name_or_path.contains('/') {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        return parse(&text, &path.display().to_string());
    }
    Err(ProfileError::Unknown {
        name: name_or_path.to_string(),
        known: builtin_names().join(", "),
    })
}

fn parse(text: &str, origin: &str) -> Result<KernelProfile, ProfileError> {
    serde_json::from_str(text).map_err(|e| ProfileError::Invalid {
        path: origin.to_string(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
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
        assert_eq!(load(DEFAULT_PROFILE).unwrap().compiler, "gcc-12");
    }

    #[test]
    fn unknown_name_lists_the_known_ones() {
        let e = load("nope").unwrap_err().to_string();
        assert!(e.contains("debian-6.1-cloud"), "{e}");
    }

    #[test]
    fn recipe_errors_carry_a_position() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.json");
        std::fs::write(&f, "{\n  \"name\": \"x\",\n  \"imag_package\": \"y\"\n}").unwrap();
        let e = load(f.to_str().unwrap()).unwrap_err().to_string();
        assert!(e.contains("k.json:3:"), "{e}");
        assert!(e.contains("imag_package"), "{e}");
    }
}
