//! Getting a test's files (modules, helpers, the spec's `files`) and
//! switches into a guest restored from a snapshot, whose initramfs holds
//! none of them and whose kernel command line was fixed when it was saved.
//!
//! The channel is the shell console itself (the only device every saved
//! guest has): each file goes over as gzip in base64 lines, which a
//! command of modvm's reads from `/dev/ttyS0`. Modules lose their debug
//! information first: the guest never reads it (the host symbolises crash
//! frames from the original file), and it is most of a Debian-built module:
//! hello.ko goes from 109 KiB to 1.3 KiB on the wire. Other files go byte
//! for byte. The guest makes the file's directory, unpacks it (gunzip
//! checks its size and CRC-32 against the gzip trailer), sets its mode and
//! prints its SHA-256, which must equal that of what was sent before any
//! step runs.

use super::Guest;
use crate::console::{self, CommandOutput, ConsoleError};
use crate::qemu::shell_quote;
use crate::shipped::GuestFile;
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
/// Raises ttyS0's receive FIFO trigger level (quietly: a kernel without
/// the file just transfers slower).
const RX_TRIGGER: &str = "echo 14 > /sys/class/tty/ttyS0/rx_trig_bytes 2>/dev/null; true";
/// Longest script of one exchange: it travels base64-encoded on one line
/// of the guest's terminal (at most 4095 bytes).
const SCRIPT: usize = 2048;

/// Signed modules end with this; stripping would break the signature.
const SIGNATURE_MAGIC: &[u8] = b"~Module signature appended~\n";

/// One file as it travels.
#[derive(Debug)]
pub struct Payload {
    /// Absolute path in the guest.
    pub dest: String,
    pub executable: bool,
    pub gzip: Vec<u8>,
    /// Size and SHA-256 (hex) of the file the guest must end up with.
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the restored guest did not answer: {0}")]
    Console(#[from] ConsoleError),
    #[error("sending files to the guest failed (exit status {status}): {output}")]
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
    ready: Mutex<HashMap<GuestFile, (std::time::SystemTime, Arc<Payload>)>>,
}

impl Payloads {
    pub fn get(&self, file: &GuestFile) -> Result<Arc<Payload>, DeliverError> {
        let read = |source| DeliverError::Read {
            path: file.host.clone(),
            source,
        };
        let modified = std::fs::metadata(&file.host)
            .and_then(|m| m.modified())
            .map_err(read)?;
        let mut ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((when, p)) = ready.get(file) {
            if *when == modified {
                return Ok(p.clone());
            }
        }
        let payload = Arc::new(prepare(file).map_err(read)?);
        ready.insert(file.clone(), (modified, payload.clone()));
        Ok(payload)
    }
}

/// Hashes and compresses one file (a module without its debug sections).
pub fn prepare(file: &GuestFile) -> std::io::Result<Payload> {
    let original = std::fs::read(&file.host)?;
    let data = if file.module {
        strip_debug(&file.host, &original).unwrap_or(original)
    } else {
        original
    };
    // Every byte saved on the wire is worth more than the host's time for
    // large files (a static helper is most of a MiB); small ones go fast.
    let level = if data.len() > CHUNK {
        flate2::Compression::best()
    } else {
        flate2::Compression::fast()
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), level);
    gz.write_all(&data)?;
    Ok(Payload {
        dest: file.guest.clone(),
        executable: file.executable,
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

/// Sends `payloads` into the guest, checks what arrived, sets the switches
/// and the guest's clock; returns the taint mask afterwards.
///
/// The first exchange after a restore is the slow one (QEMU translates the
/// guest's code paths afresh), so everything goes in as few exchanges as
/// the tty's buffers allow: one for files of up to [`CHUNK`] compressed.
pub fn deliver(
    guest: &mut Guest,
    payloads: &[Arc<Payload>],
    switches: Switches,
    deadline: Instant,
) -> Result<u64, DeliverError> {
    // The saved guest's clock stopped when it was saved.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let exchanges = exchanges(payloads, switches, now);
    if exchanges.len() > 1 {
        // The console carries a few tens of KiB a second: QEMU's UART takes
        // from the socket only as many bytes as the guest's FIFO trigger
        // level (8) before the guest must empty it. At 14, the most a
        // 16550A allows, large files arrive about 1.5 times as fast. Its
        // own exchange: setting the level clears the FIFO.
        let tag = console::new_tag("setup-fifo");
        guest
            .console
            .run_with_input(&tag, RX_TRIGGER, &[], deadline)?;
    }
    let last = exchanges.len() - 1;
    let mut reports = String::new();
    for (n, x) in exchanges.iter().enumerate() {
        let tag = console::new_tag(&format!("setup{n}"));
        let out = guest
            .console
            .run_with_input(&tag, &x.script.join("\n"), &x.input, deadline)?;
        reports.push_str(&out.output);
        if n == last {
            check_arrivals(
                payloads,
                &CommandOutput {
                    output: reports,
                    ..out
                },
            )?;
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

/// One command sent to the guest and the input it reads from the console.
#[derive(Debug, Default)]
struct Exchange {
    script: Vec<String>,
    input: Vec<u8>,
}

impl Exchange {
    fn script_len(&self) -> usize {
        self.script.iter().map(|l| l.len() + 1).sum()
    }
}

/// Splits a delivery into exchanges whose script fits one terminal line
/// and whose input stays within what the guest's tty buffers.
fn exchanges(payloads: &[Arc<Payload>], switches: Switches, now: u64) -> Vec<Exchange> {
    let mut all = vec![Exchange::default()];
    let mut push = |line: String, input: Vec<u8>| {
        let current = all.last_mut().expect("never empty");
        let full = current.script_len() + line.len() + 1 > SCRIPT
            || (!current.input.is_empty() && current.input.len() + input.len() > 2 * CHUNK);
        if full && !current.script.is_empty() {
            all.push(Exchange::default());
        }
        let current = all.last_mut().expect("never empty");
        current.script.push(line);
        current.input.extend_from_slice(&input);
    };
    let mut made: Vec<&str> = vec![crate::spec::MODULES_DIR];
    for (i, p) in payloads.iter().enumerate() {
        let dest = shell_quote(&p.dest);
        if let Some((parent, _)) = p.dest.rsplit_once('/') {
            if !parent.is_empty() && !made.contains(&parent) {
                push(format!("mkdir -p {}", shell_quote(parent)), Vec::new());
                made.push(parent);
            }
        }
        // One piece unpacks straight into place; more are gathered first.
        let whole = p.gzip.len() <= CHUNK;
        let staged = format!("/tmp/.modvm-in-{i}");
        let sink = if whole {
            format!("| gunzip > {dest}")
        } else {
            format!(">> {staged}")
        };
        for piece in p.gzip.chunks(CHUNK) {
            let lines = base64_lines(piece);
            let count = lines.iter().filter(|b| **b == b'\n').count();
            push(
                format!("head -n {count} < /dev/ttyS0 | base64 -d {sink}"),
                lines,
            );
        }
        if !whole {
            push(
                format!("gunzip -c {staged} > {dest}; rm -f {staged}"),
                Vec::new(),
            );
        }
        if p.executable {
            push(format!("chmod 755 {dest}"), Vec::new());
        }
        push(
            format!("echo \"modvm-file $(sha256sum {dest})\""),
            Vec::new(),
        );
    }
    if switches.panic_on_warn {
        push("echo 1 > /proc/sys/kernel/panic_on_warn".into(), Vec::new());
    }
    if switches.panic_on_oops {
        push("echo 1 > /proc/sys/kernel/panic_on_oops".into(), Vec::new());
    }
    push(format!("date -s @{now} > /dev/null"), Vec::new());
    all
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
            name: p.dest.clone(),
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
            dest: "/modules/m.ko".into(),
            executable: false,
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
        let p = prepare(&GuestFile::module(&f)).unwrap();
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&p.gzip[..]), &mut back)
            .unwrap();
        assert_eq!(back, b"not an elf file");
        assert_eq!(p.size, back.len() as u64);
        assert_eq!(p.sha256, hex(&Sha256::digest(&back)));
        assert_eq!(p.dest, "/modules/x.ko");
    }

    fn sized(dest: &str, gzip: usize, executable: bool) -> Arc<Payload> {
        Arc::new(Payload {
            dest: dest.into(),
            executable,
            gzip: vec![7; gzip],
            size: 0,
            sha256: String::new(),
        })
    }

    #[test]
    fn small_files_go_in_one_exchange_with_their_directories_and_modes() {
        let ps = [
            sized("/modules/m.ko", 2000, false),
            sized("/modules/check.sh", 100, true),
            sized("/lib/firmware/a/blob.bin", 5000, false),
            sized("/lib/firmware/a/other.bin", 5000, false),
        ];
        let x = exchanges(&ps, Switches::default(), 5);
        assert_eq!(x.len(), 1, "{x:?}");
        let script = x[0].script.join("\n");
        assert_eq!(script.matches("mkdir -p").count(), 1, "{script}");
        assert!(script.contains("mkdir -p /lib/firmware/a"), "{script}");
        assert!(script.contains("chmod 755 /modules/check.sh"), "{script}");
        assert!(!script.contains("chmod 755 /modules/m.ko"), "{script}");
        assert_eq!(script.matches("modvm-file").count(), 4);
        assert!(script.ends_with("date -s @5 > /dev/null"));
        let mkdir = script.find("mkdir").unwrap();
        assert!(mkdir < script.find("blob.bin").unwrap());
    }

    #[test]
    fn many_or_large_files_are_split_into_exchanges_that_fit_the_terminal() {
        let many: Vec<_> = (0..60)
            .map(|i| {
                sized(
                    &format!("/opt/some/longer/directory/name/file-{i}.dat"),
                    10,
                    false,
                )
            })
            .collect();
        let x = exchanges(&many, Switches::default(), 0);
        assert!(x.len() > 1);
        for e in &x {
            assert!(e.script_len() <= SCRIPT, "{}", e.script_len());
        }
        let total: usize = x
            .iter()
            .map(|e| e.script.iter().filter(|l| l.contains("modvm-file")).count())
            .sum();
        assert_eq!(total, 60);
        let big = [sized("/modules/big.bin", 5 * CHUNK + 1, false)];
        let x = exchanges(&big, Switches::default(), 0);
        assert!(x.len() >= 3, "{}", x.len());
        for e in &x {
            assert!(e.input.len() <= 2 * CHUNK, "{}", e.input.len());
        }
        let all = x
            .iter()
            .flat_map(|e| e.script.iter())
            .cloned()
            .collect::<Vec<_>>()
            .join("\n");
        let gather = all.find("gunzip -c").unwrap();
        assert!(all.rfind(">> /tmp/.modvm-in-0").unwrap() < gather);
        assert!(gather < all.find("modvm-file").unwrap());
    }
}
