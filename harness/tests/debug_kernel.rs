//! The `debug` sanitizer kernel on real guests: a clean module passes, and
//! each kind of bug the stock kernel cannot see is caught and titled, with
//! the module's frame at `file:line` where the report has one. The kernel
//! is built by the setup (`scripts/setup-host.sh`), once per cache.

mod common;

use common::*;

#[test]
fn sanitizers_catch_what_the_stock_kernel_misses() {
    let mut args = vec!["--kernel".to_string(), "debug".into(), "module".into()];
    for f in [
        "uaf",
        "leak",
        "leak_init",
        "leak_exit",
        "lockinv",
        "atomic_sleep",
        "sleep_in_atomic",
        "clean_bug_word",
    ] {
        args.push(module_fixture(f));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, doc) = test_with_report(&args);
    assert_eq!(out.code, 1, "{}", out.all());

    // A clean module, and one that prints "BUG" itself, pass on a noisy kernel.
    for suite in ["hello", "clean_bug_word"] {
        let t = result_of_suite(&doc, suite);
        assert_eq!(t["status"], "pass", "{suite}: {t}");
        assert_eq!(t["kernel"], "debug");
    }
    let title = |suite: &str| {
        let t = result_of_suite(&doc, suite);
        assert_eq!(t["status"], "crash", "{suite}: {t}");
        t["crash"]["title"].as_str().unwrap().to_string()
    };
    assert!(
        title("uaf").starts_with("KASAN: use-after-free"),
        "{}",
        title("uaf")
    );
    let uaf = &result_of_suite(&doc, "uaf")["crash"]["frames"];
    assert!(
        uaf.as_array()
            .unwrap()
            .iter()
            .any(|f| f["file"].as_str().is_some_and(|p| p.ends_with("uaf.c")) && f["line"].is_u64()),
        "{uaf}"
    );
    // Kernel frames too, from the debug kit's System.map and vmlinux.
    assert!(
        uaf.as_array().unwrap().iter().any(|f| f["module"].is_null()
            && f["file"]
                .as_str()
                .is_some_and(|p| p.starts_with("mm/kasan/"))
            && f["line"].is_u64()),
        "{uaf}"
    );
    assert_eq!(title("leak"), "memory leak in leak_alloc");
    // Leaks seen only after rmmod: made in freed __init code, and made by
    // the exit function itself; both named and located from where the
    // module lay while it was loaded.
    assert_eq!(title("leak_init"), "memory leak in leak_init_init");
    assert_eq!(title("leak_exit"), "memory leak in leak_exit_exit");
    for (suite, file, line) in [
        ("leak_init", "leak_init.c", 13),
        ("leak_exit", "leak_exit.c", 19),
    ] {
        let frames = &result_of_suite(&doc, suite)["crash"]["frames"];
        assert!(
            frames
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["file"] == file && f["line"] == line),
            "{suite}: {frames}"
        );
    }
    assert!(
        title("lockinv").contains("deadlock"),
        "{}",
        title("lockinv")
    );
    assert!(
        title("atomic_sleep").contains("atomic"),
        "{}",
        title("atomic_sleep")
    );
    assert_eq!(
        title("sleep_in_atomic"),
        "BUG: sleeping function called from invalid context in sleep_in_atomic_init"
    );
    let frames = &result_of_suite(&doc, "sleep_in_atomic")["crash"]["frames"];
    assert!(
        frames
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["file"] == "sleep_in_atomic.c" && f["line"] == 20),
        "{frames}"
    );
}

#[test]
fn a_local_profile_on_the_debug_build_tree_works_like_debug() {
    let kit = modvm::kernel::cached(
        &modvm::paths::cache_dir(None),
        &modvm::kernel::profile::load("debug").unwrap(),
    )
    .expect("the debug kernel is built by the setup");
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("mine.json");
    std::fs::write(
        &recipe,
        format!(
            r#"{{"name": "mine", "compiler": "gcc", "source": {{"kind": "local", "image": "{}", "build": "{}"}}}}"#,
            kit.headers.join("arch/x86/boot/bzImage").display(),
            kit.headers.display()
        ),
    )
    .unwrap();
    let (out, doc) = test_with_report(&[
        "--kernel",
        recipe.to_str().unwrap(),
        "module",
        &module_fixture("uaf"),
    ]);
    assert_eq!(out.code, 1, "{}", out.all());
    let tests = doc["tests"].as_array().unwrap();
    assert_eq!(tests[0]["status"], "pass", "{}", tests[0]);
    assert_eq!(tests[0]["kernel"], "mine");
    assert_eq!(tests[0]["kernel_release"], kit.release.as_str());
    assert!(
        tests[1]["crash"]["title"]
            .as_str()
            .unwrap()
            .starts_with("KASAN: use-after-free"),
        "{}",
        tests[1]
    );
}

#[test]
fn the_matrix_shows_a_leak_on_debug_that_the_stock_kernel_passes() {
    let (out, doc) = test_with_report(&[
        "--kernel",
        "debian-6.1-cloud,debug",
        &module_fixture("leak"),
    ]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stdout.contains("leak/load-unload [debian-6.1-cloud]"));
    let by_kernel = |k: &str| result_where(&doc, "kernel", k);
    assert_eq!(by_kernel("debian-6.1-cloud")["status"], "pass");
    let debug = by_kernel("debug");
    assert_eq!(debug["status"], "crash", "{debug}");
    assert_eq!(debug["crash"]["title"], "memory leak in leak_alloc");
}
