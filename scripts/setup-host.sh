#!/usr/bin/env bash
# Installs what modvm and its tests need on a Debian-family host, then caches
# the default guest kernel. Safe to run again: it installs only what is
# missing. As a non-root user it prints the apt-get command instead.
set -euo pipefail
cd "$(dirname "$0")/.."

# program:package pairs (gcc-12 is the compiler Debian's 6.1 headers name).
tools=(qemu-system-x86_64:qemu-system-x86 make:make gcc-12:gcc-12 apt-get:apt
       dpkg-deb:dpkg addr2line:binutils python3:python3 gdb:gdb
       flex:flex bison:bison bc:bc perl:perl gcc:gcc xz:xz-utils)
missing=()
for pair in "${tools[@]}"; do
	command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
done
# The debug kernel's build needs libelf's headers.
[[ -f /usr/include/gelf.h ]] || missing+=(libelf-dev)
# Specs' C helpers are linked statically: gcc needs libc.a.
dpkg-query -W -f='${Status}' libc6-dev 2>/dev/null | grep -q "ok installed" || missing+=(libc6-dev)

if ((${#missing[@]})); then
	if [[ $(id -u) -eq 0 ]]; then
		echo "setup-host: installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -q >/dev/null
		apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
	else
		echo "setup-host: missing packages; run: sudo apt-get install ${missing[*]}" >&2
		exit 2
	fi
fi

# Download the default guest kernel kit once, so parallel tests find it cached.
cargo run -q -- fetch --kernel debian-6.1-cloud,debian-6.12-cloud
# Build the sanitizer kernel once (about 5 minutes on 2 cores; cached).
cargo run -q -- fetch --kernel debug

# Cache the kernel's KUnit parser, which the tests use to read our KTAP
# output (tests themselves never download).
ktap=$(mktemp)
printf 'KTAP version 1\n1..1\nok 1 setup\n' >"$ktap"
scripts/check-ktap.sh "$ktap" >/dev/null
rm -f "$ktap"
