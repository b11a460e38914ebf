//! A file bound for a test's guest: a built module, a helper program or a
//! file the spec lists. The cold boot packs it into the initramfs, a
//! restored guest receives it over the console; both put it at the same
//! path with the same mode.

use std::path::{Path, PathBuf};

/// One file and where it lands.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GuestFile {
    /// The file on the host.
    pub host: PathBuf,
    /// Absolute path in the guest.
    pub guest: String,
    /// 0755 instead of 0644.
    pub executable: bool,
    /// A kernel module: its debug sections may stay behind when it travels
    /// (the host symbolises from the original). Other files go byte for
    /// byte, since a test may check their hash.
    pub module: bool,
}

impl GuestFile {
    /// A built module, into `/modules` under its file name.
    pub fn module(path: &Path) -> GuestFile {
        GuestFile {
            host: path.to_path_buf(),
            guest: format!("{}/{}", crate::spec::MODULES_DIR, file_name(path)),
            executable: false,
            module: true,
        }
    }

    /// Any other file; it keeps its executable bit unless `executable`
    /// says otherwise.
    pub fn plain(host: &Path, guest: String, executable: Option<bool>) -> GuestFile {
        GuestFile {
            host: host.to_path_buf(),
            guest,
            executable: executable.unwrap_or_else(|| is_executable(host)),
            module: false,
        }
    }

    /// The file's mode bits in the guest.
    pub fn mode(&self) -> u32 {
        if self.executable {
            0o755
        } else {
            0o644
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_keep_their_executable_bit() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o750)).unwrap();
        let data = dir.path().join("d.bin");
        std::fs::write(&data, "x").unwrap();
        assert_eq!(
            GuestFile::plain(&script, "/modules/s.sh".into(), None).mode(),
            0o755
        );
        assert_eq!(GuestFile::plain(&data, "/x".into(), None).mode(), 0o644);
        let m = GuestFile::module(Path::new("/b/sub/hello.ko"));
        assert_eq!((m.guest.as_str(), m.mode()), ("/modules/hello.ko", 0o644));
    }
}
