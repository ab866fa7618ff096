/**
 * How a VM comes to run: one boot recipe and its restore sibling, each read top
 * to bottom (as Firecracker's builder.rs reads `build_microvm_for_boot` and
 * `build_microvm_from_snapshot`). Every VM fnrun starts comes from one of them:
 * invocations that boot, pooled VMs, the VM a snapshot is saved from, and every
 * clone (of an invocation, of the pool, of a prestart).
 *
 *   bootVm:    run directory -> shared folders (virtiofsd) -> initramfs (the
 *              runtime image + what this VM carries) -> kernel command line ->
 *              the machine (vmSpec) -> QEMU
 *   restoreClone: run directory -> what the clone has of its own, all at
 *              once: the folders' daemons behind their proxies and a shared
 *              copy of the RAM (a clone with folders) -> the saved VM's
 *              machine plus the card (restoreTarget, the same vmSpec) ->
 *              restoreVm: QEMU waiting for its state (and a card's guard on
 *              the socket pairs it is spawned with) -> the state loaded over
 *              QMP -> the wake message (fresh entropy, the time, the card to
 *              bind and its address)
 *
 * The machine a clone is restored into is built by the same vmSpec() as the one
 * that was saved, so their devices cannot drift apart. A VM saved for a snapshot
 * has no network; the transports a card would take are registered with its
 * kernel empty, so that a clone can have one plugged in (after the saved
 * devices, which keep their transports) and bind it once it wakes: one
 * snapshot serves a memory size with and without a network.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, statfsSync, statSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Accel } from "../host/accel.ts";
import { guestNodeOptions } from "../host/runtime.ts";
import type { HostSetup } from "../host/setup.ts";
import { hostTscKhz } from "../host/tsc.ts";
import { BootError, InternalError } from "../util/errors.ts";
import { TextTail } from "../util/text-tail.ts";
import { type BootPayload, writeInitrd } from "./initrd.ts";
import { type FolderTools, folderTag, folderTools, type ResolvedMount, SharedFolders } from "./mounts.ts";
import { type LaunchOptions, qemuCommand, randomNonce, Vm } from "./process.ts";
import { type DecoderLimits, type MountRequest, SLIRP_NETWORK, type WakeMessage } from "./protocol.ts";
import { buildKernelCmdline, pluggedDevices, type SharedFolderDevice } from "./qemu.ts";
import { makeRunDirectory } from "./run-directory.ts";
import { randomMacAddress, type SpawnedQemu, spawnClone } from "./spawn-qemu.ts";

/** What a guest can tell apart between VMs: what a snapshot has to match. */
export interface VmShape {
  /** The function's memory in MB (guest RAM adds the runtime's files in the initrd layout). */
  memoryMB: number;
  network: boolean;
}

/** Limit on a boot to the runtime's "ready": under TCG a loaded 2-core machine can take long to boot many VMs at once. */
export const BOOT_TIMEOUT_MS: Record<Accel, number> = { kvm: 30_000, tcg: 120_000 };

export function bootTimeoutMs(host: HostSetup): number {
  return BOOT_TIMEOUT_MS[host.accel.accel];
}

/** Guest RAM: the function's memory, plus the runtime's files when they live in RAM (initrd layout). */
export function guestRamMB(host: HostSetup, memoryMB: number): number {
  return host.runtime.layout === "initrd" ? memoryMB + 256 : memoryMB;
}

/** How the guest mounts the folders it is given. */
export function mountRequests(mounts: ResolvedMount[]): MountRequest[] {
  return mounts.map((mount) => ({ tag: mount.tag, guestPath: mount.target, readOnly: mount.readOnly }));
}

type MachineParts = Pick<
  LaunchOptions["spec"],
  "initrd" | "cmdline" | "sharedFolders" | "memoryFile" | "incoming" | "qmp" | "allowSpawn"
>;

/** The machine for a VM of `shape` on this host: what boots and what is restored differ only in `parts`. */
export function vmSpec(host: HostSetup, shape: VmShape, parts: MachineParts): LaunchOptions["spec"] {
  return {
    accel: host.accel.accel,
    kernel: { path: host.kernel.path, entry: host.kernel.entry },
    ...(host.runtime.disk ? { runtimeDisk: host.runtime.disk } : {}),
    memoryMB: guestRamMB(host, shape.memoryMB),
    cpus: 1,
    channel: host.channel,
    sandbox: true,
    network: shape.network,
    ...(shape.network ? { macAddress: randomMacAddress(randomBytes(5)) } : {}),
    ...parts,
  };
}

export interface BootPlan {
  shape: VmShape;
  mounts: ResolvedMount[];
  payload: BootPayload;
  /** Nonce of the frames the runtime sends before an invocation ("ready"); a cold invocation's are its own. */
  bootNonce?: string;
  decoderLimits?: DecoderLimits;
  /** Show kernel messages on the console. */
  verbose?: boolean;
  /**
   * Boot a VM to be saved: guest RAM in this file (shared, so the file holds it),
   * QMP, permission to run `migrate exec:`, and a runtime prepared for reseeding
   * after restore.
   */
  snapshotRam?: string;
}

export interface BootedVm {
  vm: Vm;
  /** The nonce its runtime reads and writes frames with until an invocation says otherwise. */
  bootNonce: string;
  cmdline: string;
}

/** The boot recipe. The VM owns its run directory and its shared folders' daemons: vm.kill() ends them all. */
export async function bootVm(host: HostSetup, plan: BootPlan): Promise<BootedVm> {
  const bootNonce = plan.bootNonce ?? randomNonce();
  // Measured (mostly asleep, ~50 ms, once per process) while the rest is set up; it never rejects.
  const measuringTsc = host.accel.accel === "tcg" ? hostTscKhz() : undefined;
  const runDirectory = await makeRunDirectory();
  let folders: SharedFolders | undefined;
  try {
    // A VM to be saved has its daemons behind the proxy that lets QEMU save it.
    folders = await SharedFolders.start(runDirectory, plan.mounts, {
      restorable: plan.snapshotRam !== undefined,
    });
    const initrd = await writeInitrd(runDirectory, host.runtime.bootArchive, plan.payload);
    const tscKhz = await measuringTsc;
    const cmdline = buildKernelCmdline({
      channel: host.channel,
      runtime: host.runtime.layout,
      bootNonce,
      snapshot: plan.snapshotRam !== undefined,
      nodeOptions: guestNodeOptions(plan.shape.memoryMB, host.accel.accel, plan.snapshotRam !== undefined),
      network: plan.shape.network,
      verbose: plan.verbose ?? false,
      firmwareBoot: host.kernel.entry === "bios",
      ...(tscKhz !== undefined ? { tscKhz } : {}),
      // A VM to be saved keeps its free transports for its clones' devices.
      ...(plan.snapshotRam ? { spareTransportsAfter: savedDevices(host, plan.mounts.length) } : {}),
    });
    const saving = plan.snapshotRam
      ? { memoryFile: { path: plan.snapshotRam, shared: true }, qmp: true, allowSpawn: true }
      : {};
    const vm = await Vm.launch({
      qemuPath: host.qemuPath,
      runDirectory,
      bootNonce,
      key:
        plan.payload.kind === "invocation"
          ? plan.payload.invocation.key
          : plan.payload.kind === "function"
            ? plan.payload.settings.key
            : bootNonce,
      ...(plan.decoderLimits ? { decoderLimits: plan.decoderLimits } : {}),
      spec: vmSpec(host, plan.shape, {
        initrd,
        cmdline,
        sharedFolders: folders.devices,
        ...saving,
      }),
    });
    const started = folders;
    vm.addCompanion(() => started.stop());
    return { vm, bootNonce, cmdline };
  } catch (error) {
    await folders?.stop();
    await rm(runDirectory, { recursive: true, force: true });
    throw error;
  }
}

/** What restoring a saved VM needs of it. */
export interface SavedVm {
  /** Guest RAM, mapped privately by each clone: never written. */
  ram: string;
  /** The device state QEMU wrote when the VM was saved. */
  state: string;
  memoryMB: number;
  /** Its shared-folder devices (a clone has as many, each with its own daemon). */
  folders: number;
  bootNonce: string;
  cmdline: string;
}

/** What restoring takes from the host: its QEMU and the machine the VM was saved from. */
export interface RestoreTarget {
  qemuPath: string;
  spec: LaunchOptions["spec"];
}

/** The devices of a VM saved for a snapshot: the runtime disk (disk layout), the channel, its folders. */
export function savedDevices(host: HostSetup, folders = 0): number {
  return pluggedDevices({
    runtimeDisk: host.runtime.disk,
    channel: { kind: host.channel },
    sharedFolders: Array.from({ length: folders }, (_, index) => ({ tag: folderTag(index), socketPath: "" })),
    network: false,
  });
}

/** What a clone has of its own: a network card on a free transport; its folders' daemons and RAM. */
export interface CloneDevices {
  /** A network card (and its guard, which the Vm wires to QEMU's socket pairs). */
  network?: boolean;
  /** A clone with folders: their daemons' sockets, and its own shared copy of the RAM file (vhost-user maps it). */
  folders?: { devices: SharedFolderDevice[]; ram: string };
}

export function restoreTarget(host: HostSetup, saved: SavedVm, devices: CloneDevices = {}): RestoreTarget {
  const machine = {
    qemuPath: host.qemuPath,
    spec: vmSpec(
      host,
      { memoryMB: saved.memoryMB, network: false },
      {
        initrd: host.runtime.bootArchive,
        cmdline: saved.cmdline,
        sharedFolders: [],
        memoryFile: { path: saved.ram, shared: false },
        incoming: true,
        qmp: true,
      },
    ),
  };
  return withCloneDevices(machine, devices);
}

/**
 * The saved VM's machine (`target`, as restoreTarget makes it) with what a
 * clone has of its own: a network card after the saved devices (its own MAC
 * address), its folders' daemons, and its RAM copy mapped
 * shared instead of the snapshot's file mapped privately. (A prestart, which
 * has no host, starts from the target it noted.)
 */
export function withCloneDevices(target: RestoreTarget, devices: CloneDevices): RestoreTarget {
  const spec = { ...target.spec };
  if (devices.network) {
    Object.assign(spec, {
      network: true,
      macAddress: randomMacAddress(randomBytes(5)),
    });
  }
  if (devices.folders) {
    Object.assign(spec, {
      sharedFolders: devices.folders.devices,
      memoryFile: { path: devices.folders.ram, shared: true },
    });
  }
  return { ...target, spec };
}

export interface ClonePlan {
  network: boolean;
  /** Its shared folders: as many as the snapshot's devices. */
  mounts: ResolvedMount[];
  /** What serves them, when already known (a prestart's note): nothing is looked up before the daemons start. */
  folderTools?: FolderTools;
  decoderLimits?: DecoderLimits;
}

/**
 * The restore recipe for an invocation's clone, with what it has of its own: a
 * network card (plugged into a transport the saved VM left free; the guest
 * binds it and takes its address when it wakes, and the Vm wires its guard to
 * QEMU as it spawns), and for shared folders, started before QEMU, a daemon
 * per folder behind the proxy that lets QEMU load the device, and a shared
 * copy of the RAM file for QEMU and the daemons to map (the guest mounts the
 * folders when its invocation arrives). The VM owns all of them: vm.kill()
 * ends them.
 *
 * QEMU 7.2 cannot do folders (it marks vhost-user-fs unmigratable, and
 * microvm's virtio-mmio bus takes no hotplug): their snapshots are saved and
 * restored with the folder QEMU (start/snapshot.ts's snapshotHost).
 */
export async function restoreClone(
  host: HostSetup,
  saved: SavedVm,
  runDirectory: string,
  plan: ClonePlan,
): Promise<Vm> {
  return restoreCloneOf(restoreTarget(host, saved), saved, runDirectory, plan);
}

/** restoreClone, from the saved VM's machine (`machine`: restoreTarget's, or a prestart's note of it). */
export async function restoreCloneOf(
  machine: RestoreTarget,
  saved: SavedVm,
  runDirectory: string,
  plan: ClonePlan,
): Promise<Vm> {
  const options = cloneRestoreOptions(plan);
  if (!plan.network && plan.mounts.length === 0) return restoreVm(machine, saved, runDirectory, options);
  if (plan.mounts.length !== saved.folders)
    throw new InternalError(
      `a snapshot with ${saved.folders} folder devices cannot serve ${plan.mounts.length}`,
    );
  // A network's guard is wired by the Vm, to socket pairs QEMU is spawned with.
  if (plan.mounts.length === 0)
    return restoreVm(withCloneDevices(machine, { network: true }), saved, runDirectory, options);
  // Given the tools (a prestart's note has them), the copy starts before the first await.
  const tools = plan.folderTools ?? (await folderTools(true));
  let ram: RamCopy | undefined;
  let folders: SharedFolders | undefined;
  const stop = async () => {
    ram?.stop();
    await folders?.stop();
  };
  try {
    ram = sharedRamCopy(saved.ram, tools);
    folders = await SharedFolders.start(runDirectory, plan.mounts, { restorable: true, tools });
    const target = withCloneDevices(machine, {
      network: plan.network,
      folders: { devices: folders.devices, ram: CLONE_RAM_PATH },
    });
    // QEMU starts while the copy is filled, and loads the state once it is whole.
    const vm = await restoreVm(target, saved, runDirectory, { ...options, ram });
    vm.addCompanion(stop);
    return vm;
  } catch (error) {
    await stop();
    throw error;
  } finally {
    if (ram) closeSync(ram.fd); // QEMU has its own
  }
}

/**
 * What restoreVm (or resumeClone) is told for a clone of `plan`: its decoder
 * limits, and the card it binds when it wakes.
 */
export function cloneRestoreOptions(plan: Pick<ClonePlan, "network" | "decoderLimits">): RestoreOptions {
  return {
    ...(plan.decoderLimits ? { decoderLimits: plan.decoderLimits } : {}),
    ...(plan.network ? { attach: { network: SLIRP_NETWORK } } : {}),
  };
}

/** Descriptors a clone's QEMU inherits: the device state, then its own RAM copy (a clone with folders). */
const STATE_FD = 3;
const CLONE_RAM_PATH = "/proc/self/fd/4";

/**
 * A folder clone's own RAM copy could not be made or filled (no room for it,
 * a copier that fails or will not run): this host failed, not the snapshot,
 * which stays (start/snapshot.ts's snapshotBlameless). A BootError still: the
 * clone did not come up.
 */
export class RamCopyError extends BootError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, "", options);
  }
}

/** A clone's own RAM copy (sharedRamCopy): its descriptor, at once, and its filling. */
export interface RamCopy {
  fd: number;
  /** Settles when the copy is whole (rejects if it cannot be made). */
  filled: Promise<void>;
  /** Stops the filling, if it is still going. */
  stop(): void;
}

/**
 * A clone's own copy of the RAM file, for QEMU and the folders' daemons to map
 * shared: in memory (/dev/shm) where the host has room for it rather than
 * written to disk, and unlinked as soon as it is open, so that nothing is left
 * behind whatever becomes of fnrun. QEMU opens it as CLONE_RAM_PATH.
 *
 * The descriptor is there at once, the file already its full size and all hole,
 * and fnrun-ram-copy fills it (runtime-initrd/ram-copy.c: what the saved guest
 * never touched, and its pages of zeros, stay holes) while the daemons and QEMU
 * start: QEMU maps it at its start but reads none of it until it loads the
 * state, which waits for `filled`. Synchronous up to the copier's spawn: a
 * prestart copies while the CLI loads, and an await would wait for the loading.
 */
function sharedRamCopy(from: string, tools: FolderTools): RamCopy {
  if (!tools.ramCopy) throw new InternalError("a clone's folder tools have no RAM copier");
  const copier = tools.ramCopy;
  let fd: number;
  try {
    const parent = hasRoomFor(from, "/dev/shm") ? "/dev/shm" : tmpdir();
    const directory = mkdtempSync(join(parent, "fnrun-ram-"));
    try {
      fd = openSync(join(directory, "ram"), "wx+", 0o600);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  } catch (error) {
    throw new RamCopyError(`making a clone's RAM copy failed: ${(error as Error).message}`, { cause: error });
  }
  try {
    ftruncateSync(fd, statSync(from).size);
    // Not execa: a prestart copies while the CLI loads, and loading execa would hold both up.
    const child = spawn(copier, [from], { stdio: ["ignore", fd, "pipe"], timeout: 30_000 });
    const stderr = new TextTail(4096);
    child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
    const filled = new Promise<void>((resolve, reject) => {
      child.once("error", (error) =>
        reject(new RamCopyError(`${copier} did not start: ${error.message}`, { cause: error })),
      );
      child.once("close", (code, signal) =>
        code === 0
          ? resolve()
          : reject(
              new RamCopyError(
                `copying the snapshot's RAM failed (${signal ?? code}): ${stderr.toString().trim()}`,
              ),
            ),
      );
    });
    filled.catch(() => {}); // awaited by the restore, if it gets that far
    return { fd, filled, stop: () => child.kill("SIGKILL") };
  } catch (error) {
    closeSync(fd);
    throw error; // the snapshot's RAM file, gone since it was checked
  }
}

/** Whether `directory` has room for all of the sparse `file` (a clone may touch all its RAM), with 64 MB to spare. */
function hasRoomFor(file: string, directory: string): boolean {
  try {
    const { size } = statSync(file);
    const space = statfsSync(directory);
    return space.bavail * space.bsize > size + 64 * 1024 * 1024;
  } catch {
    return false; // no such directory
  }
}

export interface RestoreOptions {
  decoderLimits?: DecoderLimits;
  /** Devices plugged into the clone for it to bind when it wakes. */
  attach?: WakeMessage["attach"];
  /** The clone's own RAM copy (CLONE_RAM_PATH), for a clone with folders. */
  ram?: RamCopy;
}

/**
 * The restore recipe: a clone of `saved`. QEMU maps the RAM file privately and
 * loads the device state, and the clone is sent its wake-up (fresh entropy and
 * the time, to reseed with). The VM runs as soon as the state is loaded. Until
 * it is sent an invocation (with `saved.bootNonce`, switching to the
 * invocation's key: `vm.send(message, bootNonce, key)`), only frames signed with
 * the boot nonce count.
 *
 * Nothing before QEMU's spawn waits for I/O, so a prestart (start/prestart.ts)
 * spawns it at once even while the CLI is busy loading.
 */
export async function restoreVm(
  target: RestoreTarget,
  saved: SavedVm,
  runDirectory: string,
  options: RestoreOptions = {},
): Promise<Vm> {
  const command = qemuCommand(target, options.ram === undefined ? 1 : 2);
  const spawned = spawnClone(command, saved.state, options.ram?.fd);
  return resumeClone(spawned, saved, runDirectory, options);
}

/**
 * The restore from QEMU's spawn on (restoreVm's, or a prestart's, spawned from
 * the command its note keeps before this module had loaded): the wake message
 * sent, the state loaded over QMP. QEMU has the state as fd 3.
 */
export async function resumeClone(
  spawned: SpawnedQemu,
  saved: SavedVm,
  runDirectory: string,
  options: RestoreOptions = {},
): Promise<Vm> {
  const { decoderLimits, attach } = options;
  const vm = Vm.adopt(spawned, {
    runDirectory,
    key: saved.bootNonce,
    ...(decoderLimits ? { decoderLimits } : {}),
  });
  // The wake-up waits in the channel's socket until the restored guest reads it.
  const wake: WakeMessage = { type: "wake", entropy: randomBytes(64).toString("hex"), epochMs: Date.now() };
  vm.send(attach ? { ...wake, attach } : wake, saved.bootNonce);
  try {
    // At hand at once (a socket pair): a QEMU that exits is seen through QMP closing.
    const qmp = await vm.qmp;
    if (!qmp) throw new Error("no QMP");
    qmp.onEvent((event) => {
      if (event === "RESUME") vm.marks.resumed ??= vm.elapsed();
    });
    // Both at once (QMP answers in order): each round trip is a wait for a CLI
    // that may be busy loading (a prestart).
    const capabilities = qmp.execute("migrate-set-capabilities", {
      capabilities: [{ capability: "x-ignore-shared", state: true }],
    });
    // Loading the state reads guest RAM (virtio's queues): a RAM copy must be whole first.
    if (options.ram) await Promise.all([capabilities, options.ram.filled]);
    const incoming = qmp.execute("migrate-incoming", { uri: `fd:${STATE_FD}` });
    incoming.catch(() => {}); // if it fails, so did the first, or it is awaited below
    await capabilities;
    vm.marks.restoreStarted = vm.elapsed();
    await incoming;
    return vm;
  } catch (error) {
    // A QEMU that will not start or load closes QMP and exits: its own words are
    // on its stderr.
    const exit = await vm.kill();
    if (error instanceof RamCopyError) throw error; // QEMU only waited for it
    if (error instanceof BootError && exit.stderr) {
      throw new BootError(`QEMU exited before restoring: ${exit.stderr}`, vm.consoleTail.lastLines(10));
    }
    throw error instanceof BootError
      ? error
      : new BootError(`restoring the snapshot failed: ${(error as Error).message}`, "");
  }
}
