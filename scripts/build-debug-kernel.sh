#!/usr/bin/env bash
# Builds the "debug" guest kernel (KASAN, kmemleak, lockdep, UBSAN, KFENCE,
# fault injection, KUnit) from Debian's linux-source-6.1: tinyconfig plus
# images/kernels/debug.config, with kmemleak's minimum object age lowered so
# a leak is reported right after rmmod instead of 5 s later.
#
# usage: scripts/build-debug-kernel.sh OUT_DIR
#
# Leaves in OUT_DIR: bzImage, vmlinux (DWARF, for symbolising), System.map,
# and linux/, a configured and built tree for out-of-tree modules:
#   make -C OUT_DIR/linux M=<module dir> modules
# It builds with the host's gcc (gcc-12 on Debian 12), the same compiler
# such module builds then use. Running it again rebuilds only what changed.
# Needs: apt-get, dpkg-deb, make, gcc, flex, bison, bc, libelf-dev.
set -euo pipefail

if [[ $# -ne 1 ]]; then
	echo "usage: $0 OUT_DIR" >&2
	exit 2
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
fragment=$repo/images/kernels/debug.config
mkdir -p "$1"
out=$(cd "$1" && pwd)
tree=$out/linux
step() { echo "build-debug-kernel: $*"; }

for tool in apt-get dpkg-deb make gcc flex bison bc; do
	command -v "$tool" >/dev/null ||
		{ echo "build-debug-kernel: $tool is missing (install it)" >&2; exit 2; }
done

if [[ ! -f $tree/Makefile ]]; then
	step "downloading linux-source-6.1"
	scratch=$out/download
	rm -rf "$scratch" && mkdir -p "$scratch"
	(cd "$scratch" && apt-get download -q linux-source-6.1)
	step "extracting"
	dpkg-deb -x "$scratch"/linux-source-6.1_*.deb "$scratch/pkg"
	rm -rf "$tree.tmp" && mkdir -p "$tree.tmp"
	tar -xf "$scratch"/pkg/usr/src/linux-source-6.1.tar.* -C "$tree.tmp" --strip-components=1
	mv "$tree.tmp" "$tree"
	rm -rf "$scratch"
fi
cd "$tree"

# kmemleak reports nothing younger than MSECS_MIN_AGE (5000 ms): a module's
# leak would need a 5 s wait after rmmod. At 0 every object is old enough;
# kmemleak's own checksum rule (an object is reported only when unchanged
# across two scans) still filters objects that are in flight.
kml=mm/kmemleak.c
if ! grep -Eq '^#define MSECS_MIN_AGE[[:space:]]+0[[:space:]]' "$kml"; then
	grep -Eq '^#define MSECS_MIN_AGE[[:space:]]+5000[[:space:]]' "$kml" || {
		echo "build-debug-kernel: $tree/$kml has no '#define MSECS_MIN_AGE 5000' line;" \
			"update the kmemleak edit in $0 for this kernel" >&2
		exit 1
	}
	step "kmemleak: MSECS_MIN_AGE 5000 -> 0"
	sed -Ei 's/^(#define MSECS_MIN_AGE[[:space:]]+)5000([[:space:]])/\10\2/' "$kml"
fi

step "configuring (tinyconfig + $(basename "$fragment"))"
make -s tinyconfig >/dev/null
scripts/kconfig/merge_config.sh -m -O . .config "$fragment" >/dev/null
make -s olddefconfig
# Kconfig drops an option whose dependencies are unmet without a word.
dropped=0
while IFS= read -r line; do
	[[ $line =~ ^CONFIG_[A-Z0-9_]+= ]] || continue
	if ! grep -qxF -- "$line" .config; then
		echo "build-debug-kernel: $line did not survive olddefconfig (got: $(grep -E "^(# )?${line%%=*}[= ]" .config || echo nothing))" >&2
		dropped=1
	fi
done <"$fragment"
((dropped == 0)) || { echo "build-debug-kernel: fix the dependencies in $fragment" >&2; exit 1; }

step "building bzImage and the module build tree with $(gcc --version | head -1), -j$(nproc)"
start=$SECONDS
make -s -j"$(nproc)" bzImage modules
[[ -f Module.symvers ]] || { echo "build-debug-kernel: no Module.symvers in $tree" >&2; exit 1; }
cp arch/x86/boot/bzImage vmlinux System.map "$out/"
step "done in $((SECONDS - start)) s: $out/bzImage, $out/vmlinux, $out/System.map, tree $tree ($(make -s kernelrelease))"
