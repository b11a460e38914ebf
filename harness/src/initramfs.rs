//! The guest's root filesystem: a newc cpio archive written in Rust.
//!
//! It holds exactly what one test needs: busybox, modvm's `init`, the
//! modules under test in `/modules`, and the files the spec ships (helpers
//! and listed files, wherever they go, with their parent directories). Nothing is compressed: the archive is
//! a few MiB and the kernel unpacks it faster than it would inflate it.

use crate::shipped::GuestFile;
use cpio::newc::{trailer, Builder};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The guest init script, from `images/init`.
pub const INIT: &str = include_str!("../../images/init");

/// What goes into one guest.
#[derive(Debug, Clone)]
pub struct InitramfsSpec {
    pub busybox: PathBuf,
    pub init: String,
    /// Modules and other files, each at its guest path.
    pub files: Vec<GuestFile>,
}

const DIR: u32 = 0o040755;
const FILE_EXEC: u32 = 0o100755;
const FILE: u32 = 0o100644;
const CHAR_DEV: u32 = 0o020600;

/// Writes the archive to `out`, replacing it atomically: a QEMU of another
/// run that is reading the old archive keeps reading the old file.
pub fn write(spec: &InitramfsSpec, out: &Path) -> std::io::Result<()> {
    let dir = out.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    write_to(spec, tmp.as_file())?;
    tmp.persist(out).map_err(|e| e.error)?;
    Ok(())
}

fn write_to(spec: &InitramfsSpec, file: &File) -> std::io::Result<()> {
    let mut w = BufWriter::new(file);
    let mut ino = 1u32;
    let mut next = || {
        ino += 1;
        ino
    };
    let mut dirs: Vec<String> = Vec::new();
    for dir in ["bin", "dev", "proc", "sys", "tmp", "modules", "sbin", "usr"] {
        w = add_dir(w, dir, next())?;
        dirs.push(dir.to_string());
    }
    // The kernel opens /dev/console for init before devtmpfs is mounted.
    w = Builder::new("dev/console")
        .ino(next())
        .mode(CHAR_DEV)
        .rdev_major(5)
        .rdev_minor(1)
        .write(w, 0)
        .finish()?;
    w = add_bytes(w, "init", FILE_EXEC, spec.init.as_bytes(), next())?;
    w = add_bytes(
        w,
        "bin/busybox",
        FILE_EXEC,
        &std::fs::read(&spec.busybox)?,
        next(),
    )?;
    for file in &spec.files {
        let name = file.guest.trim_start_matches('/');
        // Parents first: the kernel's unpacker does not make directories.
        let mut parent = String::new();
        for part in name
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, p)| p)
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            if !dirs.contains(&parent) {
                w = add_dir(w, &parent, next())?;
                dirs.push(parent.clone());
            }
        }
        let data = std::fs::read(&file.host)?;
        let mode = if file.executable { FILE_EXEC } else { FILE };
        w = add_bytes(w, name, mode, &data, next())?;
    }
    let mut w = trailer(w)?;
    w.flush()
}

fn add_dir<W: Write>(w: W, name: &str, ino: u32) -> std::io::Result<W> {
    Builder::new(name)
        .ino(ino)
        .mode(DIR)
        .nlink(2)
        .write(w, 0)
        .finish()
}

fn add_bytes<W: Write>(w: W, name: &str, mode: u32, data: &[u8], ino: u32) -> std::io::Result<W> {
    let mut fp = Builder::new(name)
        .ino(ino)
        .mode(mode)
        .write(w, data.len() as u32);
    fp.write_all(data)?;
    fp.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpio::NewcReader;
    use std::io::Read;

    #[test]
    fn archive_lists_init_busybox_and_modules() {
        let dir = tempfile::tempdir().unwrap();
        let bb = dir.path().join("busybox");
        std::fs::write(&bb, b"\x7fELF fake").unwrap();
        let ko = dir.path().join("hello.ko");
        std::fs::write(&ko, b"module bytes").unwrap();
        let blob = dir.path().join("blob.bin");
        std::fs::write(&blob, b"firmware").unwrap();
        let out = dir.path().join("initrd.cpio");
        let spec = InitramfsSpec {
            busybox: bb,
            init: "#!/bin/sh\n".into(),
            files: vec![
                GuestFile::module(&ko),
                GuestFile::plain(&blob, "/lib/firmware/modvm/blob.bin".into(), None),
                GuestFile::plain(&blob, "/modules/run.sh".into(), Some(true)),
            ],
        };
        write(&spec, &out).unwrap();

        let mut f = File::open(&out).unwrap();
        let mut entries = Vec::new();
        loop {
            let mut r = NewcReader::new(f).unwrap();
            if r.entry().is_trailer() {
                break;
            }
            let name = r.entry().name().to_string();
            let mode = r.entry().mode();
            let mut body = Vec::new();
            r.read_to_end(&mut body).unwrap();
            entries.push((name, mode, body));
            f = r.finish().unwrap();
        }
        let get = |n: &str| entries.iter().find(|e| e.0 == n).unwrap();
        assert_eq!(get("init").1, FILE_EXEC);
        assert_eq!(get("init").2, b"#!/bin/sh\n");
        assert_eq!(get("modules/hello.ko").2, b"module bytes");
        assert_eq!(get("dev/console").1, CHAR_DEV);
        assert_eq!(get("bin/busybox").1, FILE_EXEC);
        assert_eq!(get("lib").1, DIR);
        assert_eq!(get("lib/firmware/modvm").1, DIR);
        assert_eq!(get("lib/firmware/modvm/blob.bin").2, b"firmware");
        assert_eq!(get("lib/firmware/modvm/blob.bin").1, FILE);
        assert_eq!(get("modules/run.sh").1, FILE_EXEC);
        let at = |n: &str| entries.iter().position(|e| e.0 == n).unwrap();
        assert!(at("lib/firmware") < at("lib/firmware/modvm/blob.bin"));
        assert_eq!(entries.iter().filter(|e| e.0 == "modules").count(), 1);
    }

    #[test]
    fn shipped_init_speaks_the_console_protocol() {
        assert!(INIT.starts_with("#!/bin/busybox sh"));
        // Code, not the comments that describe it.
        let code: String = INIT
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        for needed in [
            "printf '\\036ready %s %s\\036\\n'",
            "printf '\\036begin %s\\036\\n' \"$tag\"",
            "printf '\\036end %s %d %s\\036\\n'",
            "echo \"modvm-mark ${tag%-*} begin\" >/dev/kmsg",
            "echo \"modvm-mark $tag end\" >/dev/kmsg",
            "while read -r op tag arg; do",
            "s) step \"$tag\" \"$arg\" ;;",
            "stty -echo",
        ] {
            assert!(code.contains(needed), "init has no `{needed}`");
        }
    }
}
