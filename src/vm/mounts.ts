/**
 * Shared folders (`--mount HOST:GUEST[:ro|rw]`) with virtio-fs: one virtiofsd
 * per folder on the host, a vhost-user-fs device per folder in the VM (guest RAM
 * is then a shared memfd, which vhost-user needs), mounted by the guest's agent
 * before the function runs.
 *
 * - Read-only by default, and read-only on the host too: virtiofsd runs in a
 *   private mount namespace on a read-only bind mount (runtime-initrd/virtiofsd-wrapper.c).
 * - Nothing outside the folder is reachable: virtiofsd pivots into it, so `..`
 *   stops at its root and symbolic links are resolved in the guest, never on the
 *   host.
 * - Each daemon has its socket in the VM's private run directory, dies with
 *   fnrun (parent-death signal), and is stopped with its VM on every path.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { statSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { join, posix } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { MountConfig } from "../build/config.ts";
import { cacheRoot, ensureEntry, sha256 } from "../util/cache.ts";
import { SetupError, UsageError } from "../util/errors.ts";
import { runtimeSourceDir } from "../util/paths.ts";
import { TextTail } from "../util/text-tail.ts";
import type { MountRequest } from "./protocol.ts";
import { type SharedFolderDevice, VIRTIO_MMIO } from "./qemu.ts";

export interface ResolvedMount extends MountConfig {
  tag: string;
}

/** Guest paths a mount may not cover: the runtime, and the kernel's own file systems. */
const RESERVED = [
  "/proc",
  "/dev",
  "/sys",
  "/runtime",
  "/fnrun",
  "/lib",
  "/lib64",
  "/usr",
  "/bin",
  "/etc",
  "/tmp",
];
/** What fits microvm's transports beside the runtime disk and the channel (one fewer with a network). */
const MAX_MOUNTS = VIRTIO_MMIO.count - 2;

/**
 * Checks mounts at the boundary: as many as fit beside the VM's other devices
 * (a network card takes a transport too), folders that exist, guest paths that
 * are absolute and free.
 */
export function checkMounts(mounts: MountConfig[], network = false): ResolvedMount[] {
  if (mounts.length > MAX_MOUNTS) throw new UsageError(`at most ${MAX_MOUNTS} shared folders per invocation`);
  if (network && mounts.length > MAX_MOUNTS - 1)
    throw new UsageError(`at most ${MAX_MOUNTS - 1} shared folders per invocation with a network`);
  const targets = new Set<string>();
  return mounts.map((mount, index) => {
    let info: ReturnType<typeof statSync>;
    try {
      info = statSync(mount.source);
    } catch {
      throw new UsageError(`--mount ${mount.source}: the host folder does not exist`);
    }
    if (!info.isDirectory())
      throw new UsageError(`--mount ${mount.source}: not a folder (share the folder that holds it)`);
    const target = posix.normalize(mount.target);
    if (!target.startsWith("/") || target === "/") {
      throw new UsageError(`--mount ...:${mount.target}: the guest path must be absolute and not /`);
    }
    const clash = RESERVED.find((reserved) => target === reserved || target.startsWith(`${reserved}/`));
    if (clash)
      throw new UsageError(`--mount ...:${target}: ${clash} belongs to the runtime; mount under /mnt, say`);
    if (targets.has(target)) throw new UsageError(`--mount: two folders on ${target}`);
    targets.add(target);
    return { source: mount.source, target, readOnly: mount.readOnly, tag: `fnrun${index}` };
  });
}

/** The virtiofsd binary: FNRUN_VIRTIOFSD, else QEMU's (Debian: qemu-system-common), else on PATH. */
export async function locateVirtiofsd(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const candidates = [
    env.FNRUN_VIRTIOFSD,
    "/usr/lib/qemu/virtiofsd",
    "/usr/libexec/virtiofsd",
    "/usr/bin/virtiofsd",
  ];
  for (const candidate of candidates) {
    if (
      candidate &&
      (await stat(candidate).then(
        (info) => info.isFile(),
        () => false,
      ))
    )
      return candidate;
  }
  throw new SetupError(
    "virtiofsd not found (needed for --mount): run `make setup` (Debian: qemu-system-common)",
  );
}

const WRAPPER_SOURCE = join(runtimeSourceDir, "virtiofsd-wrapper.c");

/** Compiles the host-side wrapper once (cached by its source's hash). */
export async function virtiofsdWrapper(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const source = await readFile(WRAPPER_SOURCE);
  const entry = await ensureEntry(
    "host-tools",
    sha256("virtiofsd-wrapper-v1", source),
    async (directory) => {
      const { execa } = await import("execa");
      const output = join(directory, "fnrun-virtiofsd");
      const result = await execa("gcc", ["-O2", "-Wall", "-o", output, WRAPPER_SOURCE], {
        reject: false,
        all: true,
        timeout: 60_000,
      });
      if (result.exitCode !== 0)
        throw new SetupError(`compiling the virtiofsd wrapper failed:\n${result.all}`);
      return ["fnrun-virtiofsd"];
    },
    {},
    cacheRoot(env),
  );
  return entry.path("fnrun-virtiofsd");
}

interface Daemon {
  process: ChildProcess;
  exited: Promise<void>;
  stderr: TextTail;
}

/** The virtiofsd processes of one VM. */
export class SharedFolders {
  private constructor(
    readonly devices: SharedFolderDevice[],
    readonly requests: MountRequest[],
    private readonly daemons: Daemon[],
  ) {}

  static async start(
    runDirectory: string,
    mounts: ResolvedMount[],
    env = process.env,
  ): Promise<SharedFolders> {
    if (mounts.length === 0) return new SharedFolders([], [], []);
    const [virtiofsd, wrapper] = await Promise.all([locateVirtiofsd(env), virtiofsdWrapper(env)]);
    const daemons: Daemon[] = [];
    const devices: SharedFolderDevice[] = [];
    try {
      for (const mount of mounts) {
        const socketPath = join(runDirectory, `${mount.tag}.sock`);
        const child = spawn(
          wrapper,
          [
            mount.source,
            mount.readOnly ? "ro" : "rw",
            virtiofsd,
            `--socket-path=${socketPath}`,
            "-o",
            `source=${mount.source}`,
            // Read-only folders cannot change under the guest: let it cache them.
            "-o",
            mount.readOnly ? "cache=always" : "cache=auto",
            "-o",
            "sandbox=namespace",
            "-o",
            "no_posix_lock",
            "-o",
            "no_xattr",
          ],
          { stdio: ["ignore", "ignore", "pipe"] },
        );
        const stderr = new TextTail(4096);
        child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
        const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
        child.once("error", () => {});
        daemons.push({ process: child, exited, stderr });
        devices.push({ tag: mount.tag, socketPath });
        await waitForSocket(socketPath, child, stderr);
      }
    } catch (error) {
      await new SharedFolders(devices, [], daemons).stop();
      throw error;
    }
    const requests = mounts.map((mount) => ({
      tag: mount.tag,
      guestPath: mount.target,
      readOnly: mount.readOnly,
    }));
    return new SharedFolders(devices, requests, daemons);
  }

  get pids(): number[] {
    return this.daemons.map((daemon) => daemon.process.pid ?? 0).filter((pid) => pid > 0);
  }

  /** Stops every daemon (they usually end with their VM's connection anyway). */
  async stop(): Promise<void> {
    await Promise.all(
      this.daemons.map(async (daemon) => {
        if (daemon.process.exitCode === null && daemon.process.signalCode === null)
          daemon.process.kill("SIGTERM");
        const timer = setTimeout(() => daemon.process.kill("SIGKILL"), 1000);
        await daemon.exited;
        clearTimeout(timer);
      }),
    );
  }
}

async function waitForSocket(path: string, child: ChildProcess, stderr: TextTail): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (
      await stat(path).then(
        () => true,
        () => false,
      )
    )
      return;
    if (child.exitCode !== null || child.signalCode !== null) break;
    await sleep(5);
  }
  throw new SetupError(
    `virtiofsd did not start for a shared folder: ${stderr.toString().trim() || "no socket appeared"}`,
  );
}
