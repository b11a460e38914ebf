//! Getting a test's modules and switches into a guest restored from a
//! snapshot, whose initramfs holds no module and whose kernel command line
//! was fixed when it was saved.
//!
//! The channel is the shell console itself (the only device every saved
//! guest has): each module goes over as gzip in base64 lines, which a
//! command of modvm's reads from `/dev/ttyS0`. Debug information is
//! stripped first: the guest never reads it (the host symbolises crash frames from the original file),
//! and it is most of a Debian-built module: hello.ko goes from 109 KiB to
//! 1.3 KiB on the wire. The guest unpacks each file (gunzip checks its size
//! and CRC-32 against the gzip trailer) and prints its SHA-256, which must
//! equal that of the stripped module before the test may load it.

use super::Guest;
use crate::console::{self, CommandOutput, ConsoleError};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Bytes of gzip per piece, and about half the input of one exchange: far
/// below what the guest's tty layer buffers (its flip buffers hold
/// 640 KiB), so nothing is dropped however slowly the guest reads.
const CHUNK: usize = 32 * 1024;
/// Base64 characters per line sent.
const LINE: usize = 1024;

/// Signed modules end with this; stripping would break the signature.
const SIGNATURE_MAGIC: &[u8] = b"~Module signature appended~\n";

/// One module as it travels.
#[derive(Debug)]
pub struct Payload {
    /// File name in the guest's `/modules`.
    pub name: String,
    pub gzip: Vec<u8>,
    /// Size and SHA-256 (hex) of the file the guest must end up with.
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("cannot read module {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the restored guest did not answer: {0}")]
    Console(#[from] ConsoleError),
    #[error("sending modules to the guest failed (exit status {status}): {output}")]
    Transfer { status: i32, output: String },
    #[error("{name} arrived damaged: {detail}")]
    Mismatch { name: String, detail: String },
}

/// Per-test switches the kernel command line would carry on a cold boot.
#[derive(Debug, Clone, Copy, Default)]
pub struct Switches {
    pub panic_on_warn: bool,
    pub panic_on_oops: bool,
}

/// Prepared payloads, kept for the run: every test of a module directory
/// sends the same files, and parallel workers share them.
#[derive(Default)]
pub struct Payloads {
    ready: Mutex<HashMap<PathBuf, (std::time::SystemTime, Arc<Payload>)>>,
}

impl Payloads {
    pub fn get(&self, module: &Path) -> Result<Arc<Payload>, DeliverError> {
        let read = |source| DeliverError::Read {
            path: module.to_path_buf(),
            source,
        };
        let modified = std::fs::metadata(module)
            .and_then(|m| m.modified())
            .map_err(read)?;
        let mut ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((when, p)) = ready.get(module) {
            if *when == modified {
                return Ok(p.clone());
            }
        }
        let payload = Arc::new(prepare(module).map_err(read)?);
        ready.insert(module.to_path_buf(), (modified, payload.clone()));
        Ok(payload)
    }
}

/// Strips, hashes and compresses one module.
pub fn prepare(module: &Path) -> std::io::Result<Payload> {
    let original = std::fs::read(module)?;
    let data = strip_debug(module, &original).unwrap_or(original);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&data)?;
    Ok(Payload {
        name: module
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        gzip: gz.finish()?,
        size: data.len() as u64,
        sha256: hex(&Sha256::digest(&data)),
    })
}

/// The module without its debug sections, or `None` when it is signed or
/// `objcopy` cannot do it (then the whole file goes: slower, still right).
fn strip_debug(module: &Path, original: &[u8]) -> Option<Vec<u8>> {
    if original.ends_with(SIGNATURE_MAGIC) {
        return None;
    }
    let out = tempfile::NamedTempFile::new().ok()?;
    let ok = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(module)
        .arg(out.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| std::fs::read(out.path()).ok())
        .flatten()
        .filter(|d| !d.is_empty())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends `payloads` into the guest's `/modules`, checks what arrived, sets
/// the switches and the guest's clock; returns the taint mask afterwards.
///
/// The first exchange after a restore is the slow one (QEMU translates the
/// guest's code paths afresh), so everything goes in as few exchanges as
/// the tty's buffers allow: one for modules of up to [`CHUNK`] compressed.
pub fn deliver(
    guest: &mut Guest,
    payloads: &[Arc<Payload>],
    switches: Switches,
    deadline: Instant,
) -> Result<u64, DeliverError> {
    let mut exchanges: Vec<(Vec<String>, Vec<u8>)> = vec![(Vec::new(), Vec::new())];
    let mut setup = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let name = crate::qemu::shell_quote(&format!("/modules/{}", p.name));
        // One piece unpacks straight into place; more are gathered first.
        let whole = p.gzip.len() <= CHUNK;
        let staged = format!("/tmp/.modvm-in-{i}");
        let sink = if whole {
            format!("| gunzip > {name}")
        } else {
            format!(">> {staged}")
        };
        for piece in p.gzip.chunks(CHUNK) {
            let lines = base64_lines(piece);
            let current = exchanges.last_mut().expect("never empty");
            if !current.1.is_empty() && current.1.len() + lines.len() > 2 * CHUNK {
                exchanges.push((Vec::new(), Vec::new()));
            }
            let current = exchanges.last_mut().expect("never empty");
            let count = lines.iter().filter(|b| **b == b'\n').count();
            current
                .0
                .push(format!("head -n {count} < /dev/ttyS0 | base64 -d {sink}"));
            current.1.extend_from_slice(&lines);
        }
        if !whole {
            setup.push(format!("gunzip -c {staged} > {name}; rm -f {staged}"));
        }
        setup.push(format!("echo \"modvm-file $(sha256sum {name})\""));
    }
    if switches.panic_on_warn {
        setup.push("echo 1 > /proc/sys/kernel/panic_on_warn".into());
    }
    if switches.panic_on_oops {
        setup.push("echo 1 > /proc/sys/kernel/panic_on_oops".into());
    }
    // The saved guest's clock stopped when it was saved.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    setup.push(format!("date -s @{now} > /dev/null"));
    exchanges.last_mut().expect("never empty").0.extend(setup);

    let last = exchanges.len() - 1;
    for (n, (script, input)) in exchanges.iter().enumerate() {
        let tag = console::new_tag(&format!("setup{n}"));
        let out = guest
            .console
            .run_with_input(&tag, &script.join("\n"), input, deadline)?;
        if n == last {
            check_arrivals(payloads, &out)?;
            return Ok(out.taint);
        }
        if out.exit != 0 {
            return Err(DeliverError::Transfer {
                status: out.exit,
                output: out.output.trim().to_string(),
            });
        }
    }
    unreachable!("the last exchange returns")
}

/// Base64 in lines the guest's tty takes whole (below 4095 bytes).
fn base64_lines(data: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = Vec::with_capacity(encoded.len() + encoded.len() / LINE + 1);
    for line in encoded.as_bytes().chunks(LINE) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

/// Compares the guest's `modvm-file <sha256> <path>` lines with what was
/// sent. gunzip has already checked the unpacked size and CRC-32 against
/// the gzip trailer; the SHA-256 pins the exact bytes (and so the size).
fn check_arrivals(payloads: &[Arc<Payload>], out: &CommandOutput) -> Result<(), DeliverError> {
    let reports: Vec<&str> = out
        .output
        .lines()
        .filter_map(|l| l.strip_prefix("modvm-file "))
        .collect();
    for (i, p) in payloads.iter().enumerate() {
        let mismatch = |detail: String| DeliverError::Mismatch {
            name: p.name.clone(),
            detail,
        };
        let sha = reports
            .get(i)
            .and_then(|r| r.split_whitespace().next())
            .filter(|s| s.len() == 64);
        match sha {
            None => {
                return Err(mismatch(format!(
                    "the guest could not unpack or read it: {}",
                    out.output.trim()
                )))
            }
            Some(sha) if sha != p.sha256 => {
                return Err(mismatch(format!(
                    "SHA-256 {sha} instead of {} ({} bytes sent)",
                    p.sha256, p.size
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(data: &[u8]) -> Arc<Payload> {
        Arc::new(Payload {
            name: "m.ko".into(),
            gzip: Vec::new(),
            size: data.len() as u64,
            sha256: hex(&Sha256::digest(data)),
        })
    }

    fn output(text: &str) -> CommandOutput {
        CommandOutput {
            exit: 0,
            output: text.into(),
            dropped: 0,
            taint: 0,
        }
    }

    #[test]
    fn arrivals_must_match_size_and_hash() {
        let p = payload(b"abc");
        let sha = &p.sha256;
        let one = std::slice::from_ref(&p);
        let good = output(&format!("modvm-file {sha}  /modules/m.ko\n"));
        assert!(check_arrivals(one, &good).is_ok());
        let other_sha = "0".repeat(64);
        let other = output(&format!("modvm-file {other_sha}  /modules/m.ko\n"));
        let e = check_arrivals(one, &other).unwrap_err().to_string();
        assert!(e.contains(&format!("SHA-256 {other_sha}")), "{e}");
        let failed =
            output("gunzip: corrupted data\nsha256sum: can't open '/modules/m.ko'\nmodvm-file \n");
        let e = check_arrivals(one, &failed).unwrap_err().to_string();
        assert!(e.contains("could not unpack"), "{e}");
        assert!(check_arrivals(one, &output("")).is_err());
    }

    #[test]
    fn prepared_payload_unpacks_to_what_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.ko");
        // Not an ELF file: objcopy fails and the file goes whole.
        std::fs::write(&f, b"not an elf file").unwrap();
        let p = prepare(&f).unwrap();
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&p.gzip[..]), &mut back)
            .unwrap();
        assert_eq!(back, b"not an elf file");
        assert_eq!(p.size, back.len() as u64);
        assert_eq!(p.sha256, hex(&Sha256::digest(&back)));
        assert_eq!(p.name, "x.ko");
    }
}
