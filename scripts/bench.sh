#!/usr/bin/env bash
# Speed benchmark of modvm on this host (TCG, the default kernel profile).
# All in one run, each as median, min and max over the runs:
#   1. the reference: plain QEMU booting the same kernel and initramfs
#      straight to `poweroff -f`, no harness;
#   2. modvm's cold boot to a ready shell (`boot_ms` of a `--cold` hello) and
#      a restore from the saved guest to ready (`boot_ms` of a restored hello);
#   3. one hello test, the whole command, restored and `--cold`, and
#      restored with the debug build (what `cargo run -- test` runs);
#   4. generated suites of 20 and 50 hello-style tests (insmod, rmmod), the
#      whole command, at -j 1 and -j 2 (the 50-test ones half as many runs);
#   5. where a test's time goes: `MODVM_TRACE=1` phases over the 20-test
#      -j 1 runs, per test and per run, and a first build of a module;
#   6. panic latency: from the panic's first line reaching modvm to the
#      verdict (panic_init fixture);
#   7. timeout overshoot: how long after a 3 s step deadline the test has
#      its verdict (guest killed, logs collected), for a command that sleeps
#      and for one that prints without end (`yes`);
#   8. console throughput: a step that prints 1 MB;
#   9. modvm's own peak RSS (not its QEMU children's) over 20 tests at -j 2;
# then the ratios of one restored hello, and of 20 and 50 tests at -j 2, to
# as many plain boots. The table goes to stdout, the same numbers as JSON to
# target/modvm-bench/bench.json, progress to stderr.
#
#   scripts/bench.sh [runs]      (default 5; about 6 minutes at 5)
#
# Run on an idle host: the numbers are wall-clock times.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
if ! [[ $runs =~ ^[1-9][0-9]{0,2}$ ]]; then
	echo "usage: scripts/bench.sh [runs]   (runs: a whole number from 1 to 999, default 5)" >&2
	exit 2
fi
half=$((runs / 2 > 0 ? runs / 2 : 1))
lib=$PWD/scripts/bench-lib

cargo build -q --release
cargo build -q
bin=$PWD/target/release/modvm
dbg=$PWD/target/debug/modvm
out=$PWD/target/modvm-bench
# The bench's own artifacts: the last run's logs only, and no stale builds
# of the generated suites (so a first build is a first build).
rm -rf "$out/runs" "$out"/build/*/bench-*
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$out"/build/*/bench-*' EXIT
samples=$tmp/samples
mkdir -p "$samples/trace" "$samples/trace-fresh"

say() { echo "bench: $*" >&2; }
now() { date +%s%N; }
since() { echo $((($(now) - $1) / 1000000)); } # ms since a `now`
add() { echo "$2" >>"$samples/$1"; }           # key, number
field() { # json file, python expression over `d`
	python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"
}
check() { # json report, guest kind (restored/booted), test count
	python3 - "$@" <<'PY'
import json, sys
path, guest, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
tests = json.load(open(path))["tests"]
bad = [f'{t["name"]} ({t["status"]}, {t["guest"]})' for t in tests
       if t["status"] != "pass" or t["guest"] != guest]
if len(tests) != count or bad:
    sys.exit(f"bench: {path}: expected {count} passing {guest} tests, "
             f"got {len(tests)}; not so: {', '.join(bad[:5])}")
PY
}
modvm() { "$bin" test --accel tcg --out "$out" -q "$@"; }
modvm_debug() { "$dbg" test --accel tcg --out "$out" -q "$@"; }

suite() { # dir, number of hello-style tests
	mkdir -p "$1"
	cp module/hello.c module/Kbuild "$1/"
	python3 - "$1/modvm.json" "$2" <<'PY'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
step_in = {"insmod": "hello", "kernel_log": [{"contains": "Hello, Kernel World!"}]}
tests = [{"name": f"t{i:02d}", "steps": [step_in, {"rmmod": "hello"}]} for i in range(1, n + 1)]
json.dump({"suite": f"hello{n}", "tests": tests}, open(path, "w"), indent=1)
PY
}

say "warm-up: kernel kit, hello build, saved guest"
modvm --json "$out/hello.json" >/dev/null # makes the snapshot if missing
check "$out/hello.json" restored 1
modvm_debug --json "$out/hello.json" >/dev/null
check "$out/hello.json" restored 1
s20=$tmp/bench-suite20 s50=$tmp/bench-suite50
suite "$s20" 20
suite "$s50" 50
for s in "$s20" "$s50"; do # first build of each suite's module, traced
	MODVM_TRACE=1 modvm --filter t01 --json "$out/warm.json" "$s" \
		>/dev/null 2>"$samples/trace-fresh/$(basename "$s").log"
	check "$out/warm.json" restored 1
done

cache=${MODVM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modvm}
vmlinuz=$(ls "$cache"/kernels/debian-6.1-cloud/linux-image-*/root/boot/vmlinuz-* | head -1)
initrd=$(ls -t "$out"/build/debian-6.1-cloud/module-*.cpio | head -1)

# Interleaved, so drift in the host's load spreads over every figure alike.
for r in $(seq "$runs"); do
	say "run $r/$runs: boots, hello, 20 tests$( ((r <= half)) && echo ', 50 tests')"
	t0=$(now)
	qemu-system-x86_64 -M pc -nodefaults -no-user-config -display none -no-reboot \
		-smp 1 -m 256 -accel tcg -serial null -kernel "$vmlinuz" -initrd "$initrd" \
		-append "console=ttyS0 quiet panic=-1 rdinit=/bin/busybox -- poweroff -f"
	add plain_boot "$(since "$t0")"

	t0=$(now)
	modvm --json "$out/hello.json" >/dev/null
	add hello_restored "$(since "$t0")"
	check "$out/hello.json" restored 1
	add restore_boot "$(field "$out/hello.json" 'd["tests"][0]["boot_ms"]')"

	t0=$(now)
	modvm_debug --json "$out/hello.json" >/dev/null
	add hello_restored_debug "$(since "$t0")"
	check "$out/hello.json" restored 1

	t0=$(now)
	modvm --cold --json "$out/cold.json" >/dev/null
	add hello_cold "$(since "$t0")"
	check "$out/cold.json" booted 1
	add cold_boot "$(field "$out/cold.json" 'd["tests"][0]["boot_ms"]')"

	# Tracing costs a line on stderr per phase: these runs count as timed too.
	t0=$(now)
	MODVM_TRACE=1 modvm -j 1 --json "$out/suite.json" "$s20" >/dev/null 2>"$samples/trace/$r.log"
	add suite20_j1 "$(since "$t0")"
	check "$out/suite.json" restored 20

	t0=$(now)
	modvm -j 2 --json "$out/suite.json" "$s20" >/dev/null
	add suite20_j2 "$(since "$t0")"
	check "$out/suite.json" restored 20

	if ((r <= half)); then
		for j in 1 2; do
			t0=$(now)
			modvm -j "$j" --json "$out/suite.json" "$s50" >/dev/null
			add "suite50_j$j" "$(since "$t0")"
			check "$out/suite.json" restored 50
		done
	fi
done

say "peak RSS of modvm over 20 tests at -j 2"
kib=$(python3 "$lib/peak_rss.py" "$bin" test --accel tcg --out "$out" -q -j 2 --json "$out/suite.json" "$s20")
check "$out/suite.json" restored 20
add peak_rss "$(python3 -c "import sys; print(round(int(sys.argv[1]) / 1024, 1))" "$kib")"

say "panic latency"
fix=harness/tests/fixtures/modules
for _ in $(seq "$runs"); do
	modvm --json "$out/panic.json" "$fix/panic_init" >/dev/null || true
	add panic "$(field "$out/panic.json" 'd["tests"][0]["crash_detect_ms"]')"
done

say "timeout overshoot and console throughput"
hang=$tmp/bench-hang
mkdir -p "$hang"
cp module/hello.c module/Kbuild "$hang/"
cat >"$hang/modvm.json" <<'JSON'
{"suite": "hang", "tests": [{"name": "sleeps", "steps": [{"run": "sleep 600", "timeout_s": 3}]}]}
JSON
# Past the deadline = the test's time less its boot, the 3 s, and the check
# of the saved guest that the run's first test makes before its boot starts.
checked() { # stderr of a MODVM_TRACE=1 run -> ms spent in snapshot-check
	awk '$1 == "modvm-trace" && $2 == "snapshot-check" {s += $3} END {print s + 0}' "$1"
}
for _ in $(seq "$runs"); do
	MODVM_TRACE=1 modvm --json "$out/hang.json" "$hang" >/dev/null 2>"$tmp/hang.err" || true
	add overshoot_sleep "$(field "$out/hang.json" "d['tests'][0]['duration_ms'] - d['tests'][0]['boot_ms'] - 3000 - $(checked "$tmp/hang.err")")"
done
cat >"$hang/modvm.json" <<'JSON'
{"suite": "flood", "tests": [
  {"name": "yes", "steps": [{"run": "yes", "timeout_s": 3}]},
  {"name": "mb", "steps": [{"run": "yes | head -c 1000000", "timeout_s": 120}]}
]}
JSON
# -j 1: `yes` runs alone and first, so it alone made the check. (Its step's
# own duration_ms stops at the deadline: 3000 by construction.)
for _ in $(seq "$runs"); do
	MODVM_TRACE=1 modvm -j 1 --json "$out/flood.json" "$hang" >/dev/null 2>"$tmp/hang.err" || true
	add overshoot_yes "$(field "$out/flood.json" "d['tests'][0]['duration_ms'] - d['tests'][0]['boot_ms'] - 3000 - $(checked "$tmp/hang.err")")"
	add mb "$(field "$out/flood.json" 'd["tests"][1]["steps"][0]["duration_ms"]')"
done

host="host: $(nproc) cores; $(qemu-system-x86_64 --version | head -1)"
python3 "$lib/summary.py" "$samples" "$out/bench.json" "$runs" "$host"
