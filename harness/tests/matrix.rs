//! Kernels as a matrix on real guests: one run over Debian's 6.1 and 6.12,
//! a module whose API changed between them, and the errors for kernels
//! that cannot be used (unknown names, the host's kernel, a local tree that
//! does not match its image).

mod common;

use common::*;

const BOTH: &str = "debian-6.1-cloud,debian-6.12-cloud";

#[test]
fn hello_runs_on_each_kernel_and_every_result_names_its_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("j.xml");
    let (out, doc) = test_with_report(&[
        "--kernel",
        &format!("{BOTH},debug"),
        "--junit",
        junit.to_str().unwrap(),
        "--ktap",
        "module",
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    for k in ["debian-6.1-cloud", "debian-6.12-cloud", "debug"] {
        let name = format!("hello/load-unload [{k}]");
        assert!(out.stderr.contains(&name), "terminal: {}", out.all());
        assert!(
            out.stdout.contains(&format!(
                "ok {}",
                1 + ["debian-6.1-cloud", "debian-6.12-cloud", "debug"]
                    .iter()
                    .position(|x| *x == k)
                    .unwrap()
            )),
            "{}",
            out.all()
        );
        assert!(out.stdout.contains(&name), "KTAP: {}", out.all());
        let xml = std::fs::read_to_string(&junit).unwrap();
        assert!(xml.contains(&format!("load-unload [{k}]")), "JUnit: {xml}");
    }
    let tests = doc["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 3);
    for (t, (profile, release)) in tests.iter().zip([
        ("debian-6.1-cloud", "6.1."),
        ("debian-6.12-cloud", "6.12."),
        ("debug", "6.1."),
    ]) {
        assert_eq!(t["name"], "hello/load-unload");
        assert_eq!(t["kernel"], profile);
        assert_eq!(t["status"], "pass", "{t}");
        assert!(
            t["kernel_release"].as_str().unwrap().starts_with(release),
            "{t}"
        );
        assert!(
            t["artifacts"]
                .as_str()
                .unwrap()
                .contains(&format!("/{profile}/hello/")),
            "{t}"
        );
    }
}

#[test]
fn an_api_change_builds_on_one_kernel_and_fails_the_other() {
    let (out, doc) = test_with_report(&["--kernel", BOTH, &module_fixture("api_class")]);
    assert_eq!(out.code, 1, "{}", out.all());
    let status = |k: &str| result_where(&doc, "kernel", k);
    assert_eq!(status("debian-6.1-cloud")["status"], "pass");
    let broken = status("debian-6.12-cloud");
    assert_eq!(broken["status"], "error");
    let message = broken["message"].as_str().unwrap();
    assert!(
        message.contains("does not build for debian-6.12-cloud"),
        "{message}"
    );
    // The compiler's words, pointing at the author's file.
    assert!(message.contains("class_create"), "{message}");
    assert!(message.contains("api_class/api_class.c:"), "{message}");
    assert!(!message.contains("modvm/build/"), "{message}");
}

#[test]
fn unknown_kernel_names_are_usage_errors_with_a_suggestion() {
    let out = modvm(&["test", "--kernel", "debian-6.1-clod", "module"], &[]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("did you mean `debian-6.1-cloud`?"),
        "{}",
        out.all()
    );

    let module = module_copy();
    let spec = module.path().join("modvm.json");
    std::fs::write(
        &spec,
        "{\"tests\": [{\"name\": \"t\",\n  \"kernels\": [\"debian-6.12-clod\"],\n  \"steps\": [{\"run\": \"true\"}]}]}",
    )
    .unwrap();
    let out = modvm(&["test", module.path().to_str().unwrap()], &[]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains(&format!("{}:2:", spec.display())),
        "{}",
        out.all()
    );
    assert!(
        out.stderr.contains("did you mean `debian-6.12-cloud`?"),
        "{}",
        out.all()
    );
}

#[test]
fn the_host_kernel_is_used_or_refused_naming_the_release_and_path() {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let release = release.trim();
    let image = format!("/boot/vmlinuz-{release}");
    let build = format!("/lib/modules/{release}/build/Makefile");
    let out = modvm(
        &["test", "--accel", "tcg", "--kernel", "host", "module"],
        &[],
    );
    if std::fs::File::open(&image).is_ok() && std::path::Path::new(&build).is_file() {
        // A host with its kernel's image and headers: it boots.
        assert_eq!(out.code, 0, "{}", out.all());
    } else {
        assert_eq!(out.code, 2, "{}", out.all());
        assert!(out.stderr.contains(release), "{}", out.all());
        assert!(
            out.stderr.contains(&image)
                || out
                    .stderr
                    .contains(&format!("/lib/modules/{release}/build")),
            "{}",
            out.all()
        );
    }
}

#[test]
fn a_local_tree_that_does_not_match_its_image_is_refused() {
    // The cached 6.1 image with a build tree that claims another release.
    let kit = modvm::kernel::cached(
        &modvm::paths::cache_dir(None),
        &modvm::kernel::profile::load("debian-6.1-cloud").unwrap(),
    )
    .expect("the default kit is cached by the setup");
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("include/config")).unwrap();
    std::fs::write(tree.join("include/config/kernel.release"), "9.9.9-other\n").unwrap();
    std::fs::write(tree.join("Makefile"), "all:\n").unwrap();
    let recipe = dir.path().join("mine.json");
    std::fs::write(
        &recipe,
        format!(
            r#"{{"name": "mine", "source": {{"kind": "local", "image": "{}", "build": "tree"}}}}"#,
            kit.vmlinuz.display()
        ),
    )
    .unwrap();
    let out = modvm(
        &["test", "--kernel", recipe.to_str().unwrap(), "module"],
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("vermagic mismatch"), "{}", out.all());
    assert!(out.stderr.contains("9.9.9-other"), "{}", out.all());
    assert!(out.stderr.contains(&kit.release), "{}", out.all());
}

#[test]
fn kernels_lists_profiles_and_prune_keeps_the_kit_in_use() {
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    let out = modvm(&["kernels", "--cache", c], &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    for name in ["debian-6.1-cloud", "debian-6.12-cloud", "debug", "host"] {
        assert!(
            out.stdout.lines().any(|l| l.starts_with(name)),
            "{name}: {}",
            out.all()
        );
    }
    let profile = cache.path().join("kernels/debian-6.1-cloud");
    for kit in ["old_1", "new_2"] {
        std::fs::create_dir_all(profile.join(kit).join("root")).unwrap();
    }
    std::fs::write(profile.join("current.json"), r#"{"kit": "new_2"}"#).unwrap();
    let saved = cache
        .path()
        .join("snapshots/debian-6.1-cloud-0123456789abcdef");
    std::fs::create_dir_all(&saved).unwrap();
    std::fs::write(saved.join("state"), b"saved guest").unwrap();
    let out = modvm(&["kernels", "prune", "--cache", c], &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(!profile.join("old_1").exists());
    assert!(!cache.path().join("snapshots").exists(), "saved guests go");
    assert!(profile.join("new_2").exists());
    let out = modvm(&["kernels", "prune", "--all", "--cache", c], &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(!cache.path().join("kernels").exists());
}
