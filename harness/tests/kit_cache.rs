//! A damaged or moved kernel cache, through the real binary and real guests.
//!
//! Every test works on its own copy of a cache whose kit came from the
//! loopback Debian archive (`common::archive`, made by
//! `scripts/setup-host.sh`); the user's cache stays untouched. Each test
//! damages its copy the way disks and CI caches do, and checks that modvm
//! names the damage in one line and repairs it, or says how to.
//!
//! Nothing here reaches beyond loopback: every command's apt goes through a
//! proxy on a loopback port nobody listens on, so any download fails at
//! once, except from the loopback archive (reached directly) in the runs
//! that name it. Tests marked "offline" do not name it.

mod common;

use common::archive::{archive_dir, Server};
use common::{module_copy, modvm, Output};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// Guests and downloads one at a time: the host has few cores.
static SERIAL: Mutex<()> = Mutex::new(());

/// An apt configuration file under the target directory: every download
/// goes through a proxy on a loopback port nobody listens on, without
/// retries; with `archive_direct`, the loopback archive is reached directly.
fn apt_conf(name: &str, archive_direct: bool) -> String {
    let dir = common::repo().join("target").join("modvm-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let mut text = String::from(
        "Acquire::Retries \"0\";\n\
         Acquire::http::Proxy \"http://127.0.0.1:9\";\n\
         Acquire::https::Proxy \"http://127.0.0.1:9\";\n",
    );
    if archive_direct {
        text.push_str("Acquire::http::Proxy::127.0.0.1 \"DIRECT\";\n");
    }
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// An environment in which every download fails at once: apt goes through
/// a proxy on a loopback port nobody listens on, and does not retry.
fn offline() -> [(&'static str, &'static str); 1] {
    static CONF: OnceLock<String> = OnceLock::new();
    let conf = CONF.get_or_init(|| apt_conf("offline-apt.conf", false));
    [("APT_CONFIG", conf.as_str())]
}

/// The loopback archive, one for the whole test process: its URL keys the
/// apt state that modvm keeps under the cache, so the state in the
/// template cache is the one every copy's runs use.
fn archive() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| Server::start(&archive_dir(), None))
}

/// An environment in which packages come from the loopback archive only:
/// it is named as the Debian mirror, and apt reaches nothing else.
fn via_archive() -> [(&'static str, &'static str); 2] {
    static ENV: OnceLock<(String, String)> = OnceLock::new();
    let (conf, url) =
        ENV.get_or_init(|| (apt_conf("loopback-archive-apt.conf", true), archive().url()));
    [
        ("APT_CONFIG", conf.as_str()),
        ("MODVM_DEBIAN_MIRROR", url.as_str()),
    ]
}

/// What the archive served since it had served `before` requests.
fn served_since(before: usize) -> Vec<String> {
    archive().requests()[before..].to_vec()
}

/// The packages among `requests` (image, headers, -common, kbuild, busybox).
fn debs(requests: &[String]) -> usize {
    requests
        .iter()
        .filter(|r| r.starts_with("200 /debian/pool/") && r.ends_with(".deb"))
        .count()
}

fn cp(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// A cache with the default profile's kit and the apt state for the
/// loopback archive, fetched from it once per test process (the previous
/// run's is removed first: its archive had another port).
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = common::repo()
            .join("target")
            .join("modvm-tests")
            .join("kit-cache-template");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        let before = archive().requests().len();
        let out = fetch(&dir, &[], &via_archive());
        assert_eq!(out.code, 0, "{}", out.all());
        let served = served_since(before);
        assert_eq!(debs(&served), 5, "{served:#?}");
        dir
    })
}

/// A private copy of the template cache under a new temporary directory,
/// checked by `modvm fetch` without downloading.
fn cache_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    cp(template(), &cache);
    let out = fetch(&cache, &[], &offline());
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(!out.stderr.contains("fetching"), "{}", out.all());
    (tmp, cache)
}

/// The kit directory `current.json` names (damaged or not).
fn kit_dir(cache: &Path) -> PathBuf {
    let dir = cache
        .join("kernels")
        .join(modvm::kernel::profile::DEFAULT_PROFILE);
    let current: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("current.json")).unwrap()).unwrap();
    dir.join(current["kit"].as_str().unwrap())
}

fn fetch(cache: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec!["fetch", "--cache", cache.to_str().unwrap()];
    args.extend_from_slice(extra);
    modvm(&args, env)
}

fn doctor(cache: &Path) -> Output {
    modvm(&["doctor", "--cache", cache.to_str().unwrap()], &offline())
}

fn test_hello(cache: &Path, env: &[(&str, &str)]) -> Output {
    let module = module_copy();
    modvm(
        &[
            "test",
            module.path().to_str().unwrap(),
            "--accel",
            "tcg",
            "--cache",
            cache.to_str().unwrap(),
        ],
        env,
    )
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn only(dir: &Path, prefix: &str, suffix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(prefix) && n.ends_with(suffix)
        })
        .unwrap_or_else(|| panic!("no {prefix}*{suffix} in {}", dir.display()))
}

#[test]
fn truncated_busybox_is_named_and_fetched_again_then_the_test_passes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_tmp, cache) = cache_copy();
    let busybox = kit_dir(&cache).join("root/bin/busybox");
    let size = busybox.metadata().unwrap().len();
    truncate(&busybox, 1000);

    let before = archive().requests().len();
    let out = test_hello(&cache, &via_archive());
    assert_eq!(out.code, 0, "{}", out.all());
    let served = served_since(before);
    assert_eq!(
        debs(&served),
        5,
        "the kit came again from the archive: {served:#?}"
    );
    let expected = format!("root/bin/busybox has 1000 bytes, expected {size}; fetching it again");
    assert_eq!(
        out.stderr.matches(&expected).count(),
        1,
        "one line names the damage:\n{}",
        out.all()
    );
    assert!(!out.stdout.contains("CRASH"), "{}", out.all());

    // Repaired for good: the next run neither complains nor downloads.
    let again = test_hello(&cache, &offline());
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(!again.stderr.contains("damaged"), "{}", again.all());
    assert!(!again.stderr.contains("fetching"), "{}", again.all());
}

#[test]
fn truncated_vmlinuz_offline_is_named_by_test_doctor_and_fetch() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_tmp, cache) = cache_copy();
    let vmlinuz = only(&kit_dir(&cache).join("root/boot"), "vmlinuz-", "");
    let size = vmlinuz.metadata().unwrap().len();
    truncate(&vmlinuz, 8_000_000);
    let damage = format!(
        "{} has 8000000 bytes, expected {size}",
        vmlinuz.strip_prefix(kit_dir(&cache)).unwrap().display()
    );

    let out = doctor(&cache);
    assert_eq!(out.code, 2, "{}", out.all());
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("DAMAGED  kernel"))
        .unwrap_or_else(|| panic!("no DAMAGED line:\n{}", out.all()));
    assert!(line.contains(&damage), "{line}");

    for out in [
        test_hello(&cache, &offline()),
        fetch(&cache, &[], &offline()),
    ] {
        assert_eq!(out.code, 2, "{}", out.all());
        assert!(out.stderr.contains(&damage), "{}", out.all());
        assert!(
            out.stderr.contains("run `modvm fetch --refresh` once"),
            "{}",
            out.all()
        );
        assert!(!out.stdout.contains("ready"), "{}", out.all());
        assert!(!out.stdout.contains("CRASH"), "{}", out.all());
    }
}

#[test]
fn deleted_common_headers_are_named_not_a_make_error() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_tmp, cache) = cache_copy();
    let common = only(
        &kit_dir(&cache).join("root/usr/src"),
        "linux-headers-",
        "-common",
    );
    std::fs::remove_dir_all(&common).unwrap();
    let name = common.file_name().unwrap().to_string_lossy().into_owned();

    let out = test_hello(&cache, &offline());
    assert_eq!(out.code, 2, "{}", out.all());
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("is damaged"))
        .unwrap_or_else(|| panic!("no damage named:\n{}", out.all()));
    assert!(line.contains(&format!("root/usr/src/{name}/")), "{line}");
    assert!(line.contains("is missing (and "), "{line}");
    assert!(!out.all().contains("make: "), "{}", out.all());
    assert!(!out.all().contains("No rule to make"), "{}", out.all());
}

#[test]
fn garbled_apt_lists_and_a_damaged_kit_are_rebuilt_by_fetch_refresh() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_tmp, cache) = cache_copy();
    // The apt state of the runs that name the loopback archive. Its
    // Release files stay whole: the archive answers every request in full
    // (never "not modified"), so apt would replace a garbled one itself;
    // an unchanged one makes apt keep the Packages index it has, as a
    // real archive's "not modified" does.
    let lists = only(&cache, "apt-mirror-", "").join("lists");
    let mut garbled = 0;
    for e in std::fs::read_dir(&lists).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.contains("Packages") {
            std::fs::write(e.path(), [0x5a_u8; 3000]).unwrap();
            garbled += 1;
        }
    }
    assert!(garbled > 0, "no package lists in {}", lists.display());
    let common = only(
        &kit_dir(&cache).join("root/usr/src"),
        "linux-headers-",
        "-common",
    );
    std::fs::remove_dir_all(&common).unwrap();

    let before = archive().requests().len();
    let out = fetch(&cache, &["--refresh"], &via_archive());
    assert_eq!(out.code, 0, "{}", out.all());
    let served = served_since(before);
    assert!(
        served
            .iter()
            .any(|r| r.starts_with("200 /debian/dists/bookworm/main/binary-amd64/")),
        "the lists came again from the archive: {served:#?}"
    );
    assert_eq!(debs(&served), 5, "{served:#?}");
    let said = |what: &str| out.stderr.lines().filter(|l| l.contains(what)).count();
    assert_eq!(said("are unreadable ("), 1, "{}", out.all());
    assert_eq!(said("; rebuilding them"), 1, "{}", out.all());
    assert_eq!(said("the cached kernel kit is damaged"), 1, "{}", out.all());

    let ok = doctor(&cache);
    assert_eq!(ok.code, 0, "{}", ok.all());
    assert!(
        ok.stdout.lines().any(|l| l.starts_with("ok       kernel")),
        "{}",
        ok.all()
    );
    let run = test_hello(&cache, &offline());
    assert_eq!(run.code, 0, "{}", run.all());
}

/// Turns the kit into what an older modvm left: absolute paths of where the
/// cache was (`old`), no manifest, and the headers `Makefile` including the
/// `-common` tree by absolute path.
fn make_old_style(cache: &Path, old: &Path) {
    let dir = kit_dir(cache);
    let kit_name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let old_dir = old
        .join("kernels")
        .join(modvm::kernel::profile::DEFAULT_PROFILE)
        .join(&kit_name);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("kit.json")).unwrap()).unwrap();
    let files = &record["files"];
    let old_record = serde_json::json!({
        "profile": record["profile"],
        "release": record["release"],
        "version": record["version"],
        "vmlinuz": old_dir.join(files["vmlinuz"].as_str().unwrap()),
        "headers": old_dir.join(files["headers"].as_str().unwrap()),
        "busybox": old_dir.join(files["busybox"].as_str().unwrap()),
    });
    std::fs::write(dir.join("kit.json"), old_record.to_string()).unwrap();
    std::fs::remove_file(dir.join("manifest.json")).unwrap();
    let headers = dir.join(files["headers"].as_str().unwrap());
    let common = only(&dir.join("root/usr/src"), "linux-headers-", "-common");
    std::fs::write(
        headers.join("Makefile"),
        format!(
            "include {}/root/usr/src/{}/Makefile\n",
            old_dir.display(),
            common.file_name().unwrap().to_string_lossy()
        ),
    )
    .unwrap();
}

#[test]
fn a_moved_cache_is_used_where_it_lands_old_kits_included() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (tmp, first) = cache_copy();
    make_old_style(&first, &tmp.path().join("where-it-was"));

    // An old kit restored at another path: checked, adopted, used offline.
    let second = tmp.path().join("second");
    std::fs::rename(&first, &second).unwrap();
    let out = doctor(&second);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("made by an older modvm"),
        "{}",
        out.all()
    );
    let run = test_hello(&second, &offline());
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(!run.stderr.contains("fetching"), "{}", run.all());
    assert!(kit_dir(&second).join("manifest.json").is_file());

    // A checked kit copied elsewhere and the original deleted.
    let third = tmp.path().join("third");
    cp(&second, &third);
    std::fs::remove_dir_all(&second).unwrap();
    let ok = doctor(&third);
    assert_eq!(ok.code, 0, "{}", ok.all());
    assert!(!ok.stdout.contains("older modvm"), "{}", ok.all());
    let run = test_hello(&third, &offline());
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(!run.stderr.contains("fetching"), "{}", run.all());
    assert!(!run.stderr.contains("damaged"), "{}", run.all());
}
