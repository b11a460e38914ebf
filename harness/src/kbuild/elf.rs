//! Section names of an ELF object (`.ko` or `.o`), for what a module holds
//! that `.modinfo` does not say: KUnit suites live in `.kunit_test_suites`
//! (the section the kernel's `kunit_test_suites()` macro fills and
//! `find_module_sections` reads at load).
//!
//! Hand-written (about fifty lines) because only the section header table
//! and its string table are needed; every offset is checked, so a damaged
//! or foreign file reads as "no such section", never as a panic.

use std::path::Path;

/// The section the kernel's `kunit_test_suites()` puts suite pointers in.
pub(crate) const KUNIT_SUITES: &str = ".kunit_test_suites";

/// Whether `file` is an ELF object with a section named `name`.
pub(crate) fn has_section(file: &Path, name: &str) -> bool {
    std::fs::read(file).is_ok_and(|b| section_names(&b).iter().any(|n| n == name))
}

/// The names of an ELF file's sections; empty when it is not one.
pub(crate) fn section_names(b: &[u8]) -> Vec<String> {
    if b.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Vec::new();
    }
    let wide = match b.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Vec::new(),
    };
    let big = match b.get(5) {
        Some(1) => false,
        Some(2) => true,
        _ => return Vec::new(),
    };
    let num = |at: usize, len: usize| -> Option<u64> {
        let bytes = b.get(at..at.checked_add(len)?)?;
        let mut v: u64 = 0;
        for i in 0..len {
            let byte = if big { bytes[i] } else { bytes[len - 1 - i] };
            v = (v << 8) | u64::from(byte);
        }
        Some(v)
    };
    let word = if wide { 8 } else { 4 };
    // e_shoff, e_shentsize, e_shnum, e_shstrndx.
    let (shoff_at, rest_at) = if wide { (0x28, 0x3a) } else { (0x20, 0x2e) };
    let header = || -> Option<(usize, usize, usize, usize)> {
        Some((
            usize::try_from(num(shoff_at, word)?).ok()?,
            usize::try_from(num(rest_at, 2)?).ok()?,
            usize::try_from(num(rest_at + 2, 2)?).ok()?,
            usize::try_from(num(rest_at + 4, 2)?).ok()?,
        ))
    };
    let Some((shoff, entsize, count, strndx)) = header() else {
        return Vec::new();
    };
    // sh_name is at 0; sh_offset at 0x18 (64-bit) or 0x10 (32-bit).
    let offset_at = if wide { 0x18 } else { 0x10 };
    let entry = |i: usize| shoff.checked_add(i.checked_mul(entsize)?);
    let Some(strtab) = entry(strndx)
        .and_then(|e| num(e.checked_add(offset_at)?, word))
        .and_then(|o| usize::try_from(o).ok())
    else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for i in 0..count {
        let Some(name_off) = entry(i).and_then(|e| num(e, 4)) else {
            break;
        };
        let Some(start) = usize::try_from(name_off)
            .ok()
            .and_then(|o| strtab.checked_add(o))
        else {
            continue;
        };
        let Some(rest) = b.get(start..) else {
            continue;
        };
        let end = rest.iter().position(|c| *c == 0).unwrap_or(rest.len());
        names.push(String::from_utf8_lossy(&rest[..end]).into_owned());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real object file from the host's compiler, with a section of the
    /// name the kernel's macro uses.
    #[test]
    fn reads_the_sections_a_compiler_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("s.c");
        std::fs::write(
            &src,
            "__attribute__((used, section(\".kunit_test_suites\"))) static void *p[1];\nint f(void) { return 1; }\n",
        )
        .unwrap();
        let obj = dir.path().join("s.o");
        let ok = std::process::Command::new("gcc")
            .args(["-c", "-o"])
            .arg(&obj)
            .arg(&src)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "gcc is needed to build modules and this test");
        assert!(has_section(&obj, KUNIT_SUITES));
        assert!(has_section(&obj, ".text"));
        assert!(!has_section(&obj, ".kunit_test_suite"));
        assert!(!has_section(&src, ".text"), "not ELF");
    }

    #[test]
    fn damaged_files_have_no_sections() {
        assert!(section_names(b"").is_empty());
        assert!(section_names(b"\x7fELF").is_empty());
        let mut b = b"\x7fELF\x02\x01\x01".to_vec();
        b.resize(64, 0xff);
        assert!(section_names(&b).is_empty());
        // Huge counts and offsets, both widths and byte orders.
        for (class, data) in [(1u8, 1u8), (2, 1), (1, 2), (2, 2)] {
            let mut b = vec![0x7f, b'E', b'L', b'F', class, data];
            b.resize(4096, 0xff);
            let _ = section_names(&b);
            let mut b = vec![0x7f, b'E', b'L', b'F', class, data];
            b.resize(80, 0);
            let _ = section_names(&b);
        }
    }
}
