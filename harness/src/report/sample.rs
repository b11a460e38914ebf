//! A made-up but realistic run, replayed as events.
//!
//! Reporters are checked against real consumers (schema validators, JUnit
//! readers, the kernel's KTAP parser) without booting a guest; one shared run
//! keeps those checks looking at the same cases: a pass, a failed
//! expectation, a kernel oops with a symbolised trace, and a boot timeout.
//! Public so that integration tests and external tooling can use it too.

use crate::klog::KernelLine;
use crate::outcome::{
    CaseResult, Crash, Event, Frame, Reporter, Status, StepResult, Summary, TestResult,
};
use crate::runner::dir_name;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const KERNEL: &str = "debian-6.1 (6.1.0-28-amd64)";
pub const ACCEL: &str = "tcg";
pub const ARTIFACTS: &str = "/srv/modvm/runs/20250101-120000";

fn line(raw: &str) -> KernelLine {
    KernelLine::parse(raw)
}

fn step(index: usize, description: &str, command: &str, status: Status) -> StepResult {
    StepResult::empty(index, description.into(), command.into(), status)
}

fn ran(mut s: StepResult, exit: i32, ms: u64, lines: &[&str]) -> StepResult {
    s.exit = Some(exit);
    s.taint = Some(0);
    s.duration_ms = ms;
    s.kernel_lines = lines.iter().map(|l| line(l)).collect();
    s
}

fn test(name: &str, status: Status, duration_ms: u64, boot_ms: Option<u64>) -> TestResult {
    let (suite, case) = name.split_once('/').unwrap_or(("", name));
    TestResult {
        name: name.into(),
        kernel: KERNEL.into(),
        kernel_release: String::new(),
        status,
        duration_ms,
        boot_ms,
        guest: boot_ms.map(|_| crate::guest::launcher::Start::Restored),
        steps: Vec::new(),
        message: None,
        crash: None,
        crash_detect_ms: None,
        kernel_tail: Vec::new(),
        cases: Vec::new(),
        artifacts: Path::new(ARTIFACTS)
            .join(dir_name(suite))
            .join(dir_name(case)),
    }
}

/// The oops that `oops/init` hits.
pub fn oops() -> Crash {
    Crash {
        title: "BUG: kernel NULL pointer dereference in oops_init".into(),
        report: vec![
            "BUG: kernel NULL pointer dereference, address: 0000000000000000".into(),
            "#PF: supervisor write access in kernel mode".into(),
            "Oops: 0002 [#1] PREEMPT SMP NOPTI".into(),
            "RIP: 0010:oops_init+0x11/0x30 [oops]".into(),
            "Call Trace:".into(),
            " <TASK>".into(),
            " do_one_initcall+0x46/0x210".into(),
            " do_init_module+0x52/0x220".into(),
            " </TASK>".into(),
        ],
        frames: vec![
            Frame {
                function: "oops_init".into(),
                offset: Some(0x11),
                module: Some("oops".into()),
                file: Some("oops.c".into()),
                line: Some(12),
            },
            Frame {
                function: "do_one_initcall".into(),
                offset: Some(0x46),
                module: None,
                file: None,
                line: None,
            },
            Frame {
                function: "do_init_module".into(),
                offset: Some(0x52),
                module: None,
                file: None,
                line: None,
            },
        ],
        fatal: true,
    }
}

/// The four results, in run order.
pub fn results() -> Vec<TestResult> {
    let mut pass = test("hello/load", Status::Pass, 4180, Some(3120));
    pass.steps = vec![
        ran(
            step(0, "insmod hello", "insmod /modules/hello.ko", Status::Pass),
            0,
            310,
            &["[    2.345678] Hello, Kernel World!"],
        ),
        ran(
            step(1, "rmmod hello", "rmmod hello", Status::Pass),
            0,
            240,
            &["[    2.612000] Goodbye, Kernel World!"],
        ),
    ];

    let mut fail = test("hello/unload", Status::Fail, 4420, Some(3200));
    let mut rmmod = ran(
        step(1, "rmmod hello", "rmmod hello", Status::Fail),
        0,
        260,
        &["[    2.700100] hello: unloading"],
    );
    rmmod.failures = vec!["expected a line containing \"Goodbye\" in the kernel log".into()];
    fail.message = Some(format!("{}: {}", rmmod.label, rmmod.failures[0]));
    fail.steps = vec![
        ran(
            step(0, "insmod hello", "insmod /modules/hello.ko", Status::Pass),
            0,
            300,
            &["[    2.650000] Hello, Kernel World!"],
        ),
        rmmod,
        step(2, "run `lsmod`", "lsmod", Status::Skip),
    ];

    let crash = oops();
    let mut crashed = test("oops/init", Status::Crash, 5010, Some(3050));
    let died = "the guest died during `insmod /modules/oops.ko` (QEMU: exit status: 0)".to_string();
    let mut insmod = step(0, "insmod oops", "insmod /modules/oops.ko", Status::Crash);
    insmod.output = "Killed\n".into();
    insmod.duration_ms = 900;
    insmod.kernel_lines = crash
        .report
        .iter()
        .enumerate()
        .map(|(i, l)| KernelLine {
            time: Some(3.1 + i as f64 / 1000.0),
            text: l.clone(),
            arrived: None,
        })
        .collect();
    insmod.failures = vec![died.clone()];
    insmod.crashes = vec![crash.clone()];
    crashed.steps = vec![insmod, step(1, "rmmod oops", "rmmod oops", Status::Skip)];
    crashed.message = Some(died);
    crashed.crash = Some(crash);
    crashed.crash_detect_ms = Some(140);
    crashed.kernel_tail = vec![
        line("[    3.108000] ---[ end trace 0000000000000000 ]---"),
        line("[    3.109000] Kernel panic - not syncing: Fatal exception"),
    ];

    let mut timeout = test("slow/boot", Status::Timeout, 30040, None);
    timeout.message = Some("boot failed: the guest did not reach its shell within 30.0s".into());
    timeout.kernel_tail = vec![
        line("[    1.000000] Run /init as init process"),
        line("[   29.500000] random: crng init done"),
    ];

    vec![pass, fail, crashed, timeout]
}

fn case(name: &str, status: Status) -> CaseResult {
    CaseResult {
        name: name.into(),
        status,
        message: None,
        location: None,
        crash: None,
        cases: Vec::new(),
    }
}

/// Two tests with results inside them (KUnit suites, as a module's
/// `kunit_test_suites` gives them): one whose case failed an expectation,
/// with a skipped case and a parameterised one beside it, and one whose
/// case crashed the kernel before its suite could finish.
pub fn results_with_cases() -> Vec<TestResult> {
    let failure = "KUnit case demo_math.add_wrong failed at demo.c:26: Expected 5 == demo_add(2, 2), but demo_add(2, 2) == 4".to_string();
    let mut fail = test("demo/suites", Status::Fail, 2100, Some(1240));
    let mut insmod = ran(
        step(0, "insmod demo", "insmod /modules/demo.ko", Status::Fail),
        0,
        800,
        &[
            "[    8.791000]     KTAP version 1",
            "[    8.791100]     # Subtest: demo_math",
            "[    8.793000]     # add_wrong: EXPECTATION FAILED at demo.c:26",
            "[    8.794000]     not ok 2 add_wrong",
        ],
    );
    insmod.failures = vec![failure.clone()];
    fail.message = Some(format!("{}: {failure}", insmod.label));
    fail.steps = vec![insmod, step(1, "rmmod demo", "rmmod demo", Status::Skip)];
    let mut wrong = case("add_wrong", Status::Fail);
    wrong.message = Some(
        "EXPECTATION FAILED at demo.c:26\nExpected 5 == demo_add(2, 2), but\n    demo_add(2, 2) == 4"
            .into(),
    );
    wrong.location = Some("demo.c:26".into());
    let mut skipped = case("needs_hardware", Status::Skip);
    skipped.message = Some("no such hardware in the guest".into());
    let mut math = case("demo_math", Status::Fail);
    math.cases = vec![case("add_small", Status::Pass), wrong, skipped];
    let mut param = case("str_len_param", Status::Pass);
    param.cases = vec![case("len-0", Status::Pass), case("len-5", Status::Pass)];
    let mut strings = case("demo_str", Status::Pass);
    strings.cases = vec![case("str_len", Status::Pass), param];
    fail.cases = vec![math, strings];

    let crash = Crash {
        title: "BUG: kernel NULL pointer dereference in null_deref".into(),
        report: vec!["BUG: kernel NULL pointer dereference, address: 0000000000000000".into()],
        frames: vec![Frame {
            function: "null_deref".into(),
            offset: Some(0x54),
            module: Some("crashy".into()),
            file: Some("crashy.c".into()),
            line: Some(20),
        }],
        fatal: true,
    };
    let mut crashed = test("crashy/suite", Status::Crash, 2830, Some(1190));
    let mut insmod = step(
        0,
        "insmod crashy",
        "insmod /modules/crashy.ko",
        Status::Crash,
    );
    insmod.failures = vec![
        "`insmod /modules/crashy.ko` did not finish after the kernel reported a crash".into(),
        "KUnit case crashy.case 2 crashed at crashy.c:20: BUG: kernel NULL pointer dereference in null_deref".into(),
    ];
    insmod.crashes = vec![crash.clone()];
    crashed.message = Some(format!("{} during {}", crash.title, insmod.label));
    crashed.steps = vec![
        insmod,
        step(1, "rmmod crashy", "rmmod crashy", Status::Skip),
    ];
    let mut running = case("case 2", Status::Crash);
    running.message = Some(crash.title.clone());
    running.location = Some("crashy.c:20".into());
    running.crash = Some(crash.clone());
    let mut suite = case("crashy", Status::Crash);
    suite.message = Some(format!("did not finish: {}", crash.title));
    suite.cases = vec![case("survives", Status::Pass), running];
    crashed.cases = vec![suite];
    crashed.crash = Some(crash);
    vec![fail, crashed]
}

/// Sends the run to `reporter` in the order the runner would.
pub fn replay(reporter: &mut dyn Reporter) {
    replay_results(reporter, &results());
}

/// Sends `results` as a run, for tests that need a variation of the sample.
pub fn replay_results(reporter: &mut dyn Reporter, results: &[TestResult]) {
    let artifacts = PathBuf::from(ARTIFACTS);
    reporter.event(&Event::RunStarted {
        tests: results.len(),
        kernels: 1,
        kernel: KERNEL,
        accel: ACCEL,
        artifacts: &artifacts,
    });
    let mut summary = Summary::default();
    for (id, t) in results.iter().enumerate() {
        reporter.event(&Event::TestStarted { id, name: &t.name });
        if let Some(b) = t.boot_ms {
            reporter.event(&Event::Booted {
                id,
                name: &t.name,
                boot: Duration::from_millis(b),
            });
        }
        for s in t.steps.iter().filter(|s| s.status != Status::Skip) {
            reporter.event(&Event::StepStarted {
                id,
                name: &t.name,
                index: s.index,
                description: &s.description,
            });
        }
        summary.add(t.status);
        summary.duration_ms += t.duration_ms;
        reporter.event(&Event::TestEnded { id });
        reporter.event(&Event::TestFinished { id, result: t });
    }
    reporter.event(&Event::RunFinished(&summary));
}

/// A run that stopped before its two `hello` tests started: a build error
/// (`interrupted` false) or the user stopping it.
pub fn replay_stopped(reporter: &mut dyn Reporter, error: &str, interrupted: bool) {
    let artifacts = PathBuf::new();
    reporter.event(&Event::RunStarted {
        tests: 2,
        kernels: 0,
        kernel: "",
        accel: "",
        artifacts: &artifacts,
    });
    let mut summary = Summary::default();
    for (id, name) in ["hello/load", "hello/unload"].into_iter().enumerate() {
        let t = TestResult::not_run(name.into(), String::new(), PathBuf::new(), error);
        summary.add(t.status);
        reporter.event(&Event::TestFinished { id, result: &t });
    }
    summary.interrupted = interrupted;
    if !interrupted {
        summary.error = Some(error.into());
    }
    reporter.event(&Event::RunFinished(&summary));
}

/// A writer whose bytes stay readable after it was handed away as a
/// `Box<dyn Write>` (reporters and log sinks take one), for checking what
/// reached "the terminal".
#[derive(Clone, Default)]
pub struct SharedBuffer(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl SharedBuffer {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl std::io::Write for SharedBuffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
