//! What a profile's kit would be made of if it were fetched now, without
//! fetching it: the package versions the archive offers (one `apt-get
//! update`, no download). CI caches the kernel cache under a key made of
//! this, so a new kernel upload changes the key and is fetched once,
//! instead of a first kit being kept forever under a constant key.

use super::profile::{KernelProfile, Source};
use super::{archive, debian, KitError, Progress};
use crate::apt::Sources;
use sha2::{Digest, Sha256};
use std::path::Path;

/// Bumped when the cache's layout changes in a way an older cache cannot
/// be used for.
const CACHE_FORMAT: u32 = 1;

/// One line naming what `profile`'s kit would hold.
pub fn resolve(
    cache: &Path,
    profile: &KernelProfile,
    sources: &Sources,
    progress: &mut dyn Progress,
) -> Result<String, KitError> {
    let explained = |e: KitError| archive::explain(e, sources);
    let suite = match &profile.source {
        Source::Debian { suite, .. } => suite.as_deref(),
        _ => None,
    };
    let apt = archive::updated_apt(cache, sources, suite, progress)?;
    let own = match &profile.source {
        Source::Debian { image, headers, .. } => {
            let image = debian::follow_meta(&apt, image, "linux-image-").map_err(explained)?;
            let headers =
                debian::follow_meta(&apt, headers, "linux-headers-").map_err(explained)?;
            format!(
                "{}={} {}={}",
                image.name, image.version, headers.name, headers.version
            )
        }
        Source::Source {
            package, fragment, ..
        } => {
            let info = apt.show(package).map_err(|e| explained(e.into()))?;
            let recipe = serde_json::to_string(&profile.source).unwrap_or_default();
            let fragment = super::source::fragment_text(profile, fragment)?;
            format!(
                "{}={} recipe={}",
                info.name,
                info.version,
                short_hash(&[recipe.as_bytes(), fragment.as_bytes()])
            )
        }
        // Used in place: only busybox comes from the cache.
        Source::Local { .. } | Source::Host => profile.source.kind().to_string(),
    };
    // Every kit holds busybox (the Debian kinds fetch it with the kernel).
    let busybox = apt
        .show("busybox-static")
        .map_err(|e| explained(e.into()))?;
    Ok(format!(
        "{}: {own} busybox-static={}",
        profile.name, busybox.version
    ))
}

/// The cache key of resolved profiles: the same lines give the same key,
/// any changed version another.
pub fn key(lines: &[String]) -> String {
    let header = format!("modvm cache format {CACHE_FORMAT}");
    let mut parts: Vec<&[u8]> = vec![header.as_bytes()];
    parts.extend(lines.iter().map(|l| l.as_bytes()));
    format!("modvm-kernels-{}", short_hash(&parts))
}

fn short_hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_every_resolved_version() {
        let a = vec!["debian-6.1-cloud: linux-image-6.1.0-56-cloud-amd64=6.1.192-2 linux-headers-6.1.0-56-cloud-amd64=6.1.192-2 busybox-static=1:1.35.0-4+b3".to_string()];
        let k = key(&a);
        assert!(
            k.starts_with("modvm-kernels-") && k.len() == "modvm-kernels-".len() + 16,
            "{k}"
        );
        assert_eq!(k, key(&a.clone()), "stable");
        let newer = vec![a[0].replace("6.1.192-2 linux-headers", "6.1.193-1 linux-headers")];
        assert_ne!(k, key(&newer), "a new image upload changes the key");
        let two = vec![a[0].clone(), "host: host busybox-static=1".to_string()];
        assert_ne!(k, key(&two), "another profile changes the key");
        let swapped = vec!["x: ab".to_string(), "c".to_string()];
        assert_ne!(
            key(&swapped),
            key(&["x: a".to_string(), "bc".to_string()]),
            "lines are delimited"
        );
    }
}
