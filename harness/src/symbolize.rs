//! Turning `func+0x18/0x30 [mod]` frames into `mod.c:15` for the modules
//! under test.
//!
//! A crash title says which function failed; the source line says which
//! statement, and that is what a module author wants to jump to. Debian
//! builds modules with DWARF, so the `.ko` files the harness just built
//! know their own lines.
//!
//! This shells out to binutils (`objdump` for the symbol table, `addr2line`
//! for lines) rather than parsing DWARF in-process. A `.ko` is a relocatable
//! object: its debug sections only make sense after their relocations are
//! applied, which binutils does and the pure-Rust DWARF readers leave to the
//! caller. binutils is already required to build modules, so this adds no
//! dependency. Any failure (tool missing, stripped module, unknown symbol)
//! leaves frames as they were: symbolisation is a nicety, never a reason for
//! a test run to fail.

use crate::outcome::Frame;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Fills `file` and `line` of the frames that belong to one of `modules`
/// (`.ko` paths, matched by file stem with `-` and `_` equivalent, as the
/// kernel itself treats module names).
///
/// `frames` are in report order: the first one, when it is a module frame,
/// is taken as the exact faulting instruction (a RIP); the others are return
/// addresses, which point after their call, so the byte before them is
/// looked up to land on the calling line.
pub fn symbolize(frames: &mut [Frame], modules: &[PathBuf]) {
    let by_name: HashMap<String, &PathBuf> = modules
        .iter()
        .filter_map(|ko| Some((module_key(ko.file_stem()?.to_str()?), ko)))
        .collect();
    let mut wanted: HashMap<&PathBuf, Vec<usize>> = HashMap::new();
    for (i, frame) in frames.iter().enumerate() {
        let Some(name) = frame.module.as_deref() else {
            continue;
        };
        if frame.offset.is_none() || frame.line.is_some() {
            continue;
        }
        if let Some(ko) = by_name.get(&module_key(name)) {
            wanted.entry(*ko).or_default().push(i);
        }
    }
    for (ko, indices) in wanted {
        symbolize_module(frames, &indices, ko);
    }
}

/// Fills `file` and `line` of the kernel's own frames (no module) from a
/// kernel built with DWARF: the function's address from `System.map`, plus
/// the frame's offset, looked up in `vmlinux`. Paths are cut to the
/// kernel tree (`mm/kasan/report.c`), whatever directory it was built in.
pub fn symbolize_kernel(frames: &mut [Frame], system_map: &Path, vmlinux: &Path) {
    let wanted: Vec<usize> = (0..frames.len())
        .filter(|&i| {
            frames[i].module.is_none() && frames[i].offset.is_some() && frames[i].line.is_none()
        })
        .collect();
    if wanted.is_empty() {
        return;
    }
    let Ok(map) = std::fs::read_to_string(system_map) else {
        return;
    };
    let symbols: HashMap<&str, u64> = map
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let addr = u64::from_str_radix(f.next()?, 16).ok()?;
            let _kind = f.next()?;
            Some((f.next()?, addr))
        })
        .collect();
    let mut lookups: Vec<(usize, u64)> = Vec::new();
    for i in wanted {
        let f = &frames[i];
        let Some(base) = symbols.get(f.function.as_str()) else {
            continue;
        };
        // Return addresses point after their call: look up the byte before.
        let back = u64::from(i > 0 && f.offset.unwrap_or(0) > 0);
        lookups.push((i, base + f.offset.unwrap_or(0) - back));
    }
    if lookups.is_empty() {
        return;
    }
    let mut cmd = Command::new("addr2line");
    cmd.args(["-a", "-f", "-i", "-e"]).arg(vmlinux);
    for (_, a) in &lookups {
        cmd.arg(format!("{a:#x}"));
    }
    let Some(out) = run(&mut cmd) else {
        return;
    };
    let groups = parse_addr2line(&out);
    if groups.len() != lookups.len() {
        return;
    }
    for ((i, _), locations) in lookups.iter().zip(groups) {
        // The outermost location is the frame's own function.
        if let Some(loc) = locations.last() {
            frames[*i].file = Some(kernel_relative(&loc.file));
            frames[*i].line = Some(loc.line);
        }
    }
}

/// `…/linux/mm/kasan/report.c` → `mm/kasan/report.c`.
fn kernel_relative(file: &str) -> String {
    match file.rfind("/linux/") {
        Some(i) => file[i + "/linux/".len()..].to_string(),
        None => file.to_string(),
    }
}

fn module_key(name: &str) -> String {
    name.replace('-', "_")
}

fn symbolize_module(frames: &mut [Frame], indices: &[usize], ko: &Path) {
    let Some(symbols) = symbol_table(ko) else {
        return;
    };
    // addr2line takes one section per run: group lookups by section.
    let mut by_section: HashMap<&str, Vec<(usize, u64)>> = HashMap::new();
    for &i in indices {
        let frame = &frames[i];
        let (Some(sym), Some(offset)) = (symbols.get(&frame.function), frame.offset) else {
            continue;
        };
        let back = u64::from(i > 0 && offset > 0);
        let address = sym.value.saturating_add(offset - back);
        by_section
            .entry(sym.section.as_str())
            .or_default()
            .push((i, address));
    }
    let source_dir = ko.parent().unwrap_or(Path::new(""));
    for (section, lookups) in by_section {
        let addresses: Vec<u64> = lookups.iter().map(|(_, a)| *a).collect();
        let Some(results) = addr2line(ko, section, &addresses) else {
            continue;
        };
        for ((i, _), locations) in lookups.iter().zip(results) {
            if let Some((file, line)) = pick_location(&locations, source_dir) {
                frames[*i].file = Some(file);
                frames[*i].line = Some(line);
            }
        }
    }
}

/// Where a function lives in the module: section name and the function's
/// start inside that section (module symbols are section-relative).
#[derive(Debug, Clone, PartialEq)]
struct Symbol {
    section: String,
    value: u64,
}

/// The function symbols of `ko`: (section, start in it, size, name), for
/// placing bare addresses (see `placement`).
pub(crate) fn function_symbols(ko: &Path) -> Option<Vec<(String, u64, u64, String)>> {
    let out = run(Command::new("objdump").arg("-t").arg("-w").arg(ko))?;
    Some(parse_function_sizes(&out))
}

/// `objdump -t` function lines with their sizes (the field after the tab).
fn parse_function_sizes(text: &str) -> Vec<(String, u64, u64, String)> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once('\t')?;
            if !left.split_whitespace().any(|f| f == "F") {
                return None;
            }
            let value = u64::from_str_radix(left.split_whitespace().next()?, 16).ok()?;
            let section = left.split_whitespace().last()?;
            let mut r = right.split_whitespace();
            let size = u64::from_str_radix(r.next()?, 16).ok()?;
            Some((section.to_string(), value, size, r.next()?.to_string()))
        })
        .collect()
}

fn symbol_table(ko: &Path) -> Option<HashMap<String, Symbol>> {
    let out = run(Command::new("objdump").arg("-t").arg("-w").arg(ko))?;
    Some(parse_symbol_table(&out))
}

/// Parses `objdump -t` lines such as
/// `0000000000000000 l     F .init.text\t0000000000000025 hello_init`.
/// Function symbols win over other symbols of the same name.
fn parse_symbol_table(text: &str) -> HashMap<String, Symbol> {
    let mut table: HashMap<String, (Symbol, bool)> = HashMap::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once('\t') else {
            continue;
        };
        let mut fields = left.split_whitespace();
        let (Some(value), Some(section)) = (fields.next(), left.split_whitespace().last()) else {
            continue;
        };
        let Ok(value) = u64::from_str_radix(value, 16) else {
            continue;
        };
        if section.starts_with('*') {
            continue;
        }
        let Some(name) = right.split_whitespace().nth(1) else {
            continue;
        };
        let is_function = left.split_whitespace().any(|f| f == "F");
        let symbol = Symbol {
            section: section.to_string(),
            value,
        };
        match table.get(name) {
            Some((_, true)) => {}
            Some(_) if !is_function => {}
            _ => {
                table.insert(name.to_string(), (symbol, is_function));
            }
        }
    }
    table.into_iter().map(|(k, (s, _))| (k, s)).collect()
}

/// One source location for an address: innermost inlined function first.
#[derive(Debug, Clone, PartialEq)]
struct Location {
    file: String,
    line: u32,
}

/// Looks `addresses` up in `section`; one list of locations per address
/// (several when code was inlined).
fn addr2line(ko: &Path, section: &str, addresses: &[u64]) -> Option<Vec<Vec<Location>>> {
    let mut cmd = Command::new("addr2line");
    cmd.args(["-a", "-f", "-i", "-e"])
        .arg(ko)
        .arg("-j")
        .arg(section);
    for a in addresses {
        cmd.arg(format!("{a:#x}"));
    }
    let out = run(&mut cmd)?;
    let parsed = parse_addr2line(&out);
    (parsed.len() == addresses.len()).then_some(parsed)
}

/// Parses `addr2line -a -f -i` output: an address line, then pairs of
/// function and `file:line` lines. Unknown locations (`??:0`) are dropped.
fn parse_addr2line(text: &str) -> Vec<Vec<Location>> {
    let mut groups: Vec<Vec<Location>> = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if is_address(line) {
            groups.push(Vec::new());
            continue;
        }
        // `line` is a function name; the next line is its location.
        let Some(location) = lines.next() else {
            break;
        };
        let Some(group) = groups.last_mut() else {
            continue;
        };
        if let Some(loc) = parse_location(location) {
            group.push(loc);
        }
    }
    groups
}

fn is_address(line: &str) -> bool {
    line.strip_prefix("0x")
        .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `path/file.c:20 (discriminator 1)` → (`path/file.c`, 20).
fn parse_location(text: &str) -> Option<Location> {
    let text = text.split(" (").next().unwrap_or(text).trim();
    let (file, line) = text.rsplit_once(':')?;
    let line: u32 = line.parse().ok()?;
    if file.is_empty() || file.starts_with("??") || line == 0 {
        return None;
    }
    Some(Location {
        file: file.to_string(),
        line,
    })
}

/// The location to show: the innermost one in the module's own sources
/// (a line inside a kernel header's inline helper is rarely the news),
/// otherwise the innermost known one. Paths are made relative to the
/// module's directory, or cut to their file name, so reports do not carry
/// the build machine's layout.
fn pick_location(locations: &[Location], source_dir: &Path) -> Option<(String, u32)> {
    let relative = |file: &str| {
        Path::new(file)
            .strip_prefix(source_dir)
            .ok()
            .filter(|_| !source_dir.as_os_str().is_empty())
            .map(|p| p.to_string_lossy().into_owned())
    };
    if let Some((loc, rel)) = locations
        .iter()
        .find_map(|l| relative(&l.file).map(|r| (l, r)))
    {
        return Some((rel, loc.line));
    }
    let loc = locations.first()?;
    let name = Path::new(&loc.file)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| loc.file.clone());
    Some((name, loc.line))
}

/// Runs a tool and returns its stdout, or `None` on any failure.
fn run(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, offset: u64, module: &str) -> Frame {
        Frame {
            function: function.into(),
            offset: Some(offset),
            module: Some(module.into()),
            file: None,
            line: None,
        }
    }

    #[test]
    fn symbol_table_keeps_sections_and_prefers_functions() {
        let text = "\n\
demo.ko:     file format elf64-x86-64\n\
\n\
SYMBOL TABLE:\n\
0000000000000000 l    df *ABS*\t0000000000000000 demo.c\n\
0000000000000000 l     F .init.text\t0000000000000025 demo_init\n\
0000000000000030 l     F .text\t0000000000000011 demo_read\n\
0000000000000000 l     O .data\t0000000000000008 demo_read\n\
0000000000000000 g     F .init.text\t0000000000000025 init_module\n\
0000000000000000         *UND*\t0000000000000000 _printk\n";
        let t = parse_symbol_table(text);
        assert_eq!(
            t.get("demo_init"),
            Some(&Symbol {
                section: ".init.text".into(),
                value: 0
            })
        );
        assert_eq!(
            t.get("demo_read").map(|s| (s.section.as_str(), s.value)),
            Some((".text", 0x30))
        );
        assert!(!t.contains_key("_printk"));
        assert!(!t.contains_key("demo.c"));
    }

    #[test]
    fn kernel_paths_are_cut_to_the_tree() {
        assert_eq!(
            kernel_relative("/cache/kernels/debug/.staging-x/linux/mm/kasan/report.c"),
            "mm/kasan/report.c"
        );
        assert_eq!(kernel_relative("init/main.c"), "init/main.c");
    }

    #[test]
    fn addr2line_output_with_inlining() {
        let text = "0x0000000000000018\n\
hello_init\n\
/build/hello/hello.c:15\n\
0x0000000000000040\n\
inline_helper\n\
/usr/src/headers/include/linux/slab.h:600 (discriminator 2)\n\
hello_read\n\
/build/hello/hello.c:30\n\
0x0000000000000050\n\
??\n\
??:0\n";
        let groups = parse_addr2line(text);
        assert_eq!(groups.len(), 3);
        assert_eq!(
            groups[0],
            vec![Location {
                file: "/build/hello/hello.c".into(),
                line: 15
            }]
        );
        assert_eq!(groups[1].len(), 2);
        assert_eq!(groups[1][0].line, 600);
        assert!(groups[2].is_empty());

        let dir = Path::new("/build/hello");
        assert_eq!(pick_location(&groups[0], dir), Some(("hello.c".into(), 15)));
        // The module's own line beats the inlined header line.
        assert_eq!(pick_location(&groups[1], dir), Some(("hello.c".into(), 30)));
        assert_eq!(pick_location(&groups[2], dir), None);
        // Sources elsewhere are cut to their file name.
        assert_eq!(
            pick_location(&groups[0], Path::new("/elsewhere")),
            Some(("hello.c".into(), 15))
        );
    }

    #[test]
    fn missing_tools_or_files_leave_frames_alone() {
        let mut frames = vec![frame("hello_init", 0x18, "hello")];
        let before = frames.clone();
        symbolize(&mut frames, &[PathBuf::from("/nonexistent/hello.ko")]);
        assert_eq!(frames, before);
        symbolize(&mut frames, &[]);
        assert_eq!(frames, before);
    }

    /// A relocatable object built with `cc -g -c` has the same layout as a
    /// `.ko`: section-relative symbols and relocated DWARF. Building one
    /// checks the whole lookup without kernel headers.
    #[test]
    fn symbolizes_a_relocatable_object() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("demo_mod.c");
        std::fs::write(
            &src,
            "static volatile int sink;\n\
__attribute__((section(\".init.text\"))) int demo_init(void)\n\
{\n\
\tsink = 1;\n\
\treturn 0;\n\
}\n\
\n\
int demo_read(int x)\n\
{\n\
\tsink = x;\n\
\treturn sink;\n\
}\n",
        )
        .expect("write source");
        let ko = dir.path().join("demo-mod.ko");
        let built = Command::new("cc")
            .args(["-g", "-O0", "-c"])
            .arg(&src)
            .arg("-o")
            .arg(&ko)
            .current_dir(dir.path())
            .status();
        assert!(
            built.is_ok_and(|s| s.success()),
            "no C compiler: run scripts/setup-host.sh"
        );
        let mut frames = vec![
            frame("demo_init", 0, "demo_mod"),
            frame("demo_read", 1, "demo_mod"),
            frame("demo_read", 0, "other"),
            Frame {
                offset: None,
                ..frame("demo_read", 0, "demo_mod")
            },
        ];
        symbolize(&mut frames, std::slice::from_ref(&ko));
        assert!(
            frames[0].line.is_some(),
            "no line found (binutils missing? run scripts/setup-host.sh): {frames:?}"
        );
        assert_eq!(frames[0].file.as_deref(), Some("demo_mod.c"));
        assert!(
            (2..=6).contains(&frames[0].line.unwrap()),
            "{:?}",
            frames[0]
        );
        // demo_read lives in another section, at another offset.
        assert_eq!(frames[1].file.as_deref(), Some("demo_mod.c"));
        assert!(
            (8..=12).contains(&frames[1].line.unwrap()),
            "{:?}",
            frames[1]
        );
        assert_eq!(frames[2].line, None, "other modules are left alone");
        assert_eq!(
            frames[3].line, None,
            "frames without an offset are left alone"
        );
    }
}
