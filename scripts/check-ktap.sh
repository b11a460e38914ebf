#!/usr/bin/env bash
# Parses a KTAP file with the kernel's own KUnit result parser
# (tools/testing/kunit/kunit.py parse), so modvm's KTAP output is checked by
# the tool kernel developers actually use rather than by our own reading of
# the specification.
#
# usage: scripts/check-ktap.sh [--json OUT] FILE
#
# The parser comes from, in order:
#   $KTAP_PARSER_DIR                 a kernel tree's tools/testing/kunit
#                                    (kunit.py insists on that path shape)
#   <modvm cache>/ktap-parser/tools/testing/kunit (MODVM_CACHE, else
#                                    XDG_CACHE_HOME/modvm, else ~/.cache/modvm):
#                                    a copy fetched earlier by this script
#   Debian's linux-source package    fetched with `apt-get download` and cut
#                                    down to the parser's few Python files;
#                                    set MODVM_KTAP_OFFLINE=1 to forbid this
#
# Exit status:
#   0   parsed cleanly, every test ok
#   1   parsed cleanly, some test not ok
#   2   usage error
#   3   the parser reported the KTAP structure as broken
#   4   the parser itself failed
#   77  no parser could be found or fetched (callers treat this as "skip")
set -euo pipefail

die_usage() { echo "usage: $0 [--json OUT] FILE" >&2; exit 2; }
unavailable() { echo "check-ktap: parser unavailable: $*" >&2; exit 77; }

json=""
file=""
while [ $# -gt 0 ]; do
  case "$1" in
    --json) [ $# -ge 2 ] || die_usage; json="$2"; shift 2 ;;
    --json=*) json="${1#--json=}"; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) die_usage ;;
    *) [ -z "$file" ] || die_usage; file="$1"; shift ;;
  esac
done
[ -n "$file" ] || die_usage
[ -r "$file" ] || { echo "check-ktap: cannot read $file" >&2; exit 2; }

command -v python3 >/dev/null 2>&1 || unavailable "python3 is not installed"

# The files kunit.py imports, directly or through kunit_kernel.
PARSER_FILES="kunit.py kunit_config.py kunit_json.py kunit_kernel.py kunit_parser.py kunit_printer.py qemu_config.py"
SOURCE_PKG="${MODVM_KTAP_SOURCE_PKG:-linux-source-6.1}"
cache="${MODVM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modvm}/ktap-parser"

fetch_parser() {
  [ "${MODVM_KTAP_OFFLINE:-0}" = 1 ] && unavailable "not cached and MODVM_KTAP_OFFLINE=1"
  command -v apt-get >/dev/null 2>&1 || unavailable "not cached and apt-get is missing"
  command -v dpkg-deb >/dev/null 2>&1 || unavailable "not cached and dpkg-deb is missing"
  mkdir -p "$cache"
  # Parallel callers (test threads) would otherwise fetch and replace the
  # copy under each other's feet.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$cache/.lock"
    flock 9
    [ -f "$cache/tools/testing/kunit/kunit.py" ] && return 0
  fi
  local work
  work="$(mktemp -d "$cache/.fetch.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  echo "check-ktap: fetching the KUnit parser from $SOURCE_PKG (once)" >&2
  if ! (cd "$work" && apt-get download "$SOURCE_PKG" >"$work/apt.log" 2>&1); then
    sed 's/^/  /' "$work/apt.log" >&2
    unavailable "apt-get download $SOURCE_PKG failed (an 'apt-get update' may help)"
  fi
  local deb tarball version top members=()
  deb="$(ls "$work"/*.deb)"
  version="$(dpkg-deb -f "$deb" Version)"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" --wildcards './usr/src/linux-source-*.tar.*'
  rm -f "$deb"
  tarball="$(ls "$work"/usr/src/linux-source-*.tar.*)"
  top="$(basename "$tarball")"
  top="${top%%.tar.*}"
  for f in $PARSER_FILES; do members+=("$top/tools/testing/kunit/$f"); done
  tar -x -C "$work" -f "$tarball" "${members[@]}" \
    || unavailable "the parser files are not in $top"
  echo "$SOURCE_PKG $version" >"$work/$top/tools/testing/kunit/SOURCE"
  # kunit.py finds the kernel root by looking for tools/testing/kunit in its
  # own path, so the copy keeps that layout.
  rm -rf "$cache/tools"
  mv "$work/$top/tools" "$cache/tools"
  rm -rf "$work"
  trap - EXIT
}

if [ -n "${KTAP_PARSER_DIR:-}" ]; then
  parser="$KTAP_PARSER_DIR"
  [ -f "$parser/kunit.py" ] || unavailable "no kunit.py in KTAP_PARSER_DIR=$parser"
else
  parser="$cache/tools/testing/kunit"
  [ -f "$parser/kunit.py" ] || fetch_parser
fi

# kunit.py changes directory before opening files: give it absolute paths.
abs() { (cd "$(dirname "$1")" && printf '%s/%s\n' "$(pwd -P)" "$(basename "$1")"); }
args=(parse)
[ -z "$json" ] || args+=("--json=$(abs "$json")")
args+=("$(abs "$file")")

out="$(mktemp)"
trap 'rm -f "$out"' EXIT
set +e
python3 "$parser/kunit.py" "${args[@]}" >"$out" 2>&1
rc=$?
set -e
cat "$out"

if grep -q 'Traceback (most recent call last)' "$out"; then
  echo "check-ktap: the parser crashed" >&2
  exit 4
fi
if grep -q '\[ERROR\]' "$out"; then
  echo "check-ktap: the parser found structural errors in $file" >&2
  exit 3
fi
case "$rc" in
  0|1) exit "$rc" ;;
  *) echo "check-ktap: the parser exited with status $rc" >&2; exit 4 ;;
esac
