//! Debian packages through apt's own client, without touching the host's apt
//! state and without root.
//!
//! modvm keeps private package lists under its cache (`Dir::State::Lists`,
//! `Dir::Cache`) and reads the host's sources, so it sees the same mirror and
//! suites as `apt-get` on the host but never needs `sudo apt-get update`.
//! With a Debian archive the user names ([`mirror`]), apt reads only a
//! private sources file naming that archive instead.

pub mod mirror;
pub mod os_release;

pub use mirror::{Mirror, Sources};
use os_release::OsRelease;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why apt did not give what was asked for.
#[derive(Debug, thiserror::Error)]
pub enum AptError {
    #[error("cannot run {program}: {source} (install apt, or run on a Debian-family host)")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed:\n{output}")]
    Failed { command: String, output: String },
    #[error("the host's apt sources have no Debian suite `{base}` (main) to take the archive of `{suite}` from; check `apt-cache policy`")]
    NoArchive { suite: String, base: String },
    #[error("package `{0}` is not in the host's apt sources (check `apt-cache policy {0}`; the kernel recipe may name a version the mirror no longer carries)")]
    NotFound(String),
    #[error("package `{package}` is not in the Debian archive at {url} (suites {suites}); check that the URL names a Debian archive (its `dists/` and `pool/` directories) and the suite")]
    NotInMirror {
        package: String,
        url: String,
        suites: String,
    },
    #[error("this host has no {program}; use `--kernel host` (needs the running kernel's /boot image and /lib/modules/RELEASE/build headers) or run modvm in a Debian container")]
    NoApt { program: String },
    #[error("this host has no {program} to fetch Debian's busybox-static, which every guest's initramfs needs; put a statically linked x86-64 `busybox` on PATH (modvm copies it into its cache) or run modvm in a Debian container")]
    NoBusybox { program: String },
    #[error("the host's apt sources are {distro} and have no Debian kernel packages (no `{package}`); pass `--debian-mirror URL` (a Debian archive) or use `--kernel host`")]
    NotDebianHost { distro: String, package: String },
    #[error("the Debian archive keyring {} does not exist; install the `debian-archive-keyring` package (Ubuntu has it too) or name the keyring with --debian-keyring", path.display())]
    NoKeyring { path: PathBuf },
    #[error("the archive at {url} is not signed by the Debian archive keyring {} ({detail}); check that --debian-mirror names a Debian archive", keyring.display())]
    Unsigned {
        url: String,
        keyring: PathBuf,
        detail: String,
    },
    #[error("cannot reach the Debian archive at {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

impl AptError {
    /// The gist in one line: apt's first errors, without its progress output.
    pub fn summary(&self) -> String {
        match self {
            AptError::Failed { output, .. } => {
                let errors: Vec<&str> = output
                    .lines()
                    .filter(|l| l.starts_with("E: "))
                    .map(|l| l.trim_start_matches("E: ").trim())
                    .collect();
                match errors.as_slice() {
                    [] => first_error(output).to_string(),
                    [one] => one.to_string(),
                    [first, rest @ ..] => format!("{first}; and {} more errors", rest.len()),
                }
            }
            other => other.to_string(),
        }
    }
}

/// One package as `apt-cache show` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageInfo {
    pub name: String,
    pub version: String,
    /// Names only, version constraints and alternatives dropped.
    pub depends: Vec<String>,
    pub size: u64,
}

/// apt with private state under `root`.
pub struct Apt {
    root: PathBuf,
    /// The suite apt prefers (`APT::Default-Release`): another suite of the
    /// Debian archive, over the base suite (see [`Apt::with_suite`]).
    suite: Option<String>,
    /// A private sources file read instead of the host's `sources.list`.
    sources: Option<PathBuf>,
    /// The archive the user named: then the host's `sources.list.d` and
    /// dpkg status are replaced by empty private ones too.
    mirror: Option<Mirror>,
    /// The mirror's suites, for its errors.
    suites: Vec<String>,
    /// This run's turn at the state (see [`Apt::hold`]).
    turn: Option<crate::lock::Lock>,
}

/// Both programs must be there before anything is fetched: a host without
/// them is not a Debian-family host, and installing "apt" is not the fix.
pub fn check_tools() -> Result<(), AptError> {
    match ["apt-get", "dpkg-deb"]
        .iter()
        .find(|p| crate::prereq::find(p).is_none())
    {
        Some(p) => Err(AptError::NoApt {
            program: p.to_string(),
        }),
        None => Ok(()),
    }
}

/// A package missing from the host's sources is expected on a host that is
/// not Debian (Ubuntu's archive has other kernels): say that, by name, and
/// what to do instead of "check apt-cache policy".
pub fn explain_for_host(e: AptError, host: &OsRelease) -> AptError {
    if host.is_debian() {
        return e;
    }
    match e {
        AptError::NotFound(package) => AptError::NotDebianHost {
            distro: host.describe(),
            package,
        },
        AptError::NoArchive { suite, .. } => AptError::NotDebianHost {
            distro: host.describe(),
            package: format!("linux-image-* of {suite}"),
        },
        e => e,
    }
}

/// What apt's output says about a Debian archive that gave nothing usable.
#[derive(Debug, PartialEq)]
enum Refusal {
    /// Its Release file is unsigned or not signed by the keyring.
    Unsigned(String),
    /// It could not be fetched at all (refused, unknown host, 404).
    Unreachable(String),
}

/// The refusal in apt's output, if any: signature trouble first (apt then
/// also says it "failed"), then fetch failures.
fn refusal(output: &str) -> Option<Refusal> {
    const BAD_SIGNATURE: [&str; 5] = ["BADSIG", "NO_PUBKEY", "EXPKEYSIG", "REVKEYSIG", "ERRSIG"];
    for line in output.lines() {
        for word in BAD_SIGNATURE {
            if let Some(at) = line.find(word) {
                let mut detail = line[at..].split_whitespace().take(2);
                let detail = [detail.next(), detail.next()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                return Some(Refusal::Unsigned(detail));
            }
        }
    }
    if output.lines().any(|l| l.contains("is not signed")) {
        return Some(Refusal::Unsigned("no signature".into()));
    }
    for line in output.lines() {
        let line = line.trim();
        if let Some(rest) = line
            .strip_prefix("W: Failed to fetch ")
            .or_else(|| line.strip_prefix("E: Failed to fetch "))
        {
            return Some(Refusal::Unreachable(match rest.split_once("  ") {
                Some((url, reason)) => format!("{} (fetching {url})", reason.trim()),
                None => rest.to_string(),
            }));
        }
        if line.contains("does not have a Release file") {
            let reason = line.trim_start_matches("E: ").trim_end_matches('.');
            return Some(Refusal::Unreachable(format!(
                "{reason} (no archive there for this suite)"
            )));
        }
    }
    None
}

impl Apt {
    pub fn new(root: &Path) -> Apt {
        Apt {
            root: root.to_path_buf(),
            suite: None,
            sources: None,
            mirror: None,
            suites: Vec::new(),
            turn: None,
        }
    }

    /// Keeps `turn`, a lock on this state taken before it was made, until
    /// this apt is dropped: another run's update must not rewrite the
    /// lists (or the private sources file) while this one reads them.
    pub fn hold(mut self, turn: crate::lock::Lock) -> Apt {
        self.turn = Some(turn);
        self
    }

    /// apt that reads only `mirror`'s `suites` (the first is the base
    /// suite; a second one is preferred, as with [`Apt::with_suite`]), with
    /// state under `root`. The keyring must exist: apt would take a missing
    /// `signed-by` file for an unsigned archive. The preferred suite is
    /// always set, so that a host's own `APT::Default-Release` (a release
    /// the archive does not have) cannot make apt refuse.
    pub fn mirror(root: &Path, mirror: &Mirror, suites: &[String]) -> Result<Apt, AptError> {
        if !mirror.keyring.is_file() {
            return Err(AptError::NoKeyring {
                path: mirror.keyring.clone(),
            });
        }
        let apt = Apt {
            root: root.to_path_buf(),
            suite: suites.get(1).or(suites.first()).cloned(),
            sources: Some(root.join("sources.list")),
            mirror: Some(mirror.clone()),
            suites: suites.to_vec(),
            turn: None,
        };
        let write = |path: &Path, text: &str| {
            std::fs::write(path, text).map_err(|source| AptError::Spawn {
                program: format!("write {}", path.display()),
                source,
            })
        };
        let parts = root.join("sources.list.d");
        std::fs::create_dir_all(&parts).map_err(|source| AptError::Spawn {
            program: format!("mkdir {}", parts.display()),
            source,
        })?;
        write(&root.join("sources.list"), &mirror.sources_list(suites))?;
        write(&root.join("status"), "")?;
        Ok(apt)
    }

    /// apt that also sees `suite` (e.g. `bookworm-backports`) of the archive
    /// the host's own Debian suites come from, and prefers it: packages it
    /// lacks (busybox-static) still come from the host's suites. The extra
    /// source lives in a private sources file under `root`; the host's apt
    /// configuration is not touched. Keep its state apart from the plain
    /// one (another `root`), since the lists differ.
    pub fn with_suite(root: &Path, suite: &str) -> Result<Apt, AptError> {
        let apt = Apt {
            root: root.to_path_buf(),
            suite: Some(suite.to_string()),
            sources: Some(root.join("sources.list")),
            mirror: None,
            suites: Vec::new(),
            turn: None,
        };
        let base = suite.split('-').next().unwrap_or(suite);
        let mut c = Command::new("apt-get");
        c.args([
            "indextargets",
            "--format",
            "$(REPO_URI) $(RELEASE) $(COMPONENT)",
        ])
        .env("LC_ALL", "C");
        let listed = apt.run(c, None)?;
        let uri = listed
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f.len() == 3 && f[1] == base && f[2] == "main").then(|| f[0].to_string())
            })
            .next()
            .ok_or_else(|| AptError::NoArchive {
                suite: suite.to_string(),
                base: base.to_string(),
            })?;
        let mut list = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
        let keyring = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
        let signed = if keyring.is_file() {
            format!(" [signed-by={}]", keyring.display())
        } else {
            String::new()
        };
        list.push_str(&format!("\ndeb{signed} {uri} {suite} main\n"));
        let path = apt.sources_file();
        std::fs::create_dir_all(&apt.root)
            .and_then(|_| std::fs::write(&path, list))
            .map_err(|source| AptError::Spawn {
                program: format!("write {}", path.display()),
                source,
            })?;
        Ok(apt)
    }

    fn sources_file(&self) -> PathBuf {
        self.root.join("sources.list")
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        let lists = self.root.join("lists");
        let cache = self.root.join("cache");
        c.arg("-o")
            .arg(format!("Dir::State::Lists={}", lists.display()))
            .arg("-o")
            .arg(format!("Dir::Cache={}", cache.display()))
            .arg("-o")
            .arg("Acquire::Languages=none")
            .env("LC_ALL", "C");
        if let Some(sources) = &self.sources {
            c.arg("-o")
                .arg(format!("Dir::Etc::SourceList={}", sources.display()));
        }
        if self.mirror.is_some() {
            // Not even the host's sources.list.d (an Ubuntu host's
            // ubuntu.sources), nor its installed packages.
            c.arg("-o")
                .arg(format!(
                    "Dir::Etc::SourceParts={}",
                    self.root.join("sources.list.d").display()
                ))
                .arg("-o")
                .arg(format!(
                    "Dir::State::status={}",
                    self.root.join("status").display()
                ));
        }
        if let Some(suite) = &self.suite {
            c.arg("-o").arg(format!("APT::Default-Release={suite}"));
        }
        // As root, apt hands downloads to the `_apt` user, which cannot write
        // into a private cache; keep the download in our own hands.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            c.arg("-o").arg("APT::Sandbox::User=root");
        }
        c
    }

    fn run(&self, c: Command, cwd: Option<&Path>) -> Result<String, AptError> {
        self.run_both(c, cwd).map(|(stdout, _)| stdout)
    }

    /// stdout and stderr (where apt's warnings go) of a successful run.
    fn run_both(&self, mut c: Command, cwd: Option<&Path>) -> Result<(String, String), AptError> {
        if let Some(d) = cwd {
            c.current_dir(d);
        }
        let shown = format!("{c:?}").replace('"', "");
        let out = c.output().map_err(|source| AptError::Spawn {
            program: c.get_program().to_string_lossy().into_owned(),
            source,
        })?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let errors = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            let output = format!("{text}{errors}");
            if let Some(e) = self.refused(&output) {
                return Err(e);
            }
            return Err(AptError::Failed {
                command: shown,
                output,
            });
        }
        Ok((text, errors))
    }

    /// A user-named archive's refusal as its own error (one line, naming
    /// the archive), instead of apt's pages of output.
    fn refused(&self, output: &str) -> Option<AptError> {
        let mirror = self.mirror.as_ref()?;
        Some(match refusal(output)? {
            Refusal::Unsigned(detail) => AptError::Unsigned {
                url: mirror.url.clone(),
                keyring: mirror.keyring.clone(),
                detail,
            },
            Refusal::Unreachable(reason) => AptError::Unreachable {
                url: mirror.url.clone(),
                reason,
            },
        })
    }

    /// Refreshes the private package lists from the host's sources.
    ///
    /// Lists that apt cannot read (a garbled cache, an interrupted write)
    /// make every later update fail too; they are only a copy of the
    /// mirror's, so they are wiped and fetched whole once, with a line to
    /// `notice` saying so.
    pub fn update(&self, notice: &mut dyn FnMut(&str)) -> Result<(), AptError> {
        match self.update_once() {
            Err(AptError::Failed { output, .. }) if self.lists_are_damaged(&output) => {
                let lists = self.root.join("lists");
                notice(&format!(
                    "the private package lists in {} are unreadable ({}); rebuilding them",
                    lists.display(),
                    first_error(&output)
                ));
                self.wipe_lists();
                self.update_once()
            }
            other => other,
        }
    }

    fn update_once(&self) -> Result<(), AptError> {
        for d in ["lists/partial", "cache/archives/partial"] {
            std::fs::create_dir_all(self.root.join(d)).map_err(|source| AptError::Spawn {
                program: format!("mkdir {}", self.root.join(d).display()),
                source,
            })?;
        }
        let mut c = self.command("apt-get");
        c.arg("-q").arg("update");
        let (_, warnings) = self.run_both(c, None)?;
        // apt-get update succeeds when an index could not be fetched (it
        // keeps the old one); for a named archive that is the answer.
        match self.refused(&warnings) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Whether apt's complaint is about our own files rather than the
    /// network (or another apt holding the lists' lock, which waiting fixes).
    fn lists_are_damaged(&self, output: &str) -> bool {
        let lists = self.root.join("lists");
        let busy = output.contains("Could not get lock") || output.contains("Unable to lock");
        !busy
            && (output.contains(&*lists.to_string_lossy())
                || output.contains("could not be parsed or opened")
                || output.contains("Problem with MergeList"))
    }

    /// Removes every downloaded list and apt's binary caches (not the lock
    /// files apt may hold). What cannot be removed is left for apt's own
    /// error on the retry to name.
    fn wipe_lists(&self) {
        for dir in [self.root.join("lists"), self.root.join("lists/partial")] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                if e.file_name() != "lock" && path.is_file() {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        if let Ok(entries) = std::fs::read_dir(self.root.join("cache")) {
            for e in entries.flatten() {
                let path = e.path();
                if path.extension().is_some_and(|x| x == "bin") {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }

    /// The candidate version of `package`.
    pub fn show(&self, package: &str) -> Result<PackageInfo, AptError> {
        let mut c = self.command("apt-cache");
        c.arg("show").arg("--no-all-versions").arg(package);
        let missing = || match &self.mirror {
            Some(m) => AptError::NotInMirror {
                package: package.to_string(),
                url: m.url.clone(),
                suites: self.suites.join(", "),
            },
            None => AptError::NotFound(package.to_string()),
        };
        match self.run(c, None) {
            Ok(text) => parse_show(&text).ok_or_else(missing),
            Err(AptError::Failed { output, .. })
                if output.contains("No packages found")
                    || output.contains("Unable to locate")
                    || output.contains("No package") =>
            {
                Err(missing())
            }
            Err(e) => Err(e),
        }
    }

    /// Downloads the exact versions into `dir`; returns the `.deb` paths.
    pub fn download(&self, packages: &[PackageInfo], dir: &Path) -> Result<Vec<PathBuf>, AptError> {
        let mut c = self.command("apt-get");
        c.arg("-q").arg("download");
        for p in packages {
            c.arg(format!("{}={}", p.name, p.version));
        }
        self.run(c, Some(dir))?;
        let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| AptError::Spawn {
                program: format!("read {}", dir.display()),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "deb"))
            .collect();
        debs.sort();
        Ok(debs)
    }
}

/// The first `E:` line of apt's output, for a one-line message.
fn first_error(output: &str) -> &str {
    output
        .lines()
        .find(|l| l.starts_with("E: "))
        .or_else(|| output.lines().find(|l| !l.trim().is_empty()))
        .unwrap_or("no output")
        .trim()
}

/// Parses the first stanza of `apt-cache show`.
pub fn parse_show(text: &str) -> Option<PackageInfo> {
    let stanza = text.split("\n\n").next()?;
    let field = |name: &str| {
        stanza
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
            .map(|v| v.trim().to_string())
    };
    let depends = field("Depends")
        .unwrap_or_default()
        .split(',')
        .filter_map(|d| {
            let first = d.split('|').next()?.trim();
            // `perl:any`: the architecture qualifier is not part of the name.
            let name = first.split([' ', '(', ':']).next()?.trim();
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect();
    Some(PackageInfo {
        name: field("Package")?,
        version: field("Version")?,
        depends,
        size: field("Size").and_then(|s| s.parse().ok()).unwrap_or(0),
    })
}

/// Unpacks a `.deb` into `root` with dpkg-deb (no maintainer scripts run).
pub fn extract(deb: &Path, root: &Path) -> Result<(), AptError> {
    let mut c = Command::new("dpkg-deb");
    c.arg("-x").arg(deb).arg(root);
    let out = c.output().map_err(|source| AptError::Spawn {
        program: "dpkg-deb".into(),
        source,
    })?;
    if !out.status.success() {
        return Err(AptError::Failed {
            command: format!("dpkg-deb -x {} {}", deb.display(), root.display()),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_show_stanza() {
        let text = "Package: linux-headers-6.1.0-56-cloud-amd64\nSource: linux-signed-amd64\nVersion: 6.1.192-2\nDepends: linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), linux-compiler-gcc-12-x86 | gcc-12, perl:any\nSize: 1592924\nDescription: x\n\nPackage: other\nVersion: 1\n";
        let p = parse_show(text).unwrap();
        assert_eq!(p.name, "linux-headers-6.1.0-56-cloud-amd64");
        assert_eq!(p.version, "6.1.192-2");
        assert_eq!(
            p.depends,
            vec![
                "linux-headers-6.1.0-56-common",
                "linux-kbuild-6.1",
                "linux-compiler-gcc-12-x86",
                "perl"
            ]
        );
        assert_eq!(p.size, 1592924);
    }

    #[test]
    fn first_error_prefers_apt_errors() {
        let out = "Get:1 http://x InRelease\nReading package lists...\nE: LZ4F: /c/apt/lists/x_Packages.lz4 Read error\nE: The package lists or status file could not be parsed or opened.\n";
        assert_eq!(
            first_error(out),
            "E: LZ4F: /c/apt/lists/x_Packages.lz4 Read error"
        );
        assert_eq!(first_error(""), "no output");
    }

    #[test]
    fn summary_keeps_only_apt_errors() {
        let e = AptError::Failed {
            command: "apt-get download x".into(),
            output: "Ign:1 http://x\nErr:1 http://x\nE: Failed to fetch a  refused\nE: Failed to fetch b  refused\n".into(),
        };
        assert_eq!(e.summary(), "Failed to fetch a  refused; and 1 more errors");
        assert_eq!(
            AptError::NotFound("p".into()).summary(),
            AptError::NotFound("p".into()).to_string()
        );
    }

    #[test]
    fn damaged_lists_are_told_from_network_failures() {
        let apt = Apt::new(Path::new("/c/apt"));
        assert!(apt.lists_are_damaged("E: LZ4F: /c/apt/lists/x_Packages.lz4 Read error"));
        assert!(apt.lists_are_damaged(
            "E: The package lists or status file could not be parsed or opened."
        ));
        assert!(!apt.lists_are_damaged(
            "E: Could not get lock /c/apt/lists/lock. It is held by process 7 (apt-get)"
        ));
        assert!(!apt.lists_are_damaged(
            "W: Failed to fetch http://x/InRelease  Could not connect to 127.0.0.1:9\nE: Some index files failed to download."
        ));
    }

    #[test]
    fn wiping_keeps_the_lock_and_removes_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let apt = Apt::new(d.path());
        std::fs::create_dir_all(d.path().join("lists/partial")).unwrap();
        std::fs::create_dir_all(d.path().join("cache")).unwrap();
        for f in [
            "lists/lock",
            "lists/x_Packages.lz4",
            "lists/partial/y",
            "cache/pkgcache.bin",
        ] {
            std::fs::write(d.path().join(f), "garbage").unwrap();
        }
        apt.wipe_lists();
        assert!(d.path().join("lists/lock").exists());
        assert!(!d.path().join("lists/x_Packages.lz4").exists());
        assert!(!d.path().join("lists/partial/y").exists());
        assert!(!d.path().join("cache/pkgcache.bin").exists());
    }

    #[test]
    fn signature_refusals_are_told_from_fetch_failures() {
        let badsig = "Get:1 http://127.0.0.1:8/debian bookworm InRelease [151 kB]\nErr:1 http://127.0.0.1:8/debian bookworm InRelease\n  The following signatures were invalid: BADSIG 6ED0E7B82643E131 Debian Archive Automatic Signing Key (12/bookworm) <x@y>\nW: GPG error: http://127.0.0.1:8/debian bookworm InRelease: The following signatures were invalid: BADSIG 6ED0E7B82643E131 Debian Archive Automatic Signing Key (12/bookworm) <x@y>\nE: The repository 'http://127.0.0.1:8/debian bookworm InRelease' is not signed.\n";
        assert_eq!(
            refusal(badsig),
            Some(Refusal::Unsigned("BADSIG 6ED0E7B82643E131".into()))
        );
        let nokey = "W: GPG error: http://m/debian bookworm InRelease: The following signatures couldn't be verified because the public key is not available: NO_PUBKEY 6ED0E7B82643E131 NO_PUBKEY 78DBA3BC47EF2265\nE: The repository 'http://m/debian bookworm InRelease' is not signed.\n";
        assert_eq!(
            refusal(nokey),
            Some(Refusal::Unsigned("NO_PUBKEY 6ED0E7B82643E131".into()))
        );
        let unsigned = "E: The repository 'http://m/debian bookworm Release' is not signed.\n";
        assert_eq!(
            refusal(unsigned),
            Some(Refusal::Unsigned("no signature".into()))
        );
        let refused = "W: Failed to fetch http://127.0.0.1:9/debian/dists/bookworm/InRelease  Could not connect to 127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)\nW: Some index files failed to download. They have been ignored, or old ones used instead.\n";
        assert_eq!(
            refusal(refused),
            Some(Refusal::Unreachable(
                "Could not connect to 127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused) (fetching http://127.0.0.1:9/debian/dists/bookworm/InRelease)"
                    .into()
            ))
        );
        let no_release =
            "E: The repository 'file:/srv/x bookworm Release' does not have a Release file.\n";
        assert!(
            matches!(refusal(no_release), Some(Refusal::Unreachable(r)) if r.contains("no archive there"))
        );
        assert_eq!(
            refusal("Hit:1 http://m/debian bookworm InRelease\nReading package lists...\n"),
            None
        );
    }

    #[test]
    fn a_mirror_refusal_is_one_line_naming_the_archive() {
        let d = tempfile::tempdir().unwrap();
        let keyring = d.path().join("k.gpg");
        std::fs::write(&keyring, "k").unwrap();
        let m = Mirror {
            url: "http://127.0.0.1:9/debian".into(),
            keyring: keyring.clone(),
            suite: None,
        };
        let apt = Apt::mirror(&d.path().join("state"), &m, &["bookworm".into()]).unwrap();
        let e = apt
            .refused("W: GPG error: x: BADSIG 1234 Key\nE: The repository 'x' is not signed.\n")
            .unwrap();
        let text = e.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(
            text.starts_with("the archive at http://127.0.0.1:9/debian is not signed by the Debian archive keyring")
                && text.contains("BADSIG 1234"),
            "{text}"
        );
        assert!(
            Apt::new(d.path()).refused("BADSIG 1234").is_none(),
            "host sources keep apt's own errors"
        );
        let sources = std::fs::read_to_string(d.path().join("state/sources.list")).unwrap();
        assert!(
            sources.contains("http://127.0.0.1:9/debian bookworm main"),
            "{sources}"
        );
        assert!(d.path().join("state/sources.list.d").is_dir());
    }

    #[test]
    fn a_missing_keyring_is_named_before_apt_runs() {
        let d = tempfile::tempdir().unwrap();
        let m = Mirror {
            url: "http://127.0.0.1:9/debian".into(),
            keyring: d.path().join("none.gpg"),
            suite: None,
        };
        let e = Apt::mirror(&d.path().join("state"), &m, &["bookworm".into()])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("none.gpg") && e.contains("debian-archive-keyring"),
            "{e}"
        );
        assert!(!d.path().join("state").exists(), "nothing written");
    }

    #[test]
    fn a_package_missing_on_a_foreign_host_says_which_distribution_and_what_to_do() {
        let ubuntu =
            OsRelease::parse("PRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\nID=ubuntu\nID_LIKE=debian\n");
        let e = explain_for_host(
            AptError::NotFound("linux-image-cloud-amd64".into()),
            &ubuntu,
        );
        assert_eq!(
            e.to_string(),
            "the host's apt sources are Ubuntu 24.04.1 LTS's and have no Debian kernel packages (no `linux-image-cloud-amd64`); pass `--debian-mirror URL` (a Debian archive) or use `--kernel host`"
        );
        let e = explain_for_host(
            AptError::NoArchive {
                suite: "bookworm-backports".into(),
                base: "bookworm".into(),
            },
            &ubuntu,
        );
        assert!(matches!(e, AptError::NotDebianHost { .. }), "{e}");
        // On Debian the original error stands (a recipe naming an old version).
        let debian = OsRelease::parse("ID=debian\nVERSION_CODENAME=bookworm\n");
        let e = explain_for_host(AptError::NotFound("p".into()), &debian);
        assert!(matches!(e, AptError::NotFound(_)));
        // Other failures are not a foreign host's.
        let e = explain_for_host(
            AptError::Failed {
                command: "c".into(),
                output: "o".into(),
            },
            &ubuntu,
        );
        assert!(matches!(e, AptError::Failed { .. }));
    }

    #[test]
    fn a_host_without_apt_is_told_the_two_ways_out() {
        let e = AptError::NoApt {
            program: "apt-get".into(),
        }
        .to_string();
        assert_eq!(e, "this host has no apt-get; use `--kernel host` (needs the running kernel's /boot image and /lib/modules/RELEASE/build headers) or run modvm in a Debian container");
    }

    #[test]
    fn empty_output_is_no_package() {
        assert_eq!(parse_show(""), None);
    }
}
