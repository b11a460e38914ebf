//! What a person reads: the sample run (a pass, a failed expectation, an
//! oops, a boot timeout) and variations of it, in each level of detail,
//! written into a buffer instead of the terminal.
use super::*;
use crate::report::sample;
use std::path::PathBuf;

use crate::report::sample::SharedBuffer as Buffer;

#[test]
fn tests_in_flight_each_have_a_live_line_until_they_end() {
    let (mut human, buffer) = human(Level::Normal, false);
    let results = sample::results();
    let (first, second) = (&results[0], &results[1]);
    human.event(&Event::TestStarted {
        id: 0,
        name: &first.name,
    });
    human.event(&Event::TestStarted {
        id: 1,
        name: &second.name,
    });
    assert_eq!(human.spinners.len(), 2);
    // The second ends first: its line goes, its result waits.
    human.event(&Event::TestEnded { id: 1 });
    assert_eq!(human.spinners.keys().collect::<Vec<_>>(), [&0]);
    assert!(buffer.0.lock().unwrap().is_empty(), "nothing printed yet");
    human.event(&Event::TestFinished {
        id: 0,
        result: first,
    });
    human.event(&Event::TestFinished {
        id: 1,
        result: second,
    });
    assert!(human.spinners.is_empty());
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let at = |name: &str| text.find(name).unwrap_or_else(|| panic!("{name}: {text}"));
    assert!(at(&first.name) < at(&second.name), "{text}");
}

#[test]
fn control_characters_in_names_never_reach_the_terminal() {
    let (mut human, buffer) = human(Level::Verbose, false);
    let mut result = sample::results().remove(0);
    result.name = "s/a\nPASS    forged\u{1b}[2J\0".into();
    human.event(&Event::Booted {
        id: 0,
        name: &result.name,
        boot: Duration::from_secs(1),
    });
    human.event(&Event::TestFinished {
        id: 0,
        result: &result,
    });
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(!text.contains('\u{1b}') && !text.contains('\0'), "{text:?}");
    assert!(
        !text.lines().any(|l| l.starts_with("PASS    forged")),
        "{text}"
    );
    assert!(
        text.contains("s/a\\nPASS    forged\\u{1b}[2J\\u{0}"),
        "{text}"
    );
}

#[test]
fn a_failure_named_in_the_message_is_printed_once() {
    let (mut human, buffer) = human(Level::Verbose, false);
    let results = sample::results();
    let fail = results
        .iter()
        .find(|t| t.status == Status::Fail)
        .expect("a failed sample");
    assert!(fail.message_repeats_a_step());
    human.event(&Event::TestFinished {
        id: 0,
        result: fail,
    });
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text.matches("\"Goodbye\"").count(), 1, "{text}");
    assert!(text.contains("step 2 (rmmod hello) FAIL:"), "{text}");
}

/// A reporter writing into a buffer, without live lines.
fn human(level: Level, colour: bool) -> (Human, Buffer) {
    let buffer = Buffer::default();
    let h = Human::new(
        Box::new(buffer.clone()),
        colour,
        level,
        ProgressDrawTarget::hidden(),
    );
    (h, buffer)
}

/// The sample run as `level` prints it.
fn sample_run(level: Level) -> String {
    let (mut h, buffer) = human(level, false);
    sample::replay(&mut h);
    buffer.text()
}

const SAMPLE_NORMAL: &str = "\
running 4 tests on debian-6.1 (6.1.0-28-amd64) (tcg); logs in /srv/modvm/runs/20250101-120000
PASS    hello/load  4.18s (restore 3.12s)
FAIL    hello/unload  4.42s (restore 3.20s)
    step 2 (rmmod hello) FAIL:
      - expected a line containing \"Goodbye\" in the kernel log
      kernel lines seen in this step:
      | [    2.700100] hello: unloading
    console, kernel log and QEMU command line: /srv/modvm/runs/20250101-120000/hello/unload
CRASH   oops/init  5.01s (restore 3.05s)
    crash: BUG: kernel NULL pointer dereference in oops_init
      oops_init+0x11 [oops]  at oops.c:12
      do_one_initcall+0x46
      do_init_module+0x52
    step 1 (insmod oops) CRASH:
      - the guest died during `insmod /modules/oops.ko` (QEMU: exit status: 0)
      command output:
      > Killed
      kernel lines seen in this step:
      | [    3.100000] BUG: kernel NULL pointer dereference, address: 0000000000000000
      | [    3.101000] #PF: supervisor write access in kernel mode
      | [    3.102000] Oops: 0002 [#1] PREEMPT SMP NOPTI
      | [    3.103000] RIP: 0010:oops_init+0x11/0x30 [oops]
      | [    3.104000] Call Trace:
      | [    3.105000]  <TASK>
      | [    3.106000]  do_one_initcall+0x46/0x210
      | [    3.107000]  do_init_module+0x52/0x220
      | [    3.108000]  </TASK>
    console, kernel log and QEMU command line: /srv/modvm/runs/20250101-120000/oops/init
TIMEOUT slow/boot  30.04s
    boot failed: the guest did not reach its shell within 30.0s
    last kernel lines:
      | [    1.000000] Run /init as init process
      | [   29.500000] random: crng init done
    console, kernel log and QEMU command line: /srv/modvm/runs/20250101-120000/slow/boot

1 passed, 1 failed, 1 crashed, 1 timed out in 43.65s
";

#[test]
fn the_sample_run_reads_as_written() {
    assert_eq!(sample_run(Level::Normal), SAMPLE_NORMAL);
}

#[test]
fn quiet_keeps_the_failures_and_the_summary_only() {
    let quiet = sample_run(Level::Quiet);
    let expected: String = SAMPLE_NORMAL
        .lines()
        .filter(|l| !l.starts_with("running ") && !l.starts_with("PASS ") && !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(quiet, expected);
}

#[test]
fn verbose_adds_boots_steps_and_the_logs_of_passing_tests() {
    let verbose = sample_run(Level::Verbose);
    let lines: Vec<&str> = verbose.lines().collect();
    let at = |l: &str| {
        lines
            .iter()
            .position(|x| *x == l)
            .unwrap_or_else(|| panic!("{l:?} missing:\n{verbose}"))
    };
    let order = [
        at("  hello/load: guest ready in 3.12s"),
        at("  hello/load: step 1 insmod hello"),
        at("  hello/load: step 2 rmmod hello"),
        at("PASS    hello/load  4.18s (restore 3.12s)"),
        at("    logs: /srv/modvm/runs/20250101-120000/hello/load"),
        at("  hello/unload: step 2 rmmod hello"),
        at("FAIL    hello/unload  4.42s (restore 3.20s)"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{verbose}");
    // A skipped step is not announced; a guest that never booted has no
    // ready line; every line of the normal output is still there.
    assert!(!verbose.contains("step 3 run `lsmod`"), "{verbose}");
    assert!(!verbose.contains("slow/boot: guest ready"), "{verbose}");
    for l in SAMPLE_NORMAL.lines() {
        assert!(lines.contains(&l), "{l:?} missing:\n{verbose}");
    }
}

#[test]
fn colour_paints_the_status_label_only() {
    let (mut h, buffer) = human(Level::Normal, true);
    sample::replay(&mut h);
    let text = buffer.text();
    for line in [
        "\u{1b}[32mPASS   \u{1b}[0m hello/load  4.18s",
        "\u{1b}[31;1mFAIL   \u{1b}[0m hello/unload  4.42s",
        "\u{1b}[31;1mCRASH  \u{1b}[0m oops/init  5.01s",
        "\u{1b}[31;1mTIMEOUT\u{1b}[0m slow/boot  30.04s",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    assert_eq!(text.matches('\u{1b}').count(), 8, "{text}");
    assert!(!sample_run(Level::Normal).contains('\u{1b}'));
}

#[test]
fn counts_in_the_summary_name_every_kind_and_only_those_present() {
    let mut results = sample::results();
    let mut skipped = results[0].clone();
    skipped.name = "hello/skipped".into();
    skipped.status = Status::Skip;
    skipped.message = Some("skipped: needs debug".into());
    let mut error = results[3].clone();
    error.name = "hello/error".into();
    error.status = Status::Error;
    error.message = Some("boot failed: cannot start qemu".into());
    let not_run = TestResult::not_run(
        "hello/late".into(),
        String::new(),
        PathBuf::new(),
        "interrupted",
    );
    results.extend([skipped, error, not_run]);
    let (mut h, buffer) = human(Level::Quiet, false);
    sample::replay_results(&mut h, &results);
    let text = buffer.text();
    assert!(
        text.ends_with(
            "1 passed, 1 failed, 1 crashed, 1 timed out, 1 errors, 1 skipped, 1 not run in 77.87s\n"
        ),
        "{text}"
    );
    // Quiet: no line for the skipped and not-run tests either.
    assert!(
        !text.contains("SKIP ") && !text.contains("NOT RUN "),
        "{text}"
    );
    assert!(text.contains("ERROR   hello/error"), "{text}");

    let (mut h, buffer) = human(Level::Normal, false);
    sample::replay_results(&mut h, &results[..1]);
    let text = buffer.text();
    assert!(text.starts_with("running 1 test on "), "{text}");
    assert!(text.ends_with("\n1 passed, 0 failed in 4.18s\n"), "{text}");
}

#[test]
fn a_skipped_or_unrun_test_says_why_on_the_line_below() {
    let mut skipped = sample::results().remove(0);
    skipped.status = Status::Skip;
    skipped.message = Some("skipped: not on this kernel".into());
    let (mut h, buffer) = human(Level::Normal, false);
    sample::replay_results(&mut h, &[skipped]);
    sample::replay_stopped(&mut h, "cannot build the module", false);
    let text = buffer.text();
    assert!(
        text.contains(
            "SKIP    hello/load  4.18s (restore 3.12s)\n    skipped: not on this kernel\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("NOT RUN hello/unload  0.00s\n    not run: cannot build the module\n"),
        "{text}"
    );
}

#[test]
fn long_output_and_kernel_logs_show_their_last_lines() {
    let mut fail = sample::results().remove(1);
    let step = &mut fail.steps[1];
    step.output = (0..100).map(|i| format!("out {i}\n")).collect();
    step.kernel_lines = (0..45)
        .map(|i| crate::klog::KernelLine::parse(&format!("[    1.{i:06}] k {i}")))
        .collect();
    let (mut h, buffer) = human(Level::Normal, false);
    sample::replay_results(&mut h, &[fail]);
    let text = buffer.text();
    let shown = |prefix: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(String::from)
            .collect()
    };
    let out = shown("      > ");
    assert_eq!(out.len(), 31, "{text}");
    assert_eq!(
        out[0],
        "      > ... 70 earlier lines in the reports and console.log"
    );
    assert_eq!(out[1], "      > out 70");
    assert_eq!(out[30], "      > out 99");
    let kernel = shown("      | ");
    assert_eq!(kernel.len(), 31, "{text}");
    assert_eq!(kernel[0], "      | ... 15 earlier lines in kernel.log");
    assert_eq!(kernel[1], "      | [    1.000015] k 15");
    assert_eq!(kernel[30], "      | [    1.000044] k 44");
}

#[test]
fn guest_text_reaches_the_terminal_escaped_wherever_it_is_shown() {
    let mut results = sample::results();
    let evil = "\u{1b}[2J\u{1b}]0;pwned\u{7}\r\u{fffd}\u{0}";
    // A failing step: its output, its kernel lines, a failure quoting a
    // line of output, its label.
    let fail = &mut results[1];
    fail.steps[1].output = format!("before {evil} after\n\u{fffd}\u{fffd}\n");
    fail.steps[1].kernel_lines = vec![crate::klog::KernelLine::parse(&format!(
        "[    2.000000] module says {evil}"
    ))];
    fail.steps[1].failures = vec![format!("the output must not have \"x\", but had: {evil}")];
    fail.steps[1].label = format!("step 2 (run `printf {evil}`)");
    // A crash whose title and frame come from the kernel log.
    let crash = &mut results[2];
    if let Some(c) = crash.crash.as_mut() {
        c.title = format!("BUG: {evil}");
        c.frames[0].function = format!("f{evil}");
    }
    // A boot failure's message and the kernel's last lines.
    let timeout = &mut results[3];
    timeout.message = Some(format!("boot failed: {evil}"));
    timeout.kernel_tail = vec![crate::klog::KernelLine::parse(&format!("[ 1.0] {evil}"))];
    let mut skipped = sample::results().remove(0);
    skipped.status = Status::Skip;
    skipped.message = Some(format!("skipped: {evil}"));
    results.push(skipped);
    for level in [Level::Normal, Level::Verbose] {
        let (mut h, buffer) = human(level, false);
        sample::replay_results(&mut h, &results);
        let text = buffer.text();
        for c in ['\u{1b}', '\u{7}', '\r', '\0'] {
            assert!(!text.contains(c), "{c:?} reached the terminal:\n{text}");
        }
        let escaped = "\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\r\u{fffd}\\u{0}";
        for place in [
            "      > before ",
            "      | [    2.000000] module says ",
            "      - the output must not have \"x\", but had: ",
            "    step 2 (run `printf ",
            "    crash: BUG: ",
            "    boot failed: ",
            "      | [    1.000000] ",
            "    skipped: ",
        ] {
            assert!(
                text.contains(&format!("{place}{escaped}")),
                "{place:?} not escaped:\n{text}"
            );
        }
        // Replacement characters of invalid UTF-8 are shown as they are.
        assert!(text.contains("      > \u{fffd}\u{fffd}\n"), "{text}");
    }
}

#[test]
fn a_matrix_run_names_the_kernel_on_every_result_line() {
    let results = sample::results();
    let (mut h, buffer) = human(Level::Normal, false);
    let artifacts = PathBuf::from(sample::ARTIFACTS);
    h.event(&Event::RunStarted {
        tests: 1,
        kernels: 2,
        kernel: "2 kernels",
        accel: "tcg",
        artifacts: &artifacts,
    });
    h.event(&Event::TestFinished {
        id: 0,
        result: &results[0],
    });
    let text = buffer.text();
    assert!(
        text.contains("PASS    hello/load [debian-6.1 (6.1.0-28-amd64)]  4.18s"),
        "{text}"
    );
}

#[test]
fn results_inside_a_test_are_listed_under_it_with_their_place() {
    let (mut h, buffer) = human(Level::Normal, false);
    sample::replay_results(&mut h, &sample::results_with_cases());
    let text = buffer.text();
    let expected = "\
FAIL    demo/suites  2.10s (restore 1.24s)
    results inside the test:
      FAIL    demo_math
        PASS    add_small
        FAIL    add_wrong  at demo.c:26
                EXPECTATION FAILED at demo.c:26
                Expected 5 == demo_add(2, 2), but
                    demo_add(2, 2) == 4
        SKIP    needs_hardware: no such hardware in the guest
      PASS    demo_str (2 inside)
    step 1 (insmod demo) FAIL:
";
    assert!(text.contains(expected), "{text}");
    assert!(
        text.contains(
            "      CRASH   crashy\n        PASS    survives\n        CRASH   case 2  at crashy.c:20\n                BUG: kernel NULL pointer dereference in null_deref\n"
        ),
        "{text}"
    );
    // Verbose also opens what passed.
    let (mut h, buffer) = human(Level::Verbose, false);
    sample::replay_results(&mut h, &sample::results_with_cases());
    assert!(
        buffer.text().contains("          PASS    len-5\n"),
        "{}",
        buffer.text()
    );
}
