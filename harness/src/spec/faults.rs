//! A test's `faults`: `true` fails each allocation of its first module's
//! init in turn (as `modvm test --faults` does for every test), and
//! `{"module": "name"}` picks the module whose init is injected.

use serde::{Deserialize, Serialize};

/// Which `insmod` of the test gets fault injection.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(try_from = "RawFaults", into = "RawFaults")]
pub struct FaultsSpec {
    /// The module (file or kernel name); `None`: the first one the test
    /// loads.
    pub module: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum RawFaults {
    On(bool),
    Module(Chosen),
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Chosen {
    module: String,
}

impl TryFrom<RawFaults> for FaultsSpec {
    type Error = String;
    fn try_from(r: RawFaults) -> Result<FaultsSpec, String> {
        match r {
            RawFaults::On(true) => Ok(FaultsSpec::default()),
            RawFaults::On(false) => Err(
                "`faults: false` is the default; leave the field out (or set `true`, or `{\"module\": \"name\"}`)".into(),
            ),
            RawFaults::Module(c)
                if c.module.is_empty()
                    || c.module.len() > 55
                    || !c
                        .module
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
            {
                Err(format!(
                    "`faults.module` must name one of the test's modules (letters, digits, `_`, `-`; at most 55), not {:?}",
                    c.module
                ))
            }
            RawFaults::Module(c) => Ok(FaultsSpec {
                module: Some(c.module),
            }),
        }
    }
}

impl From<FaultsSpec> for RawFaults {
    fn from(f: FaultsSpec) -> RawFaults {
        match f.module {
            None => RawFaults::On(true),
            Some(module) => RawFaults::Module(Chosen { module }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FaultsSpec, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn forms() {
        assert_eq!(parse("true").unwrap(), FaultsSpec::default());
        assert_eq!(
            parse(r#"{"module": "a-b"}"#).unwrap().module.as_deref(),
            Some("a-b")
        );
        assert!(parse("false").unwrap_err().contains("leave the field out"));
        assert!(parse(r#"{"module": ""}"#).is_err());
        assert!(parse(r#"{"module": "a;reboot"}"#).is_err());
        assert!(parse(&format!(r#"{{"module": "{}"}}"#, "x".repeat(56))).is_err());
        assert!(parse(r#"{"modul": "x"}"#).is_err());
        assert!(parse("3").is_err());
        let back = serde_json::to_string(&FaultsSpec {
            module: Some("x".into()),
        })
        .unwrap();
        assert_eq!(back, r#"{"module":"x"}"#);
    }
}
