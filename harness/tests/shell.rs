//! `modvm shell`, driven as a person would: through a pseudo-terminal that
//! is modvm's controlling terminal, keys typed, the screen read.

mod common;

use common::{assert_no_qemu_left_by_us, command, out_dir, qemu_children, wait_gone};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Long enough for a cold boot under TCG (the first run saves the guest).
const DEADLINE: Duration = Duration::from_secs(180);

/// modvm on the slave side of a pty; the test holds the master.
struct Terminal {
    master: std::fs::File,
    screen: Arc<Mutex<Vec<u8>>>,
    child: Child,
    /// Where the screen has been read up to by [`Terminal::expect`].
    seen: usize,
    _out: tempfile::TempDir,
}

fn winsize(rows: u16, cols: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Terminal {
    fn start(args: &[&str]) -> Terminal {
        let (mut master, mut slave) = (0, 0);
        let ws = winsize(40, 100);
        // SAFETY: openpty fills two descriptors that we then own.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &ws,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let out = out_dir();
        let mut cmd = command(args, &[], out.path());
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: setsid and ioctl between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        drop(cmd); // closes our copies of the slave
        let master = std::fs::File::from(master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once modvm (the last holder of the slave) exits.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            master,
            screen,
            child,
            seen: 0,
            _out: out,
        }
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Waits until `text` appears after what was matched last.
    fn expect(&mut self, text: &str) {
        let until = Instant::now() + DEADLINE;
        loop {
            let all = self.screen.lock().unwrap().clone();
            let tail = String::from_utf8_lossy(&all[self.seen.min(all.len())..]).into_owned();
            if let Some(p) = tail.find(text) {
                self.seen += tail[..p + text.len()].len();
                return;
            }
            if Instant::now() > until {
                panic!("no {text:?} on the screen:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every one of `texts` appears after what was matched
    /// last, in any order: kernel lines (ttyS1) and the shell's own output
    /// (ttyS0) travel separately, so the prompt may come before the line.
    fn expect_all(&mut self, texts: &[&str]) {
        let until = Instant::now() + DEADLINE;
        loop {
            let all = self.screen.lock().unwrap().clone();
            let tail = String::from_utf8_lossy(&all[self.seen.min(all.len())..]).into_owned();
            let ends: Vec<Option<usize>> = texts
                .iter()
                .map(|t| tail.find(t).map(|p| p + t.len()))
                .collect();
            if ends.iter().all(Option::is_some) {
                self.seen += ends.into_iter().flatten().max().unwrap_or(0);
                return;
            }
            if Instant::now() > until {
                panic!("not all of {texts:?} on the screen:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_keys(&mut self, keys: &[u8]) {
        self.master.write_all(keys).unwrap();
    }

    /// Waits for modvm to exit: its status and the whole screen.
    fn wait(&mut self) -> (i32, String) {
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader take the last bytes.
                std::thread::sleep(Duration::from_millis(200));
                return (status.code().unwrap_or(-1), self.screen());
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                panic!("modvm did not exit:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn qemu(&self) -> Vec<u32> {
        qemu_children(self.child.id())
    }
}

impl Drop for Terminal {
    /// A failed test must not leave modvm (and its guest) running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PROMPT: &str = "/modules # ";

#[test]
fn a_module_is_loaded_by_hand_and_exit_returns_to_the_host() {
    let mut t = Terminal::start(&["shell", "--accel", "tcg", "module"]);
    t.expect("leave with `exit`");
    t.expect(PROMPT);
    let qemu = t.qemu();
    assert_eq!(qemu.len(), 1, "{}", t.screen());
    // The terminal's size reached the guest.
    t.type_keys(b"stty size\r");
    t.expect("40 100");
    t.expect(PROMPT);
    t.type_keys(b"insmod hello.ko\r");
    t.expect_all(&["Hello, Kernel World!", PROMPT]);
    // After the window changes, `resize` asks the host for its size.
    let ws = winsize(30, 90);
    // SAFETY: TIOCSWINSZ with a filled winsize.
    assert_eq!(
        unsafe { libc::ioctl(t.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) },
        0
    );
    t.type_keys(b"resize; stty size\r");
    t.expect("30 90");
    t.expect(PROMPT);
    t.type_keys(b"exit\r");
    let (code, screen) = t.wait();
    assert_eq!(code, 0, "{screen}");
    assert!(wait_gone(qemu[0], Duration::from_secs(5)), "{screen}");
    assert_no_qemu_left_by_us();
}

#[test]
fn a_panic_in_the_shell_returns_with_the_crash_summary() {
    let mut t = Terminal::start(&["shell", "--accel", "tcg", "module"]);
    t.expect(PROMPT);
    let qemu = t.qemu();
    t.type_keys(b"echo c > /proc/sysrq-trigger\r");
    let (code, screen) = t.wait();
    assert_eq!(code, 123, "{screen}");
    assert!(
        screen.contains("crash: kernel panic: sysrq triggered crash"),
        "{screen}"
    );
    assert!(screen.contains("console and kernel log: "), "{screen}");
    assert!(qemu.iter().all(|p| wait_gone(*p, Duration::from_secs(5))));
    assert_no_qemu_left_by_us();
}

#[test]
fn ctrl_c_interrupts_the_guest_command_and_the_escape_key_leaves() {
    let mut t = Terminal::start(&["shell", "--accel", "tcg", "module"]);
    t.expect(PROMPT);
    let qemu = t.qemu();
    t.type_keys(b"sleep 100\r");
    t.expect("sleep 100");
    std::thread::sleep(Duration::from_millis(500));
    t.type_keys(&[0x03]);
    // SIGINT in the guest: sleep ends with 128 + 2, modvm goes on.
    t.expect(PROMPT);
    t.type_keys(b"echo rc=$?\r");
    t.expect("rc=130");
    // Ctrl-] leaves at once, without the guest's cooperation.
    t.type_keys(b"sleep 100\r");
    t.expect("sleep 100");
    t.type_keys(&[0x1d]);
    let (code, screen) = t.wait();
    assert_eq!(code, 0, "{screen}");
    assert!(qemu.iter().all(|p| wait_gone(*p, Duration::from_secs(5))));
    assert_no_qemu_left_by_us();
}

/// modvm with `input` piped to its stdin: status, stdout, stderr.
fn piped(args: &[&str], input: &[u8]) -> (i32, String, String) {
    let out = out_dir();
    let mut child = command(args, &[], out.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let done = child.wait_with_output().unwrap();
    (
        done.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&done.stdout).into_owned(),
        String::from_utf8_lossy(&done.stderr).into_owned(),
    )
}

#[test]
fn piped_commands_run_line_by_line_and_end_of_input_leaves() {
    let (code, stdout, stderr) = piped(
        &["shell", "--accel", "tcg", "module"],
        b"insmod hello.ko\ngrep -c hello /proc/modules\n",
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("Hello, Kernel World!"),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("\n1\r\n"), "{stdout}\n{stderr}");
    assert_no_qemu_left_by_us();
}

#[test]
fn keep_opens_a_shell_in_the_guest_a_failed_test_left() {
    let dir = common::module_copy();
    std::fs::write(
        dir.path().join("modvm.json"),
        r#"{"suite": "kept", "tests": [
            {"name": "fails-loaded", "steps": [
                {"insmod": "hello"},
                {"run": "false"}
            ]},
            {"name": "passes", "steps": [{"run": "true"}]}
        ]}"#,
    )
    .unwrap();
    let (code, stdout, stderr) = piped(
        &[
            "test",
            "--accel",
            "tcg",
            "--keep",
            dir.path().to_str().unwrap(),
        ],
        b"lsmod\nexit\n",
    );
    let all = format!("{stdout}\n{stderr}");
    assert_eq!(code, 1, "{all}");
    assert!(stderr.contains("its guest is kept"), "{all}");
    // The shell saw the module the failed test had loaded.
    let lsmod = stdout.find("# lsmod").expect(&all);
    assert!(stdout[lsmod..].contains("\nhello "), "{all}");
    // The run went on: the other test ran after the shell, and only the
    // failed test got a shell.
    assert!(stdout.contains("kept/passes"), "{all}");
    assert_eq!(stderr.matches("its guest is kept").count(), 1, "{all}");
    assert_no_qemu_left_by_us();
}
