#!/usr/bin/env bash
# What `--faults` costs on the debug kernel (TCG): the whole command for
#   1. hello without `--faults` (the reference),
#   2. hello with `--faults` (an init that allocates nothing: the count run
#      only),
#   3. a generated module whose init makes 20 allocations (and frees them
#      in order when one fails), with `--faults` at -j 1 and -j 2;
# with the number of fault points tried and the time per point, medians
# over the runs. The table goes to stdout, progress to stderr.
#
#   scripts/bench-faults.sh [runs]      (default 1; about 12 minutes at 1)
#
# Run on an idle host: the numbers are wall-clock times.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1}
if ! [[ $runs =~ ^[1-9][0-9]{0,2}$ ]]; then
	echo "usage: scripts/bench-faults.sh [runs]   (runs: a whole number from 1 to 999, default 1)" >&2
	exit 2
fi
cargo build -q --release
bin=$PWD/target/release/modvm
out=$PWD/target/modvm-bench-faults
rm -rf "$out"
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

say() { echo "bench-faults: $*" >&2; }
now() { date +%s%N; }
since() { echo $((($(now) - $1) / 1000000)); }

many=$tmp/alloc20
mkdir -p "$many"
echo 'obj-m := alloc20.o' >"$many/Kbuild"
cat >"$many/alloc20.c" <<'C'
// SPDX-License-Identifier: GPL-2.0
#include <linux/init.h>
#include <linux/module.h>
#include <linux/slab.h>

#define N 20
static void *bufs[N];

static int __init alloc20_init(void)
{
	int i;

	for (i = 0; i < N; i++) {
		bufs[i] = kmalloc(32 + 16 * i, GFP_KERNEL);
		if (!bufs[i])
			goto unwind;
	}
	return 0;
unwind:
	while (i--)
		kfree(bufs[i]);
	return -ENOMEM;
}

static void __exit alloc20_exit(void)
{
	int i;

	for (i = 0; i < N; i++)
		kfree(bufs[i]);
}

module_init(alloc20_init);
module_exit(alloc20_exit);
MODULE_LICENSE("GPL");
C

# name, directory, jobs, extra flag
cases=(
	"hello|module|1|"
	"hello --faults|module|1|--faults"
	"alloc20 --faults -j 1|$many|1|--faults"
	"alloc20 --faults -j 2|$many|2|--faults"
)
# Build and save the guest once, outside the timings.
"$bin" test --kernel debug --out "$out" -q module >/dev/null 2>&1 || true
"$bin" test --kernel debug --out "$out" -q --faults "$many" >/dev/null 2>&1 || true

for ((r = 1; r <= runs; r++)); do
	for c in "${cases[@]}"; do
		IFS='|' read -r name dir jobs flag <<<"$c"
		say "run $r/$runs: $name"
		t0=$(now)
		# shellcheck disable=SC2086
		"$bin" test --kernel debug --out "$out" -q -j "$jobs" $flag --json "$tmp/r.json" "$dir" >/dev/null 2>&1 || {
			echo "bench-faults: $name did not pass; see $out/runs" >&2
			exit 1
		}
		ms=$(since "$t0")
		points=$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["tests"][0]; print(len(t.get("cases", [])))' "$tmp/r.json")
		echo "$ms $points" >>"$tmp/$(echo "$name" | tr -c 'a-z0-9\n' _)"
	done
done

printf '%-24s %8s %12s %12s\n' case points "command" "per point"
for c in "${cases[@]}"; do
	IFS='|' read -r name _ _ _ <<<"$c"
	python3 - "$name" "$tmp/$(echo "$name" | tr -c 'a-z0-9\n' _)" <<'PY'
import statistics, sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[2])]
ms = statistics.median(r[0] for r in rows)
points = rows[-1][1]
per = f"{ms / points / 1000:.2f} s" if points else "-"
print(f"{sys.argv[1]:<24} {points:>8} {ms / 1000:>10.1f} s {per:>12}")
PY
done
