#!/usr/bin/env bash
# Fetches the QEMU that shared-folder snapshots need into fnrun's cache:
# qemu-system-x86 from Debian's bookworm-backports (10.x), extracted, not
# installed (the system's QEMU stays as it is; it is faster for the other
# clones). QEMU 7.2 marks vhost-user-fs unmigratable; 10.x can save and load
# it (docs/snapshots.md). Usage: fetch-folder-qemu.sh CACHE_DIR
#
# Installs CACHE_DIR/folder-qemu/qemu-system-x86_64 atomically; does nothing if
# it is there. Needs no root: apt reads a private list of sources.
set -euo pipefail

cache=${1:?usage: fetch-folder-qemu.sh CACHE_DIR}
target="$cache/folder-qemu"
[ -x "$target/qemu-system-x86_64" ] && exit 0

mirror=${FNRUN_DEBIAN_MIRROR:-http://deb.debian.org/debian}

mkdir -p "$cache"
work=$(mktemp -d "$cache/.folder-qemu-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/archives/partial"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror%/} bookworm-backports main" >"$work/sources.list"
apt=(apt-get -qq
  -o "Dir::Etc::sourcelist=$work/sources.list" -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::archives=$work/archives"
  -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
"${apt[@]}" update
(cd "$work" && "${apt[@]}" download qemu-system-x86/bookworm-backports)
dpkg-deb -x "$work"/qemu-system-x86_*.deb "$work/root"

mkdir -p "$work/out"
cp "$work/root/usr/bin/qemu-system-x86_64" "$work/out/"
# It must run with this system's libraries (backports are built against them).
if ! "$work/out/qemu-system-x86_64" --version >"$work/out/version"; then
  echo "fetch-folder-qemu: the backports QEMU does not run here" >&2
  exit 1
fi
# A leftover without the binary is not an install; a complete one made by a
# parallel run meanwhile is kept (the rename fails on it).
[ -x "$target/qemu-system-x86_64" ] || rm -rf "$target"
if ! mv -T "$work/out" "$target" 2>/dev/null && [ ! -x "$target/qemu-system-x86_64" ]; then
  echo "fetch-folder-qemu: could not install into $target" >&2
  exit 1
fi
echo "fetch-folder-qemu: $(head -n 1 "$target/version") in $target"
