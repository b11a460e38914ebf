//! `modvm run`: one command in a fresh guest, output streamed, status
//! passed through, crashes and timeouts as distinct statuses.

mod common;

use common::{module_fixture, modvm};

#[test]
fn the_command_status_is_modvm_status() {
    let out = modvm(&["run", "--accel", "tcg", "--", "sh", "-c", "exit 3"], &[]);
    assert_eq!(out.code, 3, "{}", out.all());
    let out = modvm(&["run", "--accel", "tcg", "--", "true"], &[]);
    assert_eq!(out.code, 0, "{}", out.all());
}

#[test]
fn the_module_is_in_the_working_directory_and_its_output_reaches_stdout() {
    let out = modvm(
        &[
            "run",
            "--accel",
            "tcg",
            "module",
            "--",
            "sh",
            "-c",
            "insmod hello.ko && dmesg && echo 'quoted  words' \"$PWD\"",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("Hello, Kernel World!"), "{}", out.all());
    assert!(
        out.stdout.contains("quoted  words /modules"),
        "{}",
        out.all()
    );
}

#[test]
fn a_crash_gives_its_own_status_and_a_summary_with_the_source_line() {
    let fixture = module_fixture("null_init");
    let out = modvm(
        &[
            "run",
            "--accel",
            "tcg",
            &fixture,
            "--",
            "insmod",
            "null_init.ko",
        ],
        &[],
    );
    assert_eq!(out.code, 123, "{}", out.all());
    assert!(
        out.stderr
            .contains("NULL pointer dereference in null_init_init"),
        "{}",
        out.all()
    );
    assert!(out.stderr.contains("null_init.c:"), "{}", out.all());
}

#[test]
fn a_command_past_its_deadline_gives_the_timeout_status() {
    let out = modvm(
        &[
            "run",
            "--accel",
            "tcg",
            "--timeout",
            "2",
            "--",
            "sleep",
            "60",
        ],
        &[],
    );
    assert_eq!(out.code, 124, "{}", out.all());
    assert!(
        out.stderr.contains("did not finish within 2.0 s"),
        "{}",
        out.all()
    );
}

#[test]
fn one_kernel_only_and_a_command_is_required() {
    let out = modvm(
        &[
            "run",
            "--accel",
            "tcg",
            "--kernel",
            "debian-6.1-cloud,debian-6.12-cloud",
            "--",
            "true",
        ],
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("name one"), "{}", out.all());
    let out = modvm(&["run", "--accel", "tcg"], &[]);
    assert_eq!(out.code, 2, "{}", out.all());
}
