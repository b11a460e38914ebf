//! Systematic fault injection into a module's init (`--faults`): the
//! kernel-side helper, how it is built and armed, and what it reports.
//!
//! The kernel can fail the nth allocation of a task (`fail-nth`), but a
//! count armed from the shell before `insmod` would spend itself on the
//! loader's own allocations (reading the file, relocating, sysfs) long
//! before the module's code runs, and the stack-trace filter that could
//! restrict it to the module is not available on x86_64. So modvm loads a
//! small helper module (`faults/modvm_faults.c`) first: it wraps the
//! target's init function when the target is coming and arms
//! `current->fail_nth` around that call only. Every allocation init makes,
//! directly or through the kernel functions it calls, is a point; the
//! helper's count run (`nth=0`) says how many there are, and each point
//! then gets a fresh guest of its own (`runner/faults.rs`).

use crate::kbuild::{self, BuildError, Target};
use crate::kernel::Kit;
use crate::outcome::Frame;
use crate::shipped::GuestFile;
use std::path::{Path, PathBuf};

const SOURCE: &str = include_str!("faults/modvm_faults.c");
const KBUILD: &str = "obj-m := modvm_faults.o\n";

/// Where the helper lies in every guest of a run with fault injection.
pub const GUEST_PATH: &str = "/lib/modvm/modvm_faults.ko";

/// Options the kernel needs: fail-nth itself, the slab allocator's hook,
/// and its debugfs switches (GFP_KERNEL allocations are ignored unless
/// `ignore-gfp-wait` is turned off there).
const NEEDED: [&str; 3] = [
    "CONFIG_FAULT_INJECTION",
    "CONFIG_FAILSLAB",
    "CONFIG_FAULT_INJECTION_DEBUG_FS",
];

/// Why `kit` cannot inject faults; `None` when it can.
pub fn unsupported(kit: &Kit) -> Option<String> {
    let missing: Vec<&str> = NEEDED
        .iter()
        .copied()
        .filter(|o| !kit.has_option(o))
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "fault injection needs a kernel built with {}; {} ({}) lacks it: run it with `--kernel debug`",
            missing.join(", "),
            kit.profile,
            kit.release
        )
    })
}

/// Builds the helper for `kit` under `build_root` (rebuilt only when the
/// kernel or the source changed, like any module) and returns it as a
/// file for the guests.
pub fn build_helper(kit: &Kit, build_root: &Path) -> Result<GuestFile, BuildError> {
    let source = build_root.join("modvm-faults-src");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BuildError::Io { path, source }
    };
    std::fs::create_dir_all(&source).map_err(io(&source))?;
    let lock = build_root.join("modvm-faults.lock");
    let _lock = crate::lock::Lock::exclusive(&lock, &mut || {}).map_err(io(&lock))?;
    for (name, text) in [("modvm_faults.c", SOURCE), ("Kbuild", KBUILD)] {
        let path = source.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
            std::fs::write(&path, text).map_err(io(&path))?;
        }
    }
    let target = Target {
        headers: &kit.headers,
        identity: &kit.identity,
        release: &kit.release,
    };
    let out = build_root.join("modvm-faults");
    let built = kbuild::build(&source, &target, &[], &out)?;
    let ko: PathBuf = built
        .modules
        .into_iter()
        .next()
        .ok_or_else(|| BuildError::Io {
            path: out.clone(),
            source: std::io::Error::other("the fault-injection helper built no module"),
        })?;
    Ok(GuestFile {
        host: ko,
        guest: GUEST_PATH.into(),
        executable: false,
        module: true,
    })
}

/// The shell command that arms the helper for `module`'s next load: fail
/// its `nth` allocation (`0`: count them). The slab allocator's hook is
/// told not to ignore allocations that may sleep (most of a module's).
///
/// The page allocator's hook is kept out (no order is high enough for it):
/// KASAN's and kmemleak's bookkeeping take pages now and then, depending
/// on what the rest of the kernel did before, so with it the nth
/// allocation would not be the same one from run to run. Slab allocations
/// come in a fixed order: the module's own, each followed by kmemleak's
/// record of it (whose failure kmemleak absorbs without a word).
pub fn arm_command(module: &str, nth: u32) -> String {
    let d = "/sys/kernel/debug";
    format!(
        "echo N > {d}/failslab/ignore-gfp-wait && echo 2 > {d}/failslab/verbose && {{ [ ! -d {d}/fail_page_alloc ] || echo 99 > {d}/fail_page_alloc/min-order; }} && insmod {GUEST_PATH} target={module} nth={nth}"
    )
}

/// What the helper said about one load of its target.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    /// Allocations counted (count run).
    pub counted: Option<u32>,
    /// The armed allocation was failed; init then returned this.
    pub injected: Option<i32>,
    /// Init ended before the armed allocation: the point is past the end.
    pub not_reached: bool,
    /// One function per section of the target and its address, to place
    /// frames of a module that is gone.
    pub anchors: Vec<(String, u64)>,
    /// The frames of the injected allocation's stack, innermost first.
    pub injected_stack: Vec<Frame>,
}

const PREFIX: &str = "modvm-faults: ";

/// Reads the helper's lines and the fault dump the kernel printed for the
/// injected allocation out of a step's kernel log.
pub fn report(lines: &[&str]) -> Report {
    let mut r = Report::default();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        i += 1;
        if line.starts_with("FAULT_INJECTION: forcing a failure") && r.injected_stack.is_empty() {
            let trace: Vec<&str> = lines[i..]
                .iter()
                .copied()
                .take_while(|l| {
                    let l = l.trim_start();
                    !l.starts_with("</TASK>") && !l.starts_with(PREFIX)
                })
                .take(200)
                .collect();
            r.injected_stack = crate::crash::reliable_frames(&trace);
            continue;
        }
        let Some(rest) = line.strip_prefix(PREFIX) else {
            continue;
        };
        if let Some(n) = rest.strip_prefix("counted ") {
            r.counted = n.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if let Some(ret) = rest
            .strip_prefix("injected ")
            .and_then(|s| s.split_once("init returned "))
        {
            r.injected = ret.1.trim().parse().ok().or(Some(0));
        } else if rest.starts_with("not reached") {
            r.not_reached = true;
        } else if let Some(placed) = rest.strip_prefix("placed ") {
            if let Some((name, addr)) = placed.split_once(' ') {
                if let Ok(a) = u64::from_str_radix(addr.trim().trim_start_matches("0x"), 16) {
                    r.anchors.push((name.to_string(), a));
                }
            }
        }
    }
    r
}

/// The frame of the injected allocation that is the module's own call:
/// the innermost frame in `module` (what the author wants to look at).
pub fn call_site<'a>(stack: &'a [Frame], module: &str) -> Option<&'a Frame> {
    let key = module.replace('-', "_");
    stack.iter().find(|f| {
        f.module
            .as_deref()
            .is_some_and(|m| m.replace('-', "_") == key)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "modvm-faults: placed fault_bug_exit 0xffffffffa0008000
modvm-faults: placed fault_bug_init 0xffffffffa0010000
FAULT_INJECTION: forcing a failure.
name failslab, interval 1, probability 0, space 0, times 0
CPU: 0 PID: 73 Comm: insmod Tainted: G           O       6.1.192 #1
Call Trace:
<TASK>
dump_stack_lvl+0x4c/0x5f
should_fail_ex+0x44c/0x4ea
? fault_bug_init+0x3c/0x1000 [fault_bug]
should_failslab+0x5/0xd
kmalloc_trace+0x1f/0x53
fault_bug_init+0x3c/0x1000 [fault_bug]
wrapped_init+0x6b/0x129 [modvm_faults]
do_one_initcall+0xf7/0x246
</TASK>
modvm-faults: injected 1, init returned -12";

    #[test]
    fn the_helper_and_the_fault_dump_are_read() {
        let lines: Vec<&str> = DUMP.lines().collect();
        let r = report(&lines);
        assert_eq!(r.injected, Some(-12));
        assert!(!r.not_reached);
        assert_eq!(r.anchors.len(), 2);
        assert_eq!(
            r.anchors[1],
            ("fault_bug_init".into(), 0xffff_ffff_a001_0000)
        );
        let site = call_site(&r.injected_stack, "fault-bug").unwrap();
        assert_eq!(
            (site.function.as_str(), site.offset),
            ("fault_bug_init", Some(0x3c))
        );
        // Guessed frames (`?`) are not the call site.
        assert_eq!(r.injected_stack[0].function, "dump_stack_lvl");
        assert!(r
            .injected_stack
            .iter()
            .all(|f| f.function != "wrapped_init" || f.module.is_some()));
    }

    #[test]
    fn counts_and_points_past_the_end() {
        let r = report(&["modvm-faults: counted 6"]);
        assert_eq!(r.counted, Some(6));
        let r = report(&["modvm-faults: counted 0 (no init function)"]);
        assert_eq!(r.counted, Some(0));
        let r = report(&["modvm-faults: not reached 7 (counted 6)"]);
        assert!(r.not_reached && r.injected.is_none());
        let r = report(&["modvm-faults: counted 99999999999999", "garbage", ""]);
        assert_eq!(r.counted, None);
    }

    #[test]
    fn the_arm_command_names_target_and_point() {
        let c = arm_command("fault_bug", 3);
        assert!(
            c.ends_with("insmod /lib/modvm/modvm_faults.ko target=fault_bug nth=3"),
            "{c}"
        );
        assert!(c.contains("failslab/ignore-gfp-wait"));
    }
}
