//! The QEMU command line, built by a pure function so it can be unit tested
//! and saved beside each test's logs exactly as run.

use crate::machine::Machine;
use std::ffi::OsString;
use std::path::PathBuf;

/// How the guest's CPU is executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// Everything that decides one guest's command line but the plumbing.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    pub binary: PathBuf,
    pub accel: Accel,
    /// The guest itself: architecture, memory, CPUs, kernel parameters,
    /// devices.
    pub machine: Machine,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Whether QEMU gets a QMP monitor (to save a guest, to see a restore
    /// end, to pause a guest for the debugger).
    pub monitor: bool,
    /// A saved guest state to resume instead of booting.
    pub incoming: Option<PathBuf>,
    /// QEMU's gdb stub on a loopback port, the guest paused until a
    /// debugger continues it (`--gdb`).
    pub gdb: Option<GdbStub>,
}

/// What connects one running QEMU to modvm: paths and descriptors that
/// exist only while it runs, chosen when it starts.
#[derive(Debug, Clone, Default)]
pub struct Plumbing {
    /// Unix socket QEMU listens on for the shell UART (ttyS0).
    pub console_socket: PathBuf,
    /// The QMP monitor's socket, for a config with `monitor`.
    pub qmp_socket: Option<PathBuf>,
    /// The saved state already open in the child as this descriptor.
    pub incoming_fd: Option<i32>,
    /// Where this QEMU's scratch disks are (removed with it).
    pub scratch_dir: PathBuf,
}

/// A gdb stub to open, and what the debugger needs to know beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GdbStub {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// The kernel with symbols, when the profile has one.
    pub vmlinux: Option<PathBuf>,
}

/// Kernel parameters every guest gets.
///
/// `console=ttyS1`: the kernel log has its own UART, read from QEMU's stdout.
/// `panic=-1` with `-no-reboot`: a panic ends QEMU at once, so a crash is seen
/// as the process exiting rather than as a timeout.
pub const BASE_CMDLINE: &str = "console=ttyS1 panic=-1 rdinit=/init";

impl QemuConfig {
    /// The kernel command line as passed to `-append`.
    pub fn cmdline(&self) -> String {
        let devices = self.machine.device_params();
        [BASE_CMDLINE, self.machine.cmdline.trim(), devices.as_str()]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Arguments after the binary name: the machine, then how it is run
    /// and connected.
    ///
    /// ttyS0 is a Unix socket that QEMU waits on (`wait=on`), so no console
    /// byte is produced before modvm is connected; ttyS1 is QEMU's stdout.
    pub fn args(&self, plumbing: &Plumbing) -> Vec<OsString> {
        let mut a: Vec<OsString> = self.machine.args(&plumbing.scratch_dir);
        let mut push = |s: &str| a.push(OsString::from(s));
        match self.accel {
            Accel::Kvm => {
                push("-accel");
                push("kvm");
                push("-cpu");
                push("host");
            }
            Accel::Tcg => {
                push("-accel");
                push("tcg");
                push("-cpu");
                push(self.machine.arch.tcg_cpu());
            }
        }
        push("-chardev");
        push(&format!(
            "socket,id=shell,path={},server=on,wait=on",
            plumbing.console_socket.display()
        ));
        push("-serial");
        push("chardev:shell");
        push("-chardev");
        push("stdio,id=klog,signal=off");
        push("-serial");
        push("chardev:klog");
        push("-kernel");
        a.push(self.kernel.clone().into_os_string());
        a.push("-initrd".into());
        a.push(self.initrd.clone().into_os_string());
        a.push("-append".into());
        a.push(self.cmdline().into());
        if let (true, Some(qmp)) = (self.monitor, &plumbing.qmp_socket) {
            a.push("-qmp".into());
            a.push(format!("unix:{},server=on,wait=off", qmp.display()).into());
            // The guest is paused to be saved; without this the state would
            // record "paused" and a restored guest would wait for `cont`.
            a.push("-global".into());
            a.push("migration.store-global-state=off".into());
        }
        if let Some(state) = &self.incoming {
            a.push("-incoming".into());
            a.push(incoming_uri(state, plumbing.incoming_fd).into());
        }
        if let Some(gdb) = &self.gdb {
            // `-S`: no guest instruction runs before the debugger says
            // `continue`; with `-incoming` the guest stays paused after
            // its state is loaded (nothing is saved with `running`).
            a.push("-gdb".into());
            a.push(format!("tcp:127.0.0.1:{}", gdb.port).into());
            a.push("-S".into());
        }
        a
    }

    /// The whole command, shell-quoted, for the artifacts directory, runnable
    /// by hand from there: no path that is gone once modvm is (the console
    /// socket is `ttyS0.sock` in the current directory, the monitor is left
    /// out, a saved state is read by `cat`).
    pub fn display(&self) -> String {
        let mut out = shell_quote(&self.binary.to_string_lossy());
        let runnable = Plumbing {
            console_socket: PathBuf::from("ttyS0.sock"),
            qmp_socket: None,
            incoming_fd: None,
            scratch_dir: PathBuf::from("."),
        };
        for arg in self.args(&runnable) {
            out.push(' ');
            out.push_str(&shell_quote(&arg.to_string_lossy()));
        }
        out
    }
}

/// Where QEMU reads a saved state from. Reading an inherited descriptor of
/// the file saves ~35 ms per restore over `exec:cat` (two processes and a
/// pipe); QEMU 7.2 has no `file:` URI. `exec:` runs through `sh -c`, hence
/// the quoting.
fn incoming_uri(state: &std::path::Path, fd: Option<i32>) -> String {
    match fd {
        Some(fd) => format!("fd:{fd}"),
        None => format!("exec:cat {}", shell_quote(&state.to_string_lossy())),
    }
}

/// Quotes `s` for a POSIX shell (also used for commands sent to the guest).
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(accel: Accel) -> QemuConfig {
        QemuConfig {
            binary: "qemu-system-x86_64".into(),
            accel,
            machine: Machine {
                arch: crate::machine::Arch::DEFAULT,
                memory_mib: 256,
                smp: 2,
                cmdline: " quiet ".into(),
                devices: Vec::new(),
            },
            kernel: "/k/vmlinuz".into(),
            initrd: "/k/initrd.cpio".into(),
            monitor: false,
            incoming: None,
            gdb: None,
        }
    }

    fn plumbing() -> Plumbing {
        Plumbing {
            console_socket: "/run/x/console.sock".into(),
            qmp_socket: Some("/run/x/qmp.sock".into()),
            incoming_fd: None,
            scratch_dir: "/run/x".into(),
        }
    }

    fn args(c: &QemuConfig) -> Vec<String> {
        args_with(c, &plumbing())
    }

    fn args_with(c: &QemuConfig, p: &Plumbing) -> Vec<String> {
        c.args(p)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    fn value_after(args: &[String], flag: &str) -> Vec<String> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .collect()
    }

    #[test]
    fn tcg_has_no_host_cpu_and_no_cmpxchg16b() {
        let a = args(&config(Accel::Tcg));
        assert_eq!(value_after(&a, "-accel"), vec!["tcg"]);
        assert_eq!(value_after(&a, "-cpu"), vec!["qemu64,-cx16"]);
    }

    #[test]
    fn kvm_uses_host_cpu() {
        let a = args(&config(Accel::Kvm));
        assert_eq!(value_after(&a, "-accel"), vec!["kvm"]);
        assert_eq!(value_after(&a, "-cpu"), vec!["host"]);
    }

    #[test]
    fn shell_uart_comes_first_and_kernel_log_second() {
        let a = args(&config(Accel::Tcg));
        assert_eq!(
            value_after(&a, "-serial"),
            vec!["chardev:shell", "chardev:klog"]
        );
        let chardevs = value_after(&a, "-chardev");
        assert!(chardevs[0].contains("path=/run/x/console.sock,server=on,wait=on"));
        assert!(chardevs[1].starts_with("stdio,id=klog"));
    }

    #[test]
    fn cmdline_appends_extra_parameters() {
        let c = config(Accel::Tcg);
        assert_eq!(c.cmdline(), format!("{BASE_CMDLINE} quiet"));
        assert_eq!(value_after(&args(&c), "-append"), vec![c.cmdline()]);
        assert!(args(&c).contains(&"-no-reboot".to_string()));
        assert!(args(&c).contains(&"-nodefaults".to_string()));
        assert_eq!(value_after(&args(&c), "-smp"), vec!["2"]);
    }

    #[test]
    fn restore_reads_the_state_through_a_quoted_exec() {
        let mut c = config(Accel::Tcg);
        assert!(value_after(&args(&c), "-incoming").is_empty());
        assert!(value_after(&args(&c), "-qmp").is_empty());
        c.incoming = Some("/cache/snap shot/state".into());
        c.monitor = true;
        assert_eq!(
            value_after(&args(&c), "-incoming"),
            vec!["exec:cat '/cache/snap shot/state'"]
        );
        assert_eq!(
            value_after(&args(&c), "-qmp"),
            vec!["unix:/run/x/qmp.sock,server=on,wait=off"]
        );
        assert_eq!(
            value_after(&args(&c), "-global"),
            vec!["migration.store-global-state=off"]
        );
        let with_fd = Plumbing {
            incoming_fd: Some(7),
            ..plumbing()
        };
        assert_eq!(
            value_after(&args_with(&c, &with_fd), "-incoming"),
            vec!["fd:7"]
        );
        assert!(c.display().contains("exec:cat"), "{}", c.display());
        assert!(!c.display().contains("qmp"), "{}", c.display());
        assert!(c.display().contains("path=ttyS0.sock,"), "{}", c.display());
    }

    #[test]
    fn gdb_stub_listens_on_loopback_and_holds_the_guest() {
        let mut c = config(Accel::Tcg);
        assert!(value_after(&args(&c), "-gdb").is_empty());
        assert!(!args(&c).contains(&"-S".to_string()));
        c.gdb = Some(GdbStub {
            port: 1234,
            vmlinux: None,
        });
        assert_eq!(value_after(&args(&c), "-gdb"), vec!["tcp:127.0.0.1:1234"]);
        assert!(args(&c).contains(&"-S".to_string()));
    }

    #[test]
    fn display_quotes_what_needs_quoting() {
        let s = config(Accel::Tcg).display();
        assert!(s.starts_with("qemu-system-x86_64 -M pc"));
        assert!(s.contains(&format!("-append '{BASE_CMDLINE} quiet'")));
    }
}
