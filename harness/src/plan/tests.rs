//! The plan's choices that need no kernel: which tests a filter selects,
//! which build directory a module directory gets, what a failed build
//! does to the rest of the plan, and the checks made once the modules
//! are known.

use super::*;
use crate::kernel::Kit;
use std::path::Path;

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A module directory `name` under `root` with this spec (none: a smoke
/// directory), loaded as the CLI loads it.
fn module(root: &Path, name: &str, spec: Option<&str>) -> LoadedSpec {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Kbuild"), "obj-m := m.o\n").unwrap();
    if let Some(text) = spec {
        std::fs::write(dir.join(spec::SPEC_FILE), text).unwrap();
    }
    spec::load(&dir).unwrap_or_else(|e| panic!("{e}"))
}

const TWO_TESTS: &str = r#"{"suite": "s", "tests": [
  {"name": "load", "steps": [{"insmod": "m"}]},
  {"name": "unload-twice", "steps": [{"insmod": "m"}, {"rmmod": "m"}, {"rmmod": "m", "exit": 1}]}
]}"#;

#[test]
fn a_name_is_selected_by_any_filter_or_by_none() {
    assert!(matches("hello/load", &[]));
    assert!(matches("hello/load", &strings(&["nope", "lo/lo"])));
    assert!(!matches("hello/load", &strings(&["nope", "unload"])));
    // Plain substrings: no pattern syntax, case counts.
    assert!(!matches("hello/load", &strings(&["*", "LOAD", "^hello"])));
    assert!(matches("hello/load", &strings(&[""])));
}

#[test]
fn tests_are_selected_in_spec_order_and_a_smoke_directory_by_its_one_name() {
    let root = tempfile::tempdir().unwrap();
    let spec = module(root.path(), "m", Some(TWO_TESTS));
    assert_eq!(selected(&spec, &[]), ["s/load", "s/unload-twice"]);
    assert_eq!(selected(&spec, &strings(&["unload"])), ["s/unload-twice"]);
    // Each test once, even when several filters select it.
    assert_eq!(
        selected(&spec, &strings(&["twice", "unload", "s/"])),
        ["s/load", "s/unload-twice"]
    );
    assert!(selected(&spec, &strings(&["other/"])).is_empty());

    let smoke = module(root.path(), "bare", None);
    assert!(smoke.smoke);
    assert_eq!(selected(&smoke, &[]), ["bare/smoke"]);
    assert_eq!(selected(&smoke, &strings(&["smoke"])), ["bare/smoke"]);
    assert!(selected(&smoke, &strings(&["load"])).is_empty());
}

#[test]
fn a_build_directory_is_one_per_real_directory() {
    let root = tempfile::tempdir().unwrap();
    let a = root.path().join("one/mod");
    let b = root.path().join("two/mod");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    // Same name, other directory: other key, same readable start.
    let (ka, kb) = (build_key(&a), build_key(&b));
    assert_ne!(ka, kb);
    assert!(
        ka.starts_with("mod-") && kb.starts_with("mod-"),
        "{ka} {kb}"
    );
    // Other spellings of the same directory: the same key.
    assert_eq!(build_key(&root.path().join("one/../one/mod/.")), ka);
    let link = root.path().join("link");
    std::os::unix::fs::symlink(&a, &link).unwrap();
    assert_eq!(build_key(&link), ka);
    // A name that is no path component stays readable but safe and short.
    let odd = root.path().join(format!("a b\n{}", "x".repeat(200)));
    std::fs::create_dir_all(&odd).unwrap();
    let k = build_key(&odd);
    assert!(k.starts_with("a_20b_0axxx"), "{k}");
    assert!(!k.contains(['/', ' ', '\n']), "{k}");
    assert_eq!(k.len(), 40 + 1 + 16, "{k}");
}

/// A kit whose headers are nowhere: every build that reaches make fails.
fn kit_without_headers(root: &Path) -> Kit {
    Kit {
        profile: "none".into(),
        release: "0.0.0".into(),
        version: "0".into(),
        dir: root.to_path_buf(),
        vmlinuz: root.join("vmlinuz"),
        headers: root.join("no-headers"),
        busybox: root.join("busybox"),
        system_map: None,
        vmlinux: None,
        identity: "0.0.0".into(),
    }
}

#[test]
fn a_directory_that_does_not_build_is_set_aside_and_the_others_still_build() {
    let root = tempfile::tempdir().unwrap();
    let good = module(root.path(), "good", Some(TWO_TESTS));
    // No Kbuild or Makefile: the build fails before make runs.
    let empty = root.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let mut bare = module(root.path(), "bare", None);
    std::fs::remove_file(bare.dir.join("Kbuild")).unwrap();
    bare.dir = empty.clone();
    let kit = kit_without_headers(root.path());
    let builds = root.path().join("build");
    let mut logs = 0;
    let mut log = |_: &str| logs += 1;

    let specs = [bare, good];
    let plan = prepare(
        &specs,
        &[],
        &kit,
        &[],
        &builds,
        None,
        &Default::default(),
        &[],
        &mut log,
    )
    .unwrap();
    let err = &plan.unbuilt[0].error;
    assert!(
        matches!(err, PlanError::Build { dir, .. } if *dir == empty),
        "{err}"
    );
    assert!(err
        .to_string()
        .starts_with(&format!("cannot build the module in {}: ", empty.display())));

    let plan = prepare(
        &specs,
        &strings(&["load"]),
        &kit,
        &[],
        &builds,
        None,
        &Default::default(),
        &[],
        &mut log,
    )
    .unwrap();
    assert!(plan.tests.is_empty());
    let names: Vec<_> = plan.unbuilt.iter().map(|u| u.names.clone()).collect();
    // The smoke directory is not selected by `load`; the other directory's
    // selected tests are listed, in spec order.
    assert_eq!(names, [strings(&["s/load", "s/unload-twice"])]);
    assert!(matches!(
        &plan.unbuilt[0].error,
        PlanError::Build { dir, .. } if *dir == specs[1].dir
    ));

    // A filter that selects nothing of a directory does not build it.
    let plan = prepare(
        &specs,
        &strings(&["nothing"]),
        &kit,
        &[],
        &builds,
        None,
        &Default::default(),
        &[],
        &mut log,
    )
    .unwrap();
    assert!(plan.tests.is_empty() && plan.unbuilt.is_empty());
    assert_eq!(logs, 0, "no build log without a build");
}

#[test]
fn a_test_that_loads_a_module_the_build_did_not_make_is_named_at_its_place() {
    let root = tempfile::tempdir().unwrap();
    let spec = module(
        root.path(),
        "m",
        Some(r#"{"tests": [{"name": "t", "steps": [{"insmod": "m"}, {"insmod": "other"}]}]}"#),
    );
    let built = [root.path().join("m.ko"), root.path().join("helper.ko")];
    let e = check_modules_exist(&spec, &built).unwrap_err().to_string();
    assert!(e.contains(":1:"), "line of `other`: {e}");
    assert!(e.contains("loads module `other`, but building"), "{e}");
    assert!(e.contains("produced only: m, helper"), "{e}");
    assert!(check_modules_exist(&spec, &built[..1]).is_err());
    let ok = module(
        root.path(),
        "n",
        Some(r#"{"tests": [{"name": "t", "steps": [{"insmod": "m"}, {"rmmod": "x"}]}]}"#),
    );
    check_modules_exist(&ok, &built).unwrap();
}

#[test]
fn a_file_shipped_onto_a_module_is_refused_at_its_dest() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("m");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("data.bin"), b"x").unwrap();
    let text = "{\"tests\": [{\"name\": \"t\",\n  \"files\": [{\"src\": \"data.bin\", \"dest\": \"/modules/m.ko\"}],\n  \"steps\": [{\"insmod\": \"m\"}]}]}";
    let spec = module(root.path(), "m", Some(text));
    let test = &spec.spec.tests[0];
    let mut files = vec![GuestFile::module(&root.path().join("m.ko"))];
    check_collisions(&spec, test, &files).unwrap();
    files.extend(shipped(&spec, &test.files));
    assert_eq!(files[1].guest, "/modules/m.ko");
    let e = check_collisions(&spec, test, &files)
        .unwrap_err()
        .to_string();
    assert!(e.contains(":2:"), "placed at the dest: {e}");
    assert!(
        e.contains("ships a file to /modules/m.ko, where a module or helper"),
        "{e}"
    );
    assert!(e.contains("give it another `dest`"), "{e}");
}

#[test]
fn a_modprobe_step_on_a_kernel_without_a_module_tree_says_why_it_cannot_run() {
    let root = tempfile::tempdir().unwrap();
    let kit = kit_without_headers(root.path());
    let spec = spec::parse(
        r#"{"tests": [
          {"name": "a", "steps": [{"run": "true"}, {"modprobe": "null_blk"}]},
          {"name": "b", "steps": [{"insmod": "m"}]}
        ]}"#,
        Path::new("modvm.json"),
    )
    .unwrap();
    let why = needs_module_tree(&spec.tests[0], &kit).unwrap();
    assert!(
        why.contains("`modprobe null_blk` needs the kernel's own modules")
            && why.contains("--kernel"),
        "{why}"
    );
    assert_eq!(needs_module_tree(&spec.tests[1], &kit), None);
}
