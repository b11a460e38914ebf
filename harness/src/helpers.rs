//! Userspace helpers a spec builds from C beside its module: statically
//! linked (the guest has busybox and no libc), into the module's build
//! directory, and again only when a source, a header it includes, the flags
//! or the compiler changed (gcc's `-MMD` list of user headers plays the part
//! of kbuild's `.cmd` files).
//!
//! gcc compiles the author's files where they are, by their full path, so
//! its messages point at the file the author edits.

use crate::children;
use crate::spec::HelperSpec;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The host compiler helpers are built with.
const GCC: &str = "gcc";
/// Always on: the guest runs what busybox can, static binaries.
const FLAGS: &[&str] = &["-static", "-O2", "-Wall"];
/// The Debian package that holds the static C library.
pub const LIBC_PACKAGE: &str = "libc6-dev";

/// Why a helper did not build.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run {GCC}: {0} (install it: sudo apt-get install gcc)")]
    NoCompiler(std::io::Error),
    #[error("linking statically needs libc.a, which {GCC} cannot find: install it with `sudo apt-get install {LIBC_PACKAGE}` (scripts/setup-host.sh does)")]
    NoStaticLibc,
    #[error("{GCC} exited with {status}; the compiler said:\n{output}")]
    Compile { status: String, output: String },
}

/// Builds `helpers` from sources in `dir` into `out`; returns each
/// helper's name and binary, in spec order.
pub fn build(
    dir: &Path,
    helpers: &[HelperSpec],
    out: &Path,
) -> Result<Vec<(String, PathBuf)>, (String, HelperError)> {
    if helpers.is_empty() {
        return Ok(Vec::new());
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| (String::new(), HelperError::Io { path, source })
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    let dir = std::fs::canonicalize(dir).map_err(io(dir))?;
    let compiler = compiler_identity();
    let mut built = Vec::new();
    for h in helpers {
        let binary = build_one(&dir, h, out, &compiler).map_err(|e| (h.name.clone(), e))?;
        built.push((h.name.clone(), binary));
    }
    Ok(built)
}

fn build_one(
    dir: &Path,
    h: &HelperSpec,
    out: &Path,
    compiler: &str,
) -> Result<PathBuf, HelperError> {
    let binary = out.join(&h.name);
    let stamp = out.join(format!("{}.stamp", h.name));
    let sources: Vec<PathBuf> = h.sources.iter().map(|s| dir.join(s)).collect();
    // One object and one dependency list per source.
    let parts: Vec<(PathBuf, PathBuf)> = (0..sources.len())
        .map(|i| {
            let base = format!(".{}.{i}", h.name);
            (out.join(format!("{base}.o")), out.join(format!("{base}.d")))
        })
        .collect();
    let deps: Vec<&Path> = parts.iter().map(|(_, d)| d.as_path()).collect();
    let recipe = (compiler, &h.cflags, &sources);
    if binary.is_file() {
        if let Some(now) = fingerprint(&recipe, &deps) {
            if std::fs::read_to_string(&stamp).ok().as_deref() == Some(now.as_str()) {
                return Ok(binary);
            }
        }
    }
    let _ = std::fs::remove_file(&stamp);
    if !has_static_libc() {
        return Err(HelperError::NoStaticLibc);
    }
    for (source, (object, dep)) in sources.iter().zip(&parts) {
        let mut gcc = Command::new(GCC);
        gcc.args(FLAGS)
            .args(&h.cflags)
            .arg("-c")
            .arg("-MMD")
            .arg("-MF")
            .arg(dep)
            .arg("-o")
            .arg(object)
            .arg(source);
        run(gcc, dir)?;
    }
    let tmp = out.join(format!(".{}.tmp", h.name));
    let mut gcc = Command::new(GCC);
    gcc.args(FLAGS).args(&h.cflags).arg("-o").arg(&tmp);
    gcc.args(parts.iter().map(|(o, _)| o));
    run(gcc, dir).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    std::fs::rename(&tmp, &binary).map_err(|source| HelperError::Io {
        path: binary.clone(),
        source,
    })?;
    if let Some(now) = fingerprint(&recipe, &deps) {
        std::fs::write(&stamp, now).map_err(|source| HelperError::Io {
            path: stamp.clone(),
            source,
        })?;
    }
    Ok(binary)
}

/// Runs one compiler command in `dir`; its messages become the error.
fn run(mut gcc: Command, dir: &Path) -> Result<(), HelperError> {
    gcc.current_dir(dir)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The compiler stops with modvm, like make and the guests do.
    children::arm(&mut gcc);
    let child = gcc.spawn().map_err(HelperError::NoCompiler)?;
    let pid = child.id();
    children::register(pid);
    let done = child.wait_with_output();
    children::unregister(pid);
    let done = done.map_err(HelperError::NoCompiler)?;
    if done.status.success() {
        return Ok(());
    }
    Err(HelperError::Compile {
        status: done.status.to_string(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&done.stdout),
            String::from_utf8_lossy(&done.stderr)
        )
        .trim_end()
        .to_string(),
    })
}

/// The compiler's path, size and modification time: an upgraded gcc
/// rebuilds every helper.
fn compiler_identity() -> String {
    let Some(path) = crate::prereq::find(GCC) else {
        return String::new();
    };
    let meta = std::fs::canonicalize(&path).and_then(std::fs::metadata);
    match meta {
        Ok(m) => format!("{} {} {:?}", path.display(), m.len(), m.modified().ok()),
        Err(_) => path.display().to_string(),
    }
}

/// A hash of the recipe and of every file gcc read besides the system
/// headers (from its `-MMD` lists); `None` when a list is missing or a
/// file in it is gone, which means: build.
fn fingerprint(recipe: &impl Hash, deps: &[&Path]) -> Option<String> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    recipe.hash(&mut hasher);
    for list in deps {
        let text = std::fs::read_to_string(list).ok()?;
        for file in dependencies(&text) {
            file.hash(&mut hasher);
            std::fs::read(&file).ok()?.hash(&mut hasher);
        }
    }
    Some(format!("{:016x}\n", hasher.finish()))
}

/// The prerequisites of a make rule as gcc writes them: `target: a b \`
/// continued on further lines, spaces in names escaped as `\ `.
fn dependencies(rule: &str) -> Vec<String> {
    let joined = rule.replace("\\\n", " ");
    let Some((_, prereqs)) = joined.split_once(": ") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut word = String::new();
    let mut chars = prereqs.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                word.push(' ');
                chars.next();
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// Whether gcc finds a `libc.a` to link static programs with (it prints
/// the bare name when it does not).
pub fn has_static_libc() -> bool {
    Command::new(GCC)
        .arg("-print-file-name=libc.a")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| {
            let p = String::from_utf8_lossy(&o.stdout);
            let p = p.trim();
            p.starts_with('/') && Path::new(p).is_file()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_lists_are_read_like_make_reads_them() {
        let rule = "/b/.t.tmp: /src/t.c /src/my\\ dir/common.h \\\n /src/other.h\n";
        assert_eq!(
            dependencies(rule),
            ["/src/t.c", "/src/my dir/common.h", "/src/other.h"]
        );
        assert!(dependencies("garbage").is_empty());
    }

    fn helper(name: &str, source: &str) -> HelperSpec {
        serde_json::from_value(serde_json::json!({"name": name, "sources": [source]})).unwrap()
    }

    #[test]
    fn a_helper_is_built_static_and_again_only_when_a_header_changes() {
        assert!(
            has_static_libc(),
            "no static libc on this host: run scripts/setup-host.sh (libc6-dev)"
        );
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("v.h"), "#define V 1\n").unwrap();
        std::fs::write(
            src.path().join("t.c"),
            "#include <stdio.h>\nint f(void);\nint main(void) { printf(\"%d\\n\", f()); return 0; }\n",
        )
        .unwrap();
        std::fs::write(
            src.path().join("u.c"),
            "#include \"v.h\"\nint f(void) { return V; }\n",
        )
        .unwrap();
        let mut h = helper("t", "t.c");
        h.sources.push("u.c".into());
        let hs = [h];
        let built = build(src.path(), &hs, out.path()).unwrap();
        let run = || {
            let o = Command::new(&built[0].1).output().unwrap();
            String::from_utf8(o.stdout).unwrap()
        };
        assert_eq!(run(), "1\n");
        let file = Command::new("file").arg(&built[0].1).output();
        if let Ok(f) = file {
            let f = String::from_utf8_lossy(&f.stdout).to_string();
            assert!(
                f.contains("statically linked") || f.contains("static-pie"),
                "{f}"
            );
        }
        let first = std::fs::metadata(&built[0].1).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        build(src.path(), &hs, out.path()).unwrap();
        let again = std::fs::metadata(&built[0].1).unwrap().modified().unwrap();
        assert_eq!(first, again, "nothing changed: not rebuilt");
        std::fs::write(src.path().join("v.h"), "#define V 2\n").unwrap();
        build(src.path(), &hs, out.path()).unwrap();
        assert_eq!(run(), "2\n", "a changed header rebuilds");
    }

    #[test]
    fn a_compile_error_names_the_authors_file_and_line() {
        if !has_static_libc() {
            return;
        }
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        std::fs::write(
            src.path().join("bad.c"),
            "int main(void)\n{\n\treturn nope;\n}\n",
        )
        .unwrap();
        let (name, e) = build(src.path(), &[helper("bad", "bad.c")], out.path()).unwrap_err();
        assert_eq!(name, "bad");
        let original = std::fs::canonicalize(src.path()).unwrap().join("bad.c");
        let e = e.to_string();
        assert!(e.contains(&format!("{}:3:", original.display())), "{e}");
        assert!(!out.path().join("bad").exists());
    }
}
