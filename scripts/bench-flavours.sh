#!/usr/bin/env bash
# Boot and restore times of the kernel flavours, side by side (TCG): for each
# profile, the hello test restored and `--cold`, as `boot_ms` (to a ready
# shell) and the whole command, medians over the runs; then the size of its
# saved guest and of its modules disk in the cache; and the first profile
# once more with devices (a 64 MiB virtio-blk scratch disk and a NIC on the
# user network), to show what a machine with hardware costs a restore.
# Profiles are interleaved run by run, so drift in the host's load spreads
# over all of them alike.
#
#   scripts/bench-flavours.sh [runs] [profile,profile…]
#   (default 5 runs; debian-6.1-cloud,debian-6.1-generic,debian-6.12-cloud,
#   debian-6.12-generic)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
profiles=${2:-debian-6.1-cloud,debian-6.1-generic,debian-6.12-cloud,debian-6.12-generic}
if ! [[ $runs =~ ^[1-9][0-9]{0,2}$ ]]; then
	echo "usage: scripts/bench-flavours.sh [runs] [profiles]   (runs: 1 to 999)" >&2
	exit 2
fi
IFS=, read -r -a names <<<"$profiles"
names+=("${names[0]}+devices")

cargo build -q --release
bin=$PWD/target/release/modvm
out=$PWD/target/modvm-bench-flavours
cache=${MODVM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modvm}
rm -rf "$out"
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

say() { echo "bench-flavours: $*" >&2; }
now() { date +%s%N; }
since() { echo $((($(now) - $1) / 1000000)); }
add() { echo "$3" >>"$tmp/$1.$2"; } # profile, key, number
boot_ms() {
	python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))["tests"][0]
if t["status"] != "pass" or t["guest"] != sys.argv[2]:
    sys.exit("bench-flavours: %s: %s (%s), wanted a %s pass" % (sys.argv[1], t["status"], t["guest"], sys.argv[2]))
print(t["boot_ms"])' "$@"
}
devices=$tmp/devices
mkdir -p "$devices"
cp module/hello.c module/Kbuild "$devices/"
cat >"$devices/modvm.json" <<'JSON'
{ "suite": "hello", "tests": [ { "name": "load-unload",
  "devices": [{ "disk": { "name": "scratch", "size_mib": 64 } }, { "nic": { "net": "user" } }],
  "steps": [{ "insmod": "hello" }, { "rmmod": "hello" }] } ] }
JSON
hello() { # entry (profile or profile+devices), json, extra flags…
	local p=${1%+devices} dir=module json=$2
	[[ $1 == *+devices ]] && dir=$devices
	shift 2
	"$bin" test --accel tcg --out "$out" -q --kernel "$p" --json "$json" "$@" "$dir" >/dev/null
}

for p in "${names[@]}"; do
	say "warm-up: $p (kit, modules disk, saved guest)"
	hello "$p" "$tmp/warm.json"
done
for r in $(seq "$runs"); do
	say "run $r/$runs"
	for p in "${names[@]}"; do
		t0=$(now)
		hello "$p" "$tmp/r.json"
		add "$p" restored_cmd "$(since "$t0")"
		add "$p" restored_boot "$(boot_ms "$tmp/r.json" restored)"
		t0=$(now)
		hello "$p" "$tmp/c.json" --cold
		add "$p" cold_cmd "$(since "$t0")"
		add "$p" cold_boot "$(boot_ms "$tmp/c.json" booted)"
	done
done

median() { sort -n "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
mib() { if [[ -n $1 ]]; then du -sm "$1" | awk '{ print $1 }'; else echo "—"; fi; }
printf '| profile | restore (ms) | hello restored, whole command (ms) | cold boot (ms) | hello --cold, whole command (ms) | saved guest (MiB) | modules disk (MiB) |\n'
printf '| --- | --- | --- | --- | --- | --- | --- |\n'
for p in "${names[@]}"; do
	snap= disk=
	if [[ $p != *+devices ]]; then
		snap=$(ls -td "$cache/snapshots/$p"-* 2>/dev/null | grep -v '\.lock$' | head -1 || true)
		disk=$(ls -td "$cache/guest-modules/$p"-* 2>/dev/null | grep -v '\.lock$' | head -1 || true)
	fi
	printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$p" \
		"$(median "$tmp/$p.restored_boot")" "$(median "$tmp/$p.restored_cmd")" \
		"$(median "$tmp/$p.cold_boot")" "$(median "$tmp/$p.cold_cmd")" \
		"$(mib "$snap")" "$(mib "$disk")"
done
