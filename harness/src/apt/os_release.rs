//! Which distribution the host is, from `/etc/os-release`: the host's apt
//! sources carry Debian's kernel packages only on Debian, and the error on
//! any other host has to say so, by name.

/// The fields of os-release(5) that modvm uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsRelease {
    pub id: String,
    pub pretty_name: String,
    pub codename: String,
}

impl OsRelease {
    /// Parses the `KEY=value` lines (values optionally quoted).
    pub fn parse(text: &str) -> OsRelease {
        let mut os = OsRelease::default();
        let mut name = String::new();
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches(['"', '\'']).to_string();
            match key.trim() {
                "ID" => os.id = value,
                "PRETTY_NAME" => os.pretty_name = value,
                "NAME" => name = value,
                "VERSION_CODENAME" => os.codename = value,
                _ => {}
            }
        }
        if os.pretty_name.is_empty() {
            os.pretty_name = if name.is_empty() { os.id.clone() } else { name };
        }
        os
    }

    /// The host's, from `/etc/os-release` or `/usr/lib/os-release`; empty
    /// when neither can be read.
    pub fn of_host() -> OsRelease {
        ["/etc/os-release", "/usr/lib/os-release"]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .map(|t| OsRelease::parse(&t))
            .unwrap_or_default()
    }

    /// Debian itself (not a derivative: Ubuntu's archive has other kernels).
    pub fn is_debian(&self) -> bool {
        self.id == "debian"
    }

    /// The release's codename when the host is Debian.
    pub fn debian_codename(&self) -> Option<&str> {
        (self.is_debian() && !self.codename.is_empty()).then_some(self.codename.as_str())
    }

    /// How an error names the distribution.
    pub fn describe(&self) -> String {
        if self.pretty_name.is_empty() {
            "of an unknown distribution (no /etc/os-release)".to_string()
        } else {
            format!("{}'s", self.pretty_name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_with_or_without_quotes() {
        let os = OsRelease::parse(
            "PRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\nNAME='Ubuntu'\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n# comment\n\n",
        );
        assert_eq!(os.id, "ubuntu");
        assert_eq!(os.pretty_name, "Ubuntu 24.04.1 LTS");
        assert_eq!(os.codename, "noble");
        assert!(!os.is_debian(), "a derivative is not Debian");
        assert_eq!(os.debian_codename(), None);
        assert_eq!(os.describe(), "Ubuntu 24.04.1 LTS's");
    }

    #[test]
    fn debian_gives_its_codename() {
        let os =
            OsRelease::parse("NAME=\"Debian GNU/Linux\"\nID=debian\nVERSION_CODENAME=bookworm\n");
        assert!(os.is_debian());
        assert_eq!(os.debian_codename(), Some("bookworm"));
        assert_eq!(os.pretty_name, "Debian GNU/Linux");
        // Testing/sid may have no codename.
        assert_eq!(OsRelease::parse("ID=debian\n").debian_codename(), None);
    }

    #[test]
    fn nothing_known_is_said_so() {
        let os = OsRelease::parse("");
        assert!(!os.is_debian());
        assert!(os.describe().contains("unknown distribution"));
        assert_eq!(OsRelease::parse("ID=arch\n").describe(), "arch's");
    }
}
