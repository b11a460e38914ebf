//! `--gdb`: a real gdb attaches to the guest's stub in batch mode, gets the
//! module's symbols at the addresses the guest loaded it at, stops in the
//! module's exit function on `rmmod`, and the test then finishes.

mod common;

use common::{out_dir, repo};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

/// modvm with `args`, its stdout collected and its stderr lines sent on.
fn spawn(args: &[&str], out: &std::path::Path) -> (Child, Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_modvm"))
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .args(args)
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// The printed gdb command, and every stderr line up to it.
fn gdb_command(lines: &Receiver<String>) -> (String, String) {
    let mut seen = String::new();
    loop {
        // The first run on a kernel saves its guest first (a few seconds).
        match lines.recv_timeout(Duration::from_secs(300)) {
            Ok(l) if l.starts_with("gdb -q") => return (l, seen),
            Ok(l) => {
                seen.push_str(&l);
                seen.push('\n');
            }
            Err(e) => panic!("no gdb command printed ({e}); stderr so far:\n{seen}"),
        }
    }
}

/// Pastes the printed command into a shell, as a person would, with the
/// batch commands appended: continue to the pause after insmod, break in
/// `hello_exit`, continue into the `rmmod` step, then let the guest go.
fn attach_and_break(command: &str) -> String {
    let line = format!(
        "timeout 300 {command} -batch -ex continue -ex 'break hello_exit' -ex continue -ex 'info symbol $pc' -ex detach"
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&line)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// modvm's exit code and stdout, killing it if the test never ends.
fn finish(mut child: Child) -> (i32, String) {
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        let _ = tx.send(s);
    });
    let out = match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(s) => s,
        Err(_) => {
            let _ = child.kill();
            panic!("modvm did not finish after gdb detached");
        }
    };
    (child.wait().unwrap().code().unwrap_or(-1), out)
}

fn break_in_exit(extra: &[&str]) -> (String, String, i32, String) {
    let out = out_dir();
    let mut args = vec!["test", "--accel", "tcg"];
    args.extend_from_slice(extra);
    args.push("module");
    let (child, lines) = spawn(&args, out.path());
    let (command, before) = gdb_command(&lines);
    let gdb = attach_and_break(&command);
    let (code, stdout) = finish(child);
    let stderr: String = lines.try_iter().collect::<Vec<_>>().join("\n");
    (
        command,
        format!("{gdb}\n--- modvm stderr ---\n{before}{stderr}"),
        code,
        stdout,
    )
}

#[test]
fn gdb_stops_in_the_module_of_a_restored_guest() {
    let (command, gdb, code, stdout) = break_in_exit(&["--gdb"]);
    assert!(
        command.contains("-ex 'target remote 127.0.0.1:"),
        "{command}"
    );
    assert!(command.contains("gdb-modvm.py"), "{command}");
    assert!(gdb.contains("modvm: symbols of "), "{gdb}");
    assert!(gdb.contains("Breakpoint 1, hello_exit ()"), "{gdb}");
    assert!(
        gdb.contains("hello.c:"),
        "source lines from the module's DWARF:\n{gdb}"
    );
    assert!(
        // `cleanup_module` is `hello_exit`'s alias (module_exit).
        gdb.contains(" in section .exit.text"),
        "the pc is in the module's real .exit.text:\n{gdb}"
    );
    assert!(gdb.contains("is paused"), "{gdb}");
    assert_eq!(code, 0, "{stdout}\n{gdb}");
    assert!(stdout.contains("PASS    hello/load-unload"), "{stdout}");
    assert!(
        stdout.contains("(restore "),
        "restored, not booted: {stdout}"
    );
}

#[test]
fn gdb_stops_in_the_module_of_a_cold_booted_guest_on_the_port_given() {
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let flag = format!("--gdb={port}");
    let (command, gdb, code, stdout) = break_in_exit(&["--cold", &flag]);
    assert!(
        command.contains(&format!("target remote 127.0.0.1:{port}'")),
        "{command}"
    );
    assert!(gdb.contains("Breakpoint 1, hello_exit ()"), "{gdb}");
    assert_eq!(code, 0, "{stdout}\n{gdb}");
    assert!(stdout.contains("(boot "), "booted cold: {stdout}");
}

#[test]
fn a_port_in_use_is_named_with_the_fix() {
    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = common::modvm(
        &["test", "--accel", "tcg", &format!("--gdb={port}"), "module"],
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr
            .contains(&format!("port {port} on 127.0.0.1 is in use"))
            && out.stderr.contains("--gdb alone"),
        "{}",
        out.all()
    );
}
