//! The guest machine as a type: architecture, memory, CPUs, kernel
//! parameters and devices, built from the profile, the flags and the spec,
//! and checked where it is built. `qemu.rs` renders it with the plumbing
//! (sockets, descriptors, a saved state) into a command line; the saved
//! guest is keyed on it.

pub mod arch;
pub mod device;

pub use arch::Arch;
pub use device::Device;

use crate::spec::DeviceSpec;
use std::ffi::OsString;
use std::path::Path;

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
    /// devices (`-nodefaults`: none but the ones named); scratch disks are
    /// files in `scratch_dir`.
    pub fn args(&self, scratch_dir: &Path) -> Vec<OsString> {
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
        if self.devices.iter().any(Device::on_usb) {
            a.extend(device::xhci_args());
        }
        for d in &self.devices {
            a.extend(d.args(scratch_dir));
        }
        a
    }

    /// Kernel parameters the devices need: the names of the scratch disks
    /// (`modvm.disks=a,b`), for which the guest's init makes
    /// `/dev/disk/<name>`.
    pub fn device_params(&self) -> String {
        let disks: Vec<&str> = self
            .devices
            .iter()
            .filter_map(|d| match d {
                Device::ScratchDisk { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        if disks.is_empty() {
            String::new()
        } else {
            format!("modvm.disks={}", disks.join(","))
        }
    }

    /// Adds the devices a test declares.
    pub fn add_declared(&mut self, declared: &[DeviceSpec]) {
        for d in declared {
            self.devices.push(match d {
                DeviceSpec::Pci(model) => Device::Pci(model.clone()),
                DeviceSpec::Usb(model) => Device::Usb(model.clone()),
                DeviceSpec::Qemu(text) => Device::Raw(text.clone()),
                DeviceSpec::Disk(disk) => Device::ScratchDisk {
                    name: disk.name.clone(),
                    size_mib: disk.size_mib,
                    bus: disk.bus,
                },
                DeviceSpec::Nic(nic) => Device::Nic {
                    model: nic.model.clone(),
                    net: nic.net,
                    index: self
                        .devices
                        .iter()
                        .filter(|d| matches!(d, Device::Nic { .. }))
                        .count(),
                },
            });
        }
    }

    /// Makes the scratch disks' files in `dir`: sparse, blank, of their
    /// size.
    pub fn create_scratch_disks(&self, dir: &Path) -> std::io::Result<()> {
        for d in &self.devices {
            if let Device::ScratchDisk { name, size_mib, .. } = d {
                let file = std::fs::File::create(dir.join(Device::scratch_file(name)))?;
                file.set_len(size_mib * 1024 * 1024)?;
            }
        }
        Ok(())
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
            .args(Path::new("/s"))
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
    fn declared_devices_become_machine_devices_nics_numbered_in_order() {
        let mut m = machine();
        let declared: Vec<DeviceSpec> = serde_json::from_str(
            r#"[{"nic": {}}, {"disk": {"name": "d", "size_mib": 1}}, {"nic": {"model": "e1000e", "net": "hub"}}]"#,
        )
        .unwrap();
        m.add_declared(&declared);
        let text: Vec<String> = m
            .args(Path::new("/s"))
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let text = text.join(" ");
        assert!(text.contains("-netdev user,id=net0,restrict=on -device virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56"), "{text}");
        assert!(
            text.contains(
                "-netdev hubport,id=net1,hubid=0 -device e1000e,netdev=net1,mac=52:54:00:12:34:57"
            ),
            "{text}"
        );
        assert!(text.contains("file=/s/disk-d.img,if=none,id=disk-d,format=raw -device virtio-blk-pci,drive=disk-d,serial=modvm-d"), "{text}");
        assert_eq!(m.device_params(), "modvm.disks=d");
        assert_eq!(m.not_migratable(), None);
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
