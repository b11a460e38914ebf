//! `--kbuild-arg`: make variables reach the module's build, changing them
//! rebuilds, and variables modvm's build depends on are refused.

mod common;

use common::*;

/// A copy of the hello module with a function that only `W=1` warns
/// about (`-Wmissing-prototypes`).
fn module_warning_under_w1() -> tempfile::TempDir {
    let dir = module_copy();
    let c = dir.path().join("hello.c");
    let mut text = std::fs::read_to_string(&c).unwrap();
    text.push_str("\nint modvm_w1_probe(void)\n{\n\treturn 1;\n}\n");
    std::fs::write(&c, text).unwrap();
    dir
}

/// gcc's warning for `modvm_w1_probe` (its quotes depend on the locale).
const W1_WARNING: &str = "[-Wmissing-prototypes]";
const UNCHANGED: &str = "(unchanged since the last build)";

#[test]
fn a_kbuild_arg_reaches_make_and_changing_it_rebuilds() {
    let module = module_warning_under_w1();
    let path = module.path().to_str().unwrap();
    let out = out_dir();
    let run = |extra: &[&str]| {
        let mut args = vec!["test", "-v", "--accel", "tcg"];
        args.extend_from_slice(extra);
        args.push(path);
        let o = command(&args, &[], out.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(o.status.code(), Some(0), "{extra:?}: {all}");
        all
    };

    let plain = run(&[]);
    assert!(!plain.contains(W1_WARNING), "{plain}");
    let w1 = run(&["--kbuild-arg", "W=1"]);
    assert!(!w1.contains(UNCHANGED), "W=1 must rebuild: {w1}");
    assert!(w1.contains(W1_WARNING), "W=1 did not reach make: {w1}");
    let again = run(&["--kbuild-arg", "W=1"]);
    assert!(again.contains(UNCHANGED), "same args, no rebuild: {again}");
    let back = run(&[]);
    assert!(
        !back.contains(UNCHANGED),
        "dropping W=1 must rebuild: {back}"
    );
    assert!(!back.contains(W1_WARNING), "{back}");
}

#[test]
fn a_kbuild_arg_that_would_break_the_build_is_refused() {
    for (arg, words) in [
        ("--kbuild-arg=M=/tmp", "modvm sets `M` itself"),
        ("--kbuild-arg=-C", "is not a make variable"),
        ("--kbuild-arg=clean", "is not a make variable"),
    ] {
        for cmd in ["test", "run", "shell"] {
            let out = modvm(&[cmd, arg], &[]);
            assert_eq!(out.code, 2, "{cmd} {arg}: {}", out.all());
            assert!(out.stderr.contains(words), "{cmd} {arg}: {}", out.all());
        }
    }
}
