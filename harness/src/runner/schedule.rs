//! Runs a run's tests on several guests at once and reports them in plan
//! order.
//!
//! Every test of the run, kernel by kernel in plan order, gets an id (its
//! place in that order). `jobs` worker threads take the next id from a
//! shared counter and run that test with [`run_test`]; what happens is
//! sent, as owned messages carrying the id, over one channel to the thread
//! that called [`run`], which alone talks to the reporters. Live events
//! (started, booted, step) are passed on as they come; a finished result
//! is held back until every earlier id has been reported, so reports list
//! tests in plan order whichever guest finished first.
//!
//! A worker owns every guest it starts, from spawn to drop: QEMU is armed
//! with `PR_SET_PDEATHSIG` (`children::arm`), which the kernel fires when
//! the *thread* that spawned it exits, not the process. A guest must
//! therefore never be handed to another thread, and a worker must not
//! return while a guest it spawned is still wanted; `run_test` boots and
//! drops its guest on the calling thread, and a worker returns only between
//! tests.

use super::spare::Spare;
use super::{mark_interrupted, run_test, KernelRun, PlannedTest, RunConfig};
use crate::children;
use crate::outcome::{Event, Reporter, Summary, TestId, TestResult};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::time::{Duration, Instant};

/// What a worker tells the reporting thread; owned, to cross threads.
enum Message {
    Started {
        id: TestId,
        name: String,
    },
    Booted {
        id: TestId,
        name: String,
        boot: Duration,
    },
    Step {
        id: TestId,
        name: String,
        index: usize,
        description: String,
    },
    Finished {
        id: TestId,
        result: Box<TestResult>,
    },
}

/// Runs every test of `kernels` on at most `jobs` guests at a time.
pub fn run(
    kernels: &[KernelRun],
    artifacts: &Path,
    jobs: usize,
    reporter: &mut dyn Reporter,
) -> Summary {
    let started = Instant::now();
    let names: Vec<&str> = kernels
        .iter()
        .map(|k| k.config.kernel_name.as_str())
        .collect();
    let mut accels: Vec<String> = kernels
        .iter()
        .map(|k| k.config.qemu.accel.to_string())
        .collect();
    accels.dedup();
    let mut order = InOrder::default();
    let mut runnable = Vec::new();
    for k in kernels {
        // A module that did not build for this kernel has its results
        // already; they keep their place in the order.
        for result in &k.unbuilt {
            order.reserve(Some(result.clone()));
        }
        for test in &k.tests {
            runnable.push((order.reserve(None), &k.config, test));
        }
    }
    reporter.event(&Event::RunStarted {
        tests: order.len(),
        kernels: kernels.len(),
        kernel: &names.join(", "),
        accel: &accels.join(", "),
        artifacts,
    });
    let mut summary = Summary::default();
    let mut release = |reporter: &mut dyn Reporter, done: Vec<(TestId, TestResult)>| {
        for (id, result) in done {
            summary.add(result.status);
            reporter.event(&Event::TestFinished {
                id,
                result: &result,
            });
        }
    };
    release(reporter, order.ready());

    let next = AtomicUsize::new(0);
    let workers = jobs.clamp(1, runnable.len().max(1));
    let spare = Spare::new(jobs.saturating_sub(workers));
    std::thread::scope(|scope| {
        let (tx, rx) = channel();
        if !runnable.is_empty() {
            for _ in 0..workers {
                let tx = tx.clone();
                let (runnable, next, spare) = (&runnable, &next, &spare);
                scope.spawn(move || {
                    work(runnable, next, spare, tx);
                    spare.give();
                });
            }
        }
        // The channel ends when the last worker has returned.
        drop(tx);
        for message in rx {
            match message {
                Message::Started { id, name } => {
                    reporter.event(&Event::TestStarted { id, name: &name })
                }
                Message::Booted { id, name, boot } => reporter.event(&Event::Booted {
                    id,
                    name: &name,
                    boot,
                }),
                Message::Step {
                    id,
                    name,
                    index,
                    description,
                } => reporter.event(&Event::StepStarted {
                    id,
                    name: &name,
                    index,
                    description: &description,
                }),
                Message::Finished { id, result } => {
                    reporter.event(&Event::TestEnded { id });
                    release(reporter, order.put(id, *result));
                }
            }
        }
    });
    summary.interrupted = children::interrupted();
    summary.duration_ms = started.elapsed().as_millis() as u64;
    let _t = crate::trace::span("report");
    reporter.event(&Event::RunFinished(&summary));
    summary
}

/// One worker: takes the next test until none is left. Every guest it
/// boots lives and dies inside `run_test` on this thread (see the module
/// doc for why that matters).
fn work(
    tests: &[(TestId, &RunConfig, &PlannedTest)],
    next: &AtomicUsize,
    spare: &Spare,
    tx: Sender<Message>,
) {
    let mut forward = Forward { tx: tx.clone() };
    while let Some(&(id, config, test)) = tests.get(next.fetch_add(1, Ordering::SeqCst)) {
        let result = if children::interrupted() {
            // Listed, not left out: a report must name every planned test.
            TestResult::not_run(
                test.name(),
                config.profile.clone(),
                PathBuf::new(),
                "the run was interrupted",
            )
        } else {
            let _t = crate::trace::span("test");
            let mut result = run_test(config, test, id, spare, &mut forward);
            if children::interrupted() {
                mark_interrupted(&mut result);
            }
            result
        };
        let finished = Message::Finished {
            id,
            result: Box::new(result),
        };
        if tx.send(finished).is_err() {
            return;
        }
    }
}

/// `run_test`'s live events, turned into messages for the reporting thread.
struct Forward {
    tx: Sender<Message>,
}

impl Reporter for Forward {
    fn event(&mut self, event: &Event<'_>) {
        let message = match *event {
            Event::TestStarted { id, name } => Message::Started {
                id,
                name: name.into(),
            },
            Event::Booted { id, name, boot } => Message::Booted {
                id,
                name: name.into(),
                boot,
            },
            Event::StepStarted {
                id,
                name,
                index,
                description,
            } => Message::Step {
                id,
                name: name.into(),
                index,
                description: description.into(),
            },
            // Results travel as `Message::Finished`; the rest belongs to
            // the reporting thread.
            _ => return,
        };
        // The reporting thread outlives the workers (thread::scope).
        let _ = self.tx.send(message);
    }
}

/// Results by id, released only as an unbroken run from the first id not
/// yet released.
#[derive(Debug)]
struct InOrder<T> {
    slots: Vec<Option<T>>,
    next: usize,
}

impl<T> Default for InOrder<T> {
    fn default() -> Self {
        InOrder {
            slots: Vec::new(),
            next: 0,
        }
    }
}

impl<T> InOrder<T> {
    /// The next id, with its item when it is known already.
    fn reserve(&mut self, item: Option<T>) -> TestId {
        self.slots.push(item);
        self.slots.len() - 1
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    /// Records `id`'s item and returns every item that may now be
    /// released, in order.
    fn put(&mut self, id: TestId, item: T) -> Vec<(TestId, T)> {
        if let Some(slot) = self.slots.get_mut(id) {
            *slot = Some(item);
        }
        self.ready()
    }

    /// The items from the first unreleased id up to the first gap.
    fn ready(&mut self) -> Vec<(TestId, T)> {
        let mut out = Vec::new();
        while let Some(item) = self.slots.get_mut(self.next).and_then(Option::take) {
            out.push((self.next, item));
            self.next += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids<T>(v: Vec<(TestId, T)>) -> Vec<TestId> {
        v.into_iter().map(|(id, _)| id).collect()
    }

    #[test]
    fn results_are_held_until_every_earlier_one_is_in() {
        let mut o = InOrder::default();
        for _ in 0..4 {
            o.reserve(None);
        }
        assert_eq!(ids(o.put(2, "c")), Vec::<TestId>::new());
        assert_eq!(ids(o.put(1, "b")), Vec::<TestId>::new());
        assert_eq!(ids(o.put(0, "a")), vec![0, 1, 2]);
        assert_eq!(o.put(3, "d"), vec![(3, "d")]);
        assert!(o.ready().is_empty(), "nothing is released twice");
    }

    #[test]
    fn known_results_keep_their_place() {
        let mut o = InOrder::default();
        assert_eq!(o.reserve(Some("unbuilt")), 0);
        assert_eq!(o.reserve(None), 1);
        assert_eq!(o.reserve(Some("unbuilt too")), 2);
        assert_eq!(o.ready(), vec![(0, "unbuilt")]);
        assert_eq!(o.put(1, "ran"), vec![(1, "ran"), (2, "unbuilt too")]);
        assert_eq!(o.len(), 3);
    }

    #[test]
    fn an_id_out_of_range_is_ignored() {
        let mut o: InOrder<&str> = InOrder::default();
        o.reserve(None);
        assert!(o.put(5, "x").is_empty());
        assert_eq!(o.put(0, "a"), vec![(0, "a")]);
    }
}
