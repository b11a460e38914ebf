//! Where modvm keeps its download cache (builds and logs go to `--out`).

use std::path::PathBuf;

/// The cache root: `--cache`, else `$MODVM_CACHE`, else `$XDG_CACHE_HOME/modvm`,
/// else `~/.cache/modvm`.
pub fn cache_dir(flag: Option<PathBuf>) -> PathBuf {
    if let Some(p) = flag {
        return p;
    }
    if let Some(p) = std::env::var_os("MODVM_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(p).join("modvm");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".cache").join("modvm");
    }
    std::env::temp_dir().join("modvm-cache")
}
