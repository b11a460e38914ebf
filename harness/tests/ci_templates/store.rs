//! The CI platforms' cache, as the emulated jobs see it: a directory per
//! key holding the saved paths. Restores and saves copy with hard links
//! (`cp -al`), so seeding it from the machine's kernel cache costs no
//! space.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Store {
    root: tempfile::TempDir,
}

impl Store {
    pub fn new() -> Store {
        Store {
            root: tempfile::tempdir().unwrap(),
        }
    }

    fn entry(&self, key: &str) -> PathBuf {
        assert!(
            !key.is_empty() && !key.contains('/') && key.len() <= 512,
            "a cache key must be one non-empty path element (GitHub and GitLab both refuse others): {key:?}"
        );
        self.root.path().join(key)
    }

    /// Copies the saved paths back; false on a miss.
    pub fn restore(&self, key: &str, paths: &[PathBuf]) -> bool {
        let entry = self.entry(key);
        if !entry.is_dir() {
            return false;
        }
        for (i, path) in paths.iter().enumerate() {
            let saved = entry.join(i.to_string());
            if saved.exists() {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                link_copy(&saved, path);
            }
        }
        true
    }

    /// Saves `paths` under `key` unless the key is taken (both platforms'
    /// caches are write-once per key); a path that does not exist is an
    /// error in the template (GitHub refuses it).
    pub fn save(&self, key: &str, paths: &[PathBuf]) {
        self.save_existing(key, paths, true)
    }

    /// As [`Store::save`]; with `strict` false, paths that do not exist
    /// are left out, as GitLab does (with a warning).
    pub fn save_existing(&self, key: &str, paths: &[PathBuf], strict: bool) {
        let entry = self.entry(key);
        if entry.exists() {
            return;
        }
        std::fs::create_dir_all(&entry).unwrap();
        for (i, path) in paths.iter().enumerate() {
            if !path.exists() && !strict {
                eprintln!("cache {key}: {} does not exist; not saved", path.display());
                continue;
            }
            assert!(
                path.exists(),
                "the template caches {}, which the job did not make",
                path.display()
            );
            link_copy(path, &entry.join(i.to_string()));
        }
    }

    /// What an earlier pipeline left: `paths` of `sources` under `key`.
    pub fn seed(&self, key: &str, sources: &[PathBuf]) {
        self.save(key, sources);
    }
}

fn link_copy(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-al")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -al {} {}",
        from.display(),
        to.display()
    );
}
