//! `--debian-mirror`: the Debian profiles fetched from a Debian archive the
//! user names, served here on loopback by a small HTTP server from real,
//! signed archive files (a copy of the bookworm index and the packages it
//! names, kept in the cache by `scripts/setup-host.sh`). Nothing here goes
//! beyond 127.0.0.1.

mod common;

use common::archive::{archive_dir, Server};
use common::{assert_no_qemu_left_by_us, modvm, out_dir, walk};
use std::net::TcpListener;
use std::path::PathBuf;

/// The one error line modvm printed (the command failed with exit 2).
fn error_line(out: &common::Output) -> String {
    assert_eq!(out.code, 2, "{}", out.all());
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("modvm: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", out.all());
    assert!(
        out.stderr.trim_end().ends_with(errors[0]),
        "the error is the last line: {}",
        out.all()
    );
    errors[0].to_string()
}

fn cache_arg(dir: &tempfile::TempDir) -> String {
    dir.path().to_string_lossy().into_owned()
}

#[test]
fn the_default_profile_comes_from_the_named_archive_and_runs_a_test() {
    let root = archive_dir();
    let server = Server::start(&root, None);
    // An empty cache of its own: nothing is taken from the shared one.
    let cache = out_dir();
    let url = server.url();
    let out = modvm(
        &[
            "fetch",
            "--cache",
            &cache_arg(&cache),
            "--debian-mirror",
            &url,
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let image = walk(&root.join("pool"))
        .into_iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .find(|n| n.starts_with("linux-image-"))
        .unwrap();
    let release = image
        .trim_start_matches("linux-image-")
        .split('_')
        .next()
        .unwrap();
    assert!(
        out.stdout
            .contains(&format!("debian-6.1-cloud: {release} (")),
        "{}",
        out.all()
    );
    assert!(
        out.stderr
            .contains(&format!("from the Debian archive at {url} (bookworm)")),
        "{}",
        out.all()
    );

    let requests = server.requests();
    let pos = |want: &str| requests.iter().position(|r| r == want);
    assert!(
        pos("200 /debian/dists/bookworm/InRelease").is_some(),
        "{requests:#?}"
    );
    // apt asks for compressed indexes (by hash) first; it has to fall back.
    let refused = requests
        .iter()
        .position(|r| r.starts_with("404 /debian/dists/bookworm/main/binary-amd64/by-hash/"))
        .unwrap_or_else(|| panic!("no by-hash request was refused: {requests:#?}"));
    let index = requests
        .iter()
        .position(|r| r.starts_with("200 /debian/dists/bookworm/main/binary-amd64/"))
        .unwrap_or_else(|| panic!("the Packages index was never served: {requests:#?}"));
    assert!(refused < index, "{requests:#?}");
    let debs = requests
        .iter()
        .filter(|r| r.starts_with("200 /debian/pool/") && r.ends_with(".deb"))
        .count();
    assert_eq!(
        debs, 5,
        "image, headers, -common, kbuild, busybox: {requests:#?}"
    );
    assert!(
        requests
            .iter()
            .all(|r| !r.contains("Translation") && !r.contains("dep11")),
        "only the Packages index is fetched: {requests:#?}"
    );
    let state: Vec<PathBuf> = std::fs::read_dir(cache.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("apt"))
        .collect();
    assert_eq!(state.len(), 1, "{state:?}");
    let sources = std::fs::read_to_string(state[0].join("sources.list")).unwrap();
    assert_eq!(
        sources,
        format!("deb [arch=amd64 target=Packages signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {url} bookworm main\n")
    );

    // The kit is cached: the test runs offline, on the archive's kernel.
    drop(server);
    let out = modvm(
        &[
            "test",
            "--cache",
            &cache_arg(&cache),
            "--accel",
            "tcg",
            "module",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("PASS    hello/load-unload"),
        "{}",
        out.all()
    );
    assert!(out.stdout.contains(release), "{}", out.all());
    assert_no_qemu_left_by_us();
}

#[test]
fn a_tampered_release_file_is_refused_as_not_signed_by_the_keyring() {
    let root = archive_dir();
    let mut inrelease = std::fs::read(root.join("dists/bookworm/InRelease")).unwrap();
    let at = inrelease
        .windows(12)
        .position(|w| w == b"Description:")
        .expect("a Description field");
    // One byte of the signed text: "Debian" becomes "Eebian".
    inrelease[at + 13] ^= 0x01;
    let server = Server::start(&root, Some(inrelease));
    let cache = out_dir();
    let out = modvm(
        &[
            "fetch",
            "--cache",
            &cache_arg(&cache),
            "--debian-mirror",
            &server.url(),
        ],
        &[],
    );
    let line = error_line(&out);
    assert!(
        line.contains(&format!(
            "the archive at {} is not signed by the Debian archive keyring",
            server.url()
        )) && line.contains("BADSIG"),
        "{line}"
    );
    assert!(
        !server.requests().iter().any(|r| r.contains("/pool/")),
        "nothing is downloaded from it: {:#?}",
        server.requests()
    );
}

#[test]
fn a_missing_keyring_is_named_before_the_archive_is_asked() {
    let root = archive_dir();
    let server = Server::start(&root, None);
    let cache = out_dir();
    let keyring = cache.path().join("no-such-keyring.gpg");
    let out = modvm(
        &[
            "fetch",
            "--cache",
            &cache_arg(&cache),
            "--debian-mirror",
            &server.url(),
        ],
        &[("MODVM_DEBIAN_KEYRING", keyring.to_str().unwrap())],
    );
    let line = error_line(&out);
    assert!(
        line.contains(&format!("keyring {} does not exist", keyring.display()))
            && line.contains("debian-archive-keyring"),
        "{line}"
    );
    assert!(server.requests().is_empty(), "{:#?}", server.requests());
}

#[test]
fn an_archive_that_refuses_connections_is_one_line() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/debian");
    let cache = out_dir();
    // The environment variable stands for the flag.
    let out = modvm(
        &["fetch", "--cache", &cache_arg(&cache)],
        &[("MODVM_DEBIAN_MIRROR", &url)],
    );
    let line = error_line(&out);
    assert!(
        line.contains(&format!("cannot reach the Debian archive at {url}"))
            && line.contains("Connection refused"),
        "{line}"
    );
}

#[test]
fn a_bad_mirror_url_is_refused_where_it_is_parsed() {
    let cache = out_dir();
    for (args, env) in [
        (vec!["fetch", "--debian-mirror", "ftp://h/debian"], vec![]),
        (vec!["test", "--debian-mirror", "http://h/deb ian"], vec![]),
        (vec!["fetch"], vec![("MODVM_DEBIAN_MIRROR", "h/debian")]),
    ] {
        let mut all = args.clone();
        let c = cache_arg(&cache);
        all.extend(["--cache", &c]);
        let out = modvm(&all, &env);
        assert_eq!(out.code, 2, "{args:?}: {}", out.all());
        assert!(
            out.stderr.contains("--debian-mirror") && out.stderr.contains("http://HOST/debian"),
            "{args:?}: {}",
            out.all()
        );
    }
    assert_eq!(
        std::fs::read_dir(cache.path()).unwrap().count(),
        0,
        "nothing was fetched"
    );
}

#[test]
fn a_host_without_apt_is_told_what_works_instead() {
    let cache = out_dir();
    let empty = tempfile::tempdir().unwrap();
    let out = modvm(
        &["fetch", "--cache", &cache_arg(&cache)],
        &[("PATH", empty.path().to_str().unwrap())],
    );
    let line = error_line(&out);
    assert!(
        line.contains("this host has no apt-get; use `--kernel host` (needs the running kernel's /boot image and /lib/modules/RELEASE/build headers) or run modvm in a Debian container"),
        "{line}"
    );
}

#[test]
fn concurrent_runs_on_one_cache_take_turns_at_the_package_lists() {
    let server = Server::start(&archive_dir(), None);
    let cache = tempfile::tempdir().unwrap();
    let runs: Vec<_> = (0..3)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_modvm"))
                .args([
                    "kernels",
                    "key",
                    "--debian-mirror",
                    &server.url(),
                    "--cache",
                ])
                .arg(cache.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = runs
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for o in &outs {
        assert!(
            o.status.success(),
            "a run that found the lists busy failed instead of waiting: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(o.stdout, outs[0].stdout, "the same key from every run");
    }
    let key = String::from_utf8_lossy(&outs[0].stdout);
    assert!(key.starts_with("modvm-kernels-"), "{key}");
}
