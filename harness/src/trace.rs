//! Where a run's time goes, for performance work: with `MODVM_TRACE=1` in
//! the environment, every [`span`] prints `modvm-trace <name> <ms>` on
//! stderr when it ends (`scripts/bench.sh` collects these lines for
//! `docs/performance.md`). Without it a span costs one relaxed load.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

static STATE: AtomicU8 = AtomicU8::new(0);

fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        0 => {
            let on = std::env::var_os("MODVM_TRACE").is_some_and(|v| v == "1");
            STATE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
        s => s == 2,
    }
}

/// Times the scope it lives in.
pub struct Span {
    name: &'static str,
    started: Option<Instant>,
}

/// Starts timing `name`.
pub fn span(name: &'static str) -> Span {
    Span {
        name,
        started: enabled().then(Instant::now),
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(t) = self.started {
            eprintln!(
                "modvm-trace {} {:.1}",
                self.name,
                t.elapsed().as_secs_f64() * 1000.0
            );
        }
    }
}
