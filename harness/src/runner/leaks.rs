//! Memory leaks of the modules under test, from kmemleak on kernels that
//! have it (the `debug` profile).
//!
//! Only kernels configured with kmemleak pay for this (the kit's `.config`
//! says). At the start of a test kmemleak forgets what the kernel itself leaked
//! during boot (`clear`); after each `rmmod` it scans twice (it reports an
//! object only when it was unchanged across two scans) and its report is
//! read. Only leaks whose allocation backtrace has a frame in one of the
//! test's modules count. The scan runs once the module is gone, so that
//! what its exit function allocated or failed to free is seen too; the
//! frames it printed as bare addresses are named from where the module lay
//! (`placement`), recorded after its `insmod`.

use crate::crash;
use crate::guest::exec::Ended;
use crate::guest::Guest;
use crate::klog::KernelLine;
use crate::outcome::Crash;
use crate::placement::Placement;
use std::time::{Duration, Instant};

const KMEMLEAK: &str = "/sys/kernel/debug/kmemleak";
/// Two scans take about 5 s under TCG on the debug kernel.
const SCAN_DEADLINE: Duration = Duration::from_secs(60);

/// Clears kmemleak's findings so far; false when the kernel has none.
pub fn start(guest: &mut Guest) -> bool {
    let command = format!("[ -w {KMEMLEAK} ] && echo clear > {KMEMLEAK} && echo kmemleak-on");
    quietly(guest, "kmemleak-clear", &command, Duration::from_secs(10))
        .is_some_and(|output| output.contains("kmemleak-on"))
}

/// The leaks of `modules` kmemleak finds now (kernel names, as `lsmod`
/// shows them); the findings are cleared after reading.
pub fn scan(guest: &mut Guest, modules: &[String], placed: &[Placement]) -> Vec<Crash> {
    let command = format!(
        "echo scan > {KMEMLEAK}; echo scan > {KMEMLEAK}; cat {KMEMLEAK}; echo clear > {KMEMLEAK}"
    );
    let Some(output) = quietly(guest, "kmemleak-scan", &command, SCAN_DEADLINE) else {
        return Vec::new();
    };
    let lines: Vec<KernelLine> = output.lines().map(KernelLine::parse).collect();
    let names: Vec<&str> = modules.iter().map(String::as_str).collect();
    crash::detect_leaks(&lines, &names, &|a| crate::placement::resolve(placed, a))
}

/// Runs a command of modvm's own (not a step of the spec) and returns its
/// output; `None` when it did not finish, which the step that follows
/// will then report.
fn quietly(guest: &mut Guest, id: &str, command: &str, timeout: Duration) -> Option<String> {
    let capture = guest.exec(id, command, Instant::now() + timeout, &mut |_| {});
    matches!(capture.ended, Ended::Finished { .. }).then_some(capture.output)
}
