//! Placeholder until the full detector lands: recognises only the report
//! headers needed by the runner's control flow.

use crate::klog::KernelLine;
use crate::outcome::Crash;

pub fn detect(lines: &[KernelLine]) -> Vec<Crash> {
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.text.as_str();
        if t.starts_with("BUG: ")
            || t.starts_with("Kernel panic - not syncing")
            || t.starts_with("WARNING: CPU:")
            || t.starts_with("general protection fault")
        {
            out.push(Crash {
                title: t.to_string(),
                report: lines[i..].iter().take(40).map(|l| l.text.clone()).collect(),
                frames: Vec::new(),
                fatal: !t.starts_with("WARNING"),
            });
        }
    }
    out
}

pub fn taint_letters(mask: u64) -> String {
    format!("{mask:#x}")
}

pub fn unexpected_taint(before: u64, after: u64) -> Option<String> {
    let new = after & !before & !((1 << 12) | (1 << 13));
    (new != 0).then(|| format!("kernel tainted {}", taint_letters(new)))
}
