//! What differs between guest architectures, in one place: the QEMU binary
//! and machine, the kernel image format, the ELF a static busybox must be,
//! and the names DKMS and kbuild use. A second architecture is one more
//! variant here (and its match arms), not a hunt through the crate.

/// A guest architecture modvm can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    X86_64,
}

impl Arch {
    /// The architecture of the guests modvm runs today.
    pub const DEFAULT: Arch = Arch::X86_64;

    /// The QEMU system emulator for this architecture.
    pub const fn qemu_binary(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
        }
    }

    /// The Debian package that has [`Arch::qemu_binary`].
    pub const fn qemu_package(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86",
        }
    }

    /// QEMU's `-M`: `pc` boots as fast as `q35` under TCG and, with
    /// `-nodefaults`, brings no device that probes slowly (measured: ~2.3 s
    /// both); `microvm` cannot power off and has one UART.
    pub const fn qemu_machine(self) -> &'static str {
        match self {
            Arch::X86_64 => "pc",
        }
    }

    /// The CPU model under TCG: QEMU's default, without `cmpxchg16b`.
    /// QEMU 7.2's TCG now and then leaves garbage in EFLAGS after the
    /// guest's `cmpxchg16b` (SLUB's per-CPU fast path on 6.12 runs it all
    /// the time): a stray trap flag gives a `#DB` warning in
    /// `exc_debug_kernel`, or a double fault, in `kmem_cache_alloc` a few
    /// steps later, about one guest in twenty. Without CX16 the kernel
    /// takes its locked path instead: 0 failures in 200 restores and 40
    /// cold boots of Debian's 6.12 (3 and 2 in 40 with it).
    pub const fn tcg_cpu(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu64,-cx16",
        }
    }

    /// `uname -m` in the guest (DKMS's `$arch`).
    pub const fn uname(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
        }
    }

    /// The ELF `e_machine` of the guest's programs (a static busybox).
    pub const fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => 62, // EM_X86_64
        }
    }

    /// Whether `image` is a kernel this architecture boots with `-kernel`:
    /// an x86 bzImage carries the `HdrS` magic of its boot protocol at
    /// 0x202.
    pub fn is_kernel_image(self, image: &[u8]) -> bool {
        match self {
            Arch::X86_64 => image.len() >= 0x206 && &image[0x202..0x206] == b"HdrS",
        }
    }

    /// How the kernel image is described in errors.
    pub fn kernel_image_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "an x86 bzImage",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_facts() {
        let a = Arch::DEFAULT;
        assert_eq!(a.qemu_binary(), "qemu-system-x86_64");
        assert_eq!(a.qemu_machine(), "pc");
        assert_eq!(a.uname(), "x86_64");
        let mut img = vec![0u8; 0x300];
        assert!(!a.is_kernel_image(&img));
        img[0x202..0x206].copy_from_slice(b"HdrS");
        assert!(a.is_kernel_image(&img));
        assert!(!a.is_kernel_image(&img[..0x204]));
    }
}
