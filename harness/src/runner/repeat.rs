//! `--repeat N`: a test run N times, each on a fresh guest, reported as
//! one result with counts. Races and ordering bugs show up in some runs
//! only (more so with `--smp`); unlike a spec's `repeat`, which loops the
//! steps inside one guest, every run here starts from the same saved
//! state, so one run's damage cannot mask or cause another's failure.

use super::spare::Spare;
use super::{run_guest, PlannedTest, RunConfig};
use crate::guest::launcher::Start;
use crate::outcome::{CaseResult, Reporter, Status, TestId, TestResult};
use std::path::Path;
use std::time::Instant;

pub(super) fn run(
    config: &RunConfig,
    test: &PlannedTest,
    id: TestId,
    spare: &Spare,
    reporter: &mut dyn Reporter,
    dir: &Path,
) -> TestResult {
    let started = Instant::now();
    let runs = config.runs;
    let name = test.name();
    let kept: std::sync::Mutex<Option<(u32, TestResult)>> = std::sync::Mutex::new(None);
    let cases = super::fan_out::fan_out(runs, spare, (id, &name, "run"), reporter, &|n| {
        let run_dir = dir.join("runs").join(n.to_string());
        let r = run_guest(
            config,
            test,
            &run_dir,
            id,
            &mut super::Quiet,
            None,
            &mut |_, _| {},
        );
        // A pass says how its guest started, so that a restore that fell
        // back to a boot shows.
        let started = match (r.guest, r.boot_ms) {
            (Some(Start::Restored), Some(ms)) => Some(format!("restored in {ms} ms")),
            (Some(Start::Booted), Some(ms)) => Some(format!("booted in {ms} ms")),
            _ => None,
        };
        let case = CaseResult {
            name: format!("run {n}"),
            status: r.status,
            message: r.message.clone().or(started),
            location: r
                .crash
                .as_ref()
                .and_then(|c| {
                    c.frames
                        .iter()
                        .find(|f| f.file.is_some() && f.module.is_some())
                })
                .and_then(|f| f.location()),
            crash: r.crash.clone(),
            cases: Vec::new(),
        };
        // The result the test reports its steps from: the lowest-numbered
        // run that failed, else the lowest-numbered run (runs end in any
        // order).
        let mut slot = kept.lock().unwrap_or_else(|e| e.into_inner());
        let rank = |n: u32, r: &TestResult| (r.status == Status::Pass, n);
        if slot
            .as_ref()
            .is_none_or(|(k, kr)| rank(n, &r) < rank(*k, kr))
        {
            *slot = Some((n, r));
        }
        case
    });
    let mut result = match kept.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some((_, r)) => r,
        None => super::empty_result(config, test, dir),
    };
    summarise(&mut result, cases, runs);
    result.duration_ms = started.elapsed().as_millis() as u64;
    result
}

/// The test's verdict from its runs: a pass only when every run passed.
fn summarise(result: &mut TestResult, cases: Vec<CaseResult>, runs: u32) {
    let failed: Vec<&CaseResult> = cases.iter().filter(|c| c.status != Status::Pass).collect();
    let ran = cases.len();
    match failed.first() {
        Some(c) => {
            result.status = c.status;
            result.crash = c.crash.clone();
            result.message = Some(format!(
                "{} of {ran} runs did not pass; first, {}: {}",
                failed.len(),
                c.name,
                c.message.as_deref().unwrap_or(c.status.label())
            ));
        }
        None if ran < runs as usize => {
            result.status = Status::Error;
            result.message = Some(format!("interrupted after {ran} of {runs} runs"));
        }
        None => {
            result.status = Status::Pass;
            result.message = Some(format!("passed all {runs} runs"));
        }
    }
    result.cases.extend(cases);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(n: u32, status: Status) -> CaseResult {
        CaseResult {
            name: format!("run {n}"),
            status,
            message: (status != Status::Pass).then(|| "WARNING in racy_exit".into()),
            location: None,
            crash: None,
            cases: Vec::new(),
        }
    }

    fn result() -> TestResult {
        TestResult::not_run("s/t".into(), "k".into(), Default::default(), "")
    }

    #[test]
    fn counts_and_the_first_failure() {
        let mut r = result();
        let cases = vec![
            case(1, Status::Pass),
            case(2, Status::Crash),
            case(3, Status::Fail),
        ];
        summarise(&mut r, cases, 3);
        assert_eq!(r.status, Status::Crash);
        assert_eq!(
            r.message.as_deref(),
            Some("2 of 3 runs did not pass; first, run 2: WARNING in racy_exit")
        );
        assert_eq!(r.cases.len(), 3);
        let mut r = result();
        summarise(&mut r, vec![case(1, Status::Pass)], 1);
        assert_eq!(
            (r.status, r.message.as_deref()),
            (Status::Pass, Some("passed all 1 runs"))
        );
        let mut r = result();
        summarise(&mut r, vec![case(1, Status::Pass)], 4);
        assert_eq!(r.status, Status::Error);
    }
}
