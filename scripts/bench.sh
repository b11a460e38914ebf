#!/usr/bin/env bash
# Benchmark: wall time of `modvm test` on the hello module, against the bare
# floor of booting the same kernel and initramfs straight to `poweroff -f`.
#
#   scripts/bench.sh [runs]      (default 8; prints medians, min and max)
#
# Both use TCG, the same kernel, memory and machine type. Run on an idle host.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-8}

cargo build -q --release
bin=target/release/modvm
out=target/modvm-bench
"$bin" test --accel tcg --out "$out" >/dev/null   # warm: build + cache

now() { date +%s%N; }
stats() { # prints "median min max" in seconds of the numbers (ns) on stdin
	sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2;
		printf "median %.3f s  min %.3f s  max %.3f s\n", m/1e9, a[1]/1e9, a[NR]/1e9}'
}

kit=$(ls -d "${MODVM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modvm}"/kernels/debian-6.1-cloud/linux-image-*/ | head -1)
vmlinuz=$(ls "$kit"root/boot/vmlinuz-* | head -1)
initrd="$out/build/debian-6.1-cloud/hello.cpio"

bare=()
for _ in $(seq "$runs"); do
	t0=$(now)
	qemu-system-x86_64 -M pc -nodefaults -no-user-config -display none -no-reboot \
		-smp 1 -m 256 -accel tcg -serial null -kernel "$vmlinuz" -initrd "$initrd" \
		-append "console=ttyS0 quiet panic=-1 rdinit=/bin/busybox -- poweroff -f"
	bare+=($(( $(now) - t0 )))
done

whole=()
boots=()
for _ in $(seq "$runs"); do
	t0=$(now)
	line=$("$bin" test --accel tcg --out "$out" | grep 'hello/load-unload')
	whole+=($(( $(now) - t0 )))
	b=$(sed -n 's/.*(boot \([0-9.]*\)s).*/\1/p' <<<"$line")
	boots+=($(awk -v b="$b" 'BEGIN{printf "%d", b*1e9}'))
done

echo "bare QEMU boot to poweroff:        $(printf '%s\n' "${bare[@]}" | stats)"
echo "modvm test (whole command):        $(printf '%s\n' "${whole[@]}" | stats)"
echo "  of which boot to guest shell:    $(printf '%s\n' "${boots[@]}" | stats)"
echo "runs: $runs, host: $(nproc) cores, $(qemu-system-x86_64 --version | head -1)"
