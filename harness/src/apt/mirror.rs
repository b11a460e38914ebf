//! A Debian archive the user names (`--debian-mirror URL`), used instead of
//! the host's apt sources. That is how the Debian kernel profiles work on
//! hosts whose own sources are not Debian's (Ubuntu and other apt hosts):
//! apt reads only a private sources file naming that archive, and trusts
//! only the Debian archive keyring for it. No archive is built in: the
//! user says which one to use.

use super::os_release::OsRelease;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The keyring Debian's archive is signed with (package
/// `debian-archive-keyring`, which Ubuntu ships too).
pub const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The release the built-in profiles are made for (6.1 is its kernel,
/// gcc-12 its compiler); the suite of a mirror when nothing names another.
pub const FALLBACK_SUITE: &str = "bookworm";

/// Where the Debian profiles and busybox come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Sources {
    /// The host's own apt sources (a Debian host).
    #[default]
    Host,
    /// A Debian archive the user named; the host's sources are not read.
    Mirror(Mirror),
}

/// A Debian archive and how to trust it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// Checked by [`parse_url`]: http, https or file, no trailing slash.
    pub url: String,
    /// The keyring its Release file must be signed with.
    pub keyring: PathBuf,
    /// The suite for profiles that name none (`--debian-suite`), instead
    /// of the host's Debian release or [`FALLBACK_SUITE`].
    pub suite: Option<String>,
}

impl Mirror {
    /// The suites apt sees for a profile: its base suite, and the profile's
    /// own suite when it is another one (`bookworm-backports`).
    pub fn suites(&self, profile_suite: Option<&str>, host: &OsRelease) -> Vec<String> {
        let base = match profile_suite {
            Some(s) => s.split('-').next().unwrap_or(s).to_string(),
            None => match &self.suite {
                Some(s) => s.clone(),
                None => host.debian_codename().unwrap_or(FALLBACK_SUITE).to_string(),
            },
        };
        let mut suites = vec![base];
        if let Some(s) = profile_suite {
            if !suites.iter().any(|b| b == s) {
                suites.push(s.to_string());
            }
        }
        suites
    }

    /// The private sources file: one line per suite, main only, the
    /// Packages index only (no translations, no AppStream data a host's
    /// configuration may ask for), signed by the keyring.
    pub fn sources_list(&self, suites: &[String]) -> String {
        suites
            .iter()
            .map(|s| {
                format!(
                    "deb [arch=amd64 target=Packages signed-by={}] {} {s} main\n",
                    self.keyring.display(),
                    self.url
                )
            })
            .collect()
    }

    /// apt state of its own under the cache for this archive and these
    /// suites, apart from the host-sources state and from other mirrors.
    pub fn state_dir(&self, cache: &Path, suites: &[String]) -> PathBuf {
        let mut h = Sha256::new();
        h.update(self.url.as_bytes());
        for s in suites {
            h.update(b"\n");
            h.update(s.as_bytes());
        }
        let digest = h.finalize();
        let key: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        cache.join(format!("apt-mirror-{key}"))
    }
}

/// Checks a mirror URL where it enters: http, https or file, something
/// after the scheme, and nothing that would break apt's one-line source
/// format (white space, `#`, `[`, `]`, control characters). A trailing
/// slash is dropped.
pub fn parse_url(text: &str) -> Result<String, String> {
    let url = text.trim();
    let expect = "give the URL of a Debian archive, e.g. http://HOST/debian";
    let rest = ["http://", "https://", "file:/"]
        .iter()
        .find_map(|scheme| {
            url.get(..scheme.len())
                .filter(|s| s.eq_ignore_ascii_case(scheme))
                .map(|_| &url[scheme.len()..])
        })
        .ok_or_else(|| format!("`{text}` is not an http, https or file URL; {expect}"))?;
    if let Some(bad) = url
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '#' | '[' | ']'))
    {
        return Err(format!(
            "`{}` contains {bad:?}, which apt's sources cannot carry; {expect}",
            text.escape_debug()
        ));
    }
    if rest.trim_matches('/').is_empty() {
        return Err(format!("`{text}` names no host or path; {expect}"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Checks a keyring path for apt's `signed-by` option: no white space and
/// no `]`, which would end the option list.
pub fn parse_keyring(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c == ']') {
        return Err(format!(
            "`{text}` cannot be given to apt as a keyring (empty, or with white space or `]`); name the .gpg file by a path without them"
        ));
    }
    Ok(PathBuf::from(text))
}

/// Checks a suite name (`bookworm`, `trixie`, `bookworm-backports`).
pub fn parse_suite(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "`{text}` is not a suite name; give a Debian codename such as bookworm or trixie"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(suite: Option<&str>) -> Mirror {
        Mirror {
            url: "http://127.0.0.1:8/debian".into(),
            keyring: DEFAULT_KEYRING.into(),
            suite: suite.map(str::to_string),
        }
    }

    const DEBIAN_13: &str =
        "PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nID=debian\nVERSION_CODENAME=trixie\n";
    const UBUNTU: &str =
        "PRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n";

    #[test]
    fn urls_are_checked_where_they_enter() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080/debian/").unwrap(),
            "http://127.0.0.1:8080/debian"
        );
        assert_eq!(
            parse_url(" HTTPS://m.example/debian ").unwrap(),
            "HTTPS://m.example/debian"
        );
        assert_eq!(
            parse_url("file:///srv/debian").unwrap(),
            "file:///srv/debian"
        );
        for (bad, says) in [
            ("ftp://m/debian", "not an http, https or file URL"),
            ("m.example/debian", "not an http, https or file URL"),
            ("", "not an http, https or file URL"),
            ("http://m/deb ian", "contains ' '"),
            ("http://m/debian\tx", "contains '\\t'"),
            ("http://m/#x", "contains '#'"),
            ("http://m/[x]", "contains '['"),
            ("http://", "names no host or path"),
            ("file:///", "names no host or path"),
        ] {
            let e = parse_url(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
            assert!(e.contains("http://HOST/debian"), "{bad}: {e}");
        }
    }

    #[test]
    fn keyrings_and_suites_are_checked() {
        assert!(parse_keyring("/k/debian.gpg").is_ok());
        assert!(parse_keyring("/k/my keys.gpg").is_err());
        assert!(parse_keyring("/k/x]").is_err());
        assert_eq!(parse_suite("trixie").unwrap(), "trixie");
        assert!(parse_suite("trixie main").is_err());
        assert!(parse_suite("").is_err());
    }

    #[test]
    fn the_profile_suite_wins_and_brings_its_base() {
        let host = OsRelease::parse(DEBIAN_13);
        assert_eq!(
            mirror(Some("sid")).suites(Some("bookworm-backports"), &host),
            vec!["bookworm", "bookworm-backports"]
        );
        assert_eq!(
            mirror(None).suites(Some("bookworm"), &host),
            vec!["bookworm"]
        );
    }

    #[test]
    fn without_a_profile_suite_the_override_then_the_debian_host_then_bookworm() {
        let debian = OsRelease::parse(DEBIAN_13);
        let ubuntu = OsRelease::parse(UBUNTU);
        let none = OsRelease::parse("");
        assert_eq!(mirror(Some("sid")).suites(None, &debian), vec!["sid"]);
        assert_eq!(mirror(None).suites(None, &debian), vec!["trixie"]);
        assert_eq!(mirror(None).suites(None, &ubuntu), vec!["bookworm"]);
        assert_eq!(mirror(None).suites(None, &none), vec!["bookworm"]);
    }

    #[test]
    fn the_sources_name_only_the_archive_signed_by_the_keyring() {
        let m = mirror(None);
        let text = m.sources_list(&["bookworm".into(), "bookworm-backports".into()]);
        assert_eq!(
            text,
            format!(
                "deb [arch=amd64 target=Packages signed-by={DEFAULT_KEYRING}] http://127.0.0.1:8/debian bookworm main\n\
                 deb [arch=amd64 target=Packages signed-by={DEFAULT_KEYRING}] http://127.0.0.1:8/debian bookworm-backports main\n"
            )
        );
    }

    #[test]
    fn state_is_keyed_by_archive_and_suites() {
        let cache = Path::new("/c");
        let a = mirror(None).state_dir(cache, &["bookworm".into()]);
        let b = mirror(None).state_dir(cache, &["trixie".into()]);
        let mut other = mirror(None);
        other.url = "http://127.0.0.1:9/debian".into();
        let c = other.state_dir(cache, &["bookworm".into()]);
        assert!(a.starts_with("/c") && a.to_string_lossy().contains("apt-mirror-"));
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, mirror(None).state_dir(cache, &["bookworm".into()]));
    }
}
