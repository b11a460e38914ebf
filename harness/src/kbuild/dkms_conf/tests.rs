use super::*;
use std::cmp::Ordering;

fn vars<'a>(headers: &'a Path, tree: &'a Path) -> ConfVars<'a> {
    ConfVars {
        kernelver: "6.1.0-56-cloud-amd64",
        arch: "x86_64",
        kernel_source_dir: headers,
        dkms_tree: tree,
        source_tree: Path::new("/usr/src"),
        module: "demo",
        module_version: "1.0",
    }
}

fn read_text(text: &str) -> Result<DkmsConf, BuildError> {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join(FILE);
    std::fs::write(&conf, text).unwrap();
    read(&conf, &vars(Path::new("/k"), Path::new("/t")))
}

#[test]
fn arrays_defaults_and_dkms_variables_come_out_as_dkms_sees_them() {
    let c = read_text(
        r#"PACKAGE_NAME="demo"
PACKAGE_VERSION="1.0"
echo this goes to stderr, not into the results
BDIR="$dkms_tree/${PACKAGE_NAME}/${PACKAGE_VERSION}/build"
MAKE[0]="make -C ${kernel_source_dir} M=${BDIR}/src"
MAKE[1]="make old"
MAKE_MATCH[1]="^5\."
CLEAN="make clean"
PRE_BUILD="gen.sh $kernelver"
BUILT_MODULE_NAME[0]="demo_core"
BUILT_MODULE_LOCATION[0]="src"
BUILT_MODULE_NAME[1]="demo_extra"
DEST_MODULE_LOCATION[0]="/updates"
DEST_MODULE_LOCATION[1]="/updates"
PATCH[0]="a.patch"
PATCH_MATCH[0]="^6\."
PATCH[1]="b.patch"
PATCH_MATCH[1]="^4\."
[ -n "" ] && true
"#,
    )
    .unwrap();
    assert_eq!(c.package_name, "demo");
    assert_eq!(c.make, "make -C /k M=/t/demo/1.0/build/src");
    assert_eq!(c.pre_build, "gen.sh 6.1.0-56-cloud-amd64");
    assert_eq!(c.patches, vec!["a.patch"]);
    assert_eq!(
        c.modules,
        vec![
            BuiltModule {
                name: "demo_core".into(),
                location: "src".into()
            },
            BuiltModule {
                name: "demo_extra".into(),
                location: String::new()
            }
        ]
    );
    assert_eq!(c.modules[0].file(), Path::new("src/demo_core.ko"));
}

#[test]
fn one_destination_without_a_name_builds_the_package_name() {
    let c = read_text("PACKAGE_NAME=vpoll\nPACKAGE_VERSION=0.1\nDEST_MODULE_LOCATION[0]=/extra\n")
        .unwrap();
    assert_eq!(c.modules[0].name, "vpoll");
    assert!(c.make.is_empty());
}

#[test]
fn what_dkms_refuses_is_named_with_the_fix() {
    for (text, words) in [
        (
            "PACKAGE_VERSION=1\nBUILT_MODULE_NAME=x\n",
            "sets no PACKAGE_NAME",
        ),
        (
            "PACKAGE_NAME=a/b\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME=x\n",
            "not a plain name",
        ),
        ("PACKAGE_NAME=a\nPACKAGE_VERSION=1\n", "names no module"),
        (
            "PACKAGE_NAME=a\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME=x.ko\n",
            "without path or .ko",
        ),
        (
            "PACKAGE_NAME=a\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME=x\nBUILT_MODULE_LOCATION=../up\n",
            "inside the source tree",
        ),
    ] {
        let e = read_text(text).unwrap_err().to_string();
        assert!(e.contains(words), "{text}: {e}");
        assert!(e.contains(FILE), "{e}");
    }
}

#[test]
fn a_dkms_conf_that_never_finishes_is_stopped() {
    // Not the 30 s of the real limit: a conf that exits on its own with an
    // error shows the message path; the limit itself is run_captured's.
    let e = read_text("exit 7\n").unwrap_err().to_string();
    assert!(e.contains("could not read it"), "{e}");
}

#[test]
fn exclusions_say_which_rule_and_why() {
    let base = DkmsConf {
        package_name: "p".into(),
        package_version: "1".into(),
        ..Default::default()
    };
    let r = "6.1.0-56-cloud-amd64";
    assert_eq!(base.exclusion(r, "x86_64", Some("")), None);
    let c = DkmsConf {
        exclusive_config: "CONFIG_VIDEO_DEV !CONFIG_KVM".into(),
        ..base.clone()
    };
    let e = c.exclusion(r, "x86_64", Some("CONFIG_NET=y\n")).unwrap();
    assert!(e.contains("needs CONFIG_VIDEO_DEV"), "{e}");
    assert_eq!(c.exclusion(r, "x86_64", Some("CONFIG_VIDEO_DEV=m\n")), None);
    let e = c
        .exclusion(r, "x86_64", Some("CONFIG_VIDEO_DEV=y\nCONFIG_KVM=m\n"))
        .unwrap();
    assert!(e.contains("wants CONFIG_KVM off"), "{e}");
    // No .config: DKMS skips the check too.
    assert_eq!(c.exclusion(r, "x86_64", None), None);
    let c = DkmsConf {
        exclusive_kernel_min: "6.2".into(),
        ..base.clone()
    };
    assert!(c.exclusion(r, "x86_64", None).unwrap().contains("older"));
    let c = DkmsConf {
        exclusive_kernel_max: "5.10".into(),
        ..base.clone()
    };
    assert!(c.exclusion(r, "x86_64", None).unwrap().contains("newer"));
    let c = DkmsConf {
        excluded_arch: true,
        exclusive_arch: "aarch64".into(),
        ..base
    };
    assert!(c.exclusion(r, "x86_64", None).unwrap().contains("aarch64"));
}

#[test]
fn regular_expression_rules_are_bash_s_verdict() {
    let c = read_text(
        "PACKAGE_NAME=a\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME=x\nBUILD_EXCLUSIVE_KERNEL='^5\\.'\n",
    )
    .unwrap();
    assert!(c.excluded_kernel);
    let c = read_text(
        "PACKAGE_NAME=a\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME=x\nBUILD_EXCLUSIVE_KERNEL='^6\\.1'\nBUILD_EXCLUSIVE_ARCH='x86_64|i.86'\n",
    )
    .unwrap();
    assert!(!c.excluded_kernel && !c.excluded_arch);
}

#[test]
fn the_make_command_gets_jobs_and_the_release_after_its_make() {
    let c = DkmsConf {
        make: "make KERNEL_DIR=/k all".into(),
        ..Default::default()
    };
    let cmd = c.make_command(
        Path::new("/k"),
        Path::new("/b"),
        "6.1.0-56",
        2,
        &["W=1".into()],
    );
    assert_eq!(cmd, "make -j2 KERNELRELEASE=6.1.0-56 KERNEL_DIR=/k all W=1");
    let c = DkmsConf::default();
    let cmd = c.make_command(
        Path::new("/k dir"),
        Path::new("/b"),
        "6.1",
        1,
        &["ccflags-y=-DX -O1".into()],
    );
    assert_eq!(
        cmd,
        "make -j1 KERNELRELEASE=6.1 -C '/k dir' M=/b 'ccflags-y=-DX -O1'"
    );
}

#[test]
fn kernel_versions_compare_by_their_numbers() {
    assert_eq!(
        version_cmp("6.1.0-56-cloud-amd64", "5.18"),
        Ordering::Greater
    );
    assert_eq!(version_cmp("6.1.0-56-cloud-amd64", "6.10"), Ordering::Less);
    assert_eq!(version_cmp("3.9", "3.9"), Ordering::Equal);
    assert_eq!(
        version_cmp("6.12.95+deb12-amd64", "6.12"),
        Ordering::Greater
    );
}
