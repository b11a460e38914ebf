//! The static busybox that every guest's initramfs carries, for kernel
//! sources that bring none (host, local): Debian's `busybox-static`, fetched
//! once into the cache with the same private apt state as the Debian kits.
//! A host without apt (Fedora, Arch) has no Debian package to fetch; a
//! statically linked x86-64 `busybox` on its PATH is copied instead.

use super::record::{whole_elf, write_atomic};
use super::{io_err, KitError, Progress};
use crate::apt::{self, Apt, AptError, Sources};
use crate::lock::Lock;
use std::fs;
use std::path::{Path, PathBuf};

/// `<cache>/busybox/busybox`, fetched when missing or damaged. `updated`
/// is apt state whose lists the caller has just updated (so they are not
/// updated twice); without it the cache's own is updated when needed.
pub fn ensure(
    cache: &Path,
    updated: Option<&Apt>,
    sources: &Sources,
    progress: &mut dyn Progress,
) -> Result<PathBuf, KitError> {
    let dir = cache.join("busybox");
    let target = dir.join("busybox");
    if whole_elf(&target).is_ok() {
        return Ok(target);
    }
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    // apt's state is taken before busybox's lock, the order every path
    // takes them in (a source kit holds apt's while it fetches busybox),
    // so two runs cannot each hold the lock the other waits for.
    let own = match updated {
        None if apt::check_tools().is_ok() => {
            Some(super::archive::updated_apt(cache, sources, None, progress)?)
        }
        _ => None,
    };
    let apt = updated.or(own.as_ref());
    let lock_path = dir.join(".lock");
    let _lock = Lock::exclusive(&lock_path, &mut || {
        progress.step("waiting for another modvm run to fetch busybox")
    })
    .map_err(io_err(&lock_path))?;
    if whole_elf(&target).is_ok() {
        return Ok(target);
    }
    if target.exists() {
        progress.notice(&format!(
            "{} is damaged; fetching it again",
            target.display()
        ));
    }
    let Some(apt) = apt else {
        return from_host(&target, progress);
    };
    let package = apt
        .show("busybox-static")
        .map_err(|e| super::archive::explain(e.into(), sources))?;
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(&dir)
        .map_err(io_err(&dir))?;
    progress.step("downloading busybox-static");
    let debs = apt.download(&[package], staging.path())?;
    let root = staging.path().join("root");
    for deb in &debs {
        apt::extract(deb, &root)?;
    }
    let extracted = root.join("bin/busybox");
    let data = fs::read(&extracted).map_err(|_| KitError::Incomplete {
        profile: "busybox".into(),
        what: "bin/busybox".into(),
    })?;
    write_atomic(&target, &data).map_err(io_err(&target))?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).map_err(io_err(&target))?;
    Ok(target)
}

/// Copies the host's busybox into the cache, if it is one a guest can run
/// (x86-64, linked statically: the initramfs has no libraries).
fn from_host(target: &Path, progress: &mut dyn Progress) -> Result<PathBuf, KitError> {
    let program = apt::check_tools().err().map_or_else(
        || "apt-get".to_string(),
        |e| match e {
            AptError::NoApt { program } => program,
            other => other.to_string(),
        },
    );
    let found = crate::prereq::find("busybox");
    let data = found.as_ref().and_then(|p| fs::read(p).ok());
    let Some((path, data)) = found.zip(data).filter(|(_, d)| is_static_x86_64(d)) else {
        return Err(KitError::Apt(AptError::NoBusybox { program }));
    };
    progress.notice(&format!(
        "this host has no {program}: using its static busybox {}",
        path.display()
    ));
    write_atomic(target, &data).map_err(io_err(target))?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(target, fs::Permissions::from_mode(0o755)).map_err(io_err(target))?;
    Ok(target.to_path_buf())
}

/// An x86-64 ELF executable without a program interpreter (`PT_INTERP`),
/// i.e. one that runs without a dynamic loader.
fn is_static_x86_64(data: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let em = crate::machine::Arch::DEFAULT.elf_machine();
    // Offsets come from the file: checked, never trusted.
    let bytes = |o: usize, n: usize| data.get(o..o.checked_add(n)?);
    let u16_at = |o: usize| bytes(o, 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| bytes(o, 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
    let u64_at = |o: usize| bytes(o, 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    // 64-bit, little-endian, for x86-64.
    if !data.starts_with(b"\x7fELF\x02\x01") || u16_at(0x12) != Some(em) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..usize::from(phnum)).all(|i| {
        let at = usize::try_from(phoff)
            .ok()
            .and_then(|o| o.checked_add(i.checked_mul(usize::from(phentsize))?));
        matches!(at.and_then(u32_at), Some(t) if t != PT_INTERP)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header with the given program header types.
    fn elf(machine: u16, types: &[u32]) -> Vec<u8> {
        let mut d = vec![0u8; 64 + 56 * types.len()];
        d[..6].copy_from_slice(b"\x7fELF\x02\x01");
        d[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
        d[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        d[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        d[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for (i, t) in types.iter().enumerate() {
            d[64 + 56 * i..68 + 56 * i].copy_from_slice(&t.to_le_bytes());
        }
        d
    }

    #[test]
    fn only_static_x86_64_executables_are_taken() {
        assert!(is_static_x86_64(&elf(62, &[1, 1, 4])));
        assert!(
            !is_static_x86_64(&elf(62, &[6, 3, 1])),
            "has an interpreter"
        );
        assert!(!is_static_x86_64(&elf(183, &[1])), "aarch64");
        assert!(!is_static_x86_64(b"#!/bin/sh\n"));
        let mut cut = elf(62, &[1, 1]);
        cut.truncate(70);
        assert!(!is_static_x86_64(&cut), "program headers cut off");
        let mut wild = elf(62, &[1]);
        wild[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(!is_static_x86_64(&wild), "program headers out of the file");
    }
}
