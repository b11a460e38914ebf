#!/usr/bin/env bash
# Benchmark modvm on this host (TCG, the default kernel profile):
#   1. the bare floor: QEMU booting the same kernel and initramfs straight to
#      `poweroff -f`, no harness;
#   2. `modvm test` on hello, the whole command, and its boot-to-shell part;
#   3. panic latency: from the panic's first line reaching modvm to the
#      verdict (panic_init fixture);
#   4. timeout overshoot: how long after a 3 s step deadline the test has
#      its verdict (guest killed, logs collected), for a command that sleeps
#      and for one that prints without end (`yes`);
#   5. console throughput: a step that prints 1 MB.
#
#   scripts/bench.sh [runs]      (default 8; medians, min and max)
#
# Run on an idle host: the numbers are wall-clock times.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-8}

cargo build -q --release
bin=$PWD/target/release/modvm
out=$PWD/target/modvm-bench
mkdir -p "$out"
"$bin" test --accel tcg --out "$out" -q >/dev/null   # warm: build + cache

now() { date +%s%N; }
stats() { # numbers (ms) on stdin -> "median min max"
	sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2;
		printf "median %8.1f ms   min %8.1f ms   max %8.1f ms\n", m, a[1], a[NR]}'
}
field() { # json file, python expression over `d`
	python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"
}

cache=${MODVM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modvm}
vmlinuz=$(ls "$cache"/kernels/debian-6.1-cloud/linux-image-*/root/boot/vmlinuz-* | head -1)
initrd=$(ls "$out"/build/debian-6.1-cloud/module-*.cpio | head -1)

bare=() whole=() boots=()
for _ in $(seq "$runs"); do
	t0=$(now)
	qemu-system-x86_64 -M pc -nodefaults -no-user-config -display none -no-reboot \
		-smp 1 -m 256 -accel tcg -serial null -kernel "$vmlinuz" -initrd "$initrd" \
		-append "console=ttyS0 quiet panic=-1 rdinit=/bin/busybox -- poweroff -f"
	bare+=($(( ($(now) - t0) / 1000000 )))

	t0=$(now)
	"$bin" test --accel tcg --out "$out" -q --json "$out/hello.json" >/dev/null
	whole+=($(( ($(now) - t0) / 1000000 )))
	boots+=("$(field "$out/hello.json" 'd["tests"][0]["boot_ms"]')")
done

panics=()
fix=harness/tests/fixtures/modules
for _ in $(seq "$runs"); do
	"$bin" test --accel tcg --out "$out" -q --json "$out/panic.json" "$fix/panic_init" >/dev/null || true
	panics+=("$(field "$out/panic.json" 'd["tests"][0]["crash_detect_ms"]')")
done

hang=$(mktemp -d)
cp module/hello.c module/Kbuild "$hang/"
cat >"$hang/modvm.json" <<'JSON'
{"suite": "hang", "tests": [{"name": "sleeps", "steps": [{"run": "sleep 600", "timeout_s": 3}]}]}
JSON
overshoot=()
for _ in $(seq "$runs"); do
	"$bin" test --accel tcg --out "$out" -q --json "$out/hang.json" "$hang" >/dev/null || true
	overshoot+=("$(field "$out/hang.json" 'd["tests"][0]["duration_ms"] - d["tests"][0]["boot_ms"] - 3000')")
done
cat >"$hang/modvm.json" <<'JSON'
{"suite": "flood", "tests": [
  {"name": "yes", "steps": [{"run": "yes", "timeout_s": 3}]},
  {"name": "mb", "steps": [{"run": "yes | head -c 1000000", "timeout_s": 120}]}
]}
JSON
flood=() mb=()
for _ in $(seq "$runs"); do
	"$bin" test --accel tcg --out "$out" -q --json "$out/flood.json" "$hang" >/dev/null || true
	flood+=("$(field "$out/flood.json" 'd["tests"][0]["steps"][0]["duration_ms"] - 3000')")
	mb+=("$(field "$out/flood.json" 'd["tests"][1]["steps"][0]["duration_ms"]')")
done
rm -rf "$hang"

echo "bare QEMU boot to poweroff:       $(printf '%s\n' "${bare[@]}" | stats)"
echo "modvm test hello, whole command:  $(printf '%s\n' "${whole[@]}" | stats)"
echo "  of which boot to guest shell:   $(printf '%s\n' "${boots[@]}" | stats)"
echo "panic to verdict:                 $(printf '%s\n' "${panics[@]}" | stats)"
echo "timeout past a 3 s deadline:      $(printf '%s\n' "${overshoot[@]}" | stats)"
echo "  same, command printing (yes):   $(printf '%s\n' "${flood[@]}" | stats)"
echo "1 MB of output through the shell: $(printf '%s\n' "${mb[@]}" | stats)"
echo "runs: $runs; host: $(nproc) cores; $(qemu-system-x86_64 --version | head -1)"
