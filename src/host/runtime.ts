/**
 * The guest runtime: the host's own Node binary and the libraries it links, the
 * stage-0 init (runtime-initrd/init.c, compiled static) and the guest runtime
 * (runtime-initrd/guest/, bundled into one file). Built once per input hash and cached.
 *
 * Two layouts:
 *   disk   - Node and its libraries on a read-only erofs image attached with
 *            virtio-blk and shared by every VM; the initramfs holds only the init
 *            and the runtime (~1 MB). The kernel pages Node in on demand instead
 *            of copying 100 MB into guest RAM per boot: measured ~0.6 s faster
 *            under TCG, and guest RAM stays free for the function.
 *   initrd - everything in the initramfs: for kernels without virtio (Debian's
 *            cloud kernel), or where mkfs.erofs is missing.
 * In both, the guest sees Node at /runtime/bin/node and its libraries at their
 * host paths (through symlinks into /runtime).
 */
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { loadEsbuild } from "../build/bundle.ts";
import { type CpioEntry, cpioChunks } from "../build/cpio.ts";
import { cacheRoot, ensureEntry, fileIdentity, findEntry, sha256 } from "../util/cache.ts";
import { SetupError } from "../util/errors.ts";
import { packageRoot, runtimeSourceDir } from "../util/paths.ts";
import { type Progress, silent } from "../util/progress.ts";
import { which } from "../util/which.ts";

export type RuntimeLayout = "disk" | "initrd";

/**
 * Node's flags in a guest of `memoryMB`: a heap limit that leaves room for the
 * runtime itself; under TCG, no Sparkplug. Its baseline code is new machine code
 * that TCG must translate before it runs, in a VM that runs once: measured, a
 * snapshot start of hello took ~60 ms less without it (585 against 648 ms,
 * median of 25, interleaved). TurboFan stays, for the functions that really
 * run hot.
 *
 * A VM booted to be saved (`saved`) compiles every function when its script
 * loads (`--no-lazy`): Node's, the runtime's, and a function snapshot's
 * function. Otherwise a clone compiles whatever it first calls (the handler, at
 * least), and its first compile has TCG translate V8's parser and bytecode
 * generator afresh: ~4,000 of the ~20,000 blocks a hello clone translates.
 * Measured: a hello function-snapshot start 383 against 416 ms (median of 12,
 * interleaved), its handler ~12 ms instead of ~50. Clones compile lazily again
 * when they import a function (runtime-initrd/guest/main.ts).
 */
export function guestNodeOptions(memoryMB: number, accel: "kvm" | "tcg", saved = false): string[] {
  return [
    `--max-old-space-size=${Math.max(16, Math.floor(memoryMB * 0.8))}`,
    ...(accel === "tcg" ? ["--no-sparkplug"] : []),
    ...(accel === "tcg" && saved ? ["--no-lazy"] : []),
  ];
}

export interface RuntimeImage {
  layout: RuntimeLayout;
  key: string;
  /** The initramfs every VM boots with (the per-invocation archive is appended to a copy). */
  bootArchive: string;
  /** The erofs image (disk layout only). */
  disk?: string;
}

const GUEST_DIRECTORY = join(runtimeSourceDir, "guest");
const GUEST_ENTRY = join(GUEST_DIRECTORY, "main.ts");
const PROTOCOL_SOURCE = join(packageRoot, "src", "vm", "protocol.ts");

/** Sources bundled into the guest runtime: its folder and the protocol (each is part of the cache key). */
async function guestSources(): Promise<string[]> {
  const names = (await readdir(GUEST_DIRECTORY)).filter((name) => name.endsWith(".ts")).sort();
  return [...names.map((name) => join(GUEST_DIRECTORY, name)), PROTOCOL_SOURCE];
}
const INIT_SOURCE = join(runtimeSourceDir, "init.c");
const FORMAT_VERSION = "runtime-v1";

const GUEST_FILES: CpioEntry[] = [
  { type: "directory", path: "dev" },
  { type: "characterDevice", path: "dev/console", major: 5, minor: 1 },
  { type: "directory", path: "proc" },
  { type: "directory", path: "sys" },
  { type: "directory", path: "tmp", mode: 0o1777 },
  { type: "directory", path: "runtime" },
  { type: "directory", path: "fnrun" },
  { type: "directory", path: "etc" },
  { type: "file", path: "etc/passwd", data: Buffer.from("root:x:0:0:root:/tmp:/bin/sh\n") },
  { type: "file", path: "etc/group", data: Buffer.from("root:x:0:\n") },
  { type: "file", path: "etc/hosts", data: Buffer.from("127.0.0.1 localhost\n::1 localhost\n") },
  // Only reachable with --net: QEMU's user-mode network answers DNS at 10.0.2.3.
  { type: "file", path: "etc/resolv.conf", data: Buffer.from("nameserver 10.0.2.3\n") },
];

export interface RuntimeOptions {
  layout: RuntimeLayout;
  build?: boolean;
  progress?: Progress;
  env?: NodeJS.ProcessEnv;
  nodePath?: string;
}

async function runtimeKey(layout: RuntimeLayout, nodePath: string): Promise<string> {
  const sources = await Promise.all([INIT_SOURCE, ...(await guestSources())].map((path) => readFile(path)));
  return sha256(FORMAT_VERSION, layout, await fileIdentity(nodePath), ...sources);
}

function image(layout: RuntimeLayout, key: string, directory: string): RuntimeImage {
  return {
    layout,
    key,
    bootArchive: join(directory, "boot.cpio"),
    ...(layout === "disk" ? { disk: join(directory, "runtime.erofs") } : {}),
  };
}

export async function resolveRuntime(options: RuntimeOptions): Promise<RuntimeImage> {
  const env = options.env ?? process.env;
  const nodePath = options.nodePath ?? process.execPath;
  const key = await runtimeKey(options.layout, nodePath);
  const kind = `runtime-${options.layout}`;
  const found = await findEntry(kind, key, {}, cacheRoot(env));
  if (found) return image(options.layout, key, found.directory);
  if (!options.build) throw new SetupError("the guest runtime image is not built yet: run `fnrun setup`");
  const progress = options.progress ?? silent;
  const entry = await ensureEntry(
    kind,
    key,
    async (directory) => {
      progress(`building the guest runtime image (${options.layout} layout)`);
      return buildRuntime(options.layout, nodePath, directory);
    },
    {},
    cacheRoot(env),
  );
  return image(options.layout, key, entry.directory);
}

/** The files Node needs: itself and each library ldd names, at the path ldd gives. */
async function nodeFiles(nodePath: string): Promise<Array<{ source: string; guestPath: string }>> {
  const { execa } = await import("execa");
  const { stdout } = await execa("ldd", [nodePath], { timeout: 30_000 }).catch((error: unknown) => {
    throw new SetupError(`cannot list the libraries of ${nodePath} with ldd: ${(error as Error).message}`);
  });
  const files = [{ source: nodePath, guestPath: "bin/node" }];
  for (const line of stdout.split("\n")) {
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    const match = line.match(/(?:=>\s*)?(\/\S+)\s+\(0x/);
    if (match?.[1]) files.push({ source: match[1], guestPath: match[1].slice(1) });
  }
  return files;
}

async function compileInit(output: string): Promise<void> {
  const compiler = (await which("gcc")) ?? (await which("cc"));
  if (!compiler) throw new SetupError("gcc not found (needed once, for the guest's init): run `make setup`");
  const { execa } = await import("execa");
  const result = await execa(compiler, ["-static", "-Os", "-s", "-Wall", "-o", output, INIT_SOURCE], {
    reject: false,
    all: true,
    timeout: 120_000,
  });
  if (result.exitCode !== 0) {
    throw new SetupError(
      `compiling the guest init failed (is libc6-dev installed? \`make setup\` installs it):\n${result.all}`,
    );
  }
}

export async function bundleGuestRuntime(): Promise<string> {
  const esbuild = await loadEsbuild();
  const result = await esbuild.build({
    entryPoints: [GUEST_ENTRY],
    bundle: true,
    write: false,
    platform: "node",
    format: "esm",
    target: "node20",
    metafile: true,
    logLevel: "silent",
  });
  const inputs = Object.keys(result.metafile.inputs).map((path) => join(packageRoot, path));
  const declared = await guestSources();
  const undeclared = inputs.filter((path) => !declared.includes(path));
  if (undeclared.length > 0) {
    throw new Error(
      `the guest runtime imports files outside its sources (guestSources): ${undeclared.join(", ")}`,
    );
  }
  const output = result.outputFiles[0];
  if (!output) throw new Error("esbuild produced no guest runtime");
  return output.text;
}

async function buildRuntime(layout: RuntimeLayout, nodePath: string, directory: string): Promise<string[]> {
  const initPath = join(directory, "init");
  const [guest, files] = await Promise.all([
    bundleGuestRuntime(),
    nodeFiles(nodePath),
    compileInit(initPath),
  ]);
  const entries: CpioEntry[] = [
    ...GUEST_FILES,
    { type: "file", path: "init", data: await readFile(initPath), mode: 0o755 },
    { type: "file", path: "fnrun/guest.mjs", data: Buffer.from(guest) },
  ];
  // Top-level directories of the library paths (lib, lib64, usr) point into /runtime.
  const topLevels = new Set(
    files.filter((file) => file.guestPath !== "bin/node").map((f) => f.guestPath.split("/")[0]),
  );
  for (const top of [...topLevels].sort()) {
    if (top) entries.push({ type: "symlink", path: top, target: `runtime/${top}` });
  }

  const names = ["boot.cpio"];
  if (layout === "disk") {
    const staging = join(directory, "staging");
    for (const file of files) {
      await mkdir(join(staging, dirname(file.guestPath)), { recursive: true });
      await copyFile(file.source, join(staging, file.guestPath));
    }
    const mkfs = await which("mkfs.erofs");
    if (!mkfs)
      throw new SetupError("mkfs.erofs not found: run `make setup` (or apt-get install erofs-utils)");
    const { execa } = await import("execa");
    await execa(mkfs, ["--quiet", "--all-root", "-T0", join(directory, "runtime.erofs"), staging], {
      timeout: 300_000,
    });
    await rm(staging, { recursive: true, force: true });
    names.push("runtime.erofs");
  } else {
    const directories = new Set<string>();
    for (const file of files) {
      const parts = `runtime/${file.guestPath}`.split("/").slice(0, -1);
      for (let i = 2; i <= parts.length; i++) directories.add(parts.slice(0, i).join("/"));
    }
    for (const path of [...directories].sort()) entries.push({ type: "directory", path });
    for (const file of files) {
      entries.push({
        type: "file",
        path: `runtime/${file.guestPath}`,
        data: await readFile(file.source),
        mode: 0o755,
      });
    }
  }
  await writeFile(join(directory, "boot.cpio"), cpioChunks(entries));
  await rm(initPath, { force: true });
  return names;
}
