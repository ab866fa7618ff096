#!/usr/bin/env bash
# Builds fnrun's QEMU into its cache: Debian's own QEMU source (the version
# the system's qemu-system-x86 comes from, with Debian's patches), configured
# as Debian configures its reduced qemu-system-x86_64-microvm (the microvm
# machine and virtio-mmio devices only), but with TCG, which Debian's leaves
# out (it is for KVM), and linked without PIE. The system's full QEMU spends
# ~30 ms of every start relocating itself and registering hundreds of device
# types; this one starts in a third of that, and a snapshot start uses ~25 %
# less CPU (docs/performance.md). Usage: build-microvm-qemu.sh CACHE_DIR
#
# With fnrun's patches (scripts/qemu-patches/): one lets it save and restore a
# shared folder's device, which stock 7.2 cannot.
#
# Installs CACHE_DIR/microvm-qemu/bin/qemu-system-x86_64 atomically; does
# nothing if the one there was built by this script from the same source.
# Needs the build packages (the Makefile's QEMU_BUILD_PACKAGES); apt reads a
# private list of sources, so no root is needed. ~5 minutes on 2 cores.
set -euo pipefail
# fnrun's cache is its owner's alone (0700), this build included.
umask 077

cache=${1:?usage: build-microvm-qemu.sh CACHE_DIR}
target="$cache/microvm-qemu"
mirror=${FNRUN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${FNRUN_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
here=$(cd "$(dirname "$0")" && pwd)

# What the build is made from: the system QEMU's source version, this script
# and fnrun's patches to it (scripts/qemu-patches: each says why).
source_version=$(dpkg-query -W -f='${source:Version}' qemu-system-x86)
recipe="$source_version $(cat "$here/build-microvm-qemu.sh" "$here"/qemu-patches/*.patch | sha256sum | cut -c1-16)"
if [ -x "$target/bin/qemu-system-x86_64" ] && [ "$(cat "$target/recipe" 2>/dev/null)" = "$recipe" ]; then
  exit 0
fi
[ -t 2 ] && echo "build-microvm-qemu: building QEMU $source_version for microvm with TCG (first run only; ~5 minutes on 2 cores)" >&2

mkdir -p "$cache"
work=$(mktemp -d "$cache/.microvm-qemu-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/archives/partial"
{
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror%/} bookworm main"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror%/} bookworm-updates main"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${security%/} bookworm-security main"
} >"$work/sources.list"
apt=(apt-get -qq
  -o "Dir::Etc::sourcelist=$work/sources.list" -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::archives=$work/archives"
  -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
"${apt[@]}" update
# The system QEMU's own version if the archive still has it, else bookworm's newest.
(cd "$work" && { "${apt[@]}" source --download-only "qemu=${source_version#*:}" 2>/dev/null ||
  "${apt[@]}" source --download-only qemu; }) >/dev/null
# apt checked the files against the archive's signed index; dpkg-source would
# also look for the uploader's key, which no keyring here has, and say so.
(cd "$work" && dpkg-source -q -x qemu_*.dsc src) >"$work/unpack.log" 2>&1 || {
  tail -n 20 "$work/unpack.log" >&2
  exit 1
}
for patch in "$here"/qemu-patches/*.patch; do
  patch -s -d "$work/src" -p1 <"$patch"
done

# The machine and devices fnrun's VMs have (src/vm/qemu.ts), nothing else. Its
# main loop waits on io_uring as Debian's does: without it, a guest thrashing its
# page cache on the runtime disk (one running out of memory) took 10-20 times as
# long to get there. A
# binary without a PC board fails to link, as Debian's microvm build notes.
cat >"$work/src/configs/devices/x86_64-softmmu/fnrun.mak" <<'EOF'
CONFIG_PCI_DEVICES=n
CONFIG_MICROVM=y
CONFIG_Q35=y
CONFIG_VIRTIO_BLK=y
CONFIG_VIRTIO_SERIAL=y
CONFIG_VIRTIO_NET=y
CONFIG_VHOST_USER_FS=y
EOF
mkdir "$work/src/build"
(cd "$work/src/build" && ../configure --prefix=/usr \
  --target-list=x86_64-softmmu --without-default-features --without-default-devices \
  --with-devices-x86_64=fnrun --enable-tcg --enable-kvm \
  --enable-seccomp --enable-slirp --enable-vhost-user --enable-fdt=system \
  --enable-linux-aio --enable-linux-io-uring \
  --disable-docs --disable-user --disable-tools --disable-install-blobs --audio-drv-list="" \
  --disable-pie --extra-ldflags=-no-pie) >"$work/configure.log" 2>&1 || {
  tail -n 20 "$work/configure.log" >&2
  exit 1
}
ninja -C "$work/src/build" -j "$(nproc)" qemu-system-x86_64 >"$work/build.log" 2>&1 || {
  tail -n 20 "$work/build.log" >&2
  exit 1
}

mkdir -p "$work/out/bin" "$work/out/share"
cp "$work/src/build/qemu-system-x86_64" "$work/out/bin/"
strip "$work/out/bin/qemu-system-x86_64"
# Its firmware (qboot, pvh.bin) is Debian's qemu-system-data: QEMU looks for it
# next to its binary, in ../share/qemu.
ln -s /usr/share/qemu "$work/out/share/qemu"
"$work/out/bin/qemu-system-x86_64" --version | head -n 1 >"$work/out/version"
if ! "$work/out/bin/qemu-system-x86_64" -accel help | grep -qx tcg; then
  echo "build-microvm-qemu: the build has no TCG" >&2
  exit 1
fi
# Which patches it has, by name (src/host/qemu-binary.ts looks for one).
for patch in "$here"/qemu-patches/*.patch; do basename "$patch" .patch; done >"$work/out/patches"
echo "$recipe" >"$work/out/recipe"
# Replace an older build; a complete one a parallel run made meanwhile is kept.
if [ "$(cat "$target/recipe" 2>/dev/null)" != "$recipe" ]; then
  rm -rf "$target.old" && { [ ! -e "$target" ] || mv -T "$target" "$target.old"; }
  mv -T "$work/out" "$target" 2>/dev/null || [ "$(cat "$target/recipe" 2>/dev/null)" = "$recipe" ] || {
    echo "build-microvm-qemu: could not install into $target" >&2
    exit 1
  }
  rm -rf "$target.old"
fi
echo "build-microvm-qemu: $(cat "$target/version") (microvm, TCG) in $target" >&2
