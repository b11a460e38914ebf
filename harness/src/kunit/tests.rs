//! The reader on KTAP as kernels print it: Linux 6.1's module suites
//! (captured from the `debug` kernel running the fixtures), the layout of
//! later kernels, a crash cutting a suite short, and lines that only look
//! like KTAP.
use super::*;

fn lines(text: &str) -> Vec<KernelLine> {
    text.lines().map(KernelLine::parse).collect()
}

fn names(cases: &[CaseResult]) -> Vec<(&str, Status)> {
    cases.iter().map(|c| (c.name.as_str(), c.status)).collect()
}

/// `kunit_demo` on the debug kernel (6.1), with the module's own line and
/// the kernel's timestamps, as a step's kernel lines hold them.
const DEMO_6_1: &str = "\
[    8.790000] kunit_demo: loading out-of-tree module taints kernel.
[    8.791000]     KTAP version 1
[    8.791100]     # Subtest: kunit_demo_math
[    8.791200]     1..3
[    8.792000]     ok 1 add_small
[    8.793000]     # add_wrong: EXPECTATION FAILED at /tmp/out/build/debug/kunit_5fdemo-8294bc0fa628719b/kunit_demo.c:26
[    8.793000]     Expected 5 == demo_add(2, 2), but
[    8.793000]         demo_add(2, 2) == 4
[    8.794000]     not ok 2 add_wrong
[    8.795000]     ok 3 needs_hardware # SKIP no such hardware in the guest
[    8.796000] # kunit_demo_math: pass:1 fail:1 skip:1 total:3
[    8.796100] # Totals: pass:1 fail:1 skip:1 total:3
[    8.796200] not ok 1 kunit_demo_math
[    8.808160]     KTAP version 1
[    8.808571]     # Subtest: kunit_demo_str
[    8.809039]     1..2
[    8.813011]     ok 1 str_len
[    8.813197]         KTAP version 1
[    8.813882]         # Subtest: str_len_param
[    8.815366]         ok 1 len-0
[    8.818281]         ok 2 len-1
[    8.820555]         ok 3 len-5
[    8.821048]     # str_len_param: pass:3 fail:0 skip:0 total:3
[    8.821402]     ok 2 str_len_param
[    8.821535] # kunit_demo_str: pass:2 fail:0 skip:0 total:2
[    8.821608] # Totals: pass:4 fail:0 skip:0 total:4
[    8.821697] ok 2 kunit_demo_str
";

#[test]
fn suites_cases_and_parameters_nest_as_the_kernel_nests() {
    let suites = parse(&lines(DEMO_6_1));
    assert_eq!(
        names(&suites),
        [
            ("kunit_demo_math", Status::Fail),
            ("kunit_demo_str", Status::Pass)
        ]
    );
    let math = &suites[0];
    assert_eq!(
        names(&math.cases),
        [
            ("add_small", Status::Pass),
            ("add_wrong", Status::Fail),
            ("needs_hardware", Status::Skip)
        ]
    );
    let wrong = &math.cases[1];
    assert_eq!(
        wrong.location.as_deref(),
        Some("/tmp/out/build/debug/kunit_5fdemo-8294bc0fa628719b/kunit_demo.c:26")
    );
    assert_eq!(
        wrong.message.as_deref(),
        Some(
            "EXPECTATION FAILED at /tmp/out/build/debug/kunit_5fdemo-8294bc0fa628719b/kunit_demo.c:26\n\
             Expected 5 == demo_add(2, 2), but\n    demo_add(2, 2) == 4"
        )
    );
    assert_eq!(
        math.cases[2].message.as_deref(),
        Some("no such hardware in the guest")
    );
    assert_eq!(math.message, None, "the suite's totals are not a message");
    let str_suite = &suites[1];
    assert_eq!(str_suite.cases[1].name, "str_len_param");
    assert_eq!(
        names(&str_suite.cases[1].cases),
        [
            ("len-0", Status::Pass),
            ("len-1", Status::Pass),
            ("len-5", Status::Pass)
        ]
    );
}

/// `kunit_crash` on the debug kernel: the oops stops the suite after its
/// first case.
const CRASH_6_1: &str = "\
[    8.700000] kunit_crash: loading out-of-tree module taints kernel.
[    8.701000]     KTAP version 1
[    8.701100]     # Subtest: kunit_crash
[    8.701200]     1..2
[    8.702000]     ok 1 survives
[    8.703000] general protection fault, probably for non-canonical address 0xdffffc0000000000: 0000 [#1] SMP KASAN
[    8.703000] KASAN: null-ptr-deref in range [0x0000000000000000-0x0000000000000007]
[    8.703000] #PF: supervisor write access in kernel mode
[    8.703000] RIP: 0010:null_deref+0x54/0xb6 [kunit_crash]
[    8.703000] Call Trace:
[    8.703000]  <TASK>
[    8.703000]  kunit_try_run_case+0x1ce/0x211
[    8.703000]  ok 1 not a result: a frame's text
[    8.703000]  </TASK>
[    8.703000] ---[ end trace 0000000000000000 ]---
";

#[test]
fn a_suite_cut_short_is_an_error_naming_the_case_that_ran() {
    let suites = parse(&lines(CRASH_6_1));
    assert_eq!(names(&suites), [("kunit_crash", Status::Error)]);
    let s = &suites[0];
    assert_eq!(
        s.message.as_deref(),
        Some("no result: the kernel log stopped after 1 of 2 cases")
    );
    assert_eq!(
        names(&s.cases),
        [("survives", Status::Pass), ("case 2", Status::Error)]
    );
    assert!(s.cases[1]
        .message
        .as_deref()
        .unwrap()
        .contains("stopped while this case ran"));
}

#[test]
fn a_parameterised_case_cut_short_is_the_running_one() {
    let text = "\
    KTAP version 1
    # Subtest: s
    1..3
    ok 1 a
        KTAP version 1
        # Subtest: p
        ok 1 p-1
";
    let suites = parse(&lines(text));
    assert_eq!(names(&suites), [("s", Status::Error)]);
    assert_eq!(
        names(&suites[0].cases),
        [("a", Status::Pass), ("p", Status::Error)],
        "no extra placeholder: p is the case that was running"
    );
    assert_eq!(names(&suites[0].cases[1].cases), [("p-1", Status::Pass)]);
}

/// Linux 6.6 and later: the log's own header and plan at column 0, a
/// `# module:` line, case diagnostics, an assertion.
const LATER_KERNELS: &str = "\
KTAP version 1
1..1
    KTAP version 1
    # Subtest: example
    # module: kunit_example_test
    1..3
    # example_simple_test: initializing
    ok 1 example_simple_test
    # example_assert: ASSERTION FAILED at lib/kunit/kunit-example-test.c:42
    Expected ptr is not null, but is
    not ok 2 example_assert
    ok 3 example_skip_test # SKIP this test should be skipped
# example: pass:1 fail:1 skip:1 total:3
# Totals: pass:1 fail:1 skip:1 total:3
not ok 1 example
";

#[test]
fn the_layout_of_later_kernels_reads_the_same() {
    let suites = parse(&lines(LATER_KERNELS));
    assert_eq!(names(&suites), [("example", Status::Fail)]);
    let c = &suites[0].cases;
    assert_eq!(
        names(c),
        [
            ("example_simple_test", Status::Pass),
            ("example_assert", Status::Fail),
            ("example_skip_test", Status::Skip)
        ]
    );
    assert_eq!(
        c[1].location.as_deref(),
        Some("lib/kunit/kunit-example-test.c:42")
    );
    assert_eq!(
        c[1].message.as_deref(),
        Some("ASSERTION FAILED at lib/kunit/kunit-example-test.c:42\nExpected ptr is not null, but is")
    );
}

#[test]
fn lines_that_only_look_like_ktap_are_not_results() {
    let text = "\
ok 1 the module says so
not ok 2 neither is this
# a comment of someone's
1.. not a plan
ok one
okay 3 x
";
    assert!(parse(&lines(text)).is_empty());
}

#[test]
fn unrelated_lines_between_results_are_ignored() {
    let text = "\
    KTAP version 1
    # Subtest: s
    1..2
random: crng init done
    # b: EXPECTATION FAILED at s.c:7
    Expected 1 == 2
virtio_blk virtio1: [vda] 1 512-byte logical blocks
        not a continuation any more
    not ok 1 b
kunit_demo: another module's line
    ok 2 c
ok 1 s
";
    let suites = parse(&lines(text));
    assert_eq!(names(&suites), [("s", Status::Pass)]);
    let b = &suites[0].cases[0];
    assert_eq!(
        b.message.as_deref(),
        Some("EXPECTATION FAILED at s.c:7\nExpected 1 == 2")
    );
    assert_eq!(b.location.as_deref(), Some("s.c:7"));
}

#[test]
fn huge_numbers_and_garbage_do_not_panic() {
    let mut text =
        String::from("    KTAP version 1\n    # Subtest: big\n    1..99999999999999999999999999\n");
    text.push_str("    ok 18446744073709551616 a\n");
    text.push_str("    # b: EXPECTATION FAILED at f.c:99999999999999999999\n");
    text.push_str("    not ok 340282366920938463463374607431768211456 b\n");
    text.push_str("\u{0}\u{ff}ok \u{1b}[2J\n#\n  #\nok\nnot ok\n    ok 1\n");
    text.push_str(&format!("    ok 3 {}\n", "x".repeat(10_000)));
    text.push_str("ok 1 big\n");
    let suites = parse(&lines(&text));
    assert_eq!(names(&suites), [("big", Status::Pass)]);
    let c = &suites[0].cases;
    assert_eq!(c.len(), 4, "{c:?}");
    assert_eq!(c[1].location, None, "a line number past u32 is no location");
    assert_eq!(c[2].name, "", "`ok 1` with no name is still a result");
    assert!(c[3].name.chars().count() <= MAX_NAME + 1);
}

#[test]
fn nesting_and_counts_are_bounded() {
    let mut text = String::new();
    for depth in 1..=50 {
        text.push_str(&format!("{}KTAP version 1\n", " ".repeat(depth * 4)));
    }
    for i in 0..(MAX_CASES + 50) {
        text.push_str(&format!("    ok {i} c{i}\n"));
    }
    let suites = parse(&lines(&text));
    let total: usize = suites.iter().map(count).sum();
    assert!(total <= MAX_CASES, "{total}");
}

#[test]
fn a_new_suite_at_the_same_depth_ends_one_that_never_finished() {
    let text = "\
    KTAP version 1
    # Subtest: first
    1..2
    ok 1 a
    KTAP version 1
    # Subtest: second
    1..1
    ok 1 b
ok 1 second
";
    let suites = parse(&lines(text));
    assert_eq!(
        names(&suites),
        [("first", Status::Error), ("second", Status::Pass)]
    );
    assert_eq!(
        names(&suites[0].cases),
        [("a", Status::Pass), ("case 2", Status::Error)]
    );
}

#[test]
fn a_suite_that_failed_to_initialise_keeps_its_own_message() {
    // 6.1: the error, then the result, no header.
    let text = "\
    # broken: failed to initialize (-12)
#PF: supervisor read access in kernel mode
not ok 1 broken
";
    // Column 0 without a header is not KTAP: nothing to report...
    assert!(parse(&lines(text)).is_empty());
    // ...but inside a run's KTAP it is the suite's result.
    let suites = parse(&lines(&format!("KTAP version 1\n1..1\n{text}")));
    assert_eq!(names(&suites), [("broken", Status::Fail)]);
    assert_eq!(
        suites[0].message.as_deref(),
        Some("failed to initialize (-12)"),
        "the oops's `#PF` line is not the suite's"
    );
}

#[test]
fn directives_set_the_status() {
    let text = "KTAP version 1\n1..4\nnot ok 1 t # TIMEOUT took too long\nnot ok 2 e # ERROR broke\nok 3 - dashed\nnot ok 4 s # skip not here\n";
    let r = parse(&lines(text));
    assert_eq!(
        names(&r),
        [
            ("t", Status::Timeout),
            ("e", Status::Error),
            ("dashed", Status::Pass),
            ("s", Status::Skip)
        ]
    );
    assert_eq!(r[0].message.as_deref(), Some("took too long"));
}

/// Random mixtures of KTAP pieces at random depths: every one reads
/// without a panic, within the bounds.
#[test]
fn random_mixtures_of_ktap_never_panic() {
    let pieces = [
        "KTAP version 1",
        "TAP version 14",
        "# Subtest: s",
        "1..3",
        "1..18446744073709551616",
        "ok 1 a",
        "not ok 2 b",
        "ok 3 c # SKIP why",
        "not ok 4 # TIMEOUT",
        "# b: EXPECTATION FAILED at f.c:1",
        "Expected x",
        "# s: pass:1 fail:0 skip:0 total:1",
        "",
        "#",
        "ok",
        "random noise",
        "é ok 1 ü",
    ];
    for seed in 0..200u64 {
        let mut rng = crate::rng::Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut text = String::new();
        for _ in 0..rng.below(200) {
            let depth = rng.below(12);
            text.push_str(&" ".repeat(depth * 2));
            text.push_str(rng.pick(&pieces));
            text.push('\n');
        }
        let cases = parse(&lines(&text));
        let total: usize = cases.iter().map(count).sum();
        assert!(total <= MAX_CASES, "seed {seed}");
    }
}
