#!/usr/bin/env bash
# Builds fnrun's guest kernel: `make tinyconfig` on Debian's linux-source tarball
# plus runtime-initrd/kernel.config, then vmlinux (PVH, entered directly) and an
# LZ4 bzImage (for booting through qboot, and for comparing the two).
#
# Usage: build-kernel.sh SOURCE_TARBALL FRAGMENT OUTPUT_DIR
# Writes OUTPUT_DIR/vmlinux, OUTPUT_DIR/bzImage and OUTPUT_DIR/config.
# fnrun calls this (see src/kernel.ts), which caches the result by content hash.
set -euo pipefail

tarball=$1
fragment=$(readlink -f "$2")
output=$(readlink -f "$3")
jobs=${FNRUN_KERNEL_JOBS:-$(nproc)}

work=$(mktemp -d "${TMPDIR:-/tmp}/fnrun-kernel.XXXXXX")
trap 'rm -rf "$work"' EXIT

step() { echo "fnrun-kernel: $*" >&2; }

step "unpacking $(basename "$tarball")"
tar -xf "$tarball" -C "$work"
source_dir=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -n 1)
cd "$source_dir"

step "configuring (tinyconfig + $(basename "$fragment"))"
make -s tinyconfig >/dev/null
scripts/kconfig/merge_config.sh -m .config "$fragment" >/dev/null 2>&1
make -s olddefconfig >/dev/null

# A fragment option that did not stick (a missing dependency) would give a kernel
# that boots but cannot run Node; fail here, where the reason is known.
missing=$(grep -o '^CONFIG_[A-Z0-9_]*=y' "$fragment" | while read -r option; do
  grep -qx "$option" .config || echo "${option%=y}"
done)
if [ -n "$missing" ]; then
  echo "fnrun-kernel: these options in $fragment did not take effect (missing dependencies?):" >&2
  echo "$missing" >&2
  exit 1
fi

step "compiling vmlinux and bzImage with $jobs jobs (3-7 minutes on 2 cores)"
make -s -j"$jobs" vmlinux bzImage >/dev/null

cp vmlinux "$output/vmlinux"
cp arch/x86/boot/bzImage "$output/bzImage"
cp .config "$output/config"
step "done"
