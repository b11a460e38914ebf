#!/usr/bin/env bash
# Builds the debian-6.1-debug kernel (Debian's own config, trimmed, with the
# sanitizers; about 15 minutes on 2 cores, once per cache) and runs the
# test that needs it, which `cargo test` leaves out for time. Prints what
# the kernel costs: build time, disk, boot and restore time.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${MODVM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modvm}"
cargo build -q
start=$(date +%s)
target/debug/modvm kernels fetch debian-6.1-debug
echo "check-debian-debug: kit ready after $(($(date +%s) - start)) s"
kit=$(sed -n 's/.*"kit":"\([^"]*\)".*/\1/p' "$cache/kernels/debian-6.1-debug/current.json")
echo "check-debian-debug: kit $kit: $(du -sh "$cache/kernels/debian-6.1-debug/$kit" | cut -f1)" \
	"(bzImage $(du -h "$cache/kernels/debian-6.1-debug/$kit"/root/boot/vmlinuz-* | cut -f1)," \
	"modules $(du -sh "$cache/kernels/debian-6.1-debug/$kit/root/lib/modules" | cut -f1))"
# Boot (saving the guest) and then a restore, for the hello module.
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for run in first second; do
	t0=$(date +%s%N)
	target/debug/modvm test --kernel debian-6.1-debug --out "$out" module >/dev/null
	echo "check-debian-debug: hello, $run run (whole command): $((($(date +%s%N) - t0) / 1000000)) ms"
done
cargo test -q --test debian_debug_kernel -- --ignored
