# fnrun: the two commands a new machine needs are `make demo` and `make test`.
# Each installs what is missing (Debian/Ubuntu packages via apt-get, npm
# packages via npm), builds the guest kernel and runtime on first use (cached
# under ~/.cache/fnrun), then does its job.

SHELL := /bin/bash
NODE ?= node
# npm and npx say nothing of newer npm releases amid the set-up.
export npm_config_update_notifier := false
# The command as users run it (through its first line, which starts Node without
# NODE_EXTRA_CA_CERTS: bin/fnrun.js); through $(NODE) when NODE names another Node.
FNRUN := $(if $(filter node,$(NODE)),./bin/fnrun.js,$(NODE) bin/fnrun.js)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# What building fnrun's own QEMU takes (scripts/build-microvm-qemu.sh): Debian's
# QEMU source is fetched by apt-get source, these build it. Defined before
# PACKAGES, which `:=` expands at once.
QEMU_BUILD_PACKAGES := dpkg-dev ninja-build meson pkg-config libglib2.0-dev libpixman-1-dev \
	libslirp-dev libseccomp-dev libfdt-dev zlib1g-dev libaio-dev liburing-dev

# Debian packages fnrun needs: QEMU with the microvm machine and qboot, a
# compiler for the guest's tiny static init, the kernel source and what building
# it takes (lz4 compresses its bzImage), erofs-utils for the read-only runtime
# disk; cpio, git, redis-server, chromium and tmux for the tests (a real Redis
# for BullMQ, a real browser for the dashboard, a real terminal for `fnrun
# dev`), and what they run besides: procps (pgrep, ps: no QEMU left behind),
# iproute2 (a network namespace) and openssl (a Redis with TLS). Many images
# have the last four already; a minimal Debian has none of them.
PACKAGES := qemu-system-x86 qemu-system-data qemu-system-common cpio erofs-utils \
	gcc libc6-dev make flex bison bc libelf-dev xz-utils lz4 util-linux git redis-server chromium tmux \
	procps iproute2 openssl g++ python3 $(QEMU_BUILD_PACKAGES)
KERNEL_SOURCE_PACKAGE := linux-source-6.1

# better-sqlite3 is a native addon. Where no prebuilt binary can be fetched,
# node-gyp builds it, against the installed Node's own headers (offline) when they
# are there, instead of downloading them.
NODE_PREFIX := $(shell $(NODE) -p "require('path').resolve(process.execPath, '../..')" 2>/dev/null)
NPM_ENV := $(if $(wildcard $(NODE_PREFIX)/include/node/node.h),npm_config_nodedir=$(NODE_PREFIX))

TS_SOURCES := $(shell find src runtime-initrd bench -name '*.ts' -not -path 'src/serve/dashboard/app/*' 2>/dev/null)

.PHONY: all setup system-packages folder-qemu microvm-qemu demo test test-unit test-e2e check format build kernel bench clean

all: build

## setup: install system packages and npm dependencies, build fnrun and its QEMU
setup: system-packages build functions/node_modules/.package-lock.json folder-qemu microvm-qemu

# fnrun's cache (src/util/cache.ts's cacheRoot).
FNRUN_CACHE := $(or $(FNRUN_CACHE_DIR),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/fnrun)

## folder-qemu: fetch QEMU 10 (bookworm-backports, extracted into the cache) for snapshots with shared folders
# A fallback: folder profiles use fnrun's own QEMU (microvm-qemu, patched for
# them) where it was built. Without either, invocations with shared folders boot.
folder-qemu: system-packages
	@mkdir -p "$(FNRUN_CACHE)" && bash scripts/fetch-folder-qemu.sh "$(FNRUN_CACHE)" || \
	  echo "make: could not fetch QEMU 10 (the fallback for shared-folder snapshots)" >&2

## microvm-qemu: build fnrun's QEMU (Debian's source, microvm only, with TCG) into the cache
# Without it, VMs run on the system's full QEMU, which starts slower, and shared
# folders on QEMU 10 (folder-qemu).
microvm-qemu: system-packages
	@mkdir -p "$(FNRUN_CACHE)" && bash scripts/build-microvm-qemu.sh "$(FNRUN_CACHE)" || \
	  echo "make: could not build fnrun's QEMU; VMs run on the system's qemu-system-x86_64" >&2

# Installs only what is missing, so a machine that has it all needs no root.
system-packages:
	@missing=""; \
	for package in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$package"; \
	done; \
	if ! ls /usr/src/linux-source-*.tar.* >/dev/null 2>&1; then \
	  missing="$$missing $(KERNEL_SOURCE_PACKAGE)"; \
	fi; \
	if [ -n "$$missing" ]; then \
	  echo "make: installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

node_modules/.package-lock.json: package.json package-lock.json
	$(NPM_ENV) npm ci --no-audit --no-fund --loglevel=error
	@touch $@

functions/node_modules/.package-lock.json: functions/package.json functions/package-lock.json
	$(NPM_ENV) npm ci --prefix functions --no-audit --no-fund --loglevel=error
	@touch $@

dist/.built: node_modules/.package-lock.json tsconfig.json tsconfig.build.json scripts/build-cli.mjs $(TS_SOURCES)
	npx tsc -p tsconfig.build.json
	$(NODE) scripts/build-cli.mjs
	@touch $@

build: dist/.built

## kernel: build the guest kernel and runtime image now (otherwise on first use)
kernel: setup
	$(FNRUN) setup

## demo: run the hello function in its own microvm
demo: setup
	$(FNRUN) invoke functions/hello.ts --event '{"name":"Ada"}'

## test: lint and type-check, unit tests, then end-to-end tests booting real VMs
test: setup check test-unit test-e2e

test-unit: setup
	npx vitest run --project unit

test-e2e: setup
	npx vitest run --project e2e

check: node_modules/.package-lock.json functions/node_modules/.package-lock.json
	npx tsc -p tsconfig.json --noEmit
	npx tsc -p tsconfig.dashboard.json
	npx biome check .

format: node_modules/.package-lock.json
	npx biome check --write .

## bench: cold and warm start benchmarks (not part of `make test`)
bench: setup
	$(NODE) dist/bench.mjs

clean:
	rm -rf dist
