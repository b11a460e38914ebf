//! A test under fault injection (`--faults`, a spec's `faults`): run once
//! with the helper counting the allocations of the target module's init,
//! then once per allocation, each in a fresh guest, with that allocation
//! failed (see `crate::faults`).
//!
//! Each point must end cleanly: `insmod` fails with an errno and leaves
//! no crash, warning or leak behind once the module is gone, or init
//! absorbs the failure and the rest of the test passes. Every point is a
//! case of the test's result; the test fails with the first point that
//! did not end cleanly, titled with its crash or leak and located at the
//! allocation that was failed.

use super::spare::Spare;
use super::{empty_result, leaks, run_guest, PlannedTest, RunConfig};
use crate::faults::{self, Report};
use crate::outcome::{CaseResult, Crash, Reporter, Status, TestId, TestResult};
use crate::spec::{Action, ExitExpect, Origin, Step};
use std::path::Path;
use std::time::Instant;

/// Most points one test tries: each costs a guest, and a module whose
/// init makes more allocations than this is tested on its first ones.
const MAX_POINTS: u32 = 1000;

pub(super) fn run(
    config: &RunConfig,
    test: &PlannedTest,
    id: TestId,
    spare: &Spare,
    reporter: &mut dyn Reporter,
    dir: &Path,
) -> TestResult {
    let started = Instant::now();
    if let Some(why) = &config.faults.unsupported {
        let mut r = empty_result(config, test, dir);
        r.status = Status::Skip;
        r.message = Some(why.clone());
        return r;
    }
    let (index, module) = match target(test) {
        Ok(t) => t,
        Err(why) => {
            let mut r = empty_result(config, test, dir);
            r.message = Some(why);
            return r;
        }
    };
    // The count run: the test as written, with the helper counting.
    let mut base = run_guest(
        config,
        &armed(test, index, &module, 0),
        dir,
        id,
        reporter,
        None,
        &mut |_, _| {},
    );
    if base.status != Status::Pass {
        let why = base.message.take().unwrap_or_default();
        base.message = Some(format!(
            "{why} (faults were not injected: the test must pass without them first)"
        ));
        return base;
    }
    let counted = helper_report(&base, index).counted;
    let Some(count) = counted else {
        base.status = Status::Error;
        base.message = Some(format!(
            "the fault-injection helper did not report on {module}'s init (is it the module's kernel name, and has it an init function?)"
        ));
        return base;
    };
    let tried = count.min(MAX_POINTS);
    let name = test.name();
    let cases = super::fan_out::fan_out(tried, spare, (id, &name, "fault"), reporter, &|n| {
        point(config, test, id, dir, index, &module, n)
    });
    base.cases.extend(cases);
    conclude(&mut base, &module, count, tried);
    base.duration_ms = started.elapsed().as_millis() as u64;
    base
}

/// The `insmod` to inject into: its position in the steps and the
/// module's kernel name.
fn target(test: &PlannedTest) -> Result<(usize, String), String> {
    if test.spec.expect_crash.is_some() {
        return Err(
            "fault injection needs a test that passes without crashing; this one has `expect_crash`".into(),
        );
    }
    let own = crate::kbuild::module_names(&test.modules);
    let wanted = test
        .spec
        .faults
        .as_ref()
        .and_then(|f| f.module.as_deref())
        .map(crate::kbuild::module_name);
    test.spec
        .steps
        .iter()
        .enumerate()
        .find_map(|(i, s)| match &s.action {
            Action::Insmod(load) if s.exit == ExitExpect::Status(0) => {
                let name = crate::kbuild::module_name(&load.name);
                let chosen = match &wanted {
                    Some(w) => *w == name,
                    None => own.contains(&name),
                };
                chosen.then_some((i, name))
            }
            _ => None,
        })
        .ok_or_else(|| match wanted {
            Some(w) => format!(
                "`faults` names {w}, but the test has no `insmod` of it that is expected to succeed"
            ),
            None => "fault injection needs an `insmod` of one of the test's modules that is expected to succeed; this test has none".into(),
        })
}

/// The test with the helper loaded and armed for point `nth` right before
/// the target `insmod`, which then sits at `index + 1`.
fn armed(test: &PlannedTest, index: usize, module: &str, nth: u32) -> PlannedTest {
    let mut t = test.clone();
    t.spec.repeat = 1;
    t.spec.steps.insert(
        index,
        Step {
            origin: Origin::Faults,
            ..Step::action(Action::Run(faults::arm_command(module, nth)))
        },
    );
    t
}

fn helper_report(result: &TestResult, index: usize) -> Report {
    let lines: Vec<&str> = result
        .steps
        .get(index + 1)
        .map(|s| s.kernel_lines.iter().map(|l| l.text.as_str()).collect())
        .unwrap_or_default();
    faults::report(&lines)
}

/// Point `n`: a fresh guest, the `n`th allocation failed, its verdict.
fn point(
    config: &RunConfig,
    test: &PlannedTest,
    id: TestId,
    dir: &Path,
    index: usize,
    module: &str,
    n: u32,
) -> CaseResult {
    let variant = armed(test, index, module, n);
    let point_dir = dir.join("faults").join(n.to_string());
    let mut leaked: Vec<Crash> = Vec::new();
    let own = crate::kbuild::module_names(&test.modules);
    let r = run_guest(
        config,
        &variant,
        &point_dir,
        id,
        &mut super::Quiet,
        Some(index + 1),
        &mut |guest, result| {
            let stopped = result
                .steps
                .get(index + 1)
                .is_some_and(|s| s.exit.is_some_and(|e| e != 0));
            if !(config.kmemleak && stopped && result.status == Status::Pass) {
                return;
            }
            // insmod failed and the module is gone: what its init left
            // behind is a leak, placed by the helper's anchors.
            let report = helper_report(result, index);
            let placed: Vec<_> = crate::placement::ko_of(module, &test.modules)
                .and_then(|ko| {
                    crate::placement::Placement::from_anchors(module, ko, &report.anchors)
                })
                .into_iter()
                .collect();
            leaked = leaks::scan(guest, &own, &placed);
        },
    );
    verdict(test, index, module, n, r, leaked, config)
}

fn verdict(
    test: &PlannedTest,
    index: usize,
    module: &str,
    n: u32,
    mut r: TestResult,
    mut leaked: Vec<Crash>,
    config: &RunConfig,
) -> CaseResult {
    let report = helper_report(&r, index);
    let mut stack = report.injected_stack.clone();
    crate::symbolize::symbolize(&mut stack, &test.modules);
    let site = faults::call_site(&stack, module);
    let location = site.and_then(|f| f.location());
    let function = site.map(|f| f.function.clone());
    super::symbolize_all(&mut leaked, &test.modules, config.kernel_symbols.as_ref());
    let errno = r.steps.get(index + 1).and_then(|s| s.errno.clone());
    let (status, message, crash) = if let Some(leak) = leaked.into_iter().next() {
        let why = format!("{}, left behind when insmod failed", leak.title);
        (Status::Crash, Some(why), Some(leak))
    } else if r.status != Status::Pass {
        (r.status, r.message.take(), r.crash.take())
    } else if report.not_reached {
        (
            Status::Pass,
            Some("init ended before this allocation".into()),
            None,
        )
    } else {
        let how = match (report.injected, errno) {
            // Failed without a word: an allocation that asked for no
            // warning, as kmemleak's record of each allocation does.
            (Some(0), _) if report.injected_stack.is_empty() => {
                "absorbed inside the kernel (an allocation made with __GFP_NOWARN, such as kmemleak's record of the module's allocation)".to_string()
            }
            (Some(0), _) => "init absorbed the failure".to_string(),
            (_, Some(e)) => format!("insmod failed cleanly with {e}"),
            (Some(ret), None) => format!("init returned {ret}"),
            (None, _) => "the helper did not say whether it injected".into(),
        };
        (Status::Pass, Some(how), None)
    };
    let message = match function {
        Some(f) => message.map(|m| format!("{m} (after the allocation in {f} failed)")),
        None => message,
    };
    CaseResult {
        name: format!("fault {n}"),
        status,
        message,
        location,
        crash,
        cases: Vec::new(),
    }
}

/// The test's verdict from its points.
fn conclude(result: &mut TestResult, module: &str, count: u32, tried: u32) {
    let bad = result.cases.iter().find(|c| c.status != Status::Pass);
    let of = if tried < count {
        format!("{count} (the first {tried} tried)")
    } else {
        format!("{count}")
    };
    if count == 0 {
        result.message = Some(format!(
            "{module}'s init makes no allocation (or it has no init): no fault to inject"
        ));
        return;
    }
    match bad {
        Some(c) => {
            result.status = c.status;
            result.crash = c.crash.clone();
            let at = c
                .location
                .as_deref()
                .map(|l| format!(" at {l}"))
                .unwrap_or_default();
            result.message = Some(format!(
                "{} of {of} (the allocation{at} failed): {}",
                c.name,
                c.message.as_deref().unwrap_or("did not end cleanly")
            ));
        }
        None if result.cases.len() < tried as usize => {
            result.status = Status::Error;
            result.message = Some(format!(
                "interrupted after {} of {of} fault points",
                result.cases.len()
            ));
        }
        None => {
            result.message = Some(format!(
                "{module}'s init failed at each of its {of} allocations in turn: every run ended cleanly"
            ));
        }
    }
}
