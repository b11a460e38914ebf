//! `--gdb`: QEMU's gdb stub on a loopback port, the guest held until a
//! debugger continues it, and the symbols of the test's modules at the
//! addresses they were really loaded at.
//!
//! A module's addresses exist only once it is loaded, and only the guest's
//! `/sys/module/<name>/sections/` knows them. So after every `insmod` step
//! modvm reads them there, rewrites `gdb-modules.gdb` (one
//! `add-symbol-file` line per module) in the test's artifacts directory and
//! pauses the guest through QMP. The debugger sees the pause as a stop; the
//! Python script it was started with (`gdb-modvm.py`, `-x`) reacts to every
//! stop by adding the symbols the file lists when it changed. The user sets
//! breakpoints in the module and continues; the steps go on.

use super::qmp::Qmp;
use super::Guest;
use crate::qemu::{shell_quote, GdbStub};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Step and boot deadlines while a debugger may hold the guest: 100 days,
/// "none" for a person, and still far from `Instant` overflow.
pub const NO_DEADLINE: Duration = Duration::from_secs(100 * 86400);

const WATCHER: &str = include_str!("gdb_watch.py");

/// The script gdb is started with (`-x`).
pub fn watcher_path(dir: &Path) -> PathBuf {
    dir.join("gdb-modvm.py")
}

/// The `add-symbol-file` lines of the modules loaded so far.
pub fn symbols_path(dir: &Path) -> PathBuf {
    dir.join("gdb-modules.gdb")
}

/// A port nobody listens on now, for `--gdb` without a port. QEMU binds it
/// a moment later; another program taking it meanwhile makes QEMU fail
/// with "Address already in use", which the boot error shows.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// Whether `port` can be listened on (a port the user gave).
pub fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The line a person pastes to attach.
pub fn command(stub: &GdbStub, dir: &Path) -> String {
    let mut c = String::from("gdb -q");
    if let Some(vmlinux) = &stub.vmlinux {
        c.push(' ');
        c.push_str(&shell_quote(&vmlinux.to_string_lossy()));
    }
    c.push_str(&format!(
        " -ex {} -x {}",
        shell_quote(&format!("target remote 127.0.0.1:{}", stub.port)),
        shell_quote(&watcher_path(dir).to_string_lossy())
    ));
    c
}

/// Writes the watcher beside the test's logs, waits until QEMU listens on
/// the port and prints the command to attach. Called once the guest is
/// held: before its first instruction (cold boot) or after its state is
/// loaded (restore) — a debugger that continued a guest still loading its
/// state would start it half-loaded.
pub fn announce(stub: &GdbStub, dir: &Path, deadline: Instant) {
    // The command is pasted wherever the person's shell is.
    let dir = &absolute(dir);
    let modules = serde_json::to_string(&symbols_path(dir).to_string_lossy()).expect("a string");
    let _ = std::fs::remove_file(symbols_path(dir));
    if let Err(e) = std::fs::write(watcher_path(dir), WATCHER.replace("@MODULES@", &modules)) {
        eprintln!("modvm: cannot write {}: {e}", watcher_path(dir).display());
    }
    let until = deadline.min(Instant::now() + Duration::from_secs(5));
    while !listening(stub.port) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "modvm: the guest waits for gdb on 127.0.0.1:{} (deadlines are off); attach with:",
        stub.port
    );
    eprintln!("{}", command(stub, dir));
}

/// gdb's working directory may not be ours.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn listening(port: u16) -> bool {
    std::fs::read_to_string("/proc/net/tcp").is_ok_and(|t| listens_in(&t, port))
}

/// Whether `/proc/net/tcp` shows a socket listening on 127.0.0.1:`port`.
fn listens_in(table: &str, port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1] == want && f[3] == "0A"
    })
}

/// The symbols of the modules a test loaded, by module name.
#[derive(Debug, Default)]
pub struct LoadedModules(BTreeMap<String, String>);

impl LoadedModules {
    /// After `insmod` of `name` (from `ko`): reads its sections in the
    /// guest, rewrites the symbols file in `dir` and pauses the guest so
    /// the debugger picks them up. Failures are said, never fatal: the
    /// test itself goes on.
    pub fn loaded(&mut self, guest: &mut Guest, name: &str, ko: &Path, dir: &Path) {
        let sections = crate::placement::read_sections(guest, name);
        let ko = absolute(ko);
        let Some(line) = add_symbol_file(&ko, &sections) else {
            eprintln!("modvm: cannot read the sections of {name} in the guest; gdb gets no symbols for it");
            return;
        };
        self.0.insert(name.to_string(), line);
        let path = absolute(&symbols_path(dir));
        let text: String = self.0.values().map(|l| format!("{l}\n")).collect();
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("modvm: cannot write {}: {e}", path.display());
            return;
        }
        match pause(guest) {
            Ok(()) => eprintln!(
                "modvm: {name} is loaded; the guest is paused and gdb has its symbols (or `source {}`): set breakpoints, then `continue`",
                shell_quote(&path.to_string_lossy())
            ),
            Err(e) => eprintln!(
                "modvm: {name} is loaded; cannot pause the guest ({e}); in gdb: interrupt, `source {}`",
                shell_quote(&path.to_string_lossy())
            ),
        }
    }
}

fn pause(guest: &Guest) -> Result<(), String> {
    let path = guest.qmp_socket().ok_or("the guest has no QEMU monitor")?;
    let mut qmp =
        Qmp::connect(path, Instant::now() + Duration::from_secs(5)).map_err(|e| e.to_string())?;
    qmp.execute("stop", None).map_err(|e| e.to_string())?;
    Ok(())
}

/// gdb's command to add `ko`'s symbols at `sections`; `None` when no
/// address was read (or the guest hid them as zeros).
fn add_symbol_file(ko: &Path, sections: &[(String, u64)]) -> Option<String> {
    // The guest's copies of the symbol tables are not sections of the file.
    let placed: Vec<&(String, u64)> = sections
        .iter()
        .filter(|(n, a)| *a != 0 && n != ".symtab" && n != ".strtab")
        .collect();
    if placed.is_empty() {
        return None;
    }
    let mut line = format!("add-symbol-file {}", shell_quote(&ko.to_string_lossy()));
    // A module whose functions are all `__init`/`__exit` has no `.text`.
    if let Some((_, text)) = placed.iter().find(|(n, _)| n == ".text") {
        line.push_str(&format!(" {text:#x}"));
    }
    for (name, addr) in placed.iter().filter(|(n, _)| n != ".text") {
        line.push_str(&format!(" -s {} {addr:#x}", shell_quote(name)));
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_names_the_kernel_when_there_is_one() {
        let dir = Path::new("/runs/x/hello/load unload");
        let mut stub = GdbStub {
            port: 4321,
            vmlinux: None,
        };
        assert_eq!(
            command(&stub, dir),
            "gdb -q -ex 'target remote 127.0.0.1:4321' -x '/runs/x/hello/load unload/gdb-modvm.py'"
        );
        stub.vmlinux = Some("/k/vmlinux-6.1".into());
        assert!(command(&stub, dir).starts_with("gdb -q /k/vmlinux-6.1 -ex 'target remote"));
    }

    #[test]
    fn sections_become_one_add_symbol_file_line() {
        let out = ".bss 0xffffffffc0002440\n.data 0xffffffffc0002000\n.text 0xffffffffc0000000\n.note.gnu.build-id 0xffffffffc0001000\njunk\n";
        let s = crate::placement::parse_sections(out);
        assert_eq!(s.len(), 4);
        let line = add_symbol_file(Path::new("/b/hello.ko"), &s).unwrap();
        assert_eq!(
            line,
            "add-symbol-file /b/hello.ko 0xffffffffc0000000 -s .bss 0xffffffffc0002440 -s .data 0xffffffffc0002000 -s .note.gnu.build-id 0xffffffffc0001000"
        );
    }

    #[test]
    fn hidden_or_missing_addresses_give_no_line() {
        assert!(add_symbol_file(Path::new("m.ko"), &[]).is_none());
        let hidden = crate::placement::parse_sections(
            ".text 0x0000000000000000\n.data 0x0000000000000000\n",
        );
        assert!(add_symbol_file(Path::new("m.ko"), &hidden).is_none());
        let tables = crate::placement::parse_sections(
            ".symtab 0xffffffffc0208000\n.strtab 0xffffffffc0208240\n",
        );
        assert!(add_symbol_file(Path::new("m.ko"), &tables).is_none());
    }

    #[test]
    fn a_module_without_text_is_placed_by_its_other_sections() {
        let s = crate::placement::parse_sections(".exit.text 0xffffffffc0201000\n.init.text 0xffffffffc0206000\n.symtab 0xffffffffc0208000\n");
        assert_eq!(
            add_symbol_file(Path::new("/b/my mod.ko"), &s).unwrap(),
            "add-symbol-file '/b/my mod.ko' -s .exit.text 0xffffffffc0201000 -s .init.text 0xffffffffc0206000"
        );
    }

    #[test]
    fn listening_sockets_are_found_by_port_and_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue\n   0: 0100007F:04D2 00000000:0000 0A 00000000:00000000\n   1: 0100007F:04D3 0100007F:9C40 01 00000000:00000000\n";
        assert!(listens_in(table, 1234));
        assert!(!listens_in(table, 1235), "established, not listening");
        assert!(!listens_in(table, 80));
    }
}
