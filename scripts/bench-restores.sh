#!/usr/bin/env bash
# Restore reliability and speed: hello run N times (`--repeat`, each on a
# fresh guest restored from the saved one) on each profile; prints how
# many runs passed, how many did not start from a restore (one that failed
# and fell back to a boot), and the whole command's time. Then the ignored 50-restore test of
# `cargo test` (debian-6.12-cloud).
#
#   scripts/bench-restores.sh [runs] [profile,profile…]
#   (default 50 runs; debian-6.1-cloud,debian-6.12-cloud)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-50}
profiles=${2:-debian-6.1-cloud,debian-6.12-cloud}
if ! [[ $runs =~ ^[1-9][0-9]{0,3}$ ]]; then
	echo "usage: scripts/bench-restores.sh [runs] [profiles]   (runs: 1 to 9999)" >&2
	exit 2
fi
cargo build -q --release
bin=$PWD/target/release/modvm
out=$PWD/target/modvm-bench-restores
rm -rf "$out"
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

IFS=, read -r -a names <<<"$profiles"
printf '%-20s %6s %8s %16s %10s\n' profile runs passed "not restored" command
for p in "${names[@]}"; do
	# The saved guest exists before the timing starts.
	"$bin" test --kernel "$p" --out "$out" -q module >/dev/null 2>&1 || true
	start=$(date +%s%N)
	"$bin" test --kernel "$p" --out "$out" -q --repeat "$runs" --json "$tmp/r.json" module >/dev/null 2>"$tmp/err" || true
	ms=$((($(date +%s%N) - start) / 1000000))
	passed=$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["tests"][0]; print(sum(c["status"] == "pass" for c in t.get("cases", [])))' "$tmp/r.json")
	failed=$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["tests"][0]; print(sum(not (c.get("message") or "").startswith("restored in") for c in t.get("cases", [])))' "$tmp/r.json")
	printf '%-20s %6s %8s %16s %8.1f s\n' "$p" "$runs" "$passed" "$failed" "$(echo "$ms / 1000" | bc -l)"
done
cargo test -q --test restores -- --ignored >&2
