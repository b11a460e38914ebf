//! The guest machine as a type: architecture, memory, CPUs, kernel
//! parameters and devices, built from the profile, the flags and the spec,
//! and checked where it is built. `qemu.rs` renders it with the plumbing
//! (sockets, descriptors, a saved state) into a command line; the saved
//! guest is keyed on it.

pub mod arch;
pub mod device;

pub use arch::Arch;
pub use device::Device;

use std::ffi::OsString;

/// Everything about the guest that the test can observe.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Machine {
    pub arch: Arch,
    pub memory_mib: u32,
    /// Guest CPUs.
    pub smp: u32,
    /// Kernel parameters beyond modvm's own (the profile's, the user's,
    /// a test's switches).
    pub cmdline: String,
    pub devices: Vec<Device>,
}

impl Machine {
    /// QEMU's arguments for the machine itself: its type, CPUs, memory and
    /// devices (`-nodefaults`: none but the ones named).
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = [
            "-M",
            self.arch.qemu_machine(),
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        a.push("-smp".into());
        a.push(self.smp.max(1).to_string().into());
        a.push("-m".into());
        a.push(self.memory_mib.to_string().into());
        for d in &self.devices {
            a.extend(d.args());
        }
        a
    }

    /// The first device whose state QEMU cannot save, and why: a guest
    /// with it cannot be restored from a snapshot.
    pub fn not_migratable(&self) -> Option<String> {
        self.devices.iter().find_map(Device::not_migratable)
    }

    /// Appends kernel parameters.
    pub fn add_cmdline(&mut self, more: &str) {
        let joined = format!("{} {more}", self.cmdline);
        self.cmdline = joined.split_whitespace().collect::<Vec<_>>().join(" ");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            arch: Arch::DEFAULT,
            memory_mib: 256,
            smp: 0,
            cmdline: "quiet".into(),
            devices: vec![Device::ModulesDisk("/c/a,b.img".into())],
        }
    }

    #[test]
    fn the_machine_renders_type_cpus_memory_and_devices() {
        let args: Vec<String> = machine()
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let text = args.join(" ");
        assert!(text.starts_with("-M pc -nodefaults"), "{text}");
        assert!(text.contains("-smp 1 -m 256"), "{text}");
        assert!(
            text.contains("file=/c/a,,b.img,if=none,id=modules,format=raw,readonly=on"),
            "{text}"
        );
        assert!(text.contains("virtio-blk-pci,drive=modules,serial=modvm-modules"));
        assert_eq!(machine().not_migratable(), None);
    }

    #[test]
    fn kernel_parameters_are_appended_with_single_spaces() {
        let mut m = machine();
        m.add_cmdline("  panic_on_warn=1 ");
        assert_eq!(m.cmdline, "quiet panic_on_warn=1");
        m.cmdline.clear();
        m.add_cmdline("oops=panic");
        assert_eq!(m.cmdline, "oops=panic");
    }
}
