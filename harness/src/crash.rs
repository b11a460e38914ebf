//! Finding kernel crash reports in the guest's log, and naming them.
//!
//! A module that oopses, warns or trips a sanitizer rarely makes its command
//! fail in a way the shell can see: `rmmod` may still exit 0 after a WARNING,
//! and a KASAN report changes nothing at all. The kernel log is the only
//! reliable witness, so every step's lines go through [`detect`].
//!
//! Titles follow syzkaller's conventions ("WARNING in foo", "KASAN:
//! use-after-free Write in foo") so that they read the same as the reports
//! kernel developers already know, and so that two runs of the same bug get
//! the same title whatever the addresses, PIDs or timings were.
//!
//! Everything here is pure: lines in, reports out.

use crate::klog::KernelLine;
use crate::outcome::{Crash, Frame};
use regex::Regex;
use std::sync::OnceLock;

/// A report longer than this is cut: a runaway log (a warning in a loop)
/// must not turn one report into megabytes.
const MAX_REPORT_LINES: usize = 300;

/// How far after a report a follow-up panic ("Fatal exception") may start
/// and still be folded into that report rather than reported on its own.
const PANIC_FOLLOW_UP_LINES: usize = 40;

/// What kind of report a header line opens. The kind decides the title, the
/// default fatality, and how the end of the report is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    NullDeref,
    PagingRequest,
    StackGuard,
    Kasan,
    Kfence,
    Kmsan,
    SleepInAtomic,
    SchedAtomic,
    BadPage,
    SoftLockup,
    HardLockup,
    PossibleDeadlock,
    InconsistentLock,
    BadUnlock,
    SuspiciousRcu,
    LockHeldReturning,
    Warning,
    GeneralProtection,
    InvalidOpcode,
    DivideError,
    StackSegment,
    KernelBug,
    Oops,
    Ubsan,
    ListCorruption,
    Refcount,
    HungTask,
    RcuStall,
    Panic,
}

impl Kind {
    /// Reports that kill the current task (die()) or the whole kernel.
    fn fatal(self) -> bool {
        matches!(
            self,
            Kind::NullDeref
                | Kind::PagingRequest
                | Kind::StackGuard
                | Kind::GeneralProtection
                | Kind::InvalidOpcode
                | Kind::DivideError
                | Kind::StackSegment
                | Kind::KernelBug
                | Kind::Oops
                | Kind::Panic
        )
    }

    /// Sanitizer reports are framed by `=====` lines and carry several
    /// stacks (access, allocation, free), so the first trace's end is not
    /// the report's end.
    fn framed(self) -> bool {
        matches!(self, Kind::Kasan | Kind::Kfence | Kind::Kmsan | Kind::Ubsan)
    }

    /// Stall reports print the interrupt that noticed the stall on top of
    /// the stuck code; the interrupt frames say nothing about the culprit.
    fn ignores_interrupt_frames(self) -> bool {
        matches!(self, Kind::RcuStall | Kind::HardLockup)
    }
}

/// Header patterns, anchored at the start of the printk text so that a
/// module printing "this is not a BUG: ..." is never mistaken for one.
/// Order matters where prefixes overlap (lockdep's WARNINGs before the
/// generic `WARNING: CPU:` form).
fn headers() -> &'static [(Regex, Kind)] {
    static HEADERS: OnceLock<Vec<(Regex, Kind)>> = OnceLock::new();
    HEADERS.get_or_init(|| {
        let die = r": [0-9a-f]{4} \[#\d+\]";
        [
            (r"^BUG: (?:unable to handle )?kernel NULL pointer dereference", Kind::NullDeref),
            (r"^BUG: unable to handle (?:page fault for address|kernel paging request)", Kind::PagingRequest),
            (r"^BUG: stack guard page was hit at", Kind::StackGuard),
            (r"^BUG: KASAN: \S", Kind::Kasan),
            (r"^BUG: KFENCE: \S", Kind::Kfence),
            (r"^BUG: KMSAN: \S", Kind::Kmsan),
            (r"^BUG: sleeping function called from invalid context", Kind::SleepInAtomic),
            (r"^BUG: scheduling while atomic", Kind::SchedAtomic),
            (r"^BUG: Bad page (?:state|map)", Kind::BadPage),
            (r"^(?:watchdog: )?BUG: soft lockup - CPU#\d+ stuck for", Kind::SoftLockup),
            (r"^(?:watchdog: )?Watchdog detected hard LOCKUP on cpu", Kind::HardLockup),
            (r"^WARNING: possible (?:circular|recursive) locking", Kind::PossibleDeadlock),
            (r"^WARNING: inconsistent lock state", Kind::InconsistentLock),
            (r"^WARNING: bad unlock balance detected!", Kind::BadUnlock),
            (r"^WARNING: suspicious RCU usage", Kind::SuspiciousRcu),
            (r"^WARNING: lock held when returning to user space", Kind::LockHeldReturning),
            (r"^WARNING: (?:CPU: \d+ PID: \d+ )?at \S+", Kind::Warning),
            (&format!(r"^(?:Oops: )?general protection fault.*{die}"), Kind::GeneralProtection),
            (&format!(r"^(?:Oops: )?invalid opcode{die}"), Kind::InvalidOpcode),
            (&format!(r"^(?:Oops: )?divide error{die}"), Kind::DivideError),
            (&format!(r"^(?:Oops: )?stack segment{die}"), Kind::StackSegment),
            (r"^kernel BUG at \S+!", Kind::KernelBug),
            (r"^Oops: [0-9a-f]{4} \[#\d+\]", Kind::Oops),
            (r"^UBSAN: [a-z-]+ in \S", Kind::Ubsan),
            (r"^list_(?:add|del) corruption\b", Kind::ListCorruption),
            (r"^refcount_t: \S", Kind::Refcount),
            (r"^INFO: task \S.*:\d+ blocked for more than \d+ seconds", Kind::HungTask),
            (r"^(?:rcu: )?INFO: rcu_(?:sched|preempt|bh) (?:self-)?detected(?: expedited)? stall", Kind::RcuStall),
            (r"^Kernel panic - not syncing: ", Kind::Panic),
        ]
        .iter()
        .map(|(re, kind)| (Regex::new(re).expect("header patterns are valid"), *kind))
        .collect()
    })
}

fn classify(text: &str) -> Option<Kind> {
    headers()
        .iter()
        .find(|(re, _)| re.is_match(text))
        .map(|(_, kind)| *kind)
}

/// `name+0xOFF/0xSIZE [module ...]` at the start of a string: the form
/// `%pS` prints, wherever it appears (trace lines, RIP, report headers).
fn symbol_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"^([A-Za-z0-9_.$]+)\+0x([0-9a-f]+)/0x[0-9a-f]+(?:\s+\[([A-Za-z0-9_-]+)[^\]]*\])?",
        )
        .expect("symbol pattern is valid")
    })
}

fn parse_symbol(s: &str) -> Option<Frame> {
    let c = symbol_re().captures(s)?;
    Some(Frame {
        function: c[1].to_string(),
        offset: u64::from_str_radix(&c[2], 16).ok(),
        module: c.get(3).map(|m| m.as_str().to_string()),
        file: None,
        line: None,
    })
}

/// A call-trace line: ` func+0x1/0x2 [mod]`, ` ? func+0x1/0x2`, or the older
/// ` [<ffffffff81000000>] func+0x1/0x2`. Returns the frame and whether it is
/// reliable (the unwinder marks guesses with `?`).
fn parse_trace_line(text: &str) -> Option<(Frame, bool)> {
    let mut s = text.trim_start();
    if let Some(rest) = s.strip_prefix("[<") {
        s = rest.split_once(">]")?.1.trim_start();
    }
    let (s, reliable) = match s.strip_prefix("? ") {
        Some(rest) => (rest.trim_start(), false),
        None => (s, true),
    };
    parse_symbol(s).map(|f| (f, reliable))
}

/// The frames of a call-trace dump (`dump_stack`'s lines) that the
/// unwinder vouches for (`?` guesses left out), innermost first.
pub fn reliable_frames(lines: &[&str]) -> Vec<Frame> {
    lines
        .iter()
        .filter_map(|l| parse_trace_line(l))
        .filter(|(_, reliable)| *reliable)
        .map(|(f, _)| f)
        .collect()
}

/// The faulting kernel instruction: `RIP: 0010:func+0x18/0x30 [mod]` (or the
/// older `RIP: [<addr>] func+...`). User-space RIPs (`0033:0x47fbe9`) have no
/// symbol and yield nothing.
fn parse_rip(text: &str) -> Option<Frame> {
    let rest = text
        .strip_prefix("RIP: ")
        .or_else(|| text.strip_prefix("IP: "))?;
    let rest = match rest.split_once(':') {
        Some((seg, sym)) if seg.len() == 4 && seg.bytes().all(|b| b.is_ascii_hexdigit()) => sym,
        _ => rest,
    };
    parse_trace_line(rest).map(|(f, _)| f)
}

fn is_separator(text: &str) -> bool {
    text.len() >= 10 && text.bytes().all(|b| b == b'=')
}

fn is_cut_here(text: &str) -> bool {
    text.contains("[ cut here ]")
}

fn is_end_marker(text: &str) -> bool {
    text.starts_with("---[ end trace") || text.starts_with("---[ end Kernel panic")
}

/// Lines the kernel prints after a trace that still belong to the report.
fn is_trailer(text: &str) -> bool {
    is_end_marker(text)
        || text.starts_with("Modules linked in:")
        || text.starts_with("CR2: ")
        || text.starts_with("Kernel Offset:")
        || text.starts_with("Dumping ftrace buffer")
        || text.trim() == "(ftrace buffer empty)"
}

/// Register dump lines, which sit inside a call trace (the user-space
/// registers of a syscall) on kernels without `<TASK>` markers.
fn is_register_line(text: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^(?:RIP|RSP|RAX|RBX|RCX|RDX|RSI|RDI|RBP|R\d\d|FS|GS|CS|DS|ES|CR\d|DR\d|PKRU|Code)\s*:")
            .expect("register pattern is valid")
    })
    .is_match(text)
}

/// Stack context markers printed inside a call trace.
fn context_marker(text: &str) -> Option<&'static str> {
    match text.trim() {
        "<TASK>" => Some("task"),
        "</TASK>" => Some("/task"),
        "<IRQ>" | "<NMI>" | "<SOFTIRQ>" => Some("irq"),
        "</IRQ>" | "</NMI>" | "</SOFTIRQ>" | "<EOI>" => Some("/irq"),
        _ => None,
    }
}

/// Lines after which a sanitizer's other stacks start: their frames belong
/// to the allocation or free of the object, not to the faulting access.
fn ends_primary_stack(text: &str) -> bool {
    [
        "Allocated by task",
        "Freed by task",
        "Last potentially related work creation",
        "Second to last potentially related work creation",
        "The buggy address",
        "Memory state around",
        "allocated by task",
        "freed by task",
        "kfence-#",
        "Uninit was created",
        "Uninit was stored",
    ]
    .iter()
    .any(|p| text.starts_with(p))
}

/// What is known about the report being cut, line by line.
struct Open {
    kind: Kind,
    saw_trace: bool,
    marker_mode: bool,
    frames_seen: bool,
    in_trailer: bool,
}

/// Finds every crash or warning report in `lines`, in log order.
///
/// A report the kernel repeats (a soft lockup re-fires every few seconds)
/// is returned once. A panic that only follows from an earlier report
/// ("Fatal exception", panic_on_warn) is folded into that report, which then
/// becomes fatal.
pub fn detect(lines: &[KernelLine]) -> Vec<Crash> {
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    let mut crashes: Vec<Crash> = Vec::new();
    // End (exclusive) of the last report, so lookback never steals its lines.
    let mut floor = 0;
    let mut i = 0;
    while i < texts.len() {
        let Some(kind) = classify(texts[i]) else {
            i += 1;
            continue;
        };
        let start = lookback(&texts, i, floor);
        let end = find_end(&texts, kind, i);
        let report = &texts[start..end];
        if kind == Kind::Panic && is_follow_up_panic(texts[i]) {
            if let Some(prev) = crashes.last_mut() {
                if start.saturating_sub(floor) <= PANIC_FOLLOW_UP_LINES {
                    prev.report
                        .extend(texts[floor..end].iter().map(|s| s.to_string()));
                    prev.fatal = true;
                    floor = end;
                    i = end;
                    continue;
                }
            }
        }
        let crash = build(kind, report, i - start);
        match crashes.iter_mut().find(|c| c.title == crash.title) {
            Some(same) => same.fatal |= crash.fatal,
            None => crashes.push(crash),
        }
        floor = end;
        i = end.max(i + 1);
    }
    crashes
}

/// Where the report whose header is at `header` starts: the kernel often
/// prints a `cut here` or `=====` line just before the header.
fn lookback(texts: &[&str], header: usize, floor: usize) -> usize {
    let mut start = header;
    if header > floor && is_separator(texts[header - 1]) {
        start = header - 1;
    }
    for back in 1..=3 {
        let Some(j) = header.checked_sub(back) else {
            break;
        };
        if j < floor {
            break;
        }
        if is_cut_here(texts[j]) {
            start = start.min(j);
            break;
        }
    }
    start
}

/// Index one past the last line of the report opened at `header`.
fn find_end(texts: &[&str], kind: Kind, header: usize) -> usize {
    let mut open = Open {
        kind,
        saw_trace: false,
        marker_mode: false,
        frames_seen: false,
        in_trailer: false,
    };
    let limit = texts.len().min(header + MAX_REPORT_LINES);
    for j in header + 1..limit {
        let t = texts[j];
        if is_end_marker(t) {
            return j + 1;
        }
        if open.kind.framed() && is_separator(t) {
            return j + 1;
        }
        if let Some(next) = classify(t) {
            if !continues(&open, next) {
                return new_report_start(texts, j, header);
            }
            continue;
        }
        if open.kind.framed() {
            continue;
        }
        if open.in_trailer {
            if is_trailer(t) {
                continue;
            }
            return j;
        }
        if t.trim_start().starts_with("Call Trace:") {
            open.saw_trace = true;
            continue;
        }
        if !open.saw_trace {
            continue;
        }
        match context_marker(t) {
            Some("task") => open.marker_mode = true,
            Some("/task") => open.in_trailer = true,
            Some(_) => {}
            None if open.marker_mode => {}
            None => {
                if parse_trace_line(t).is_some() {
                    open.frames_seen = true;
                } else if open.frames_seen && !is_register_line(t) {
                    if is_trailer(t) {
                        open.in_trailer = true;
                    } else {
                        return j;
                    }
                }
            }
        }
    }
    limit
}

/// A new header at `j` ends the open report; its own lookback lines (a
/// `cut here` line) belong to it, not to the report before.
fn new_report_start(texts: &[&str], j: usize, header: usize) -> usize {
    lookback(texts, j, header + 1)
}

/// Whether a header seen inside an open report is part of it. Before the
/// open report's first call trace, another header is the same event told in
/// more words (the "Oops:" line under a page-fault BUG, "invalid opcode"
/// under "kernel BUG at", the WARNING under a refcount_t message, a
/// panic_on_warn panic); after it, it is a new event.
fn continues(open: &Open, next: Kind) -> bool {
    if open.kind.framed() {
        // Sanitizers print a panic (panic_on_warn) or oops only after their
        // closing separator, so anything else inside is a new report.
        return next == Kind::Panic;
    }
    !open.saw_trace && next != open.kind
}

/// Panics that merely end an earlier report rather than being the bug.
fn is_follow_up_panic(text: &str) -> bool {
    let msg = text
        .strip_prefix("Kernel panic - not syncing: ")
        .unwrap_or(text);
    msg.starts_with("Fatal exception")
        || msg.contains("panic_on_warn set")
        || msg.contains("panic_on_oops")
        || msg.starts_with("Attempted to kill init")
        || msg.starts_with("softlockup: hung tasks")
        || msg.starts_with("hung_task: blocked tasks")
        || msg.starts_with("RCU Stall")
}

/// One frame as found in a report, with what title selection needs to know.
struct Found {
    frame: Frame,
    reliable: bool,
    interrupt: bool,
}

/// Frames of the report's primary stack: the first call trace (or a
/// sanitizer's access stack), not the allocation/free stacks that follow.
fn collect_frames(kind: Kind, report: &[&str]) -> (Option<Frame>, Vec<Found>) {
    let mut rip = None;
    let mut found = Vec::new();
    let mut in_stack = false;
    let mut traces = 0;
    let mut interrupt = false;
    for t in report {
        if rip.is_none() {
            if let Some(f) = parse_rip(t) {
                rip = Some(f);
                continue;
            }
        }
        if t.trim_start().starts_with("Call Trace:") {
            traces += 1;
            in_stack = traces == 1;
            continue;
        }
        if ends_primary_stack(t) || is_end_marker(t) {
            in_stack = false;
            continue;
        }
        // KFENCE lists the access stack right under the line that says what
        // was accessed ("Use-after-free read at 0x... (in kfence-#3):"),
        // without a "Call Trace:" line.
        if kind == Kind::Kfence && traces == 0 && t.ends_with(':') && t.contains(" at 0x") {
            traces += 1;
            in_stack = true;
            continue;
        }
        if !in_stack {
            continue;
        }
        match context_marker(t) {
            Some("irq") => interrupt = true,
            Some("/irq") => interrupt = false,
            Some(_) => {}
            None => {
                if let Some((frame, reliable)) = parse_trace_line(t) {
                    found.push(Found {
                        frame,
                        reliable,
                        interrupt,
                    });
                }
            }
        }
    }
    (rip, found)
}

fn build(kind: Kind, report: &[&str], header_at: usize) -> Crash {
    let header = report[header_at];
    let (rip, found) = collect_frames(kind, report);
    let candidates = candidates(kind, report, header_at, rip.as_ref(), &found);
    let function = choose(&candidates);
    let title = title(kind, report, header, function.as_deref());
    let fatal = kind.fatal()
        || report
            .iter()
            .any(|t| die_counter_re().is_match(t) || t.starts_with("Kernel panic - not syncing"));
    let mut frames: Vec<Frame> = rip.into_iter().collect();
    frames.extend(found.into_iter().filter(|f| f.reliable).map(|f| f.frame));
    Crash {
        title,
        report: report.iter().map(|s| s.to_string()).collect(),
        frames,
        fatal,
    }
}

/// `[#1]`: the die counter, printed only when the kernel kills a task.
fn die_counter_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r": [0-9a-f]{4} \[#\d+\]").expect("die pattern is valid"))
}

/// Functions that could name the report, best first: the one the header
/// names, the faulting RIP, the call trace, then functions mentioned just
/// before the header (an initcall named by "initcall f returned with ...").
fn candidates(
    kind: Kind,
    report: &[&str],
    header_at: usize,
    rip: Option<&Frame>,
    found: &[Found],
) -> Vec<Frame> {
    let mut out = Vec::new();
    if let Some(f) = header_function(kind, report, header_at) {
        out.push(f);
    }
    if let Some(f) = rip {
        if !kind.ignores_interrupt_frames() {
            out.push(f.clone());
        }
    }
    out.extend(
        found
            .iter()
            .filter(|f| f.reliable && !(kind.ignores_interrupt_frames() && f.interrupt))
            .map(|f| f.frame.clone()),
    );
    for t in &report[..header_at] {
        for word in t.split_whitespace() {
            if let Some(f) = parse_symbol(word) {
                out.push(f);
            }
        }
    }
    out
}

/// The function a header line itself names, where the kernel prints one.
fn header_function(kind: Kind, report: &[&str], header_at: usize) -> Option<Frame> {
    let header = report[header_at];
    match kind {
        Kind::Warning => {
            // "WARNING: CPU: 0 PID: 9 at path/file.c:20 func+0xa/0x10 [mod]"
            let after = header.split_once(" at ")?.1;
            let (_, sym) = after.split_once(' ')?;
            parse_symbol(sym.trim_start())
        }
        Kind::Kasan | Kind::Kfence | Kind::Kmsan => {
            let after = header.split_once(" in ")?.1;
            parse_symbol(after.trim_start())
        }
        Kind::PossibleDeadlock | Kind::InconsistentLock => report[header_at..]
            .iter()
            .find_map(|t| t.split_once(", at: ").and_then(|(_, s)| parse_symbol(s))),
        Kind::BadUnlock => {
            let at = report[header_at..]
                .iter()
                .position(|t| t.contains("is trying to release lock"))?;
            report
                .get(header_at + at + 1)
                .and_then(|t| parse_trace_line(t))
                .map(|(f, _)| f)
        }
        _ => None,
    }
}

/// Generic helpers that appear in reports without being at fault: the
/// report machinery, exception entry, syscall and module-loading plumbing,
/// sleeping and locking primitives, memory and string helpers that
/// sanitizers catch on behalf of their caller, and timer-interrupt code
/// that notices stalls. Matched after dropping leading underscores and
/// compiler suffixes (`.cold`, `.isra.0`).
fn skip_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let names = [
            // Reporting and exception entry.
            "dump_stack(?:_lvl)?",
            "show_stack",
            "show_regs",
            "show_trace_log_lvl",
            "warn",
            "warn_slowpath_.*",
            "warn_printk",
            "report_bug",
            "handle_bug",
            "fixup_bug",
            "do_error_trap",
            "do_trap",
            "die",
            "die_body",
            "oops_end",
            "page_fault_oops",
            "kernelmode_fixup_or_oops",
            "bad_area.*",
            "do_user_addr_fault",
            "do_kern_addr_fault",
            "handle_page_fault",
            "exc_.*",
            "asm_exc_.*",
            "asm_sysvec_.*",
            "sysvec_.*",
            "asm_common_interrupt",
            "common_interrupt",
            "irq_exit.*",
            "irqentry_.*",
            "panic",
            "vpanic",
            "nmi_panic",
            "check_panic_on_warn",
            // Sanitizer runtimes.
            "kasan.*",
            "asan_.*",
            "kfence_.*",
            "kmsan.*",
            "msan_.*",
            "ubsan_.*",
            "check_memory_region.*",
            "check_region_inline",
            "print_address_description.*",
            "print_report",
            "end_report",
            "start_report",
            // Module loading and syscall plumbing.
            "do_one_initcall",
            "do_init_module",
            "load_module",
            "do_sys_.*",
            "x64_sys_.*",
            "ia32_sys_.*",
            "se_sys_.*",
            "sys_init_module",
            "sys_finit_module",
            "sys_delete_module",
            "do_syscall_64",
            "do_syscall_x64",
            "do_fast_syscall_32",
            "entry_SYSCALL.*",
            "ret_from_fork.*",
            "kthread",
            "worker_thread",
            "process_one_work",
            // Sleeping.
            "schedule.*",
            "preempt_schedule.*",
            "might_sleep",
            "might_resched",
            "might_fault",
            "msleep.*",
            "usleep_range.*",
            "io_schedule.*",
            "wait_for_completion.*",
            "wait_for_common.*",
            "do_wait_for_common",
            // Locking and lockdep.
            "raw_spin_.*",
            "spin_.*",
            "raw_read_.*",
            "raw_write_.*",
            "mutex_.*",
            "down",
            "down_.*",
            "up",
            "up_read",
            "up_write",
            "rwsem_.*",
            "lock_acquire",
            "lock_release",
            "lockdep_.*",
            "validate_chain",
            "check_noncircular",
            "check_prev_add",
            "check_prevs_add",
            "check_deadlock",
            "mark_lock.*",
            "print_.*_bug",
            "valid_state",
            "lock_is_held.*",
            // Checked data structures.
            "refcount_.*",
            "list_add.*",
            "list_del.*",
            // Memory and string helpers.
            "memcpy.*",
            "memmove.*",
            "memset.*",
            "memcmp",
            "strcpy",
            "strncpy",
            "strlen",
            "strnlen",
            "strcmp",
            "strscpy.*",
            "copy_to_user.*",
            "copy_from_user.*",
            "copy_user_.*",
            "raw_copy_.*",
            "kfree",
            "kvfree",
            "kfree_.*",
            "kmem_cache_free",
            "kmem_cache_alloc.*",
            "slab_pre_alloc_hook.*",
            "slab_alloc.*",
            "__slab_alloc.*",
            "might_alloc",
            "kmalloc.*",
            "kzalloc",
            "krealloc",
            "slab_free.*",
            "vfree",
            "vmalloc.*",
            // Timer interrupt and idle, which notice stalls.
            "rcu_.*",
            "update_process_times",
            "tick_.*",
            "hrtimer_.*",
            "scheduler_tick",
            "sched_tick",
            "watchdog_timer_fn",
            "nmi_cpu_backtrace.*",
            "nmi_trigger_cpumask_backtrace",
            "arch_trigger_cpumask_backtrace",
            "trigger_single_cpu_backtrace",
            "dump_cpu_task",
            "print_cpu_stall.*",
            "handle_softirqs",
            "do_softirq.*",
            "default_idle.*",
            "native_safe_halt",
            "arch_cpu_idle",
            "do_idle",
            "cpu_startup_entry",
        ];
        Regex::new(&format!("^(?:{})$", names.join("|"))).expect("skip pattern is valid")
    })
}

/// A function name without leading underscores or compiler suffixes.
fn base_name(function: &str) -> &str {
    let f = function.trim_start_matches('_');
    f.split('.').next().unwrap_or(f)
}

fn is_generic(function: &str) -> bool {
    skip_re().is_match(base_name(function))
}

/// The first candidate that is not a generic helper; failing that, the
/// first one from a module; failing that, the first one at all.
fn choose(candidates: &[Frame]) -> Option<String> {
    candidates
        .iter()
        .find(|f| !is_generic(&f.function))
        .or_else(|| candidates.iter().find(|f| f.module.is_some()))
        .or_else(|| candidates.first())
        .map(|f| display_name(&f.function))
}

/// `.cold`, `.isra.0`, `.constprop.0` depend on the compiler's mood, not
/// the bug; titles drop them so the same bug keeps the same title.
fn display_name(function: &str) -> String {
    match function.find('.') {
        Some(dot) if dot > 0 => function[..dot].to_string(),
        _ => function.to_string(),
    }
}

fn title(kind: Kind, report: &[&str], header: &str, function: Option<&str>) -> String {
    let base = match kind {
        Kind::NullDeref => "BUG: unable to handle kernel NULL pointer dereference".to_string(),
        Kind::PagingRequest => "BUG: unable to handle kernel paging request".to_string(),
        Kind::StackGuard => "BUG: stack guard page was hit".to_string(),
        Kind::Kasan => {
            let what = sanitizer_kind(header, "BUG: KASAN: ");
            let access = report.iter().find_map(|t| {
                ["Read of size", "Write of size"]
                    .iter()
                    .find(|p| t.starts_with(*p))
                    .map(|p| &p[..p.find(' ').unwrap_or(p.len())])
            });
            match access {
                Some(a) => format!("KASAN: {what} {a}"),
                None => format!("KASAN: {what}"),
            }
        }
        Kind::Kfence => format!("KFENCE: {}", sanitizer_kind(header, "BUG: KFENCE: ")),
        Kind::Kmsan => format!("KMSAN: {}", sanitizer_kind(header, "BUG: KMSAN: ")),
        Kind::SleepInAtomic => "BUG: sleeping function called from invalid context".to_string(),
        Kind::SchedAtomic => "BUG: scheduling while atomic".to_string(),
        Kind::BadPage if header.starts_with("BUG: Bad page map") => "BUG: Bad page map".to_string(),
        Kind::BadPage => "BUG: Bad page state".to_string(),
        Kind::SoftLockup => "BUG: soft lockup".to_string(),
        Kind::HardLockup => "BUG: hard lockup".to_string(),
        Kind::PossibleDeadlock => "possible deadlock".to_string(),
        Kind::InconsistentLock => "inconsistent lock state".to_string(),
        Kind::BadUnlock => "WARNING: bad unlock balance".to_string(),
        Kind::SuspiciousRcu => "WARNING: suspicious RCU usage".to_string(),
        Kind::LockHeldReturning => "WARNING: lock held when returning to user space".to_string(),
        Kind::Warning => "WARNING".to_string(),
        Kind::GeneralProtection => "general protection fault".to_string(),
        Kind::InvalidOpcode => "invalid opcode".to_string(),
        Kind::DivideError => "divide error".to_string(),
        Kind::StackSegment => "stack segment fault".to_string(),
        Kind::KernelBug => "kernel BUG".to_string(),
        Kind::Oops => "Oops".to_string(),
        Kind::Ubsan => format!("UBSAN: {}", sanitizer_kind(header, "UBSAN: ")),
        Kind::ListCorruption => "BUG: corrupted list".to_string(),
        Kind::Refcount => "refcount bug".to_string(),
        Kind::HungTask => "INFO: task hung".to_string(),
        Kind::RcuStall => "INFO: rcu detected stall".to_string(),
        Kind::Panic => {
            let msg = header
                .strip_prefix("Kernel panic - not syncing: ")
                .unwrap_or(header)
                .trim();
            return format!("kernel panic: {msg}");
        }
    };
    match function {
        Some(f) => format!("{base} in {f}"),
        // UBSAN names the source location even when there is no stack.
        None if kind == Kind::Ubsan => match header.split_once(" in ") {
            Some((_, at)) => format!("{base} in {}", at.trim()),
            None => base,
        },
        None => base,
    }
}

/// "use-after-free" out of "BUG: KASAN: use-after-free in f+0x1/0x2".
fn sanitizer_kind<'a>(header: &'a str, prefix: &str) -> &'a str {
    let rest = header.strip_prefix(prefix).unwrap_or(header);
    rest.split_once(" in ").map_or(rest, |(k, _)| k).trim()
}

/// kmemleak's reports of `modules`' leaks, one per allocating function,
/// titled "memory leak in <function>" after the first backtrace frame that
/// lies in one of `modules` (names as `lsmod` shows them).
///
/// A kmemleak block ("unreferenced object 0x... (size N):", then indented
/// comm, hex dump and backtrace lines) comes from the kernel log when the
/// guest boots with `kmemleak.verbose=1`, each line prefixed "kmemleak: ",
/// or from reading `/sys/kernel/debug/kmemleak`, unprefixed; both are read.
/// The kernel itself leaks now and then during boot, and a scan reports
/// every leak it finds, so a block counts only when a module under test
/// made the allocation: [`detect`] deliberately ignores these blocks.
pub fn detect_leaks(
    lines: &[KernelLine],
    modules: &[&str],
    place: &dyn Fn(u64) -> Option<Frame>,
) -> Vec<Crash> {
    let wanted: Vec<String> = modules.iter().map(|m| m.replace('-', "_")).collect();
    let texts: Vec<&str> = lines.iter().map(|l| strip_kmemleak(&l.text)).collect();
    let mut crashes: Vec<Crash> = Vec::new();
    let mut i = 0;
    while i < texts.len() {
        if !leak_header_re().is_match(texts[i]) {
            i += 1;
            continue;
        }
        let end = (i + 1..texts.len().min(i + MAX_REPORT_LINES))
            .find(|&j| !texts[j].starts_with(' ') || leak_header_re().is_match(texts[j]))
            .unwrap_or(texts.len().min(i + MAX_REPORT_LINES));
        let block = &texts[i..end];
        let frames: Vec<Frame> = block
            .iter()
            .skip_while(|t| t.trim() != "backtrace:")
            .filter_map(|t| {
                parse_trace_line(t)
                    .map(|(f, _)| f)
                    .or_else(|| bare_frame(t, place))
            })
            .collect();
        let culprit = frames.iter().find(|f| {
            f.module
                .as_ref()
                .is_some_and(|m| wanted.iter().any(|w| *w == m.replace('-', "_")))
        });
        if let Some(culprit) = culprit {
            let title = format!("memory leak in {}", display_name(&culprit.function));
            if !crashes.iter().any(|c| c.title == title) {
                crashes.push(Crash {
                    title,
                    report: block.iter().map(|s| s.to_string()).collect(),
                    frames,
                    fatal: false,
                });
            }
        }
        i = end;
    }
    crashes
}

/// A backtrace line whose address the kernel could no longer name
/// (`[<…>] 0xffffffffc0201c3a`: freed `__init` code, an unloaded module),
/// placed by `place`.
fn bare_frame(text: &str, place: &dyn Fn(u64) -> Option<Frame>) -> Option<Frame> {
    let last = text.split_whitespace().last()?;
    let address = u64::from_str_radix(last.strip_prefix("0x")?, 16).ok()?;
    place(address)
}

/// "unreferenced object 0xffff888003a1c000 (size 128):"
fn leak_header_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^unreferenced object 0x[0-9a-f]+ \(size \d+\):")
            .expect("leak pattern is valid")
    })
}

/// The text kmemleak printed, without the `kmemleak: ` prefix its printk
/// lines carry (the debugfs file has none).
fn strip_kmemleak(text: &str) -> &str {
    text.strip_prefix("kmemleak: ").unwrap_or(text)
}

/// Kernel taint flags by bit, as `/proc/sys/kernel/tainted` reports them:
/// (letter, what it means).
const TAINTS: [(char, &str); 20] = [
    ('P', "proprietary module"),
    ('F', "forced module load"),
    ('S', "out-of-spec system"),
    ('R', "forced module unload"),
    ('M', "machine check"),
    ('B', "bad page"),
    ('U', "user request"),
    ('D', "oops"),
    ('A', "ACPI table overridden"),
    ('W', "warning"),
    ('C', "staging driver"),
    ('I', "firmware workaround"),
    ('O', "out-of-tree module"),
    ('E', "unsigned module"),
    ('L', "soft lockup"),
    ('K', "live patch"),
    ('X', "auxiliary taint"),
    ('T', "struct randomization"),
    ('N', "in-kernel test"),
    ('J', "fwctl debug operation"),
];

/// Taint bits that loading any module under test sets: it is out of tree
/// and unsigned. They say nothing about the module's behaviour.
const EXPECTED_TAINT: u64 = (1 << 12) | (1 << 13);
/// `P`: a module whose licence is not GPL compatible was loaded.
pub const TAINT_PROPRIETARY: u64 = 1;
/// `N`: KUnit ran tests in the kernel (a module's suites, at load).
pub const TAINT_TEST: u64 = 1 << 18;

/// The letters of the set taint bits, in bit order (`OE`, `DOE`). Bits the
/// kernel may add later show as `?`.
pub fn taint_letters(mask: u64) -> String {
    (0..64)
        .filter(|bit| mask & (1u64 << bit) != 0)
        .map(|bit| TAINTS.get(bit).map_or('?', |(c, _)| *c))
        .collect()
}

/// A message naming the taint flags that appeared between two readings,
/// other than those any out-of-tree module sets and those in `allowed` (the
/// test's own modules explain them); `None` if there are none.
/// A new taint is how the kernel admits that something went wrong even
/// when no report reached the log.
pub fn unexpected_taint(before: u64, after: u64, allowed: u64) -> Option<String> {
    let new = after & !before & !EXPECTED_TAINT & !allowed;
    if new == 0 {
        return None;
    }
    let names: Vec<String> = (0..64)
        .filter(|bit| new & (1u64 << bit) != 0)
        .map(|bit| match TAINTS.get(bit) {
            Some((c, what)) => format!("{c} ({what})"),
            None => format!("bit {bit}"),
        })
        .collect();
    Some(format!("kernel tainted {}", names.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(log: &str) -> Vec<KernelLine> {
        log.lines().map(KernelLine::parse).collect()
    }

    fn only(log: &str) -> Crash {
        let crashes = detect(&parse(log));
        assert_eq!(
            crashes.len(),
            1,
            "{:#?}",
            crashes.iter().map(|c| &c.title).collect::<Vec<_>>()
        );
        crashes.into_iter().next().expect("one crash")
    }

    fn module_frames(c: &Crash) -> Vec<(&str, Option<u64>, &str)> {
        c.frames
            .iter()
            .filter_map(|f| Some((f.function.as_str(), f.offset, f.module.as_deref()?)))
            .collect()
    }

    // Real logs from the fixture modules on Debian's 6.1 cloud kernel.

    #[test]
    fn null_deref_in_init() {
        let c = only(include_str!("../tests/data/klog/null_init.log"));
        assert_eq!(
            c.title,
            "BUG: unable to handle kernel NULL pointer dereference in null_init_init"
        );
        assert!(c.fatal);
        assert_eq!(
            module_frames(&c),
            vec![("null_init_init", Some(0x18), "null_init")]
        );
        assert!(c.report[0].starts_with("BUG: kernel NULL pointer dereference"));
        assert!(c.report.last().unwrap().starts_with("---[ end trace"));
    }

    #[test]
    fn null_deref_in_exit() {
        let c = only(include_str!("../tests/data/klog/null_exit.log"));
        assert_eq!(
            c.title,
            "BUG: unable to handle kernel NULL pointer dereference in null_exit_exit"
        );
        assert!(c.fatal);
        assert_eq!(
            module_frames(&c),
            vec![("null_exit_exit", Some(0x13), "null_exit")]
        );
        // The call trace comes after the RIP, `?` frames are dropped.
        let names: Vec<&str> = c.frames.iter().map(|f| f.function.as_str()).collect();
        assert_eq!(
            names,
            [
                "null_exit_exit",
                "__do_sys_delete_module",
                "do_syscall_64",
                "entry_SYSCALL_64_after_hwframe"
            ]
        );
    }

    #[test]
    fn null_deref_in_proc_read() {
        let c = only(include_str!("../tests/data/klog/null_proc.log"));
        assert_eq!(
            c.title,
            "BUG: unable to handle kernel NULL pointer dereference in null_proc_read"
        );
        assert!(c.fatal);
        assert_eq!(
            module_frames(&c),
            vec![("null_proc_read", Some(0xc), "null_proc")]
        );
        assert_eq!(c.frames[1].function, "proc_reg_read");
    }

    #[test]
    fn warning_on_unload() {
        let c = only(include_str!("../tests/data/klog/warn_exit.log"));
        assert_eq!(c.title, "WARNING in warn_exit_exit");
        assert!(!c.fatal);
        assert_eq!(
            module_frames(&c),
            vec![("warn_exit_exit", Some(0xa), "warn_exit")]
        );
        assert!(c.report[0].contains("[ cut here ]"));
        assert!(c.report.last().unwrap().starts_with("---[ end trace"));
    }

    #[test]
    fn sleeping_under_spinlock() {
        let crashes = detect(&parse(include_str!("../tests/data/klog/atomic_sleep.log")));
        let titles: Vec<&str> = crashes.iter().map(|c| c.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "BUG: scheduling while atomic in atomic_sleep_init",
                // The initcall returned with preemption still disabled;
                // the kernel names it in the line before the WARNING.
                "WARNING in atomic_sleep_init",
            ]
        );
        assert!(crashes.iter().all(|c| !c.fatal));
        assert!(crashes[0].report.last().unwrap().trim() == "</TASK>");
        assert!(crashes[1].report[0].contains("[ cut here ]"));
        assert!(module_frames(&crashes[0]).contains(&(
            "atomic_sleep_init",
            Some(0x1b),
            "atomic_sleep"
        )));
    }

    #[test]
    fn soft_lockup_is_reported_once() {
        let c = only(include_str!("../tests/data/klog/loop_init.log"));
        assert_eq!(c.title, "BUG: soft lockup in loop_init_init");
        assert!(!c.fatal);
        assert_eq!(c.frames[0].function, "loop_init_init");
        assert_eq!(c.frames[0].module.as_deref(), Some("loop_init"));
        assert!(c.report.last().unwrap().trim() == "</TASK>");
    }

    #[test]
    fn panic_in_init() {
        let c = only(include_str!("../tests/data/klog/panic_init.log"));
        assert_eq!(c.title, "kernel panic: modvm fixture panic");
        assert!(c.fatal);
        assert_eq!(
            module_frames(&c),
            vec![("panic_init_init", Some(0x11), "panic_init")]
        );
        assert!(c.report.last().unwrap().starts_with("Kernel Offset:"));
    }

    #[test]
    fn clean_module_printing_bug_is_not_a_crash() {
        let lines = parse(include_str!("../tests/data/klog/clean_bug_word.log"));
        assert!(lines.iter().any(|l| l.text.contains("BUG")));
        assert!(detect(&lines).is_empty());
    }

    #[test]
    fn plain_kernel_shows_nothing_for_memory_errors() {
        // Without KASAN a small use-after-free or overflow goes unnoticed;
        // only a sanitizer kernel can catch these fixtures.
        for log in [
            include_str!("../tests/data/klog/uaf.log"),
            include_str!("../tests/data/klog/oob.log"),
        ] {
            assert!(detect(&parse(log)).is_empty());
        }
    }

    #[test]
    fn ordinary_text_is_not_a_report() {
        let log = "hello: this is not a BUG: just text\n\
                   BUG counter = 3\n\
                   WARNING: this is only a word\n\
                   my_driver: Kernel panic - not syncing: quoted\n\
                   refcount_t is fine\n\
                   UBSAN is enabled\n\
                   INFO: task list printed";
        assert!(detect(&parse(log)).is_empty());
    }

    // Hand-written reports in the kernel's documented formats, for report
    // kinds the plain cloud kernel cannot produce.

    #[test]
    fn kasan_use_after_free() {
        let c = only(include_str!("../tests/data/klog/kasan_uaf.log"));
        assert_eq!(c.title, "KASAN: use-after-free Write in bug_init");
        assert!(!c.fatal);
        // The access stack only: not the allocation or free stacks.
        assert_eq!(module_frames(&c), vec![("bug_init", Some(0x8f), "bug")]);
        assert!(c.report.first().unwrap().starts_with("====="));
        assert!(c.report.last().unwrap().starts_with("====="));
        assert!(c.report.iter().any(|l| l.starts_with("Freed by task")));
    }

    #[test]
    fn kasan_in_a_string_helper_names_the_caller() {
        let log = "==================================================================\n\
BUG: KASAN: slab-out-of-bounds in memset+0x20/0x40\n\
Write of size 101 at addr ffff888003a1c000 by task insmod/91\n\
\n\
Call Trace:\n\
 <TASK>\n\
 dump_stack_lvl+0x44/0x5c\n\
 kasan_report+0xb8/0xf0\n\
 kasan_check_range+0x3a/0x1d0\n\
 memset+0x20/0x40\n\
 oob_init+0x3b/0x1000 [oob]\n\
 do_one_initcall+0x59/0x220\n\
 </TASK>\n\
\n\
==================================================================";
        let c = only(log);
        assert_eq!(c.title, "KASAN: slab-out-of-bounds Write in oob_init");
    }

    #[test]
    fn general_protection_fault() {
        let log = "general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] PREEMPT SMP NOPTI\n\
CPU: 0 PID: 91 Comm: insmod Tainted: G           OE      6.1.0 #1\n\
RIP: 0010:gpf_init+0x12/0x1000 [gpf]\n\
Call Trace:\n\
 <TASK>\n\
 do_one_initcall+0x59/0x220\n\
 </TASK>\n\
Modules linked in: gpf(OE+)\n\
---[ end trace 0000000000000000 ]---\n\
RIP: 0010:gpf_init+0x12/0x1000 [gpf]\n\
Kernel panic - not syncing: Fatal exception";
        let c = only(log);
        assert_eq!(c.title, "general protection fault in gpf_init");
        assert!(c.fatal);
        assert_eq!(
            c.report.last().unwrap(),
            "Kernel panic - not syncing: Fatal exception"
        );
    }

    #[test]
    fn kernel_bug_at() {
        let log = "------------[ cut here ]------------\n\
kernel BUG at mod/bug_on.c:11!\n\
invalid opcode: 0000 [#1] PREEMPT SMP NOPTI\n\
CPU: 0 PID: 91 Comm: insmod Tainted: G           OE      6.1.0 #1\n\
RIP: 0010:bug_on_init+0x5/0x1000 [bug_on]\n\
Call Trace:\n\
 <TASK>\n\
 do_one_initcall+0x59/0x220\n\
 </TASK>\n\
---[ end trace 0000000000000000 ]---";
        let c = only(log);
        assert_eq!(c.title, "kernel BUG in bug_on_init");
        assert!(c.fatal);
        assert_eq!(c.report.len(), 10);
    }

    #[test]
    fn divide_error_and_page_fault() {
        let div =
            "divide error: 0000 [#1] PREEMPT SMP NOPTI\nRIP: 0010:div_init+0x9/0x1000 [div]\n";
        assert_eq!(only(div).title, "divide error in div_init");
        let pf = "BUG: unable to handle page fault for address: ffffffffc0300000\n\
#PF: supervisor write access in kernel mode\n\
Oops: 0002 [#1] PREEMPT SMP NOPTI\n\
RIP: 0010:pf_init+0x9/0x1000 [pf]\n";
        let c = only(pf);
        assert_eq!(
            c.title,
            "BUG: unable to handle kernel paging request in pf_init"
        );
        assert!(c.fatal);
    }

    #[test]
    fn sleeping_function_and_hung_task() {
        let sleep = "BUG: sleeping function called from invalid context at kernel/time/sleep_timeout.c:123\n\
in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: 91, name: insmod\n\
Call Trace:\n\
 <TASK>\n\
 dump_stack_lvl+0x44/0x5c\n\
 __might_resched.cold+0xfd/0x131\n\
 msleep+0x29/0x40\n\
 foo_init+0x1b/0x1000 [foo]\n\
 </TASK>";
        assert_eq!(
            only(sleep).title,
            "BUG: sleeping function called from invalid context in foo_init"
        );
        let hung = "INFO: task insmod:91 blocked for more than 120 seconds.\n\
      Tainted: G           OE      6.1.0 #1\n\
\"echo 0 > /proc/sys/kernel/hung_task_timeout_secs\" disables this message.\n\
task:insmod          state:D stack:0     pid:91    ppid:1      flags:0x00004000\n\
Call Trace:\n\
 <TASK>\n\
 __schedule+0x34d/0x9e0\n\
 schedule+0x5a/0xd0\n\
 schedule_preempt_disabled+0x11/0x20\n\
 __mutex_lock.constprop.0+0x399/0x700\n\
 hang_init+0x20/0x1000 [hang]\n\
 </TASK>";
        let c = only(hung);
        assert_eq!(c.title, "INFO: task hung in hang_init");
        assert!(!c.fatal);
    }

    #[test]
    fn lockdep_reports() {
        let circular = "======================================================\n\
WARNING: possible circular locking dependency detected\n\
6.1.0 #1 Tainted: G           OE\n\
------------------------------------------------------\n\
insmod/91 is trying to acquire lock:\n\
ffffffffc0302040 (lock_a){+.+.}-{3:3}, at: abba_init+0x45/0x1000 [abba]\n\
\n\
but task is already holding lock:\n\
ffffffffc0302080 (lock_b){+.+.}-{3:3}, at: abba_init+0x2d/0x1000 [abba]\n\
\n\
the existing dependency chain (in reverse order) is:\n\
\n\
-> #1 (lock_b){+.+.}-{3:3}:\n\
       lock_acquire+0xc4/0x2d0\n\
       __mutex_lock+0x8c/0x9b0\n\
       abba_init+0x20/0x1000 [abba]\n\
\n\
stack backtrace:\n\
CPU: 0 PID: 91 Comm: insmod Tainted: G           OE      6.1.0 #1\n\
Call Trace:\n\
 <TASK>\n\
 dump_stack_lvl+0x44/0x5c\n\
 check_noncircular+0xfe/0x110\n\
 __lock_acquire+0x10d5/0x1e90\n\
 lock_acquire+0xc4/0x2d0\n\
 __mutex_lock+0x8c/0x9b0\n\
 abba_init+0x45/0x1000 [abba]\n\
 do_one_initcall+0x59/0x220\n\
 </TASK>";
        let c = only(circular);
        assert_eq!(c.title, "possible deadlock in abba_init");
        assert!(!c.fatal);
        assert!(c.report[0].starts_with("====="));
        // Chain frames are context, not the stack of this report.
        assert_eq!(c.frames[0].function, "dump_stack_lvl");

        let inconsistent = "================================\n\
WARNING: inconsistent lock state\n\
--------------------------------\n\
inconsistent {SOFTIRQ-ON-W} -> {IN-SOFTIRQ-W} usage.\n\
swapper/0/0 [HC0[0]:SC1[1]:HE1:SE0] takes:\n\
ffffffffc0302040 (&lock){+.?.}-{2:2}, at: irq_timer_fn+0x15/0x40 [irqlock]\n\
stack backtrace:\n\
Call Trace:\n\
 <IRQ>\n\
 dump_stack_lvl+0x44/0x5c\n\
 </IRQ>";
        assert_eq!(
            only(inconsistent).title,
            "inconsistent lock state in irq_timer_fn"
        );

        let unlock = "=====================================\n\
WARNING: bad unlock balance detected!\n\
-------------------------------------\n\
insmod/91 is trying to release lock (my_mutex) at:\n\
[<ffffffffc0300020>] unbalanced_init+0x20/0x1000 [unbalanced]\n\
but there are no more locks to release!\n";
        assert_eq!(
            only(unlock).title,
            "WARNING: bad unlock balance in unbalanced_init"
        );
    }

    #[test]
    fn ubsan_kfence_list_and_refcount() {
        let ubsan =
            "================================================================================\n\
UBSAN: array-index-out-of-bounds in mod/idx.c:11:9\n\
index 10 is out of range for type 'int [10]'\n\
Call Trace:\n\
 <TASK>\n\
 dump_stack_lvl+0x44/0x5c\n\
 __ubsan_handle_out_of_bounds.cold+0x44/0x49\n\
 idx_init+0x31/0x1000 [idx]\n\
 </TASK>\n\
================================================================================";
        assert_eq!(
            only(ubsan).title,
            "UBSAN: array-index-out-of-bounds in idx_init"
        );

        let kfence = "==================================================================\n\
BUG: KFENCE: use-after-free read in kf_init+0x2c/0x1000 [kf]\n\
\n\
Use-after-free read at 0x000000004dde0b5e (in kfence-#42):\n\
 kf_init+0x2c/0x1000 [kf]\n\
 do_one_initcall+0x59/0x220\n\
\n\
kfence-#42: 0x000000004dde0b5e-0x00000000d1c4aa3a, size=32, cache=kmalloc-32\n\
\n\
allocated by task 91 on cpu 0 at 1.234s:\n\
 kmalloc_trace+0x26/0x90\n\
 kf_init+0x15/0x1000 [kf]\n\
==================================================================";
        let c = only(kfence);
        assert_eq!(c.title, "KFENCE: use-after-free read in kf_init");
        assert_eq!(module_frames(&c), vec![("kf_init", Some(0x2c), "kf")]);

        let list =
            "list_del corruption, ffff888003a1c000->next is LIST_POISON1 (dead000000000100)\n\
------------[ cut here ]------------\n\
kernel BUG at lib/list_debug.c:56!\n\
invalid opcode: 0000 [#1] PREEMPT SMP NOPTI\n\
RIP: 0010:__list_del_entry_valid.cold+0x1d/0x47\n\
Call Trace:\n\
 <TASK>\n\
 ld_exit+0x1d/0x30 [ld]\n\
 </TASK>\n\
---[ end trace 0000000000000000 ]---";
        let c = only(list);
        assert_eq!(c.title, "BUG: corrupted list in ld_exit");
        assert!(c.fatal);

        let refcount = "------------[ cut here ]------------\n\
refcount_t: underflow; use-after-free.\n\
WARNING: CPU: 0 PID: 91 at lib/refcount.c:28 refcount_warn_saturate+0xba/0x110\n\
RIP: 0010:refcount_warn_saturate+0xba/0x110\n\
Call Trace:\n\
 <TASK>\n\
 rc_init+0x2f/0x1000 [rc]\n\
 </TASK>\n\
---[ end trace 0000000000000000 ]---";
        let c = only(refcount);
        assert_eq!(c.title, "refcount bug in rc_init");
        assert!(!c.fatal);
        assert!(c.report[0].contains("cut here"));
    }

    #[test]
    fn rcu_stall_ignores_the_timer_interrupt() {
        let log = "rcu: INFO: rcu_preempt self-detected stall on CPU\n\
rcu: \t0-....: (2099 ticks this GP) idle=9fc/1/0x4000000000000000 softirq=1/1 fqs=0\n\
\t(t=2100 jiffies g=1 q=1 ncpus=1)\n\
CPU: 0 PID: 91 Comm: insmod Tainted: G           OE      6.1.0 #1\n\
RIP: 0010:spin_init+0x24/0x1000 [spin]\n\
Call Trace:\n\
 <IRQ>\n\
 rcu_dump_cpu_stacks+0xa0/0xd0\n\
 rcu_sched_clock_irq.cold+0x1f/0x2e0\n\
 update_process_times+0x8c/0xb0\n\
 </IRQ>\n\
 <TASK>\n\
 spin_init+0x24/0x1000 [spin]\n\
 do_one_initcall+0x59/0x220\n\
 </TASK>";
        let c = only(log);
        assert_eq!(c.title, "INFO: rcu detected stall in spin_init");
    }

    #[test]
    fn panic_on_warn_stays_the_warning() {
        let log = "------------[ cut here ]------------\n\
WARNING: CPU: 0 PID: 97 at mod/w.c:20 w_exit+0xa/0x1000 [w]\n\
Modules linked in: w(OE-)\n\
Kernel panic - not syncing: kernel: panic_on_warn set ...\n\
CPU: 0 PID: 97 Comm: rmmod Tainted: G           OE      6.1.0 #1\n\
Call Trace:\n\
 <TASK>\n\
 dump_stack_lvl+0x44/0x5c\n\
 panic+0x118/0x2f4\n\
 check_panic_on_warn.cold+0x1e/0x1e\n\
 __warn+0x5a/0x150\n\
 w_exit+0xa/0x1000 [w]\n\
 </TASK>\n\
Kernel Offset: 0x2800000 from 0xffffffff81000000";
        let c = only(log);
        assert_eq!(c.title, "WARNING in w_exit");
        assert!(c.fatal);
    }

    #[test]
    fn two_reports_are_cut_apart() {
        let mut lines = parse(include_str!("../tests/data/klog/warn_exit.log"));
        lines.extend(parse(include_str!("../tests/data/klog/null_exit.log")));
        let crashes = detect(&lines);
        let titles: Vec<&str> = crashes.iter().map(|c| c.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "WARNING in warn_exit_exit",
                "BUG: unable to handle kernel NULL pointer dereference in null_exit_exit"
            ]
        );
    }

    #[test]
    fn reports_are_bounded() {
        let mut log =
            String::from("WARNING: CPU: 0 PID: 1 at a.c:1 f+0x1/0x2\nCall Trace:\n <TASK>\n");
        for _ in 0..2000 {
            log.push_str(" g+0x1/0x2\n");
        }
        let c = only(&log);
        assert_eq!(c.report.len(), MAX_REPORT_LINES);
    }

    // Real logs of the fixture modules on the debug kernel
    // (images/kernels/debug.config): what the sanitizers really print.

    fn titles(log: &str) -> Vec<String> {
        detect(&parse(log)).into_iter().map(|c| c.title).collect()
    }

    #[test]
    fn debug_kernel_kasan() {
        let c = only(include_str!("../tests/data/klog/debug_uaf.log"));
        assert_eq!(c.title, "KASAN: use-after-free Write in uaf_init");
        assert!(!c.fatal);
        assert_eq!(module_frames(&c)[0].0, "uaf_init");
        let c = only(include_str!("../tests/data/klog/debug_oob.log"));
        assert_eq!(c.title, "KASAN: slab-out-of-bounds Write in oob_init");
    }

    #[test]
    fn debug_kernel_lockdep_inversion() {
        let c = only(include_str!("../tests/data/klog/debug_lockinv.log"));
        assert_eq!(c.title, "possible deadlock in lockinv_init");
        assert!(!c.fatal);
    }

    #[test]
    fn debug_kernel_sleep_under_spinlock() {
        assert_eq!(
            titles(include_str!("../tests/data/klog/debug_atomic_sleep.log")),
            [
                "BUG: scheduling while atomic in atomic_sleep_init",
                "WARNING in atomic_sleep_init"
            ]
        );
    }

    #[test]
    fn debug_kernel_list_corruption() {
        let c = only(include_str!("../tests/data/klog/debug_list_corrupt.log"));
        assert_eq!(c.title, "BUG: corrupted list in list_corrupt_init");
        // Without BUG_ON_DATA_CORRUPTION the kernel warns and goes on.
        assert!(!c.fatal);
        assert!(c.report[0].contains("cut here"));
    }

    #[test]
    fn debug_kernel_ubsan_bounds() {
        let c = only(include_str!("../tests/data/klog/debug_ubsan_idx.log"));
        assert_eq!(
            c.title,
            "UBSAN: array-index-out-of-bounds in ubsan_idx_init"
        );
    }

    #[test]
    fn debug_kernel_kfence() {
        let c = only(include_str!("../tests/data/klog/debug_kfence_uaf.log"));
        assert_eq!(c.title, "KFENCE: use-after-free read in kfence_uaf_init");
        assert_eq!(module_frames(&c)[0].0, "kfence_uaf_init");
    }

    #[test]
    fn debug_kernel_boot_is_not_a_crash() {
        let log = include_str!("../tests/data/klog/debug_boot.log");
        assert!(log.contains("KernelAddressSanitizer initialized"));
        assert!(detect(&parse(log)).is_empty(), "{:?}", titles(log));
    }

    #[test]
    fn kmemleak_report_of_the_module() {
        let lines = parse(include_str!("../tests/data/klog/debug_leak.log"));
        // Not a crash on its own: only a leak of a module under test counts.
        assert!(detect(&lines).is_empty());
        let leaks = detect_leaks(&lines, &["leak"], &|_| None);
        assert_eq!(leaks.len(), 1);
        let c = &leaks[0];
        assert_eq!(c.title, "memory leak in leak_alloc");
        assert!(!c.fatal);
        assert!(c.report[0].starts_with("unreferenced object 0x"));
        assert!(c.report.last().unwrap().contains("entry_SYSCALL_64"));
        assert_eq!(module_frames(c), vec![("leak_alloc", Some(0x3c), "leak")]);
        assert!(detect_leaks(&lines, &["other"], &|_| None).is_empty());
    }

    #[test]
    fn kmemleak_debugfs_form_and_names() {
        // The debugfs file prints the same block without the prefix, and
        // after rmmod the module's frames lose their names.
        let log = [
            "unreferenced object 0xffff8880037fd800 (size 128):",
            "  comm \"insmod\", pid 45, jiffies 4294893271",
            "  hex dump (first 32 bytes):",
            "    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................",
            "  backtrace:",
            "    [<(____ptrval____)>] kmalloc_trace+0x1f/0x53",
            "    [<(____ptrval____)>] my_alloc.constprop.0+0x3c/0x46 [my_mod]",
            "    [<(____ptrval____)>] do_one_initcall+0xf7/0x246",
            "unreferenced object 0xffff8880037fd900 (size 64):",
            "  backtrace:",
            "    [<(____ptrval____)>] kmalloc_trace+0x1f/0x53",
            "    [<(____ptrval____)>] 0xffffffffa000003d",
            "    [<(____ptrval____)>] do_one_initcall+0xf7/0x246",
            "unreferenced object 0xffff8880037fda00 (size 64):",
            "  backtrace:",
            "    [<(____ptrval____)>] kmalloc_trace+0x1f/0x53",
            "    [<(____ptrval____)>] my_alloc+0x3c/0x46 [my_mod]",
        ]
        .join("\n");
        let leaks = detect_leaks(&parse(&log), &["my-mod"], &|_| None);
        let titles: Vec<&str> = leaks.iter().map(|c| c.title.as_str()).collect();
        assert_eq!(titles, ["memory leak in my_alloc"]);
        assert_eq!(leaks[0].report.len(), 8);
        // Where the module lay is known: the bare address is its __init code.
        let place = |a: u64| {
            (a == 0xffff_ffff_a000_003d).then(|| Frame {
                function: "my_init".into(),
                offset: Some(0x3d),
                module: Some("my_mod".into()),
                file: None,
                line: None,
            })
        };
        let leaks = detect_leaks(&parse(&log), &["my-mod"], &place);
        let titles: Vec<&str> = leaks.iter().map(|c| c.title.as_str()).collect();
        assert_eq!(
            titles,
            ["memory leak in my_alloc", "memory leak in my_init"]
        );
    }

    #[test]
    fn frames_parse_all_styles() {
        assert_eq!(
            parse_trace_line(" hello_exit+0xa/0xff0 [hello]"),
            Some((
                Frame {
                    function: "hello_exit".into(),
                    offset: Some(0xa),
                    module: Some("hello".into()),
                    file: None,
                    line: None,
                },
                true
            ))
        );
        let (f, reliable) = parse_trace_line(" ? foo+0x1/0x2").unwrap();
        assert_eq!(
            (f.function.as_str(), f.offset, reliable),
            ("foo", Some(1), false)
        );
        let (f, _) =
            parse_trace_line(" [<ffffffff81234567>] bar.isra.0+0x10/0x20 [m 1234abcd]").unwrap();
        assert_eq!(f.function, "bar.isra.0");
        assert_eq!(f.module.as_deref(), Some("m"));
        assert_eq!(parse_trace_line(" ? 0xffffffffc0446000"), None);
        let rip = parse_rip("RIP: 0010:hello_init+0x15/0x30 [hello]").unwrap();
        assert_eq!(
            (rip.function.as_str(), rip.offset),
            ("hello_init", Some(0x15))
        );
        assert_eq!(parse_rip("RIP: 0033:0x47fbe9"), None);
    }

    #[test]
    fn taint_letters_follow_bit_order() {
        assert_eq!(taint_letters(0), "");
        assert_eq!(taint_letters((1 << 12) | (1 << 13)), "OE");
        assert_eq!(taint_letters((1 << 7) | (1 << 9) | (1 << 12)), "DWO");
        assert_eq!(taint_letters(1 | (1 << 14) | (1 << 18)), "PLN");
        assert_eq!(taint_letters(1 << 40), "?");
    }

    #[test]
    fn unexpected_taint_ignores_module_flags() {
        let oe = (1 << 12) | (1 << 13);
        assert_eq!(unexpected_taint(0, oe, 0), None);
        assert_eq!(unexpected_taint(0, oe | 1, TAINT_PROPRIETARY), None);
        assert_eq!(taint_letters(TAINT_TEST), "N");
        assert_eq!(unexpected_taint(0, oe | TAINT_TEST, TAINT_TEST), None);
        assert!(unexpected_taint(0, oe | 1, 0).is_some());
        assert_eq!(unexpected_taint(1 << 9, (1 << 9) | oe, 0), None);
        assert_eq!(
            unexpected_taint(0, (1 << 7) | (1 << 9) | oe, 0).as_deref(),
            Some("kernel tainted D (oops), W (warning)")
        );
        assert_eq!(
            unexpected_taint(oe, oe | (1 << 14), 0).as_deref(),
            Some("kernel tainted L (soft lockup)")
        );
    }
}
