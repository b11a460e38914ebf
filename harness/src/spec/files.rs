//! The spec's `files` and `helpers`: what a test brings into its guest
//! beyond the modules. Paths are checked as text while parsing (relative
//! sources that stay beside the spec, absolute destinations the guest
//! keeps), and against the disk when the spec is loaded, so a missing file
//! stops the run before anything is built.

use super::{LoadedSpec, SpecError};
use serde::{Deserialize, Serialize};
use std::path::{Component, Path};

/// Where files land when the spec names no `dest`: the steps' working
/// directory.
pub const MODULES_DIR: &str = "/modules";

/// Largest file a spec may ship: it travels over the serial console after
/// a restore and sits in the guest's memory.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Directories the guest mounts over when it starts (or the kernel fills):
/// a file put there would vanish on a cold boot.
const MOUNTED_OVER: &[&str] = &["/proc", "/sys", "/dev", "/tmp"];

/// Files modvm itself owns in the guest.
const RESERVED: &[&str] = &["/init", "/bin/busybox"];

/// A file put into the guest: `"scripts/check.sh"` (into `/modules` under
/// its file name) or `{"src": "fw/blob.bin", "dest": "/lib/firmware/blob.bin"}`.
/// The file keeps its executable bit.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSpec {
    /// Relative to the spec's directory.
    pub src: String,
    /// Absolute path in the guest; `None` is `/modules/<file name>`.
    pub dest: Option<String>,
}

impl FileSpec {
    /// The file's path in the guest.
    pub fn guest_path(&self) -> String {
        match &self.dest {
            Some(d) => d.clone(),
            None => format!("{MODULES_DIR}/{}", file_name(&self.src)),
        }
    }
}

fn file_name(src: &str) -> String {
    Path::new(src)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A source path: relative, inside the spec's directory, naming a file.
pub(crate) fn check_src(field: &str, src: &str) -> Result<(), String> {
    if src.trim().is_empty() {
        return Err(format!(
            "`{field}` needs a path relative to the spec's directory"
        ));
    }
    if src.chars().any(char::is_control) {
        return Err(format!("`{field}` {src:?} contains control characters"));
    }
    let path = Path::new(src);
    if path.is_absolute() {
        return Err(format!(
            "`{field}` {src:?} is absolute; give a path relative to the spec's directory (copy the file next to the spec)"
        ));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "`{field}` {src:?} leaves the spec's directory through `..`; copy the file next to the spec"
        ));
    }
    if src.ends_with('/') || path.file_name().is_none() {
        return Err(format!("`{field}` {src:?} names no file"));
    }
    Ok(())
}

/// A destination: an absolute, plain path the guest keeps.
fn check_dest(dest: &str) -> Result<(), String> {
    if dest.chars().any(char::is_control) {
        return Err(format!("`dest` {dest:?} contains control characters"));
    }
    if !dest.starts_with('/') {
        return Err(format!(
            "`dest` {dest:?} must be an absolute path in the guest, e.g. \"/lib/firmware/{}\"; leave `dest` out to put the file into /modules",
            file_name(dest)
        ));
    }
    let parts: Vec<&str> = dest[1..].split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(format!(
            "`dest` {dest:?} must be a plain path to a file: no `.`, `..`, `//` or trailing `/`"
        ));
    }
    if dest.len() > 255 {
        return Err(format!("`dest` is {} bytes; at most 255", dest.len()));
    }
    if RESERVED.contains(&dest) {
        return Err(format!(
            "`dest` {dest:?} is modvm's own file in the guest; choose another path"
        ));
    }
    if let Some(dir) = MOUNTED_OVER
        .iter()
        .find(|d| dest.strip_prefix(**d).is_some_and(|r| r.starts_with('/')))
    {
        return Err(format!(
            "`dest` {dest:?} is under {dir}, which the guest mounts over when it starts; choose another directory (e.g. /opt or /lib/firmware) or copy the file there in a step"
        ));
    }
    Ok(())
}

impl Serialize for FileSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match &self.dest {
            None => s.serialize_str(&self.src),
            Some(dest) => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("src", &self.src)?;
                m.serialize_entry("dest", dest)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for FileSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = FileSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a path or {\"src\": \"path\", \"dest\": \"/absolute/path\"}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FileSpec, E> {
                check_src("files", v).map_err(E::custom)?;
                Ok(FileSpec {
                    src: v.to_string(),
                    dest: None,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<FileSpec, A::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Full {
                    src: String,
                    #[serde(default)]
                    dest: Option<String>,
                }
                let full = Full::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                check_src("src", &full.src).map_err(serde::de::Error::custom)?;
                if let Some(dest) = &full.dest {
                    check_dest(dest).map_err(serde::de::Error::custom)?;
                }
                Ok(FileSpec {
                    src: full.src,
                    dest: full.dest,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A userspace program built from C sources beside the module with
/// `gcc -static -O2 -Wall`, shipped to `/modules/<name>`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "RawHelper", into = "RawHelper")]
pub struct HelperSpec {
    pub name: String,
    /// Relative to the spec's directory.
    pub sources: Vec<String>,
    /// Extra compiler flags, after modvm's.
    pub cflags: Vec<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawHelper {
    name: String,
    sources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    cflags: Vec<String>,
}

impl TryFrom<RawHelper> for HelperSpec {
    type Error = String;
    fn try_from(r: RawHelper) -> Result<HelperSpec, String> {
        let name_ok = !r.name.is_empty()
            && r.name.len() <= 64
            && !r.name.starts_with(['.', '-'])
            && r.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.+".contains(c));
        if !name_ok {
            return Err(format!(
                "{:?} is not a helper name; use letters, digits, `_`, `-`, `.` and `+` (it becomes /modules/<name>)",
                r.name
            ));
        }
        if r.sources.is_empty() {
            return Err(format!(
                "helper {:?} has no `sources`; list its C files, e.g. [\"{}.c\"]",
                r.name, r.name
            ));
        }
        for s in &r.sources {
            check_src("sources", s)?;
        }
        for f in &r.cflags {
            if f.trim().is_empty() || f.chars().any(char::is_control) {
                return Err(format!(
                    "`cflags` entry {f:?} is empty or has control characters"
                ));
            }
            if f.starts_with("-o") {
                return Err(format!(
                    "`cflags` entry {f:?} sets the output; modvm writes the helper itself"
                ));
            }
        }
        Ok(HelperSpec {
            name: r.name,
            sources: r.sources,
            cflags: r.cflags,
        })
    }
}

impl From<HelperSpec> for RawHelper {
    fn from(h: HelperSpec) -> RawHelper {
        RawHelper {
            name: h.name,
            sources: h.sources,
            cflags: h.cflags,
        }
    }
}

/// Checks that every file and helper source the spec names is a readable
/// regular file of at most [`MAX_FILE_BYTES`], and that no two files of a
/// test land on one path.
pub(crate) fn check_on_disk(loaded: &LoadedSpec) -> Result<(), SpecError> {
    let spec = &loaded.spec;
    let sources = spec
        .files
        .iter()
        .chain(spec.tests.iter().flat_map(|t| t.files.iter()))
        .map(|f| &f.src)
        .chain(spec.helpers.iter().flat_map(|h| h.sources.iter()));
    for src in sources {
        let full = loaded.dir.join(src);
        let problem = match std::fs::metadata(&full) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("does not exist".into()),
            Err(e) => Some(format!("cannot be read ({e})")),
            Ok(m) if !m.is_file() => Some("is not a regular file".into()),
            Ok(m) if m.len() > MAX_FILE_BYTES => Some(format!(
                "is {} MiB; a shipped file is at most {} MiB",
                m.len() >> 20,
                MAX_FILE_BYTES >> 20
            )),
            Ok(_) => std::fs::File::open(&full)
                .err()
                .map(|e| format!("cannot be read ({e})")),
        };
        if let Some(problem) = problem {
            return Err(SpecError::at_value(
                &loaded.path,
                &loaded.text,
                src,
                0,
                format!(
                    "{src:?} ({}) {problem}; paths are relative to the spec's directory: fix the path or put the file there",
                    full.display()
                ),
            ));
        }
    }
    for t in &spec.tests {
        let mut taken: Vec<String> = spec
            .helpers
            .iter()
            .map(|h| format!("{MODULES_DIR}/{}", h.name))
            .collect();
        for f in spec.files.iter().chain(&t.files) {
            let dest = f.guest_path();
            if taken.contains(&dest) {
                return Err(SpecError::at_value(
                    &loaded.path,
                    &loaded.text,
                    f.dest.as_deref().unwrap_or(&f.src),
                    0,
                    format!(
                        "test {:?} puts two files at {dest}; give one a `dest` of its own",
                        t.name
                    ),
                ));
            }
            taken.push(dest);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(json: &str) -> Result<FileSpec, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn a_bare_path_lands_in_modules_under_its_name() {
        let f = file(r#""scripts/check.sh""#).unwrap();
        assert_eq!(f.guest_path(), "/modules/check.sh");
        let f = file(r#"{"src": "fw/blob.bin", "dest": "/lib/firmware/blob.bin"}"#).unwrap();
        assert_eq!(f.guest_path(), "/lib/firmware/blob.bin");
        let f = file(r#"{"src": "x.sh"}"#).unwrap();
        assert_eq!(f.guest_path(), "/modules/x.sh");
    }

    #[test]
    fn sources_stay_beside_the_spec() {
        for (bad, says) in [
            (r#""../x""#, "leaves the spec's directory"),
            (r#""a/../../x""#, "leaves the spec's directory"),
            (r#""/etc/passwd""#, "is absolute"),
            (r#"{"src": "/etc/passwd"}"#, "is absolute"),
            (r#""""#, "needs a path"),
            (r#""dir/""#, "names no file"),
        ] {
            let e = file(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn destinations_are_absolute_plain_and_kept() {
        for (bad, says) in [
            ("fw/blob.bin", "must be an absolute path"),
            ("/lib/../etc/x", "plain path"),
            ("/lib/firmware/", "plain path"),
            ("/", "plain path"),
            ("/tmp/x", "mounts over"),
            ("/dev/x", "mounts over"),
            ("/init", "modvm's own"),
        ] {
            let e = file(&format!(r#"{{"src": "a", "dest": "{bad}"}}"#)).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(file(r#"{"src": "a", "dest": "/tmpfiles/x"}"#).is_ok());
        let e = file(r#"{"src": "a", "to": "/x"}"#).unwrap_err();
        assert!(e.contains("unknown field `to`"), "{e}");
    }

    #[test]
    fn helpers_are_checked() {
        let h: HelperSpec =
            serde_json::from_str(r#"{"name": "t", "sources": ["t.c"], "cflags": ["-DX=1"]}"#)
                .unwrap();
        assert_eq!(h.cflags, ["-DX=1"]);
        for (bad, says) in [
            (
                r#"{"name": "a/b", "sources": ["t.c"]}"#,
                "not a helper name",
            ),
            (r#"{"name": "t", "sources": []}"#, "no `sources`"),
            (r#"{"name": "t", "sources": ["../t.c"]}"#, "leaves"),
            (
                r#"{"name": "t", "sources": ["t.c"], "cflags": ["-o", "x"]}"#,
                "sets the output",
            ),
            (r#"{"name": "t", "source": ["t.c"]}"#, "unknown field"),
        ] {
            let e = serde_json::from_str::<HelperSpec>(bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    fn spec_dir(spec: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(super::super::SPEC_FILE), spec).unwrap();
        dir
    }

    #[test]
    fn a_missing_file_is_named_with_its_place_and_the_fix() {
        let dir = spec_dir(
            "{\"files\": [\"ok.sh\"],\n \"tests\": [{\"name\": \"a\", \"steps\": [{\"run\": \"x\"}],\n  \"files\": [{\"src\": \"fw/gone.bin\", \"dest\": \"/lib/firmware/gone.bin\"}]}]}",
        );
        std::fs::write(dir.path().join("ok.sh"), "").unwrap();
        let e = super::super::load(dir.path()).unwrap_err().to_string();
        let spec = dir.path().join("modvm.json");
        assert!(e.starts_with(&format!("{}:3:21: ", spec.display())), "{e}");
        assert!(
            e.contains("\"fw/gone.bin\"") && e.contains("does not exist"),
            "{e}"
        );
        assert!(e.contains("relative to the spec's directory"), "{e}");
        std::fs::create_dir(dir.path().join("fw")).unwrap();
        std::fs::create_dir(dir.path().join("fw/gone.bin")).unwrap();
        let e = super::super::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is not a regular file"), "{e}");
    }

    #[test]
    fn helper_sources_must_exist_and_two_files_may_not_share_a_path() {
        let dir = spec_dir(
            r#"{"helpers": [{"name": "t", "sources": ["t.c"]}], "tests": [{"name": "a", "steps": [{"run": "x"}]}]}"#,
        );
        let e = super::super::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("\"t.c\"") && e.contains("does not exist"), "{e}");
        let dir = spec_dir(
            r#"{"files": ["a/x.sh", "b/x.sh"], "tests": [{"name": "a", "steps": [{"run": "x"}]}]}"#,
        );
        for d in ["a", "b"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
            std::fs::write(dir.path().join(d).join("x.sh"), "").unwrap();
        }
        let e = super::super::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("two files at /modules/x.sh"), "{e}");
        let ok = spec_dir(
            r#"{"files": ["a/x.sh", {"src": "b/x.sh", "dest": "/opt/x.sh"}], "tests": [{"name": "a", "steps": [{"run": "x"}]}]}"#,
        );
        for d in ["a", "b"] {
            std::fs::create_dir(ok.path().join(d)).unwrap();
            std::fs::write(ok.path().join(d).join("x.sh"), "").unwrap();
        }
        let loaded = super::super::load(ok.path()).unwrap();
        let json = serde_json::to_string(&loaded.spec.files).unwrap();
        assert_eq!(json, r#"["a/x.sh",{"src":"b/x.sh","dest":"/opt/x.sh"}]"#);
    }
}
