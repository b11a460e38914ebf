//! The hardware a guest has beyond its two UARTs, one typed value per
//! device: rendered to QEMU arguments here, and asked whether QEMU can
//! save it with the guest.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

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
    /// A PCI device by QEMU's model name (`edu`, `e1000e`, …), checked
    /// against the list the spec allows.
    Pci(String),
    /// A USB device by QEMU's model name (`usb-kbd`, …) behind the xHCI
    /// controller.
    Usb(String),
    /// A spec's raw `-device` value, checked by `spec::devices` to reach
    /// nothing outside QEMU.
    Raw(String),
    /// A blank disk of its own for each guest, made when QEMU starts and
    /// gone with it; the guest finds it by its serial `modvm-<name>`.
    ScratchDisk {
        name: String,
        size_mib: u64,
        bus: DiskBus,
    },
    /// The `index`th network card of the guest (`eth<index>` where the
    /// kernel names them in order), on a network inside QEMU.
    Nic {
        model: String,
        net: NetKind,
        index: usize,
    },
}

/// The network behind a NIC: nothing on it reaches outside QEMU.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum NetKind {
    /// QEMU's user network (10.0.2.0/24, gateway 10.0.2.2, DHCP), with
    /// `restrict=on`: the guest reaches the gateway and nothing beyond it.
    #[default]
    User,
    /// One hub inside QEMU joining every NIC of the test that asks for it:
    /// two NICs see each other's packets and nothing else.
    Hub,
}

/// How a disk is attached.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum DiskBus {
    /// virtio-blk on PCI: QEMU saves it with the guest.
    #[default]
    VirtioBlk,
    /// An NVMe controller with the disk as its namespace.
    Nvme,
    /// A USB mass-storage device behind the xHCI controller.
    Usb,
}

/// PCI models QEMU keeps no state of in a saved guest (no migration
/// description): restored, such a device would have lost the addresses
/// the kernel gave it.
const PCI_WITHOUT_SAVED_STATE: &[&str] = &["edu", "pci-testdev"];

impl Device {
    /// QEMU's arguments for this device; scratch disks are files in
    /// `scratch_dir`.
    pub fn args(&self, scratch_dir: &Path) -> Vec<OsString> {
        match self {
            Device::ModulesDisk(image) => drive_args(
                image,
                "modules",
                "format=raw,readonly=on",
                "virtio-blk-pci",
                MODULES_DISK_SERIAL,
            ),
            Device::Pci(model) | Device::Raw(model) => vec!["-device".into(), model.into()],
            Device::Usb(model) => vec!["-device".into(), format!("{model},bus={XHCI}.0").into()],
            Device::Nic { model, net, index } => {
                let backend = match net {
                    NetKind::User => format!("user,id=net{index},restrict=on"),
                    NetKind::Hub => format!("hubport,id=net{index},hubid=0"),
                };
                vec![
                    "-netdev".into(),
                    backend.into(),
                    "-device".into(),
                    format!(
                        "{model},netdev=net{index},mac=52:54:00:12:34:{:02x}",
                        0x56 + index
                    )
                    .into(),
                ]
            }
            Device::ScratchDisk { name, bus, .. } => {
                let controller = match bus {
                    DiskBus::VirtioBlk => "virtio-blk-pci".to_string(),
                    DiskBus::Nvme => "nvme".to_string(),
                    DiskBus::Usb => format!("usb-storage,bus={XHCI}.0"),
                };
                drive_args(
                    &scratch_dir.join(Self::scratch_file(name)),
                    &format!("disk-{name}"),
                    "format=raw",
                    &controller,
                    &format!("modvm-{name}"),
                )
            }
        }
    }

    /// Whether the device hangs off the xHCI controller.
    pub fn on_usb(&self) -> bool {
        matches!(
            self,
            Device::Usb(_)
                | Device::ScratchDisk {
                    bus: DiskBus::Usb,
                    ..
                }
        )
    }

    /// The file of a scratch disk in the guest's scratch directory.
    pub fn scratch_file(name: &str) -> String {
        format!("disk-{name}.img")
    }

    /// Why QEMU cannot save a guest with this device, or `None`: a test
    /// with such a device boots cold.
    pub fn not_migratable(&self) -> Option<String> {
        match self {
            Device::ModulesDisk(_) => None,
            Device::Pci(model) if PCI_WITHOUT_SAVED_STATE.contains(&model.as_str()) => Some(
                format!("QEMU keeps no state of its `{model}` device in a saved guest"),
            ),
            Device::Pci(_) | Device::Usb(_) => None,
            // Unknown to modvm: the saved guest may or may not have it
            // right, so such a test never restores.
            Device::Raw(text) => Some(format!(
                "a raw `qemu` device ({text}) may not be saved by QEMU"
            )),
            Device::ScratchDisk {
                bus: DiskBus::Nvme,
                name,
                ..
            } => Some(format!(
                "QEMU cannot save a guest with an NVMe controller (disk `{name}`)"
            )),
            Device::ScratchDisk { .. } => None,
            Device::Nic { .. } => None,
        }
    }
}

/// A disk: its image as a drive on no bus, and the controller device that
/// shows it to the guest with `serial`.
fn drive_args(
    image: &Path,
    id: &str,
    options: &str,
    controller: &str,
    serial: &str,
) -> Vec<OsString> {
    vec![
        "-drive".into(),
        format!(
            "file={},if=none,id={id},{options}",
            option_value(&image.to_string_lossy())
        )
        .into(),
        "-device".into(),
        format!("{controller},drive={id},serial={serial}").into(),
    ]
}

/// The id of the xHCI controller USB devices hang off; there is one when
/// any device needs it.
pub const XHCI: &str = "xhci";

/// QEMU's arguments for the xHCI controller.
pub fn xhci_args() -> Vec<OsString> {
    vec!["-device".into(), format!("qemu-xhci,id={XHCI}").into()]
}

/// QEMU's option syntax doubles a comma inside a value.
pub fn option_value(text: &str) -> String {
    text.replace(',', ",,")
}
