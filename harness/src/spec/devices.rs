//! The spec's `devices`: hardware a test's guest gets beyond modvm's own.
//! Checked while parsing (serde places the error at its line and column);
//! `machine::Device` renders them for QEMU.

pub use crate::machine::device::{DiskBus, NetKind};
use serde::{Deserialize, Serialize};

/// PCI devices a spec can name, as QEMU calls them, and what each is for.
pub const PCI_MODELS: &[(&str, &str)] = &[
    (
        "edu",
        "QEMU's educational device for writing drivers (1234:11e8)",
    ),
    ("pci-testdev", "QEMU's PCI test device (1b36:0005)"),
    ("e1000e", "Intel 82574L network card"),
    ("e1000", "Intel 82540EM network card"),
    ("virtio-rng-pci", "virtio entropy source"),
];

/// USB devices a spec can name (behind an xHCI controller modvm adds).
pub const USB_MODELS: &[(&str, &str)] = &[
    ("usb-kbd", "a USB keyboard (HID)"),
    ("usb-mouse", "a USB mouse (HID)"),
    ("usb-tablet", "a USB tablet (HID, absolute pointer)"),
];

/// Largest scratch disk: the file is sparse, but what the guest writes
/// lands on the host's disk (or in memory, on a tmpfs).
pub const MAX_DISK_MIB: u64 = 64 * 1024;

/// Most devices one test may declare.
pub const MAX_DEVICES: usize = 16;

/// One device a test declares: `"edu"` or `{"disk": {…}}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(try_from = "RawDevice", into = "RawDevice")]
pub enum DeviceSpec {
    /// A PCI device of [`PCI_MODELS`], by QEMU's name.
    Pci(String),
    /// A USB device of [`USB_MODELS`], behind an xHCI controller.
    Usb(String),
    /// A blank disk made for the test and removed after it; the guest sees
    /// it as `/dev/disk/<name>`.
    Disk(DiskSpec),
    /// A network card on a network inside QEMU.
    Nic(NicSpec),
    /// Anything else QEMU has, as `-device` takes it (`ich9-intel-hda`,
    /// `i6300esb,id=wd`): checked here for what could reach the host, and
    /// against `qemu-system-x86_64 -device help` before the run.
    Qemu(String),
}

/// Device models that reach the host (its USB or PCI devices, its kernel's
/// vhost, its files, its memory), or need a backend the spec cannot give:
/// refused as raw devices.
const HOST_REACHING_MODELS: &[&str] = &[
    "usb-host",
    "vfio",
    "vhost",
    "u2f-passthru",
    "ccid-card-passthru",
    "usb-redir",
    "loader",
    "guest-loader",
    "ivshmem",
    "pc-dimm",
    "nvdimm",
    "virtio-mem",
    "virtio-pmem",
    "tpm",
    "xen",
    "virtio-9p",
    "vhost-user",
];

/// Properties that name a host resource or a backend (files, drives,
/// networks, character devices, descriptors).
const BACKEND_PROPERTIES: &[&str] = &[
    "drive",
    "netdev",
    "chardev",
    "fsdev",
    "memdev",
    "audiodev",
    "tpmdev",
    "rng",
    "file",
    "romfile",
    "host",
    "hostbus",
    "hostaddr",
    "hostport",
    "hostdevice",
    "sysfsdev",
    "vhostfd",
    "fd",
    "fds",
    "iothread",
    "bus",
];

/// NIC models a spec can name.
pub const NIC_MODELS: &[&str] = &["virtio-net-pci", "e1000e", "e1000"];

/// A network card and the network behind it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NicSpec {
    #[serde(default = "default_nic_model")]
    pub model: String,
    #[serde(default)]
    pub net: NetKind,
}

fn default_nic_model() -> String {
    NIC_MODELS[0].to_string()
}

/// A scratch disk.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// `/dev/disk/<name>` in the guest.
    pub name: String,
    pub size_mib: u64,
    /// How it is attached.
    #[serde(default)]
    pub bus: DiskBus,
}

#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum RawDevice {
    Named(String),
    Disk { disk: DiskSpec },
    Nic { nic: NicSpec },
    Qemu { qemu: String },
}

impl TryFrom<RawDevice> for DeviceSpec {
    type Error = String;
    fn try_from(raw: RawDevice) -> Result<DeviceSpec, String> {
        match raw {
            RawDevice::Named(name) => {
                if PCI_MODELS.iter().any(|(m, _)| *m == name) {
                    Ok(DeviceSpec::Pci(name))
                } else if USB_MODELS.iter().any(|(m, _)| *m == name) {
                    Ok(DeviceSpec::Usb(name))
                } else {
                    let known: Vec<&str> = PCI_MODELS
                        .iter()
                        .chain(USB_MODELS)
                        .map(|(m, _)| *m)
                        .collect();
                    Err(format!(
                        "unknown device {name:?}; known: {}, {{\"disk\": {{\"name\": …, \"size_mib\": …}}}} or {{\"nic\": {{…}}}}",
                        known.join(", ")
                    ))
                }
            }
            RawDevice::Disk { disk } => {
                check_disk_name(&disk.name)?;
                if disk.size_mib == 0 || disk.size_mib > MAX_DISK_MIB {
                    return Err(format!(
                        "disk {:?}: `size_mib` must be between 1 and {MAX_DISK_MIB}, not {}",
                        disk.name, disk.size_mib
                    ));
                }
                Ok(DeviceSpec::Disk(disk))
            }
            RawDevice::Nic { nic } => {
                if !NIC_MODELS.contains(&nic.model.as_str()) {
                    return Err(format!(
                        "unknown NIC model {:?}; known: {}",
                        nic.model,
                        NIC_MODELS.join(", ")
                    ));
                }
                Ok(DeviceSpec::Nic(nic))
            }
            RawDevice::Qemu { qemu } => {
                check_raw(&qemu)?;
                Ok(DeviceSpec::Qemu(qemu))
            }
        }
    }
}

impl From<DeviceSpec> for RawDevice {
    fn from(d: DeviceSpec) -> RawDevice {
        match d {
            DeviceSpec::Pci(name) | DeviceSpec::Usb(name) => RawDevice::Named(name),
            DeviceSpec::Disk(disk) => RawDevice::Disk { disk },
            DeviceSpec::Nic(nic) => RawDevice::Nic { nic },
            DeviceSpec::Qemu(qemu) => RawDevice::Qemu { qemu },
        }
    }
}

/// A raw `-device` value: a model and `key=value` properties, none of
/// which reaches the host.
fn check_raw(text: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.,=:".contains(c);
    if text.is_empty() || text.len() > 200 || !text.chars().all(allowed) {
        return Err(format!(
            "`qemu` device {text:?} must be a QEMU device model with `key=value` properties, at most 200 of a-z, 0-9, `-_.,=:`"
        ));
    }
    let mut parts = text.split(',');
    let model = parts.next().unwrap_or_default();
    if let Some(bad) = HOST_REACHING_MODELS.iter().find(|m| model.starts_with(**m)) {
        return Err(format!(
            "`qemu` device {model:?} is refused: `{bad}` devices reach the host or need a backend a spec cannot give"
        ));
    }
    for property in parts {
        let key = property.split('=').next().unwrap_or_default();
        if BACKEND_PROPERTIES.contains(&key) || property.split('=').count() != 2 {
            return Err(format!(
                "`qemu` device {text:?}: property {property:?} is refused (only `key=value` properties that name no backend, file, bus or host resource)"
            ));
        }
    }
    Ok(())
}

/// The model names of a test's raw devices, to check against what the
/// QEMU binary has.
pub fn raw_models(devices: &[DeviceSpec]) -> impl Iterator<Item = &str> {
    devices.iter().filter_map(|d| match d {
        DeviceSpec::Qemu(text) => text.split(',').next(),
        _ => None,
    })
}

/// The device models `qemu -device help` lists (`name "edu", bus PCI`).
pub fn models_in_help(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|l| l.strip_prefix("name \""))
        .filter_map(|l| l.split('"').next())
        .map(str::to_string)
        .collect()
}

/// A disk's name becomes a device file name and part of its serial number
/// (20 bytes at most in virtio-blk, of which `modvm-` takes 6).
fn check_disk_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 14
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "disk name {name:?} must be 1 to 14 of a-z, 0-9, `-`, `_` (it becomes /dev/disk/<name>)"
        ))
    }
}

/// Checks a test's list as a whole: not too many, disk names unique.
pub fn check_list(devices: &[DeviceSpec]) -> Result<(), String> {
    if devices.len() > MAX_DEVICES {
        return Err(format!(
            "a test may declare at most {MAX_DEVICES} devices, not {}",
            devices.len()
        ));
    }
    let mut names: Vec<&str> = Vec::new();
    for d in devices {
        if let DeviceSpec::Disk(disk) = d {
            if names.contains(&disk.name.as_str()) {
                return Err(format!("two disks are named {:?}", disk.name));
            }
            names.push(&disk.name);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Vec<DeviceSpec>, String> {
        let list: Vec<DeviceSpec> = serde_json::from_str(json).map_err(|e| e.to_string())?;
        check_list(&list)?;
        Ok(list)
    }

    #[test]
    fn names_and_disks_parse_and_round_trip() {
        let list = parse(
            r#"["edu", {"disk": {"name": "scratch", "size_mib": 64}}, {"disk": {"name": "n1", "size_mib": 8, "bus": "nvme"}}]"#,
        )
        .unwrap();
        assert_eq!(list[0], DeviceSpec::Pci("edu".into()));
        assert_eq!(
            list[1],
            DeviceSpec::Disk(DiskSpec {
                name: "scratch".into(),
                size_mib: 64,
                bus: DiskBus::VirtioBlk
            })
        );
        let back = serde_json::to_string(&list).unwrap();
        assert_eq!(parse(&back).unwrap(), list);
    }

    #[test]
    fn device_help_gives_model_names() {
        let help =
            "Misc devices:\nname \"edu\", bus PCI\nname \"i6300esb\", bus PCI, desc \"x\"\n\n";
        assert_eq!(models_in_help(help), ["edu", "i6300esb"]);
    }

    #[test]
    fn bad_devices_are_refused_with_the_fix() {
        for (json, words) in [
            (r#"["edu2"]"#, "known: edu, pci-testdev"),
            (
                r#"[{"disk": {"name": "a", "size_mib": 0}}]"#,
                "between 1 and",
            ),
            (
                r#"[{"disk": {"name": "a", "size_mib": 99999999}}]"#,
                "between 1 and",
            ),
            (
                r#"[{"disk": {"name": "A/b", "size_mib": 1}}]"#,
                "must be 1 to 14",
            ),
            (
                r#"[{"disk": {"name": "averyveryverylongname", "size_mib": 1}}]"#,
                "must be 1 to 14",
            ),
            (
                r#"[{"disk": {"name": "a", "size_mib": 1}}, {"disk": {"name": "a", "size_mib": 2}}]"#,
                "two disks are named",
            ),
        ] {
            let e = parse(json).unwrap_err();
            assert!(e.contains(words), "{json}: {e}");
        }
        for (json, words) in [
            (
                r#"[{"qemu": "usb-host,hostbus=1"}]"#,
                "`usb-host` devices reach the host",
            ),
            (r#"[{"qemu": "vhost-vsock-pci"}]"#, "`vhost` devices"),
            (
                r#"[{"qemu": "virtio-blk-pci,drive=x"}]"#,
                "property \"drive=x\" is refused",
            ),
            (
                r#"[{"qemu": "e1000,romfile=/etc/passwd"}]"#,
                "must be a QEMU device model",
            ),
            (
                r#"[{"qemu": "e1000,romfile=x"}]"#,
                "property \"romfile=x\" is refused",
            ),
            (r#"[{"qemu": "a b"}]"#, "must be a QEMU device model"),
        ] {
            let e = parse(json).unwrap_err();
            assert!(e.contains(words), "{json}: {e}");
        }
        let ok = parse(r#"[{"qemu": "i6300esb,id=wd"}]"#).unwrap();
        assert_eq!(raw_models(&ok).collect::<Vec<_>>(), ["i6300esb"]);
        let many = format!("[{}]", vec!["\"edu\""; MAX_DEVICES + 1].join(","));
        assert!(parse(&many).unwrap_err().contains("at most"));
    }
}
