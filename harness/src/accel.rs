//! Choosing between KVM and TCG.
//!
//! `/dev/kvm` existing proves nothing: on some hosts QEMU aborts with
//! `-cpu host` or the guest hangs silently. So `auto` opens the device and
//! then proves KVM with a bounded probe boot; the verdict is cached per host,
//! keyed by everything that could change it (host kernel, QEMU binary, guest
//! kernel), so a changed host is probed again.

use crate::qemu::Accel;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelMode {
    /// KVM if a probe boot proves it works, else TCG.
    Auto,
    /// KVM, or fail.
    Kvm,
    /// Software emulation.
    Tcg,
}

/// The choice and, when it deserves a word, one line saying why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub accel: Accel,
    pub notice: Option<String>,
}

/// The outcome of a probe boot, cached for the host setup `key` names.
#[derive(Debug, Serialize, Deserialize)]
pub struct Verdict {
    pub key: String,
    pub kvm_works: bool,
    pub reason: String,
}

/// The verdict cached in `verdict_file` for `key`, if the last probe was
/// for this host setup.
pub fn cached(verdict_file: &Path, key: &str) -> Option<Verdict> {
    load(verdict_file).filter(|v| v.key == key)
}

/// Why `/dev/kvm` cannot be used, if it cannot even be opened.
pub fn kvm_device_problem() -> Option<String> {
    match std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => None,
        Err(e) => Some(format!("/dev/kvm: {e}")),
    }
}

/// Identifies the host setup a verdict is valid for: the host's kernel and
/// QEMU binary. Not the guest kernel: whether KVM works is the host's
/// business, so a run over several kernels probes once.
pub fn host_key(qemu: &Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let q = which(qemu)
        .and_then(|p| std::fs::metadata(&p).ok().map(|m| (p, m)))
        .map(|(p, m)| {
            use std::os::unix::fs::MetadataExt;
            format!("{}:{}:{}", p.display(), m.len(), m.mtime())
        })
        .unwrap_or_default();
    format!("{}|{q}", host.trim())
}

fn which(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return Some(program.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// Decides; `probe` boots a guest with KVM and says why it failed, if it did.
pub fn decide(
    mode: AccelMode,
    verdict_file: &Path,
    key: &str,
    probe: &mut dyn FnMut() -> Result<(), String>,
) -> Decision {
    decide_with(mode, kvm_device_problem(), verdict_file, key, probe)
}

/// [`decide`] with the device's state given (tests give an openable one).
fn decide_with(
    mode: AccelMode,
    device_problem: Option<String>,
    verdict_file: &Path,
    key: &str,
    probe: &mut dyn FnMut() -> Result<(), String>,
) -> Decision {
    match mode {
        AccelMode::Tcg => Decision {
            accel: Accel::Tcg,
            notice: None,
        },
        AccelMode::Kvm => Decision {
            accel: Accel::Kvm,
            notice: None,
        },
        AccelMode::Auto => {
            if let Some(problem) = device_problem {
                return tcg(format!("KVM unavailable ({problem}); using TCG"));
            }
            if let Some(v) = cached(verdict_file, key) {
                // Said once, when the probe ran; repeating it on every run
                // is noise (`modvm doctor` reports the cached verdict).
                return Decision {
                    accel: if v.kvm_works { Accel::Kvm } else { Accel::Tcg },
                    notice: None,
                };
            }
            let outcome = probe();
            let verdict = Verdict {
                key: key.to_string(),
                kvm_works: outcome.is_ok(),
                reason: outcome.clone().err().unwrap_or_default(),
            };
            if let Some(parent) = verdict_file.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = std::fs::write(
                verdict_file,
                serde_json::to_vec(&verdict).expect("verdict serialises"),
            );
            match outcome {
                Ok(()) => Decision {
                    accel: Accel::Kvm,
                    notice: Some("KVM works on this host (probe boot passed)".into()),
                },
                Err(reason) => tcg(format!(
                    "KVM probe failed ({reason}); using TCG from now on (delete {} to probe again)",
                    verdict_file.display()
                )),
            }
        }
    }
}

fn tcg(notice: String) -> Decision {
    Decision {
        accel: Accel::Tcg,
        notice: Some(notice),
    }
}

fn load(path: &Path) -> Option<Verdict> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_modes_never_probe() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("v.json");
        let mut probe = || -> Result<(), String> { panic!("no probe expected") };
        assert_eq!(
            decide(AccelMode::Tcg, &f, "k", &mut probe).accel,
            Accel::Tcg
        );
        assert_eq!(
            decide(AccelMode::Kvm, &f, "k", &mut probe).accel,
            Accel::Kvm
        );
    }

    #[test]
    fn auto_caches_a_failed_probe_per_key() {
        // An openable device is given: the probe and its cache are what is
        // tested, on any host.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("v.json");
        let mut calls = 0;
        let mut probe = || -> Result<(), String> {
            calls += 1;
            Err("guest hung".into())
        };
        let d = decide_with(AccelMode::Auto, None, &f, "k1", &mut probe);
        assert_eq!(d.accel, Accel::Tcg);
        assert!(d.notice.unwrap().contains("guest hung"));
        let d = decide_with(AccelMode::Auto, None, &f, "k1", &mut probe);
        assert_eq!(d.accel, Accel::Tcg);
        assert_eq!(d.notice, None, "the verdict is said once, when probed");
        assert!(!cached(&f, "k1").unwrap().kvm_works);
        assert!(cached(&f, "k2").is_none());
        decide_with(AccelMode::Auto, None, &f, "k2", &mut probe);
        assert_eq!(calls, 2, "a new key probes again");
    }
}
