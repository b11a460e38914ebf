//! What a kit looked like when it was installed, so that a damaged cache is
//! found and named before a guest boots (a truncated busybox otherwise shows
//! up as a kernel crash "of the module", a deleted headers tree as a raw make
//! error).
//!
//! The manifest lists every file and symlink under the kit with its size;
//! the files a guest cannot do without (the kernel image, busybox and the
//! flavour's headers directory, about 18 MiB) also carry a content hash.
//! Checking sizes of all ~13,500 entries costs a few tens of milliseconds,
//! cheap enough for every run; hashing the whole ~190 MiB tree would not be.
//! Paths are relative to the kit directory, so a cache restored at another
//! path checks the same.
//!
//! Even the 18 MiB cost a debug build ~0.1 s a run, and the saved guests'
//! 69 MB states (same hash) three times that. So a file whose content hash
//! matched is [`Vouch`]ed for: its size, inode, modification and change
//! times are written down beside the hash, and later runs compare those
//! instead of reading the file. Rewriting a file in place, even at the same
//! size and with its modification time put back, moves its change time (no
//! user can set that); replacing it gives another inode. Only a file that
//! has been left alone since it was last changed is vouched for (see
//! [`SETTLE`]), so that a change within the same timestamp tick cannot
//! hide behind the stamp.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// File name of the manifest inside a kit directory.
pub const MANIFEST: &str = "manifest.json";

/// File name of the kit's [`Vouch`]es (relative path to vouch), beside the
/// manifest. Losing it costs one full check, nothing more.
pub const VOUCHES: &str = "vouches.json";

/// How long a file must have gone unchanged before its stamp may stand in
/// for its content. File systems keep times in ticks (a few milliseconds
/// for Linux's coarse clock, up to 2 s on some), so a file rewritten within
/// the tick of its last change would keep its stamp; one whose last change
/// is older than any tick cannot be rewritten without a newer change time.
pub const SETTLE: Duration = Duration::from_secs(2);

/// The recorded shape of a kit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub entries: Vec<Entry>,
}

/// One file or symlink, path relative to the kit directory (`/`-separated).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub path: String,
    /// Bytes of a file, or of a symlink's target text.
    pub size: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub link: bool,
    /// [`hash_file`] of the content, for the files listed at recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

/// What differs from the manifest.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    Missing,
    Size { expected: u64, found: u64 },
    Content { expected: String, found: String },
    Kind { expected: &'static str },
}

/// One damaged entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Damage {
    pub path: String,
    pub problem: Problem,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            Problem::Missing => write!(f, "{} is missing", self.path),
            Problem::Size { expected, found } => {
                write!(f, "{} has {found} bytes, expected {expected}", self.path)
            }
            Problem::Content { expected, found } => write!(
                f,
                "{} has changed (content hash {found}, expected {expected})",
                self.path
            ),
            Problem::Kind { expected } => {
                write!(f, "{} is no longer a {expected}", self.path)
            }
        }
    }
}

/// Everything found damaged: the first entry in full plus how many more.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub first: Damage,
    pub more: usize,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.first)?;
        if self.more > 0 {
            write!(
                f,
                " (and {} more damaged file{})",
                self.more,
                if self.more == 1 { "" } else { "s" }
            )?;
        }
        Ok(())
    }
}

/// Records every entry under `dir/under`; files whose relative path equals
/// or lies below one of `hashed` also get a content hash.
pub fn record(dir: &Path, under: &str, hashed: &[&str]) -> std::io::Result<Manifest> {
    let mut entries = Vec::new();
    walk(dir, under, &mut entries)?;
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    for e in entries.iter_mut().filter(|e| !e.link) {
        if hashed
            .iter()
            .any(|h| e.path == *h || e.path.starts_with(&format!("{h}/")))
        {
            e.hash = Some(hash_file(&dir.join(&e.path))?);
        }
    }
    Ok(Manifest { entries })
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<Entry>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir.join(rel))? {
        let entry = entry?;
        // Debian's file names are UTF-8; anything else is left unrecorded
        // rather than recorded under a name that would not match later.
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let path = format!("{rel}/{name}");
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(dir, &path, out)?;
        } else if kind.is_symlink() || kind.is_file() {
            out.push(Entry {
                size: entry.metadata()?.len(),
                link: kind.is_symlink(),
                path,
                hash: None,
            });
        }
    }
    Ok(())
}

/// What the file system said about a file whose content hash matched, so
/// that later checks can compare these instead of reading it again.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub inode: u64,
    /// Modification time, seconds and nanoseconds.
    pub mtime: (i64, i64),
    /// Change time (any write, rename onto, chmod or `touch` moves it).
    pub ctime: (i64, i64),
}

impl Stamp {
    pub fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            size: meta.len(),
            inode: meta.ino(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether the file's last change lies more than `settle` before `now`.
    fn settled(&self, now: SystemTime, settle: Duration) -> bool {
        let Ok(now) = now.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let changed = Duration::new(
            self.ctime.0.max(0) as u64,
            self.ctime.1.clamp(0, 999_999_999) as u32,
        );
        self.ctime.0 >= 0 && changed + settle < now
    }
}

/// A stamp together with the content hash it stands for: worth nothing once
/// the file's expected hash is another one (a kit or snapshot made again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vouch {
    pub stamp: Stamp,
    pub hash: String,
}

/// Whether the file at `path`, whose metadata is `meta`, has the content
/// hash `expected`: by its stamp when `vouch` holds for it, else by reading
/// it. `Ok(Some)` is a new vouch to keep (the file was read, matched and
/// has settled); `Err` is the hash found, or `None` for an unreadable file.
pub fn verify(
    path: &Path,
    meta: &fs::Metadata,
    expected: &str,
    vouch: Option<&Vouch>,
    settle: Duration,
) -> Result<Option<Vouch>, Option<String>> {
    let stamp = Stamp::of(meta);
    if vouch.is_some_and(|v| v.hash == expected && v.stamp == stamp) {
        return Ok(None);
    }
    // The time is taken before reading: the stamp must be from before the
    // content that was hashed, never after.
    let now = SystemTime::now();
    match hash_file(path) {
        Ok(found) if found == expected => Ok(stamp
            .settled(now, settle)
            .then_some(Vouch { stamp, hash: found })),
        Ok(found) => Err(Some(found)),
        Err(_) => Err(None),
    }
}

/// Compares `dir` with the manifest; `None` when it matches. Files vouched
/// for in `dir`'s [`VOUCHES`] are compared by stamp; files read instead are
/// vouched for there for the next run (best effort: a read-only cache
/// checks by reading every time).
pub fn check(dir: &Path, manifest: &Manifest) -> Option<Report> {
    check_with(dir, manifest, SETTLE)
}

fn check_with(dir: &Path, manifest: &Manifest, settle: Duration) -> Option<Report> {
    let vouches_path = dir.join(VOUCHES);
    let vouches: BTreeMap<String, Vouch> = fs::read(&vouches_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let fresh = Mutex::new(Vec::new());
    let (vouches_ref, fresh_ref) = (&vouches, &fresh);
    // Every run pays this before its first guest: spread the ~13,500 stats
    // and the header hashes over the cores (they are system-call bound).
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let chunk = manifest.entries.len().div_ceil(workers).max(1);
    let mut damage: Vec<(usize, Problem)> = std::thread::scope(|s| {
        let handles: Vec<_> = manifest
            .entries
            .chunks(chunk)
            .enumerate()
            .map(|(n, entries)| {
                s.spawn(move || {
                    entries
                        .iter()
                        .enumerate()
                        .filter_map(|(i, e)| {
                            check_entry(dir, e, vouches_ref, fresh_ref, settle)
                                .map(|p| (n * chunk + i, p))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let fresh = fresh.into_inner().unwrap_or_else(|e| e.into_inner());
    if !fresh.is_empty() {
        // Only what this manifest still hashes, so that vouches of files
        // no longer listed do not pile up.
        let mut kept: BTreeMap<String, Vouch> = manifest
            .entries
            .iter()
            .filter_map(|e| {
                let v = vouches.get(&e.path)?;
                (e.hash.as_ref() == Some(&v.hash)).then(|| (e.path.clone(), v.clone()))
            })
            .collect();
        kept.extend(fresh);
        let bytes = serde_json::to_vec(&kept).expect("vouches serialise");
        let _ = super::record::write_atomic(&vouches_path, &bytes);
    }
    damage.sort_by_key(|(i, _)| *i);
    let mut damage = damage.into_iter();
    let (index, problem) = damage.next()?;
    Some(Report {
        first: Damage {
            path: manifest.entries[index].path.clone(),
            problem,
        },
        more: damage.count(),
    })
}

fn check_entry(
    dir: &Path,
    e: &Entry,
    vouches: &BTreeMap<String, Vouch>,
    fresh: &Mutex<Vec<(String, Vouch)>>,
    settle: Duration,
) -> Option<Problem> {
    let path = dir.join(&e.path);
    let Ok(meta) = fs::symlink_metadata(&path) else {
        return Some(Problem::Missing);
    };
    let kind = meta.file_type();
    if e.link && !kind.is_symlink() {
        return Some(Problem::Kind {
            expected: "symlink",
        });
    }
    if !e.link && !kind.is_file() {
        return Some(Problem::Kind {
            expected: "regular file",
        });
    }
    if meta.len() != e.size {
        return Some(Problem::Size {
            expected: e.size,
            found: meta.len(),
        });
    }
    let expected = e.hash.as_ref()?;
    match verify(&path, &meta, expected, vouches.get(&e.path), settle) {
        Ok(None) => None,
        Ok(Some(vouch)) => {
            fresh
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((e.path.clone(), vouch));
            None
        }
        Err(Some(found)) => Some(Problem::Content {
            expected: expected.clone(),
            found,
        }),
        Err(None) => Some(Problem::Missing),
    }
}

/// [`hash_file`] of bytes in memory.
pub fn hash_bytes(bytes: &[u8]) -> String {
    let mut state = Hash64::new();
    state.update(bytes);
    format!("{:016x}", state.finish())
}

/// A 64-bit content hash, as 16 hex digits.
///
/// Not cryptographic: it tells a damaged file from its installed self, and
/// is defined here (not borrowed from `std`, whose hasher may change between
/// Rust releases) so that a manifest stays valid across modvm builds.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    // Read in blocks whose size is a multiple of the word size, so the
    // result is that of hashing the whole file at once, in bounded memory
    // (guest snapshots are tens of MiB).
    const BLOCK: usize = 1 << 20;
    let mut file = fs::File::open(path)?;
    let mut state = Hash64::new();
    if file.metadata()?.len() <= BLOCK as u64 {
        let mut whole = Vec::new();
        file.read_to_end(&mut whole)?;
        state.update(&whole);
        return Ok(format!("{:016x}", state.finish()));
    }
    let mut block = vec![0u8; BLOCK];
    loop {
        let mut filled = 0;
        while filled < block.len() {
            match file.read(&mut block[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        state.update(&block[..filled]);
        if filled < block.len() {
            break;
        }
    }
    Ok(format!("{:016x}", state.finish()))
}

/// Word-at-a-time multiply–rotate hash, fed once.
struct Hash64 {
    h: u64,
    len: u64,
}

impl Hash64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    fn new() -> Hash64 {
        Hash64 {
            h: 0xcbf2_9ce4_8422_2325,
            len: 0,
        }
    }

    fn update(&mut self, data: &[u8]) {
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            self.h = (self.h ^ w).wrapping_mul(Self::K).rotate_left(31);
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.h = (self.h ^ u64::from_le_bytes(last))
                .wrapping_mul(Self::K)
                .rotate_left(31);
        }
        self.len += data.len() as u64;
    }

    fn finish(&self) -> u64 {
        let mut h = self.h ^ self.len;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kit() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("root");
        fs::create_dir_all(r.join("bin")).unwrap();
        fs::create_dir_all(r.join("usr/src/h")).unwrap();
        fs::write(r.join("bin/busybox"), vec![7u8; 5000]).unwrap();
        fs::write(r.join("usr/src/h/Makefile"), "include x\n").unwrap();
        fs::write(r.join("usr/src/big"), vec![1u8; 100]).unwrap();
        std::os::unix::fs::symlink("../bin", r.join("usr/link")).unwrap();
        d
    }

    #[test]
    fn hash_is_pinned() {
        // A manifest written by one build must check under the next one.
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::write(&f, b"").unwrap();
        assert_eq!(hash_file(&f).unwrap(), "ecba3df2c3383c52");
        fs::write(&f, b"modvm kit manifest").unwrap();
        assert_eq!(hash_file(&f).unwrap(), "b0542fa634f216ba");
        // Not a multiple of 8.
        let big: Vec<u8> = (0..(1u32 << 20) + 13).map(|i| (i % 251) as u8).collect();
        fs::write(&f, &big).unwrap();
        assert_eq!(hash_file(&f).unwrap(), "d3e2cfc4699ff9e7");
    }

    #[test]
    fn intact_kit_checks_clean() {
        let d = kit();
        let m = record(d.path(), "root", &["root/bin/busybox", "root/usr/src/h"]).unwrap();
        assert_eq!(m.entries.len(), 4);
        assert!(m
            .entries
            .iter()
            .any(|e| e.link && e.path == "root/usr/link"));
        let hashed: Vec<_> = m
            .entries
            .iter()
            .filter(|e| e.hash.is_some())
            .map(|e| e.path.as_str())
            .collect();
        assert_eq!(hashed, ["root/bin/busybox", "root/usr/src/h/Makefile"]);
        assert_eq!(check(d.path(), &m), None);
    }

    #[test]
    fn a_moved_kit_checks_clean() {
        let d = kit();
        let m = record(d.path(), "root", &["root/bin/busybox"]).unwrap();
        let moved = tempfile::tempdir().unwrap();
        let to = moved.path().join("elsewhere");
        fs::rename(d.path(), &to).unwrap();
        assert_eq!(check(&to, &m), None);
        fs::rename(&to, d.path()).unwrap();
    }

    #[test]
    fn truncation_is_named_with_both_sizes() {
        let d = kit();
        let m = record(d.path(), "root", &[]).unwrap();
        fs::write(d.path().join("root/bin/busybox"), vec![7u8; 10]).unwrap();
        let r = check(d.path(), &m).unwrap();
        assert_eq!(
            r.to_string(),
            "root/bin/busybox has 10 bytes, expected 5000"
        );
    }

    #[test]
    fn same_size_garbage_is_caught_by_the_hash() {
        let d = kit();
        let m = record(d.path(), "root", &["root/bin/busybox"]).unwrap();
        fs::write(d.path().join("root/bin/busybox"), vec![8u8; 5000]).unwrap();
        let r = check(d.path(), &m).unwrap();
        assert!(matches!(r.first.problem, Problem::Content { .. }), "{r}");
        assert!(r.to_string().starts_with("root/bin/busybox has changed"));
    }

    #[test]
    fn a_deleted_tree_counts_every_file() {
        let d = kit();
        let m = record(d.path(), "root", &[]).unwrap();
        fs::remove_dir_all(d.path().join("root/usr")).unwrap();
        let r = check(d.path(), &m).unwrap();
        assert_eq!(
            r.to_string(),
            "root/usr/link is missing (and 2 more damaged files)"
        );
    }

    #[test]
    fn a_symlink_replaced_by_a_file_is_damage() {
        let d = kit();
        let m = record(d.path(), "root", &[]).unwrap();
        let link = d.path().join("root/usr/link");
        fs::remove_file(&link).unwrap();
        fs::write(&link, "../bin").unwrap();
        let r = check(d.path(), &m).unwrap();
        assert_eq!(r.to_string(), "root/usr/link is no longer a symlink");
    }

    fn vouches(d: &Path) -> BTreeMap<String, Vouch> {
        serde_json::from_slice(&fs::read(d.join(VOUCHES)).unwrap()).unwrap()
    }

    #[test]
    fn a_file_just_written_is_read_every_time() {
        let d = kit();
        let m = record(d.path(), "root", &["root/bin/busybox"]).unwrap();
        assert_eq!(check(d.path(), &m), None);
        assert!(!d.path().join(VOUCHES).exists());
    }

    #[test]
    fn a_vouched_file_is_compared_by_stamp_for_the_hash_it_was_read_with() {
        let d = kit();
        let mut m = record(d.path(), "root", &["root/bin/busybox"]).unwrap();
        assert_eq!(check_with(d.path(), &m, Duration::ZERO), None);
        let v = vouches(d.path());
        assert_eq!(v.keys().collect::<Vec<_>>(), ["root/bin/busybox"]);
        // A vouch stands in for reading: it says the content hashes to
        // what the manifest expects, and the file is not read to dispute it.
        let mut forged = v.clone();
        forged.get_mut("root/bin/busybox").unwrap().hash = "forged".into();
        fs::write(d.path().join(VOUCHES), serde_json::to_vec(&forged).unwrap()).unwrap();
        m.entries[0].hash = Some("forged".into());
        assert_eq!(check_with(d.path(), &m, Duration::ZERO), None);
        // A vouch for another hash than the manifest's counts for nothing.
        m.entries[0].hash = Some("0123456789abcdef".into());
        let r = check_with(d.path(), &m, Duration::ZERO).unwrap();
        assert!(matches!(r.first.problem, Problem::Content { .. }), "{r}");
    }

    #[test]
    fn a_vouched_file_rewritten_or_replaced_at_the_same_size_is_read_again() {
        let d = kit();
        let busybox = d.path().join("root/bin/busybox");
        let m = record(d.path(), "root", &["root/bin/busybox"]).unwrap();
        assert_eq!(check_with(d.path(), &m, Duration::ZERO), None);
        assert_eq!(vouches(d.path()).len(), 1);

        // In place, same size, modification time put back: the change time
        // still moves (past the file system's timestamp tick).
        let mtime = fs::metadata(&busybox).unwrap().modified().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        fs::write(&busybox, vec![8u8; 5000]).unwrap();
        fs::File::options()
            .write(true)
            .open(&busybox)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let r = check_with(d.path(), &m, Duration::ZERO).unwrap();
        assert!(matches!(r.first.problem, Problem::Content { .. }), "{r}");

        // Replaced by another file of the same size: another inode.
        fs::write(&busybox, vec![7u8; 5000]).unwrap();
        assert_eq!(check_with(d.path(), &m, Duration::ZERO), None);
        let other = d.path().join("other");
        fs::write(&other, vec![9u8; 5000]).unwrap();
        fs::rename(&other, &busybox).unwrap();
        let r = check_with(d.path(), &m, Duration::ZERO).unwrap();
        assert!(matches!(r.first.problem, Problem::Content { .. }), "{r}");
    }

    #[test]
    fn settling_is_measured_from_the_change_time() {
        let stamp = Stamp {
            size: 1,
            inode: 1,
            mtime: (0, 0),
            ctime: (100, 500_000_000),
        };
        let at = |s: u64, ms: u64| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms)
        };
        assert!(!stamp.settled(at(102, 500), SETTLE));
        assert!(stamp.settled(at(102, 501), SETTLE));
        assert!(!stamp.settled(at(99, 0), SETTLE), "clock set back");
    }
}
