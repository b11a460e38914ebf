//! A test's independent runs (fault points, `--repeat`), each on a fresh
//! guest: on the test's own worker thread, and on one more thread for
//! every guest slot of the run that is free (`spare`). Each thread starts
//! and stops its own guests (see `schedule` for why that matters).

use super::spare::Spare;
use crate::outcome::{CaseResult, Event, Reporter, TestId};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// Runs `run(1..=count)`; results in that order. Fewer come back when the
/// user interrupts the run. The test's live line (`id`, `name`) says
/// which `what` (fault, run) the calling thread starts and how many ended.
pub(super) fn fan_out(
    count: u32,
    spare: &Spare,
    (id, name, what): (TestId, &str, &str),
    reporter: &mut dyn Reporter,
    run: &(dyn Fn(u32) -> CaseResult + Sync),
) -> Vec<CaseResult> {
    let next = AtomicU32::new(1);
    let done: Mutex<Vec<(u32, CaseResult)>> = Mutex::new(Vec::new());
    let take = || {
        let n = next.fetch_add(1, Ordering::SeqCst);
        (n <= count && !crate::children::interrupted()).then_some(n)
    };
    let one = |n: u32| {
        let case = run(n);
        done.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((n, case));
    };
    std::thread::scope(|scope| {
        while let Some(n) = take() {
            while next.load(Ordering::SeqCst) <= count && spare.try_take() {
                scope.spawn(|| {
                    while let Some(n) = take() {
                        one(n);
                    }
                    spare.give();
                });
            }
            let finished = done.lock().map(|d| d.len()).unwrap_or(0);
            reporter.event(&Event::StepStarted {
                id,
                name,
                index: 0,
                description: &format!("{what} {n} of {count} ({finished} done)"),
            });
            one(n);
        }
    });
    let mut cases = done.into_inner().unwrap_or_else(|e| e.into_inner());
    cases.sort_by_key(|(n, _)| *n);
    cases.into_iter().map(|(_, c)| c).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Status;

    fn case(n: u32) -> CaseResult {
        CaseResult {
            name: n.to_string(),
            status: Status::Pass,
            message: None,
            location: None,
            crash: None,
            cases: Vec::new(),
        }
    }

    struct Counted(usize);

    impl Reporter for Counted {
        fn event(&mut self, _: &Event<'_>) {
            self.0 += 1;
        }
    }

    #[test]
    fn every_run_once_in_order_on_the_free_slots() {
        let spare = Spare::new(3);
        let mut started = Counted(0);
        let ran = fan_out(50, &spare, (0, "t", "run"), &mut started, &|n| {
            std::thread::sleep(std::time::Duration::from_millis(2));
            case(n)
        });
        let names: Vec<String> = ran.iter().map(|c| c.name.clone()).collect();
        let want: Vec<String> = (1..=50).map(|n| n.to_string()).collect();
        assert_eq!(names, want);
        // The borrowed slots are back.
        assert!(spare.try_take() && spare.try_take() && spare.try_take());
        assert!(!spare.try_take());
        assert!(started.0 > 0);
    }

    #[test]
    fn nothing_to_run() {
        let mut events = Counted(0);
        assert!(fan_out(0, &Spare::new(2), (0, "t", "run"), &mut events, &case).is_empty());
        assert_eq!(events.0, 0);
    }
}
