//! Debian packages through apt's own client, without touching the host's apt
//! state and without root.
//!
//! modvm keeps private package lists under its cache (`Dir::State::Lists`,
//! `Dir::Cache`) and reads the host's sources, so it sees the same mirror and
//! suites as `apt-get` on the host but never needs `sudo apt-get update`.

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
    /// Another suite of the host's Debian archive, preferred over the
    /// host's own suites (see [`Apt::with_suite`]).
    suite: Option<String>,
}

impl Apt {
    pub fn new(root: &Path) -> Apt {
        Apt {
            root: root.to_path_buf(),
            suite: None,
        }
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
        if let Some(suite) = &self.suite {
            c.arg("-o")
                .arg(format!(
                    "Dir::Etc::SourceList={}",
                    self.sources_file().display()
                ))
                .arg("-o")
                .arg(format!("APT::Default-Release={suite}"));
        }
        // As root, apt hands downloads to the `_apt` user, which cannot write
        // into a private cache; keep the download in our own hands.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            c.arg("-o").arg("APT::Sandbox::User=root");
        }
        c
    }

    fn run(&self, mut c: Command, cwd: Option<&Path>) -> Result<String, AptError> {
        if let Some(d) = cwd {
            c.current_dir(d);
        }
        let shown = format!("{c:?}").replace('"', "");
        let out = c.output().map_err(|source| AptError::Spawn {
            program: c.get_program().to_string_lossy().into_owned(),
            source,
        })?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(AptError::Failed {
                command: shown,
                output: format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
            });
        }
        Ok(text)
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
        self.run(c, None).map(|_| ())
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
        match self.run(c, None) {
            Ok(text) => parse_show(&text).ok_or_else(|| AptError::NotFound(package.to_string())),
            Err(AptError::Failed { output, .. })
                if output.contains("No packages found")
                    || output.contains("Unable to locate")
                    || output.contains("No package") =>
            {
                Err(AptError::NotFound(package.to_string()))
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
            let name = first.split([' ', '(']).next()?.trim();
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
        let text = "Package: linux-headers-6.1.0-56-cloud-amd64\nSource: linux-signed-amd64\nVersion: 6.1.192-2\nDepends: linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), linux-compiler-gcc-12-x86 | gcc-12\nSize: 1592924\nDescription: x\n\nPackage: other\nVersion: 1\n";
        let p = parse_show(text).unwrap();
        assert_eq!(p.name, "linux-headers-6.1.0-56-cloud-amd64");
        assert_eq!(p.version, "6.1.192-2");
        assert_eq!(
            p.depends,
            vec![
                "linux-headers-6.1.0-56-common",
                "linux-kbuild-6.1",
                "linux-compiler-gcc-12-x86"
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
    fn empty_output_is_no_package() {
        assert_eq!(parse_show(""), None);
    }
}
