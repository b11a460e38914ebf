//! A test's `kunit` field: which of its modules' KUnit suites and cases
//! count, as globs in the form of the kernel's `kunit.filter_glob`
//! (`suite_glob` or `suite_glob.case_glob`, `*` and `?` wildcards).
//!
//! The kernel cannot be told: Linux 6.1 applies `kunit.filter_glob` only
//! to built-in suites, read once from the command line, and a module's
//! suites all run when it is loaded. So every suite runs and the filter
//! sorts the results: what it does not select is reported as skipped and
//! cannot fail the test.

use serde::{Deserialize, Serialize};

/// The globs of a test's `kunit`; empty selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct KunitFilter(pub Vec<KunitGlob>);

/// One `suite_glob[.case_glob]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KunitGlob {
    pub suite: String,
    pub case: Option<String>,
}

impl KunitFilter {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a suite counts (some glob names it).
    pub fn selects_suite(&self, suite: &str) -> bool {
        self.is_empty() || self.0.iter().any(|g| glob(&g.suite, suite))
    }

    /// Whether a case of a suite counts.
    pub fn selects_case(&self, suite: &str, case: &str) -> bool {
        self.is_empty()
            || self
                .0
                .iter()
                .any(|g| glob(&g.suite, suite) && g.case.as_deref().is_none_or(|c| glob(c, case)))
    }
}

impl KunitGlob {
    /// Whether this glob selects anything among `(suite, cases)`.
    pub(crate) fn matches_any<'a>(
        &self,
        suite: &str,
        mut cases: impl Iterator<Item = &'a str>,
    ) -> bool {
        glob(&self.suite, suite)
            && match &self.case {
                None => true,
                Some(c) => cases.any(|name| glob(c, name)),
            }
    }
}

impl std::fmt::Display for KunitGlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.case {
            Some(c) => write!(f, "{}.{c}", self.suite),
            None => f.write_str(&self.suite),
        }
    }
}

impl Serialize for KunitGlob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for KunitGlob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_glob(&text).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for KunitFilter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let globs = Vec::<KunitGlob>::deserialize(d)?;
        if globs.is_empty() {
            return Err(serde::de::Error::custom(
                "`kunit` is empty; name suites such as \"my_suite*\" or \"my_suite.my_case\", or leave `kunit` out to count every suite",
            ));
        }
        Ok(KunitFilter(globs))
    }
}

/// Longest glob accepted; KUnit's suite and case names are short.
const MAX_GLOB: usize = 256;

fn parse_glob(text: &str) -> Result<KunitGlob, String> {
    let explain = |why: &str| {
        format!("{text:?} in `kunit` {why}; write \"suite_glob\" or \"suite_glob.case_glob\", e.g. \"my_suite*\" or \"my_suite.test_*\"")
    };
    if text.len() > MAX_GLOB {
        return Err(explain(&format!("is longer than {MAX_GLOB} bytes")));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(explain("has spaces or control characters"));
    }
    let (suite, case) = match text.split_once('.') {
        Some((s, c)) => (s, Some(c)),
        None => (text, None),
    };
    if suite.is_empty() || case.is_some_and(str::is_empty) {
        return Err(explain("has an empty part"));
    }
    if case.is_some_and(|c| c.contains('.')) {
        return Err(explain("has more than one `.`"));
    }
    Ok(KunitGlob {
        suite: suite.to_string(),
        case: case.map(str::to_string),
    })
}

/// `*` (any run of characters) and `?` (any one), as the kernel's
/// `glob_match` without character classes; iterative, so a pattern of
/// many stars cannot blow up.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_the_kernels() {
        assert!(glob("kunit_*", "kunit_demo"));
        assert!(glob("*", ""));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("*_str", "kunit_demo_str"));
        assert!(!glob("kunit_demo", "kunit_demo_str"));
        assert!(glob("a*b*c", "aXbYbZc"));
        assert!(!glob(&"*a".repeat(100), &"b".repeat(1000)));
    }

    #[test]
    fn a_filter_selects_suites_and_cases() {
        let f: KunitFilter = serde_json::from_str(r#"["math*.add_*", "str"]"#).unwrap();
        assert!(f.selects_suite("math_suite"));
        assert!(f.selects_case("math_suite", "add_one"));
        assert!(!f.selects_case("math_suite", "sub_one"));
        assert!(f.selects_case("str", "anything"));
        assert!(!f.selects_suite("strings"));
        assert!(KunitFilter::default().selects_case("x", "y"));
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"["math*.add_*","str"]"#
        );
    }

    #[test]
    fn bad_globs_are_refused() {
        for bad in [
            r#"[]"#,
            r#"[""]"#,
            r#"["a."]"#,
            r#"[".b"]"#,
            r#"["a.b.c"]"#,
            r#"["a b"]"#,
            r#"[1]"#,
        ] {
            assert!(serde_json::from_str::<KunitFilter>(bad).is_err(), "{bad}");
        }
    }
}
