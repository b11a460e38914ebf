//! The hardware a guest has beyond its two UARTs, one typed value per
//! device: rendered to QEMU arguments here, and asked whether QEMU can
//! save it with the guest.

use std::ffi::OsString;
use std::path::PathBuf;

/// The serial number of the disk of the kernel's own modules; the guest's
/// init finds the disk by it.
pub const MODULES_DISK_SERIAL: &str = "modvm-modules";

/// One device of the guest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Device {
    /// The read-only disk of the kernel's own modules (see
    /// `kernel::guest_modules`). virtio-blk because QEMU can save it with
    /// the guest (its NVMe cannot be migrated).
    ModulesDisk(PathBuf),
}

impl Device {
    /// QEMU's arguments for this device.
    pub fn args(&self) -> Vec<OsString> {
        match self {
            Device::ModulesDisk(image) => vec![
                "-drive".into(),
                format!(
                    "file={},if=none,id=modules,format=raw,readonly=on",
                    option_value(&image.to_string_lossy())
                )
                .into(),
                "-device".into(),
                format!("virtio-blk-pci,drive=modules,serial={MODULES_DISK_SERIAL}").into(),
            ],
        }
    }

    /// Why QEMU cannot save a guest with this device (its state is not
    /// migratable), or `None`: such a test boots cold.
    pub fn not_migratable(&self) -> Option<String> {
        match self {
            Device::ModulesDisk(_) => None,
        }
    }
}

/// QEMU's option syntax doubles a comma inside a value.
pub fn option_value(text: &str) -> String {
    text.replace(',', ",,")
}
