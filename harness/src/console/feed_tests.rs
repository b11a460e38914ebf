//! The console against a fake guest: a thread on the other end of a socket
//! pair plays the init's side of the protocol (`images/init`), with the
//! chunkings, stalls, floods, cut-off markers and hang-ups a real guest can
//! produce. Each test names the exact outcome: where output is cut, which
//! error ends a wait, what the input feed delivers.

use super::*;
use base64::Engine;
use std::io::ErrorKind;
use std::thread::JoinHandle;

/// The guest's end of the console's socket.
struct FakeGuest(UnixStream);

/// One request of the host, decoded.
#[derive(Debug)]
struct Request {
    op: String,
    tag: String,
    command: String,
}

impl FakeGuest {
    /// Reads one request line (`op tag base64`) the way the init does.
    fn request(&mut self) -> Request {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        loop {
            match self.0.read(&mut b) {
                Ok(1) if b[0] != b'\n' => line.push(b[0]),
                Ok(_) => break,
                Err(e) => panic!("the guest could not read its request: {e}"),
            }
        }
        let line = String::from_utf8(line).expect("requests are ASCII");
        let mut f = line.split(' ');
        let (op, tag, encoded) = (f.next(), f.next(), f.next());
        assert_eq!(f.next(), None, "three fields: {line:?}");
        let command = base64::engine::general_purpose::STANDARD
            .decode(encoded.expect("a command"))
            .expect("the command is base64");
        Request {
            op: op.unwrap().into(),
            tag: tag.expect("a tag").into(),
            command: String::from_utf8(command).unwrap(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).expect("the host reads");
    }

    fn begin(&mut self, tag: &str) {
        self.send(format!("\x1ebegin {tag}\x1e\n").as_bytes());
    }

    fn end(&mut self, tag: &str, exit: i32, taint: u64) {
        self.send(format!("\x1eend {tag} {exit} {taint}\x1e\n").as_bytes());
    }

    /// `bytes` in pieces of the given sizes, round robin, each its own write.
    fn send_in_pieces(&mut self, bytes: &[u8], sizes: &[usize]) {
        let mut rest = bytes;
        for n in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let n = (*n).clamp(1, rest.len());
            self.send(&rest[..n]);
            rest = &rest[n..];
        }
    }

    /// Whatever the host sent within `wait`, without blocking longer.
    fn drain(&mut self, wait: Duration) -> Vec<u8> {
        self.0.set_read_timeout(Some(wait)).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.0.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => panic!("{e}"),
            }
        }
        self.0.set_read_timeout(None).unwrap();
        got
    }
}

fn pair() -> (Console, FakeGuest) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    (
        Console::new(ours, LogSink::new(None, None)).unwrap(),
        FakeGuest(theirs),
    )
}

/// A guest that answers in its own thread; the test joins it.
fn guest<T: Send + 'static>(
    g: FakeGuest,
    play: impl FnOnce(FakeGuest) -> T + Send + 'static,
) -> JoinHandle<T> {
    std::thread::spawn(move || play(g))
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn short() -> Instant {
    Instant::now() + Duration::from_millis(300)
}

#[test]
fn the_command_travels_intact_and_its_output_is_cut_at_the_markers() {
    let (mut c, g) = pair();
    let command = "printf '%s\\n' \"a b\" 'c' && echo \u{e9} \\\n  | cat\n# end";
    let t = guest(g, |mut g| {
        let r = g.request();
        // An echo of the request (with the tty's echo off there is none,
        // but nothing before the begin marker is the command's anyway).
        g.send(b"s junk the tty echoed\n");
        g.begin(&r.tag);
        g.send(r.command.as_bytes());
        g.end(&r.tag, 0, 0);
        g.send(b"after the end\n");
        r
    });
    let tag = new_tag("3");
    let out = c.run(&tag, command, soon(), &mut || false).unwrap();
    let r = t.join().unwrap();
    assert_eq!((r.op.as_str(), r.tag.as_str()), ("s", tag.as_str()));
    assert_eq!(r.command, command);
    assert_eq!(out.output, command);
    assert_eq!((out.exit, out.taint, out.dropped), (0, 0, 0));
}

#[test]
fn odd_chunkings_give_the_same_output() {
    let payload: Vec<u8> = (0..5000u32)
        .map(|i| b"abc\ndef\x1e\r\n\t"[(i % 11) as usize])
        .collect();
    for sizes in [&[1][..], &[2, 3], &[7, 1, 4096], &[4095, 1], &[65536]] {
        let (mut c, g) = pair();
        let sent = payload.clone();
        let pieces = sizes.to_vec();
        let t = guest(g, move |mut g| {
            let r = g.request();
            let mut all = format!("\x1ebegin {}\x1e\n", r.tag).into_bytes();
            all.extend_from_slice(&sent);
            all.extend_from_slice(format!("\x1eend {} 5 1\x1e\n", r.tag).as_bytes());
            g.send_in_pieces(&all, &pieces);
            g
        });
        let out = c.run(&new_tag("1"), "x", soon(), &mut || false).unwrap();
        assert_eq!(out.output.as_bytes(), &payload[..], "pieces of {sizes:?}");
        assert_eq!((out.exit, out.taint), (5, 1));
        drop(t.join());
    }
}

#[test]
fn output_that_arrives_after_a_stall_wakes_the_waiter() {
    let (mut c, g) = pair();
    let t = guest(g, |mut g| {
        let r = g.request();
        g.begin(&r.tag);
        // Longer than several poll slices: the waiter must sleep and wake.
        std::thread::sleep(ABORT_POLL * 4);
        g.send(b"late ");
        std::thread::sleep(ABORT_POLL * 3);
        g.send(b"output\n");
        std::thread::sleep(ABORT_POLL * 2);
        g.end(&r.tag, 0, 0);
        g
    });
    let mut asked = 0;
    let out = c
        .run(&new_tag("1"), "x", soon(), &mut || {
            asked += 1;
            false
        })
        .unwrap();
    assert_eq!(out.output, "late output\n");
    assert!(asked > 0, "abort is asked while the guest is silent");
    drop(t.join());
}

#[test]
fn a_guest_that_never_answers_times_out_with_nothing_seen() {
    let (mut c, g) = pair();
    let t = guest(g, |mut g| {
        g.request();
        g
    });
    let e = c
        .run(&new_tag("1"), "x", short(), &mut || false)
        .unwrap_err();
    assert!(matches!(e, ConsoleError::Timeout { .. }), "{e:?}");
    assert_eq!(e.seen(), "");
    drop(t.join());
}

#[test]
fn a_deadline_already_past_times_out_at_once() {
    let (mut c, g) = pair();
    let t = guest(g, |mut g| {
        let r = g.request();
        g.begin(&r.tag);
        g
    });
    let e = c
        .run(&new_tag("1"), "x", Instant::now(), &mut || false)
        .unwrap_err();
    assert!(matches!(e, ConsoleError::Timeout { .. }), "{e:?}");
    drop(t.join());
}

#[test]
fn a_stall_after_some_output_times_out_keeping_that_output() {
    let (mut c, g) = pair();
    let t = guest(g, |mut g| {
        let r = g.request();
        g.begin(&r.tag);
        g.send(b"partial line");
        g
    });
    let e = c
        .run(&new_tag("1"), "x", short(), &mut || false)
        .unwrap_err();
    assert!(matches!(e, ConsoleError::Timeout { .. }), "{e:?}");
    assert_eq!(e.seen(), "partial line");
    drop(t.join());
}

#[test]
fn an_end_marker_cut_short_is_not_an_end_and_is_kept_as_seen() {
    let (mut c, g) = pair();
    let t = guest(g, |mut g| {
        let r = g.request();
        g.begin(&r.tag);
        g.send(b"out\n");
        // The closing framing byte never comes.
        g.send(format!("\x1eend {} 0 0", r.tag).as_bytes());
        (r.tag, g)
    });
    let tag = new_tag("1");
    let e = c.run(&tag, "x", short(), &mut || false).unwrap_err();
    assert!(matches!(e, ConsoleError::Timeout { .. }), "{e:?}");
    assert_eq!(e.seen(), format!("out\n\x1eend {tag} 0 0"));
    assert_eq!(t.join().unwrap().0, tag);
}

#[test]
fn an_end_marker_split_by_a_stall_completes_when_the_rest_arrives() {
    let (mut c, g) = pair();
    let t = guest(g, |mut g| {
        let r = g.request();
        g.begin(&r.tag);
        g.send(b"before");
        let end = format!("\x1eend {} 42 8\x1e\n", r.tag);
        // Cut inside the tag, then before the closing framing byte.
        let (a, b) = end.split_at(8);
        g.send(a.as_bytes());
        std::thread::sleep(ABORT_POLL * 2);
        let (b1, b2) = b.split_at(b.len() - 2);
        g.send(b1.as_bytes());
        std::thread::sleep(ABORT_POLL * 2);
        g.send(b2.as_bytes());
        g.send(b"trailing bytes are not this command's");
        g
    });
    let out = c.run(&new_tag("9"), "x", soon(), &mut || false).unwrap();
    assert_eq!(out.output, "before");
    assert_eq!((out.exit, out.taint), (42, 8));
    drop(t.join());
}

#[test]
fn a_hang_up_mid_answer_is_closed_with_the_output_so_far() {
    let (mut c, g) = pair();
    let t = guest(g, |mut g| {
        let r = g.request();
        g.begin(&r.tag);
        g.send(b"half an ans");
        g.send(format!("\x1eend {}", r.tag).as_bytes());
        // The guest (QEMU) goes away: the socket closes.
    });
    let tag = new_tag("1");
    let e = c.run(&tag, "x", soon(), &mut || false).unwrap_err();
    t.join().unwrap();
    assert!(matches!(e, ConsoleError::Closed { .. }), "{e:?}");
    assert_eq!(e.seen(), format!("half an ans\x1eend {tag}"));
    // Once closed, every later wait says so instead of waiting (after
    // handing over bytes left from the failed exchange, if any).
    let e = (0..3)
        .find_map(|_| c.next_chunk(Duration::from_secs(10)).err())
        .expect("the console is closed");
    assert!(matches!(e, ConsoleError::Closed { .. }), "{e:?}");
    let e = c.wait_ready(soon()).unwrap_err();
    assert!(matches!(e, ConsoleError::Closed { .. }), "{e:?}");
}

#[test]
fn a_command_sent_after_the_hang_up_fails_at_once() {
    let (mut c, g) = pair();
    drop(g);
    let e = c
        .run(&new_tag("1"), "x", soon(), &mut || false)
        .unwrap_err();
    // The write sees the closed socket: the step ends now, not at its
    // deadline.
    assert!(
        matches!(&e, ConsoleError::Io(m) if m.contains("Broken pipe")),
        "{e:?}"
    );
}

#[test]
fn binary_output_is_kept_and_decoded_lossily() {
    let bytes: Vec<u8> = vec![
        0, 1, 2, b'a', 0xff, 0xfe, b'\n', 0xc3, b'b', 0xe2, 0x98, 0x83, 0,
    ];
    let (mut c, g) = pair();
    let sent = bytes.clone();
    let t = guest(g, move |mut g| {
        let r = g.request();
        g.begin(&r.tag);
        g.send_in_pieces(&sent, &[1]);
        g.end(&r.tag, 1, 0);
        g
    });
    let out = c.run(&new_tag("1"), "x", soon(), &mut || false).unwrap();
    assert_eq!(out.output, String::from_utf8_lossy(&bytes));
    assert_eq!(
        out.output,
        "\0\u{1}\u{2}a\u{fffd}\u{fffd}\n\u{fffd}b\u{2603}\0"
    );
    assert_eq!(out.exit, 1);
    drop(t.join());
}

#[test]
fn end_fields_that_are_not_numbers_read_as_exit_255_and_no_taint() {
    let (mut c, g) = pair();
    let t = guest(g, |mut g| {
        let r = g.request();
        g.begin(&r.tag);
        g.send(format!("\x1eend {} x\u{e9} -\x1e\n", r.tag).as_bytes());
        g
    });
    let out = c.run(&new_tag("1"), "x", soon(), &mut || false).unwrap();
    assert_eq!((out.exit, out.taint, out.output.as_str()), (255, 0, ""));
    drop(t.join());
}

#[test]
fn an_exit_status_beyond_i32_is_clamped() {
    let (mut c, g) = pair();
    let t = guest(g, |mut g| {
        let r = g.request();
        g.begin(&r.tag);
        g.send(format!("\x1eend {} 99999999999 18446744073709551615\x1e", r.tag).as_bytes());
        g
    });
    let out = c.run(&new_tag("1"), "x", soon(), &mut || false).unwrap();
    assert_eq!((out.exit, out.taint), (i32::MAX, u64::MAX));
    drop(t.join());
}

#[test]
fn streaming_hands_over_exactly_the_output_in_order() {
    let payload: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let (mut c, g) = pair();
    let sent = payload.clone();
    let t = guest(g, move |mut g| {
        let r = g.request();
        let mut all = format!("junk\x1ebegin {}\x1e\n", r.tag).into_bytes();
        all.extend_from_slice(&sent[..10_000]);
        g.send_in_pieces(&all, &[1, 13, 700, 3]);
        // A pause mid-output: what came so far is handed over meanwhile.
        std::thread::sleep(ABORT_POLL * 4);
        let mut all = sent[10_000..].to_vec();
        all.extend_from_slice(format!("\x1eend {} 0 0\x1e\nmore junk", r.tag).as_bytes());
        g.send_in_pieces(&all, &[1, 13, 700, 3]);
        g
    });
    let mut streamed = Vec::new();
    let mut calls = 0;
    let out = c
        .run_streaming(&new_tag("1"), "x", soon(), &mut || false, &mut |b| {
            calls += 1;
            streamed.extend_from_slice(b)
        })
        .unwrap();
    assert_eq!(streamed, payload, "every byte once, no marker byte");
    assert!(calls > 1, "handed over as it arrives, not at the end");
    assert_eq!(out.output, String::from_utf8_lossy(&payload));
    drop(t.join());
}

#[test]
fn input_is_fed_only_after_the_begin_marker_complete_and_in_order() {
    let lines: Vec<String> = (0..300)
        .map(|i| format!("line {i:03} {}\n", "x".repeat(i % 90)))
        .collect();
    let input: Vec<u8> = lines.concat().into_bytes();
    let (mut c, g) = pair();
    let expected = input.len();
    let t = guest(g, move |mut g| {
        let r = g.request();
        // Nothing may arrive before the guest announced the command: the
        // init's read loop would take it as the next request.
        let early = g.drain(ABORT_POLL * 4);
        g.begin(&r.tag);
        let mut got = Vec::new();
        let mut buf = [0u8; 1000];
        while got.len() < expected {
            let n = g.0.read(&mut buf).unwrap();
            assert_ne!(n, 0, "the host closed the console");
            got.extend_from_slice(&buf[..n]);
        }
        // The command "reads its stdin" and prints it back, line count last.
        g.send(&got);
        let count = got.iter().filter(|b| **b == b'\n').count();
        g.send(format!("{count}\n").as_bytes());
        g.end(&r.tag, 0, 0);
        (r, early, got)
    });
    let tag = new_tag("feed");
    let out = c.run_with_input(&tag, "cat > f", &input, soon()).unwrap();
    let (r, early, got) = t.join().unwrap();
    assert_eq!(r.command, "cat > f");
    assert_eq!(early, b"", "input sent before the begin marker");
    assert_eq!(got, input);
    assert_eq!(out.output, format!("{}300\n", lines.concat()));
}

#[test]
fn input_is_not_sent_when_the_begin_marker_never_comes() {
    let (mut c, g) = pair();
    let t = guest(g, |mut g| {
        g.request();
        g.drain(Duration::from_millis(600))
    });
    let e = c
        .run_with_input(&new_tag("1"), "x", b"secret\n", short())
        .unwrap_err();
    assert!(matches!(e, ConsoleError::Timeout { .. }), "{e:?}");
    assert_eq!(t.join().unwrap(), b"");
}

#[test]
fn bytes_after_one_end_are_not_the_next_commands_output() {
    let (mut c, g) = pair();
    let t = guest(g, |mut g| {
        let r = g.request();
        g.begin(&r.tag);
        g.send(b"first\n");
        // The end, then stray bytes in the same write.
        g.send(
            format!(
                "\x1eend {} 0 0\x1e\nstray\x1eend {} 1 1\x1e\n",
                r.tag, r.tag
            )
            .as_bytes(),
        );
        let r2 = g.request();
        g.begin(&r2.tag);
        g.send(b"second\n");
        g.end(&r2.tag, 2, 0);
        (r, r2)
    });
    let (t1, t2) = (new_tag("1"), new_tag("2"));
    let first = c.run(&t1, "one", soon(), &mut || false).unwrap();
    let second = c.run(&t2, "two", soon(), &mut || false).unwrap();
    let (r, r2) = t.join().unwrap();
    assert_eq!((r.tag, r2.tag), (t1, t2));
    assert_eq!((first.output.as_str(), first.exit), ("first\n", 0));
    assert_eq!((second.output.as_str(), second.exit), ("second\n", 2));
}

#[test]
fn the_ready_marker_is_found_after_a_flood_and_split_by_stalls() {
    let (mut c, g) = pair();
    let t = guest(g, |mut g| {
        // Boot noise far beyond what is kept before the marker.
        let noise = b"[ boot noise ]\x1e\n".repeat(20_000);
        g.send_in_pieces(&noise, &[4096, 3]);
        let ready = b"\x1eready 6.12.0-test 12288\x1e\n";
        for piece in ready.chunks(5) {
            g.send(piece);
            std::thread::sleep(ABORT_POLL / 2);
        }
        g.send(b"leftover");
        g
    });
    let (release, taint) = c.wait_ready(soon()).unwrap();
    assert_eq!((release.as_str(), taint), ("6.12.0-test", 12288));
    assert!(
        c.pending.len() <= PREAMBLE_KEEP + CHUNK * 4,
        "noise kept: {}",
        c.pending.len()
    );
    let g = t.join().unwrap();
    // What came after the marker is the next reader's.
    let mut rest = Vec::new();
    let until = Instant::now() + Duration::from_secs(10);
    while rest.len() < b"leftover".len() && Instant::now() < until {
        rest.extend(
            c.next_chunk(Duration::from_secs(1))
                .unwrap()
                .unwrap_or_default(),
        );
    }
    assert_eq!(rest, b"leftover");
    drop(g);
}

#[test]
fn a_ready_marker_that_never_closes_times_out() {
    let (mut c, mut g) = pair();
    g.send(b"\x1eready 6.1.0");
    let e = c.wait_ready(short()).unwrap_err();
    assert!(matches!(e, ConsoleError::Timeout { .. }), "{e:?}");
    assert_eq!(e.seen(), "\x1eready 6.1.0");
}

#[test]
fn an_abort_ends_a_silent_wait() {
    let (mut c, g) = pair();
    let t = guest(g, |mut g| {
        let r = g.request();
        g.begin(&r.tag);
        g.send(b"so far");
        g
    });
    let mut asked = 0;
    let e = c
        .run(&new_tag("1"), "x", soon(), &mut || {
            asked += 1;
            asked == 3
        })
        .unwrap_err();
    assert!(matches!(e, ConsoleError::Aborted { .. }), "{e:?}");
    assert_eq!(asked, 3);
    assert_eq!(e.seen(), "so far");
    drop(t.join());
}

#[test]
fn interactive_bytes_flow_both_ways_until_the_hang_up() {
    let (mut c, g) = pair();
    let (typed_tx, typed_rx) = mpsc::channel();
    let (hang_up_tx, hang_up_rx) = mpsc::channel::<()>();
    let t = guest(g, move |mut g| {
        let r = g.request();
        // The begin marker, and in a later read the newline after it with
        // the shell's prompt: the newline belongs to the marker.
        g.send(format!("\x1ebegin {}\x1e", r.tag).as_bytes());
        std::thread::sleep(ABORT_POLL);
        g.send(b"\n/modules # ");
        let mut typed = [0u8; 5];
        g.0.read_exact(&mut typed).unwrap();
        typed_tx.send(typed.to_vec()).unwrap();
        g.send(b"hello.ko\n");
        // Hang up once the host saw the quiet console.
        let _ = hang_up_rx.recv();
        r
    });
    let tag = new_tag("shell");
    c.begin_interactive(&tag, "sh -i", soon()).unwrap();
    assert_eq!(
        c.next_chunk(Duration::from_secs(10)).unwrap().unwrap(),
        b"/modules # "
    );
    c.send_raw(b"ls\x03\x04\n").unwrap();
    assert_eq!(
        typed_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        b"ls\x03\x04\n"
    );
    let mut answer = Vec::new();
    while answer.len() < 9 {
        answer.extend(c.next_chunk(Duration::from_secs(10)).unwrap().unwrap());
    }
    assert_eq!(answer, b"hello.ko\n");
    assert_eq!(c.next_chunk(Duration::from_millis(50)).unwrap(), None);
    hang_up_tx.send(()).unwrap();
    let r = t.join().unwrap();
    assert_eq!(
        (r.op.as_str(), r.tag.as_str(), r.command.as_str()),
        ("i", tag.as_str(), "sh -i")
    );
    for _ in 0..2 {
        let e = c.next_chunk(Duration::from_secs(10)).unwrap_err();
        assert!(matches!(e, ConsoleError::Closed { .. }), "{e:?}");
    }
}

#[test]
fn the_log_shows_the_command_its_output_and_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("console.log");
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut c = Console::new(
        ours,
        LogSink::console(Some(std::fs::File::create(&path).unwrap()), None),
    )
    .unwrap();
    let t = guest(FakeGuest(theirs), |mut g| {
        g.send(b"\x1eready 6.1.0-x 0\x1e\n");
        let r = g.request();
        g.begin(&r.tag);
        g.send(b"hi\n");
        g.end(&r.tag, 3, 0);
        g
    });
    c.wait_ready(soon()).unwrap();
    c.run(&new_tag("1"), "echo hi\nfalse", soon(), &mut || false)
        .unwrap();
    let g = t.join().unwrap();
    drop(g);
    drop(c);
    // The reader thread writes the log; it ends once the socket closed.
    let until = Instant::now() + Duration::from_secs(10);
    let want = "[guest ready: 6.1.0-x]\n$ echo hi\n> false\nhi\n[exit 3]\n";
    let mut log = String::new();
    while Instant::now() < until {
        log = std::fs::read_to_string(&path).unwrap();
        if log == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(log, want);
}
