/**
 * Shared folders (`--mount HOST:GUEST[:ro|rw]`) with virtio-fs: one virtiofsd
 * per folder on the host, a vhost-user-fs device per folder in the VM (guest RAM
 * is then shared, which vhost-user needs: a memfd on a boot, a copy of the
 * snapshot's RAM on a clone), mounted by the guest's agent
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
import { stat } from "node:fs/promises";
import { join, posix } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { MountConfig } from "../build/config.ts";
import { hostTool } from "../host/tools.ts";
import { SetupError, UsageError } from "../util/errors.ts";
import { isFile } from "../util/fs.ts";
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

/** The tag of a VM's `index`th shared-folder device (a snapshot's are the same for every clone). */
export function folderTag(index: number): string {
  return `fnrun${index}`;
}

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
    return { source: mount.source, target, readOnly: mount.readOnly, tag: folderTag(index) };
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
    if (candidate && (await isFile(candidate))) return candidate;
  }
  throw new SetupError(
    "virtiofsd not found (needed for --mount): run `make setup` (Debian: qemu-system-common)",
  );
}

/** The wrapper that runs virtiofsd on a read-only view of a read-only folder. */
export function virtiofsdWrapper(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return hostTool("fnrun-virtiofsd", "virtiofsd-wrapper.c", env);
}

/** The proxy that lets QEMU save and restore a VM with a shared-folder device. */
export function vhostUserFsProxy(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return hostTool("fnrun-vhost-user-fs-proxy", "vhost-user-fs-proxy.c", env);
}

/** What fills a clone's own copy of its RAM file while its QEMU starts (src/vm/launch.ts). */
export function ramCopier(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return hostTool("fnrun-ram-copy", "ram-copy.c", env);
}

/**
 * What serves a VM's folders: virtiofsd, the read-only wrapper, and for a
 * restorable VM (a snapshot's and its clones) the proxy its daemons sit behind
 * and what copies a clone's RAM for them to map.
 */
export interface FolderTools {
  virtiofsd: string;
  wrapper: string;
  proxy?: string;
  ramCopy?: string;
}

export async function folderTools(
  restorable: boolean,
  env: NodeJS.ProcessEnv = process.env,
): Promise<FolderTools> {
  const [virtiofsd, wrapper, proxy, ramCopy] = await Promise.all([
    locateVirtiofsd(env),
    virtiofsdWrapper(env),
    restorable ? vhostUserFsProxy(env) : undefined,
    restorable ? ramCopier(env) : undefined,
  ]);
  return { virtiofsd, wrapper, ...(proxy ? { proxy } : {}), ...(ramCopy ? { ramCopy } : {}) };
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

  /**
   * One daemon per folder, its socket in `runDirectory`. With `restorable`, each
   * daemon sits behind the proxy that lets QEMU save and load the VM's device
   * (a snapshot's VM and its clones; runtime-initrd/vhost-user-fs-proxy.c).
   */
  static async start(
    runDirectory: string,
    mounts: ResolvedMount[],
    options: { restorable?: boolean; env?: NodeJS.ProcessEnv; tools?: FolderTools } = {},
  ): Promise<SharedFolders> {
    if (mounts.length === 0) return new SharedFolders([], [], []);
    // Given the tools (a prestart's note has them), the daemons are spawned before the first await.
    const { virtiofsd, wrapper, proxy } =
      options.tools ?? (await folderTools(options.restorable ?? false, options.env));
    const daemons: Daemon[] = [];
    const folders = mounts.map((mount) => ({ mount, socketPath: join(runDirectory, `${mount.tag}.sock`) }));
    const devices = folders.map(({ mount, socketPath }) => ({ tag: mount.tag, socketPath }));
    try {
      // All at once: each folder waits for little more than its daemon's start.
      await Promise.all(
        folders.map(async ({ mount, socketPath }) => {
          const daemonSocket = proxy ? join(runDirectory, `${mount.tag}.daemon.sock`) : socketPath;
          const started = [
            spawnDaemon(wrapper, [
              mount.source,
              mount.readOnly ? "ro" : "rw",
              virtiofsd,
              `--socket-path=${daemonSocket}`,
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
            ]),
          ];
          // The proxy waits for the daemon's socket, and makes its own once connected to it.
          if (proxy) started.push(spawnDaemon(proxy, [socketPath, daemonSocket]));
          daemons.push(...started);
          await waitForSocket(socketPath, started);
        }),
      );
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

function spawnDaemon(command: string, args: string[]): Daemon {
  const child = spawn(command, args, { stdio: ["ignore", "ignore", "pipe"] });
  const stderr = new TextTail(4096);
  child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
  // A helper that cannot be started (a file gone) says so with the others' words.
  child.once("error", (error) => stderr.push(`cannot start ${command}: ${error.message}`));
  return { process: child, exited, stderr };
}

/** Waits for `path` to appear, unless one of `daemons` exits first. */
async function waitForSocket(path: string, daemons: Daemon[]): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (
      await stat(path).then(
        () => true,
        () => false,
      )
    )
      return;
    const exited = daemons.find(({ process: child }) => child.exitCode !== null || child.signalCode !== null);
    if (exited) {
      // The others' words may say more: a proxy's "connecting" follows its daemon's failure.
      await sleep(20);
      const said = daemons.map((daemon) => daemon.stderr.toString().trim()).filter(Boolean);
      throw new SetupError(`virtiofsd did not start for a shared folder: ${said.join("; ") || "it exited"}`);
    }
    await sleep(5);
  }
  throw new SetupError("virtiofsd did not start for a shared folder: no socket appeared in 10 s");
}
