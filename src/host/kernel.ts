/**
 * The guest kernel. In order of preference:
 *   1. FNRUN_KERNEL, a kernel of the user's (vmlinux for PVH entry, or a bzImage);
 *   2. fnrun's own minimal kernel, built from Debian's linux-source tarball with
 *      runtime-initrd/kernel.config and cached by the hash of both;
 *   3. Debian's cloud kernel, extracted from its package without installing it
 *      (or first, with FNRUN_KERNEL_SOURCE=debian-cloud).
 *      It has virtio as modules only, so VMs on it use the serial console for the
 *      protocol and carry Node in the initramfs: slower, but it works.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { copyFile, open, readdir, readFile, rm, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { type CacheEntry, cacheRoot, ensureEntry, findEntry, sha256 } from "../util/cache.ts";
import { SetupError } from "../util/errors.ts";
import { withLock } from "../util/lock.ts";
import { runtimeSourceDir } from "../util/paths.ts";
import { type Progress, silent } from "../util/progress.ts";

export interface Kernel {
  path: string;
  /** pvh: an ELF vmlinux entered directly; bios: a bzImage started by qboot. */
  entry: "pvh" | "bios";
  origin: "custom" | "fnrun" | "debian-cloud";
  /** Built with virtio-mmio, virtio-serial and erofs (fnrun's kernel, or a custom one built like it). */
  virtio: boolean;
}

const SOURCE_GLOB = /^linux-source-\d+(?:\.\d+)+\.tar\.(?:xz|bz2|gz)$/;
const SOURCE_DIR = "/usr/src";

export async function detectEntry(path: string): Promise<"pvh" | "bios"> {
  const handle = await open(path, "r");
  try {
    const head = Buffer.alloc(4);
    await handle.read(head, 0, 4, 0);
    return head.toString("latin1") === "\x7fELF" ? "pvh" : "bios";
  } finally {
    await handle.close();
  }
}

/** The linux-source tarball apt installs (newest if several). */
export async function findKernelSource(): Promise<string | undefined> {
  const names = await readdir(SOURCE_DIR).catch(() => [] as string[]);
  const tarballs = names.filter((name) => SOURCE_GLOB.test(name)).sort();
  const newest = tarballs.at(-1);
  return newest ? join(SOURCE_DIR, newest) : undefined;
}

async function kernelKey(tarball: string): Promise<string> {
  const [fragment, script, info] = await Promise.all([
    readFile(join(runtimeSourceDir, "kernel.config")),
    readFile(join(runtimeSourceDir, "build-kernel.sh")),
    stat(tarball),
  ]);
  // The tarball's name and size change with every Debian source version.
  return sha256("kernel-v1", fragment, script, basename(tarball), String(info.size));
}

function fnrunKernel(entry: CacheEntry, kind: "vmlinux" | "bzImage"): Kernel {
  return {
    path: entry.path(kind),
    entry: kind === "vmlinux" ? "pvh" : "bios",
    origin: "fnrun",
    virtio: true,
  };
}

export interface KernelOptions {
  env?: NodeJS.ProcessEnv;
  /** Build (or download) when nothing is cached. Otherwise a missing kernel is a SetupError. */
  build?: boolean;
  /** Prefer the qboot + bzImage path over PVH (for measurements). */
  entry?: "pvh" | "bios";
  progress?: Progress;
}

export async function resolveKernel(options: KernelOptions = {}): Promise<Kernel> {
  const env = options.env ?? process.env;
  if (env.FNRUN_KERNEL) {
    const path = env.FNRUN_KERNEL;
    try {
      return {
        path,
        entry: await detectEntry(path),
        origin: "custom",
        virtio: env.FNRUN_KERNEL_VIRTIO !== "0",
      };
    } catch (error) {
      throw new SetupError(`FNRUN_KERNEL=${path} cannot be read: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
  const progress = options.progress ?? silent;
  if (env.FNRUN_KERNEL_SOURCE === "debian-cloud") {
    return (await findCloudKernel(env)) ?? (await fetchCloudKernelOrExplain(env, progress));
  }
  const kind = options.entry === "bios" ? "bzImage" : "vmlinux";
  const tarball = await findKernelSource();
  if (tarball) {
    const key = await kernelKey(tarball);
    const cached = await findEntry("kernel", key, {}, cacheRoot(env));
    if (cached) return fnrunKernel(cached, kind);
    if (options.build)
      return fnrunKernel(await buildKernel(tarball, key, env, options.progress ?? silent), kind);
  }
  const cloud = await findCloudKernel(env);
  if (cloud) return cloud;
  if (options.build && !tarball) {
    try {
      return await fetchCloudKernel(env, options.progress ?? silent);
    } catch (error) {
      throw new SetupError(
        `no guest kernel: linux-source-6.1 is not installed and the Debian cloud kernel could not be fetched (${(error as Error).message}). Run \`make setup\`.`,
        { cause: error },
      );
    }
  }
  throw new SetupError(
    tarball
      ? "the guest kernel is not built yet: run `fnrun setup` (or `make kernel`; 3-7 minutes, once)"
      : "no guest kernel: run `make setup` (installs linux-source-6.1 and builds it), or set FNRUN_KERNEL",
  );
}

/**
 * A minutes-long build must not outlive fnrun, however fnrun ends (SIGKILL
 * included): a detached watcher kills the build's process group once fnrun is gone.
 */
function killGroupWhenGone(group: number): ChildProcess {
  const watcher = spawn(
    "sh",
    ["-c", `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; kill -KILL -${group} 2>/dev/null`],
    { detached: true, stdio: "ignore" },
  );
  watcher.unref();
  return watcher;
}

async function buildKernel(tarball: string, key: string, env: NodeJS.ProcessEnv, progress: Progress) {
  const root = cacheRoot(env);
  // A kernel build takes minutes: let one process build while the others wait for it.
  return withLock(join(root, "kernel", `${key}.lock`), async () => {
    progress("building the guest kernel (first run only; 3-7 minutes on 2 cores)");
    return ensureEntry(
      "kernel",
      key,
      async (directory) => {
        const { execa } = await import("execa");
        const script = join(runtimeSourceDir, "build-kernel.sh");
        const tail: string[] = [];
        const child = execa("bash", [script, tarball, join(runtimeSourceDir, "kernel.config"), directory], {
          reject: false,
          timeout: 60 * 60 * 1000,
          stdout: "ignore",
          buffer: false,
          // Its own process group, so the whole build (make, cc1, …) can be stopped at once.
          detached: true,
          // The unpacked source (~1.5 GB) goes inside the entry being built, so what a killed
          // build leaves is swept with it (see sweepAbandonedBuilds).
          env: { TMPDIR: directory },
        });
        const reaper = child.pid ? killGroupWhenGone(child.pid) : undefined;
        child.finally(() => reaper?.kill()).catch(() => {});
        child.stderr?.on("data", (chunk: Buffer) => {
          for (const line of chunk.toString().split("\n")) {
            if (line.startsWith("fnrun-kernel: ")) progress(line.slice("fnrun-kernel: ".length));
            else if (line) tail.push(line);
          }
          tail.splice(0, Math.max(0, tail.length - 30));
        });
        const result = await child;
        if (result.exitCode !== 0) {
          throw new SetupError(
            `building the guest kernel failed (are gcc, make, flex, bison, bc and libelf-dev installed? \`make setup\` installs them):\n${tail.join("\n")}`,
          );
        }
        return ["vmlinux", "bzImage", "config"];
      },
      {},
      root,
    );
  });
}

const CLOUD_KIND = "kernel-debian-cloud";

async function fetchCloudKernelOrExplain(env: NodeJS.ProcessEnv, progress: Progress): Promise<Kernel> {
  try {
    return await fetchCloudKernel(env, progress);
  } catch (error) {
    throw new SetupError(
      `no guest kernel: linux-source-6.1 is not installed and Debian's cloud kernel could not be fetched (${(error as Error).message}). Run \`make setup\`, or set FNRUN_KERNEL.`,
      { cause: error },
    );
  }
}

async function findCloudKernel(env: NodeJS.ProcessEnv): Promise<Kernel | undefined> {
  const directory = join(cacheRoot(env), CLOUD_KIND);
  const versions = (await readdir(directory).catch(() => [] as string[])).filter(
    (name) => !name.startsWith("."),
  );
  for (const version of versions.sort().reverse()) {
    const entry = await findEntry(CLOUD_KIND, version, {}, cacheRoot(env));
    if (entry) return { path: entry.path("vmlinuz"), entry: "bios", origin: "debian-cloud", virtio: false };
  }
  return undefined;
}

/** Downloads Debian's cloud kernel package and extracts its vmlinuz (never installs it). */
export async function fetchCloudKernel(env: NodeJS.ProcessEnv, progress: Progress): Promise<Kernel> {
  const { execa } = await import("execa");
  const depends = await execa("apt-cache", ["depends", "linux-image-cloud-amd64"], { timeout: 30_000 });
  const packageName = depends.stdout.match(/Depends: (linux-image-[^\s]+-cloud-amd64)/)?.[1];
  if (!packageName) throw new Error("apt-cache knows no linux-image-cloud-amd64 package");
  progress(`downloading ${packageName} (Debian's cloud kernel, as a fallback)`);
  const entry = await ensureEntry(
    CLOUD_KIND,
    packageName,
    async (directory) => {
      await execa("apt-get", ["download", packageName], { cwd: directory, timeout: 10 * 60 * 1000 });
      const deb = (await readdir(directory)).find((name) => name.endsWith(".deb"));
      if (!deb) throw new Error("apt-get download produced no .deb");
      await execa("dpkg-deb", ["-x", deb, "extracted"], { cwd: directory, timeout: 5 * 60 * 1000 });
      const boot = join(directory, "extracted", "boot");
      const image = (await readdir(boot)).find((name) => name.startsWith("vmlinuz-"));
      if (!image) throw new Error(`${deb} has no /boot/vmlinuz-*`);
      await copyFile(join(boot, image), join(directory, "vmlinuz"));
      await rm(join(directory, "extracted"), { recursive: true, force: true });
      await rm(join(directory, deb), { force: true });
      return ["vmlinuz"];
    },
    {},
    cacheRoot(env),
  );
  return { path: entry.path("vmlinuz"), entry: "bios", origin: "debian-cloud", virtio: false };
}
