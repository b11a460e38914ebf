//! The QEMU command line, built by a pure function so it can be unit tested
//! and saved beside each test's logs exactly as run.

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

/// Everything that decides one guest's command line.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    pub binary: PathBuf,
    pub accel: Accel,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Extra kernel parameters from the kernel profile and the user.
    pub extra_cmdline: String,
    pub memory_mib: u32,
    /// Guest CPUs.
    pub smp: u32,
    /// Unix socket QEMU listens on for the shell UART (ttyS0).
    pub console_socket: PathBuf,
    /// A QMP monitor socket (to save a guest, and to see a restore end).
    pub qmp_socket: Option<PathBuf>,
    /// A saved guest state to resume instead of booting.
    pub incoming: Option<PathBuf>,
    /// `incoming` already open in the child as this descriptor.
    pub incoming_fd: Option<i32>,
    /// QEMU's gdb stub on a loopback port, the guest paused until a
    /// debugger continues it (`--gdb`).
    pub gdb: Option<GdbStub>,
    /// The read-only disk of the kernel's own modules (virtio-blk, found by
    /// its serial in the guest; see `kernel::guest_modules`).
    pub modules_disk: Option<PathBuf>,
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
        let extra = self.extra_cmdline.trim();
        if extra.is_empty() {
            BASE_CMDLINE.to_string()
        } else {
            format!("{BASE_CMDLINE} {extra}")
        }
    }

    /// Arguments after the binary name.
    ///
    /// `-M pc -nodefaults` keeps the machine to two UARTs and nothing that
    /// slows a TCG boot (GUIDE: PCI link IRQ probing costs ~0.5 s a line).
    /// ttyS0 is a Unix socket that QEMU waits on (`wait=on`), so no console
    /// byte is produced before modvm is connected; ttyS1 is QEMU's stdout.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |s: &str| a.push(OsString::from(s));
        push("-M");
        push("pc");
        push("-nodefaults");
        push("-no-user-config");
        push("-display");
        push("none");
        push("-no-reboot");
        push("-smp");
        push(&self.smp.max(1).to_string());
        push("-m");
        push(&self.memory_mib.to_string());
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
            }
        }
        push("-chardev");
        push(&format!(
            "socket,id=shell,path={},server=on,wait=on",
            self.console_socket.display()
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
        if let Some(disk) = &self.modules_disk {
            // QEMU's option syntax doubles a comma inside a value.
            let file = disk.to_string_lossy().replace(',', ",,");
            a.push("-drive".into());
            a.push(format!("file={file},if=none,id=modules,format=raw,readonly=on").into());
            a.push("-device".into());
            a.push(
                format!(
                    "virtio-blk-pci,drive=modules,serial={}",
                    crate::kernel::guest_modules::SERIAL
                )
                .into(),
            );
        }
        if let Some(qmp) = &self.qmp_socket {
            a.push("-qmp".into());
            a.push(format!("unix:{},server=on,wait=off", qmp.display()).into());
            // The guest is paused to be saved; without this the state would
            // record "paused" and a restored guest would wait for `cont`.
            a.push("-global".into());
            a.push("migration.store-global-state=off".into());
        }
        if let Some(state) = &self.incoming {
            a.push("-incoming".into());
            a.push(incoming_uri(state, self.incoming_fd).into());
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
        let mut runnable = self.clone();
        runnable.incoming_fd = None;
        runnable.qmp_socket = None;
        runnable.console_socket = PathBuf::from("ttyS0.sock");
        for arg in runnable.args() {
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
            kernel: "/k/vmlinuz".into(),
            initrd: "/k/initrd.cpio".into(),
            extra_cmdline: " quiet ".into(),
            memory_mib: 256,
            smp: 2,
            console_socket: "/run/x/console.sock".into(),
            qmp_socket: None,
            incoming: None,
            incoming_fd: None,
            gdb: None,
            modules_disk: None,
        }
    }

    fn args(c: &QemuConfig) -> Vec<String> {
        c.args()
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
    fn tcg_has_no_host_cpu() {
        let a = args(&config(Accel::Tcg));
        assert_eq!(value_after(&a, "-accel"), vec!["tcg"]);
        assert!(value_after(&a, "-cpu").is_empty());
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
        c.qmp_socket = Some("/run/x/qmp.sock".into());
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
        c.incoming_fd = Some(7);
        assert_eq!(value_after(&args(&c), "-incoming"), vec!["fd:7"]);
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
