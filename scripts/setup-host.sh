#!/usr/bin/env bash
# Installs what modvm and its tests need on a Debian-family host, then caches
# the default guest kernel. Safe to run again: it installs only what is
# missing. As a non-root user it prints the apt-get command instead.
set -euo pipefail
cd "$(dirname "$0")/.."

# program:package pairs (gcc-12 is the compiler Debian's 6.1 and 6.12 headers
# name; pahole is what 6.12's headers run for the BTF of every module).
tools=(qemu-system-x86_64:qemu-system-x86 make:make gcc-12:gcc-12 apt-get:apt
       dpkg-deb:dpkg addr2line:binutils python3:python3 gdb:gdb
       flex:flex bison:bison bc:bc perl:perl gcc:gcc xz:xz-utils pahole:pahole
       depmod:kmod mke2fs:e2fsprogs)
missing=()
for pair in "${tools[@]}"; do
	command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
done
# Kernel builds need libelf's headers, and OpenSSL's where the configuration
# has a keyring (Debian's do: the debian-6.1-debug kernel).
[[ -f /usr/include/gelf.h ]] || missing+=(libelf-dev)
[[ -f /usr/include/openssl/opensslv.h ]] || missing+=(libssl-dev)
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
cargo run -q -- fetch --kernel debian-6.1-cloud,debian-6.12-cloud,debian-6.1-generic
# The Debian packages the test specs put into their guests (iptables, and
# the iptables extensions of xtables-addons).
cargo run -q -- fetch harness/tests/fixtures/modules/icmp_watch \
	harness/tests/fixtures/dkms/xtables-logmark
# Build the sanitizer kernel once (about 5 minutes on 2 cores; cached).
cargo run -q -- fetch --kernel debug

# --- Test archive (harness/tests/debian_mirror.rs) ---------------------------
# A Debian archive the tests serve on loopback to check --debian-mirror: a
# copy of the real signed bookworm index that modvm's private package lists
# hold (InRelease and main's Packages), and the packages of the default
# kernel profile and busybox-static in the versions it names (about 40 MiB,
# downloaded once through those lists; delete the directory to refresh it).
cache="${MODVM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modvm}"
# apt with modvm's private package lists (filled by the fetch above): the
# host's own apt state is neither read nor changed.
apt_private=(-o "Dir::State::Lists=$cache/apt/lists" -o "Dir::Cache=$cache/apt/cache"
	-o Acquire::Languages=none)
[[ $(id -u) -eq 0 ]] && apt_private+=(-o APT::Sandbox::User=root)
archive="$cache/test-archive"
if [[ ! -d $archive ]]; then
	lists="$cache/apt/lists"
	inrelease=$(ls "$lists"/*_dists_bookworm_InRelease | head -n 1)
	index=$(ls "${inrelease%_InRelease}"_main_binary-amd64_Packages* | head -n 1)
	staging=$(mktemp -d "$cache/.test-archive-XXXXXX")
	trap 'rm -rf "$staging"' EXIT
	packages="$staging/dists/bookworm/main/binary-amd64/Packages"
	mkdir -p "${packages%/*}" "$staging/download"
	cp "$inrelease" "$staging/dists/bookworm/InRelease"
	/usr/lib/apt/apt-helper cat-file "$index" >"$packages"
	# field PACKAGE FIELD: the field of the package's stanza in the index.
	field() {
		awk -v p="$1" -v f="$2: " 'BEGIN { RS = ""; FS = "\n" }
			{ n = ""; v = ""
			  for (i = 1; i <= NF; i++) {
				if (index($i, "Package: ") == 1) n = substr($i, 10)
				if (index($i, f) == 1) v = substr($i, length(f) + 1) }
			  if (n == p) { print v; exit } }' "$packages"
	}
	# The dependencies of PACKAGE whose names start with one of the prefixes.
	deps() {
		local pkg=$1
		shift
		field "$pkg" Depends | tr ',' '\n' | sed 's/^ *//; s/[ |(].*//' |
			grep -E "^($(IFS='|'; echo "$*"))" || true
	}
	image=$(deps linux-image-cloud-amd64 linux-image-)
	headers=$(deps linux-headers-cloud-amd64 linux-headers-)
	wanted=("$image" "$headers" $(deps "$headers" linux-headers- linux-kbuild-) busybox-static)
	echo "setup-host: downloading the test archive's packages: ${wanted[*]}"
	for pkg in "${wanted[@]}"; do
		file=$(field "$pkg" Filename)
		[[ -n $file ]] || { echo "setup-host: $pkg is not in $index" >&2; exit 2; }
		(cd "$staging/download" && apt-get -q "${apt_private[@]}" download \
			"$pkg=$(field "$pkg" Version)" >/dev/null)
		mkdir -p "$staging/${file%/*}"
		mv "$staging"/download/*.deb "$staging/$file"
	done
	rmdir "$staging/download"
	mv "$staging" "$archive"
	trap - EXIT
fi

# The backports suite's index beside it (no packages: the tests only
# resolve versions there, for `modvm kernels key`). Its lists exist once
# debian-6.12-cloud has been fetched above.
bpo="$archive/dists/bookworm-backports"
if [[ ! -f $bpo/InRelease ]]; then
	lists="$cache/apt-bookworm-backports/lists"
	inrelease=$(ls "$lists"/*_dists_bookworm-backports_InRelease | head -n 1)
	index=$(ls "${inrelease%_InRelease}"_main_binary-amd64_Packages* | head -n 1)
	staging=$(mktemp -d "$archive/.bpo-XXXXXX")
	mkdir -p "$staging/main/binary-amd64"
	cp "$inrelease" "$staging/InRelease"
	/usr/lib/apt/apt-helper cat-file "$index" >"$staging/main/binary-amd64/Packages"
	mv "$staging" "$bpo"
fi

# --- Debian's DKMS packages (harness/tests/dkms.rs) --------------------------
# Three of Debian's own out-of-tree module packages, unpacked as Debian ships
# them (their trees lie under usr/src/NAME-VERSION with a dkms.conf); the
# tests build and load them. Delete the directory to refresh them.
dkms_dir="$cache/dkms-packages"
for pkg in xtables-addons-dkms dm-writeboost-dkms v4l2loopback-dkms; do
	[[ -d $dkms_dir/$pkg ]] && continue
	echo "setup-host: downloading $pkg"
	mkdir -p "$dkms_dir"
	staging=$(mktemp -d "$dkms_dir/.$pkg-XXXXXX")
	trap 'rm -rf "$staging"' EXIT
	(cd "$staging" && apt-get -q "${apt_private[@]}" download "$pkg" >/dev/null)
	dpkg-deb -x "$staging"/*.deb "$staging/tree"
	mv "$staging/tree" "$dkms_dir/$pkg"
	rm -rf "$staging"
	trap - EXIT
done

# Cache the kernel's KUnit parser, which the tests use to read our KTAP
# output (tests themselves never download).
ktap=$(mktemp)
printf 'KTAP version 1\n1..1\nok 1 setup\n' >"$ktap"
scripts/check-ktap.sh "$ktap" >/dev/null
rm -f "$ktap"
