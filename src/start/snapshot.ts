/**
 * Snapshot starts: boot a VM once to the point where its runtime waits for a
 * function and an event, save it, and restore clones of it instead of booting.
 *
 * Save: guest RAM lives in a file (memory-backend-file, share=on) in the cache
 * entry; QMP `migrate` with x-ignore-shared writes only the device state (tens
 * of KB) to a second file, since the RAM is already in its own.
 *
 * Restore: each clone maps the RAM file *privately* (share=off): pages are read
 * from the file on demand and copied only when the clone writes them, so the
 * template is never written and no copy is made up front; many clones of one
 * snapshot run at once. QEMU starts with `-incoming defer`, QMP sets
 * x-ignore-shared and loads the device state; the VM then runs, blocked in the
 * read where it was saved, and the invocation (function, event, fresh entropy,
 * the time) is written to its channel.
 *
 * Every clone starts with the saved VM's random state, so the guest runtime
 * reseeds the kernel, OpenSSL and Math.random from the host's entropy before the
 * function runs (runtime-initrd/guest.ts, docs/snapshots.md).
 *
 * Profiles: a snapshot is keyed by everything that shapes the saved guest
 * (kernel, runtime image, QEMU binary, accelerator, memory size, Node's
 * options, which follow the memory size, and the number of shared-folder
 * devices); one is made per profile in use, the first invocation of a profile
 * booting while it is made in the background. A network does not make a
 * profile of its own: the saved VM has none, its kernel holds a free virtio
 * transport ready, and a clone has a card plugged in there and binds it when it
 * wakes (vm/launch.ts). Folder profiles are saved and restored with the folder
 * QEMU (snapshotHost; vm/launch.ts's restoreClone says why). The limits
 * a guest enforces (result size, timeout) come with each invocation, and the
 * log limit is the host's: none of them shapes a snapshot.
 *
 * Its files are checked against their recorded sizes and hashes, and one QEMU
 * fails to restore is removed and rebuilt. The cache keeps the 8 most recently
 * used profiles and the 16 most recently used function snapshots
 * (util/cache.ts); `fnrun snapshot --list` shows them.
 */
import { mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { guestNodeOptions } from "../host/runtime.ts";
import type { HostSetup } from "../host/setup.ts";
import {
  type CacheEntry,
  cacheRoot,
  directorySize,
  ensureEntry,
  fileIdentity,
  findEntry,
  removeEntry,
  sha256,
} from "../util/cache.ts";
import { BootError, FunctionError } from "../util/errors.ts";
import { withLock } from "../util/lock.ts";
import { type Progress, silent } from "../util/progress.ts";
import { shellQuote } from "../util/shell.ts";
import { newFrameKey } from "../vm/frame-keys.ts";
import { BOOT_TIMEOUT_MS, bootVm, RamCopyError, type SavedVm } from "../vm/launch.ts";
import { folderTag } from "../vm/mounts.ts";
import type { Vm } from "../vm/process.ts";
import type {
  BoundFunction,
  FunctionSettings,
  GuestMessage,
  InitPhase,
  Invocation,
  MountRequest,
} from "../vm/protocol.ts";
import { hostSlots } from "../vm/slots.ts";

/** v4: virtio 1.0 transports, the first free one registered with the kernel for a clone's network card. */
const FORMAT = "snapshot-v4";
const FUNCTION_FORMAT = "function-snapshot-v1";
const KIND = "snapshot";
/** Function snapshots: a cache kind (and LRU) of their own, so that new versions of functions never evict a profile's snapshot. */
export const FUNCTION_KIND = "function-snapshot";

/**
 * What shapes a saved guest besides the host: its memory size and its
 * shared-folder devices (tagged fnrun0, fnrun1, ... in order, so their number
 * says it all). A network does not: a clone gets its card on a free transport.
 */
export interface SavedShape {
  memoryMB: number;
  folders: number;
}

/** The default profile, and every profile without shared folders. */
export function memoryOnly(memoryMB: number): SavedShape {
  return { memoryMB, folders: 0 };
}

/** A saved VM in the cache (its restore is vm/launch.ts's restoreVm). */
export interface Snapshot extends SavedVm {
  key: string;
  directory: string;
  /** The host to restore it on: the QEMU it was saved with (the folder QEMU, for a profile with folders). */
  host: HostSetup;
  /** A function snapshot: the function it holds, imported (its clones take no bundle). */
  functionName?: string;
}

interface SnapshotInfo {
  bootNonce: string;
  memoryMB: number;
  folders?: number;
  cmdline: string;
  createdAt: string;
  /** For `fnrun snapshot --list` (the key says whether it is this host's). */
  accel: string;
  /** A function snapshot: the function whose init phase it holds, and its profile's key. */
  function?: { name: string; entry: string; profileKey: string };
}

/**
 * A function to make a function snapshot of: the profile its VMs have, its
 * bundle, and the settings its init phase sees (with the folders its clones
 * mount, which the saved VM never does).
 */
export interface FunctionToSave {
  shape: SavedShape;
  settings: FunctionSettings;
  bundleCode: string;
  name: string;
  entry: string;
}

/** A function to boot with and save after its init phase (a function snapshot). */
export interface SavedFunction {
  settings: BoundFunction;
  bundleCode: string;
  name: string;
  entry: string;
  profileKey: string;
}

/** Why this host cannot use snapshots (of this shape, when given), or null. */
export function snapshotProblem(host: HostSetup, shape?: SavedShape): string | null {
  if (host.channel !== "virtio")
    return `the kernel (${host.kernel.origin}) has no virtio: snapshots need fnrun's kernel`;
  if (shape && shape.folders > 0 && !host.folderQemuPath)
    return "shared folders on clones need a QEMU that can restore vhost-user-fs (stock 7.2 cannot): run `make setup`, which builds fnrun's own with the patch that lets it, or set FNRUN_FOLDER_QEMU";
  return null;
}

/**
 * Whether a clone that failed before its function started leaves its snapshot
 * blameless, to be kept: when the clone had a network card (the saved devices
 * restore for every clone without one: the card is what failed), or when its
 * own RAM copy could not be made (the host's room or helpers: vm/launch.ts).
 * Otherwise the snapshot cannot be restored (say, QEMU changed in place), and
 * is never used again.
 */
export function snapshotBlameless(clone: { network: boolean }, failure: BootError): boolean {
  return clone.network || failure instanceof RamCopyError;
}

/** The host a snapshot of `shape` is saved and restored on: with folders, the folder QEMU. */
export function snapshotHost(host: HostSetup, shape: SavedShape): HostSetup {
  if (shape.folders === 0) return host;
  if (!host.folderQemuPath) throw new BootError(`cannot snapshot: ${snapshotProblem(host, shape)}`, "");
  return { ...host, qemuPath: host.folderQemuPath };
}

export async function snapshotKey(host: HostSetup, shape: SavedShape): Promise<string> {
  const saver = snapshotHost(host, shape);
  return sha256(
    FORMAT,
    host.runtime.key,
    await fileIdentity(host.kernel.path),
    await fileIdentity(saver.qemuPath),
    host.accel.accel,
    String(shape.memoryMB),
    host.channel,
    host.runtime.layout,
    guestNodeOptions(shape.memoryMB, host.accel.accel, true).join(" "),
    // Only when there are folders: the keys of the other profiles stay as they were.
    ...(shape.folders > 0 ? [`folders=${shape.folders}`] : []),
  );
}

async function toSnapshot(entry: CacheEntry, key: string, host: HostSetup): Promise<Snapshot> {
  const info = JSON.parse(await readFile(entry.path("snapshot.json"), "utf8")) as SnapshotInfo;
  return {
    key,
    directory: entry.directory,
    host,
    folders: info.folders ?? 0,
    ram: entry.path("ram"),
    state: entry.path("state"),
    memoryMB: info.memoryMB,
    bootNonce: info.bootNonce,
    cmdline: info.cmdline,
    ...(info.function ? { functionName: info.function.name } : {}),
  };
}

/**
 * What a function's init phase sees of its invocation, and where its clones
 * mount their folders: what keys its function snapshot.
 */
export function functionSettingsOf(invocation: Invocation, mounts: MountRequest[]): FunctionSettings {
  return {
    functionName: invocation.functionName,
    functionVersion: invocation.functionVersion,
    memoryLimitInMB: invocation.memoryLimitInMB,
    handler: invocation.handler,
    env: invocation.env,
    mounts,
  };
}

export async function findSnapshot(
  host: HostSetup,
  shape: SavedShape,
  env = process.env,
): Promise<Snapshot | undefined> {
  if (snapshotProblem(host, shape)) return undefined;
  const key = await snapshotKey(host, shape);
  const entry = await findEntry(KIND, key, {}, cacheRoot(env));
  return entry ? toSnapshot(entry, key, snapshotHost(host, shape)) : undefined;
}

export async function discardSnapshot(snapshot: Snapshot, env = process.env): Promise<void> {
  await removeEntry(snapshot.functionName === undefined ? KIND : FUNCTION_KIND, snapshot.key, cacheRoot(env));
}

export interface CreateOptions {
  progress?: Progress;
  env?: NodeJS.ProcessEnv;
  /** Limit on the boot to "ready". */
  bootTimeoutMs?: number;
  /** Made while an invocation boots (only the progress line says so). */
  background?: boolean;
  /** Stops the VM being saved; nothing of it is kept. */
  signal?: AbortSignal;
}

/** Returns the snapshot for this host and shape, making it first if needed (one process at a time). */
export async function ensureSnapshot(
  host: HostSetup,
  shape: SavedShape,
  options: CreateOptions = {},
): Promise<Snapshot> {
  const problem = snapshotProblem(host, shape);
  if (problem) throw new BootError(`cannot snapshot: ${problem}`, "");
  const env = options.env ?? process.env;
  const found = await findSnapshot(host, shape, env);
  if (found) return found;
  const folders = shape.folders > 0 ? `, ${shape.folders} shared folder${shape.folders > 1 ? "s" : ""}` : "";
  return saveOnce(host, shape, await snapshotKey(host, shape), options, {
    describe: `making a snapshot of a booted VM${options.background ? " in the background" : ""} (${shape.memoryMB} MB${folders}; once per kernel, runtime and profile)`,
  });
}

/** Boots and saves the VM of `key` unless another process just did (one at a time). */
async function saveOnce(
  host: HostSetup,
  shape: SavedShape,
  key: string,
  options: CreateOptions,
  what: { describe: string; bound?: SavedFunction },
): Promise<Snapshot> {
  const saver = snapshotHost(host, shape);
  const root = cacheRoot(options.env ?? process.env);
  const kind = what.bound ? FUNCTION_KIND : KIND;
  return withLock(join(root, kind, `${key}.lock`), async () => {
    const entry = await ensureEntry(
      kind,
      key,
      async (directory) => {
        (options.progress ?? silent)(what.describe);
        await saveBootedVm(
          saver,
          shape,
          directory,
          options.bootTimeoutMs ?? BOOT_TIMEOUT_MS.tcg,
          what.bound,
          options.signal,
        );
        return ["ram", "state", "snapshot.json"];
      },
      {},
      root,
    );
    return toSnapshot(entry, key, saver);
  });
}

/**
 * A function snapshot: a VM of the function's profile booted with the function
 * and saved after its init phase (its import), as Lambda's SnapStart does;
 * clones skip writing and importing the function. Keyed by the profile, the
 * bundle and every setting the init phase sees (name, handler, memory,
 * environment, and the guest paths of the folders its clones mount).
 */
export async function functionSnapshotKey(host: HostSetup, fn: FunctionToSave): Promise<string> {
  return keyOfFunction(await snapshotKey(host, fn.shape), fn.bundleCode, fn.settings);
}

function keyOfFunction(profileKey: string, bundleCode: string, settings: FunctionSettings): string {
  return sha256(FUNCTION_FORMAT, profileKey, sha256(bundleCode), JSON.stringify(settings));
}

export async function findFunctionSnapshot(
  host: HostSetup,
  shape: SavedShape,
  key: string,
  env = process.env,
): Promise<Snapshot | undefined> {
  if (snapshotProblem(host, shape)) return undefined;
  const entry = await findEntry(FUNCTION_KIND, key, {}, cacheRoot(env));
  return entry ? toSnapshot(entry, key, snapshotHost(host, shape)) : undefined;
}

/**
 * Makes the function snapshot (`fnrun snapshot FUNCTION`): refused, with the
 * reason, if the function's init phase fails, draws randomness or reads the
 * clock (every clone would then share it), or touches a folder its clones
 * mount (the saved VM has none mounted).
 */
export async function ensureFunctionSnapshot(
  host: HostSetup,
  fn: FunctionToSave,
  options: CreateOptions = {},
): Promise<Snapshot> {
  const problem = snapshotProblem(host, fn.shape);
  if (problem) throw new BootError(`cannot snapshot: ${problem}`, "");
  const profileKey = await snapshotKey(host, fn.shape);
  const key = keyOfFunction(profileKey, fn.bundleCode, fn.settings);
  const found = await findFunctionSnapshot(host, fn.shape, key, options.env);
  if (found) return found;
  const { shape, settings } = fn;
  const folders = shape.folders > 0 ? `, ${shape.folders} shared folder${shape.folders > 1 ? "s" : ""}` : "";
  return saveOnce(host, shape, key, options, {
    describe: `making a snapshot of ${fn.name} after its init phase${options.background ? " in the background" : ""} (${shape.memoryMB} MB${folders}; once per version of the function)`,
    bound: {
      name: fn.name,
      entry: fn.entry,
      bundleCode: fn.bundleCode,
      profileKey,
      // The saved VM's frames before an invocation: signed with a key of its own.
      // Its folders are mounted by each clone, never by the VM that is saved: its
      // init phase is watched for touching them instead.
      settings: {
        ...settings,
        mounts: [],
        key: newFrameKey(),
        ...(settings.mounts.length > 0
          ? { foldersToCome: settings.mounts.map((mount) => mount.guestPath) }
          : {}),
      },
    },
  });
}

const madeInBackground = new Map<string, Promise<void>>();
let backgroundStopper = new AbortController();

/**
 * Runs `make` in the background unless the same snapshot (`id`) is being made
 * already, if a VM slot is free now; otherwise a later invocation will. Never
 * throws: a failure goes to `onError`, but not one of stopBackgroundSnapshots's.
 * False if it did not start.
 */
function makeInBackground(
  id: string,
  make: (signal: AbortSignal) => Promise<unknown>,
  onError: ((error: unknown) => void | Promise<void>) | undefined,
): boolean {
  if (madeInBackground.has(id)) return false;
  const release = hostSlots.tryAcquire();
  if (!release) return false;
  const { signal } = backgroundStopper;
  const made = make(signal)
    .then(
      () => {},
      (error: unknown) => (signal.aborted ? undefined : onError?.(error)),
    )
    .finally(async () => {
      await release();
      madeInBackground.delete(id);
    });
  madeInBackground.set(id, made);
  return true;
}

/**
 * Makes the snapshot for this host and memory size in the background (what
 * `--start auto` does when there is none yet: the invocation boots meanwhile);
 * a failure is reported through `onError`, and the next invocation tries again.
 */
export function ensureSnapshotInBackground(
  host: HostSetup,
  shape: SavedShape,
  options: CreateOptions & { onError?: (error: unknown) => void } = {},
): void {
  if (snapshotProblem(host, shape)) return;
  const id = [
    host.qemuPath,
    host.kernel.path,
    host.runtime.key,
    host.accel.accel,
    shape.memoryMB,
    shape.folders,
  ].join("|");
  const { onError, ...create } = options;
  makeInBackground(
    id,
    (signal) => ensureSnapshot(host, shape, { ...create, background: true, signal }),
    onError,
  );
}

/**
 * Makes a function snapshot in the background (start/function-snapshots.ts
 * says when), keyed by `key` (functionSnapshotKey's); false if it did not
 * start (one is being made, or no VM slot is free).
 */
export function ensureFunctionSnapshotInBackground(
  host: HostSetup,
  key: string,
  fn: FunctionToSave,
  options: CreateOptions & { onError?: (error: unknown) => void | Promise<void> } = {},
): boolean {
  if (snapshotProblem(host, fn.shape)) return false;
  const { onError, ...create } = options;
  return makeInBackground(
    `function|${key}`,
    (signal) => ensureFunctionSnapshot(host, fn, { ...create, background: true, signal }),
    onError,
  );
}

/**
 * Resolves once the snapshots being made in the background are made (or have
 * failed); when `signal` aborts first (fnrun asked to stop), once they are
 * stopped (stopBackgroundSnapshots).
 */
export async function backgroundSnapshots(signal?: AbortSignal): Promise<void> {
  const stop = () => stopBackgroundSnapshots();
  signal?.addEventListener("abort", stop, { once: true });
  try {
    if (signal?.aborted) stop();
    await Promise.all(madeInBackground.values());
  } finally {
    signal?.removeEventListener("abort", stop);
  }
}

/**
 * Stops the snapshots being made in the background (fnrun was asked to stop):
 * their VMs are killed and their half-written files removed, by the time
 * backgroundSnapshots() resolves. Later ones are made as before.
 */
export function stopBackgroundSnapshots(): void {
  backgroundStopper.abort(new Error("stopped"));
  backgroundStopper = new AbortController();
}

async function waitForMigration(vm: Vm): Promise<void> {
  const qmp = await vm.qmp;
  if (!qmp) throw new Error("no QMP");
  for (;;) {
    const status = (await qmp.execute("query-migrate")) as { status?: string; "error-desc"?: string };
    if (status.status === "completed") return;
    if (status.status === "failed" || status.status === "cancelled") {
      throw new BootError(
        `saving the snapshot failed: ${status["error-desc"] ?? status.status}`,
        vm.consoleTail.lastLines(10),
      );
    }
    await sleep(10);
  }
}

/** Boots a VM to "ready" with its RAM in `directory`, and saves its device state beside it. */
async function saveBootedVm(
  host: HostSetup,
  { memoryMB, folders }: SavedShape,
  directory: string,
  bootTimeoutMs: number,
  bound?: SavedFunction,
  signal?: AbortSignal,
): Promise<void> {
  signal?.throwIfAborted();
  // The saved VM has its folder devices, served from an empty folder it never
  // mounts: each clone mounts its own folders after its restore.
  const empty = folders > 0 ? await mkdtemp(join(tmpdir(), "fnrun-empty-")) : undefined;
  try {
    const { vm, bootNonce, cmdline } = await bootVm(host, {
      shape: { memoryMB, network: false },
      mounts: Array.from({ length: folders }, (_, index) => ({
        source: empty ?? "",
        target: `/mnt/${folderTag(index)}`,
        readOnly: true,
        tag: folderTag(index),
      })),
      payload: bound
        ? { kind: "function", settings: bound.settings, bundleCode: bound.bundleCode }
        : { kind: "none" },
      snapshotRam: join(directory, "ram"),
    });
    const stop = () => vm.killNow();
    signal?.addEventListener("abort", stop, { once: true });
    try {
      if (signal?.aborted) stop();
      const timer = setTimeout(() => vm.killNow(), bootTimeoutMs);
      let ready: Extract<GuestMessage, { type: "ready" }>;
      try {
        ready = await vm.waitFor(
          (message): message is Extract<typeof message, { type: "ready" }> => message.type === "ready",
        );
      } finally {
        clearTimeout(timer);
      }
      if (bound) refuseUnrepeatable(bound.name, ready.initPhase);
      const qmp = await vm.qmp;
      if (!qmp) throw new Error("no QMP");
      await qmp.execute("migrate-set-capabilities", {
        capabilities: [{ capability: "x-ignore-shared", state: true }],
      });
      // Not stopped first: a VM saved while running is started by QEMU as soon as
      // a clone has loaded its state, which saves a `cont` round trip per restore.
      // (The guest is idle, blocked reading its channel; QEMU stops it to save.)
      await qmp.execute("migrate", { uri: `exec:cat > ${shellQuote(join(directory, "state"))}` });
      await waitForMigration(vm);
    } finally {
      signal?.removeEventListener("abort", stop);
      await vm.kill();
    }
    signal?.throwIfAborted();
    const info: SnapshotInfo = {
      bootNonce,
      memoryMB,
      folders,
      cmdline,
      createdAt: new Date().toISOString(),
      accel: host.accel.accel,
      ...(bound ? { function: { name: bound.name, entry: bound.entry, profileKey: bound.profileKey } } : {}),
    };
    await writeFile(join(directory, "snapshot.json"), JSON.stringify(info, null, 2));
  } finally {
    if (empty) await rm(empty, { recursive: true, force: true });
  }
}

/** A function whose init phase failed or drew randomness is not saved: its clones would all share it. */
function refuseUnrepeatable(name: string, initPhase: InitPhase | undefined): void {
  if (!initPhase)
    throw new FunctionError({
      errorType: "Runtime.SnapshotError",
      errorMessage: `${name}: the saved VM did not report its init phase`,
      stack: [],
    });
  if (initPhase.error !== undefined) {
    throw new FunctionError({
      errorType: "Runtime.ImportModuleError",
      errorMessage: `${name}'s init phase failed, so it has no function snapshot: ${initPhase.error}`,
      stack: [],
    });
  }
  const folders = initPhase.folders ?? [];
  if (folders.length > 0) {
    throw new FunctionError({
      errorType: "Runtime.SnapshotError",
      errorMessage: `${name} reads its shared folders in its init phase (${folders.join(", ")}): the VM a function snapshot is saved from has none mounted (each clone mounts its own when its invocation arrives). Read them in the handler instead, or invoke ${name} without a function snapshot (it then restores its profile's snapshot)`,
      stack: [],
    });
  }
  const used = initPhase.randomness;
  if (used.length > 0) {
    const clock = used.some((source) => source.includes("Date"));
    const random = used.some((source) => !source.includes("Date"));
    const what = [random ? "draws randomness" : "", clock ? "reads the clock" : ""]
      .filter(Boolean)
      .join(" and ");
    throw new FunctionError({
      errorType: "Runtime.SnapshotError",
      errorMessage: `${name} ${what} in its init phase (${used.join(", ")}): every clone of a function snapshot would repeat it. Do it in the handler instead, or invoke ${name} without a function snapshot (it then restores the shared snapshot)`,
      stack: [],
    });
  }
}

/** A snapshot in the cache, as `fnrun snapshot --list` shows it. */
export interface SnapshotProfile {
  key: string;
  directory: string;
  memoryMB: number | null;
  /** Its shared-folder devices. */
  folders: number;
  /** A function snapshot: the function's name. */
  function: string | null;
  accel: string | null;
  createdAt: string | null;
  /** When a restore last found it (the cache entry's mtime: at most an hour off). */
  lastUsed: string;
  /** Bytes on disk (the RAM file is sparse: what the guest touched). */
  bytes: number;
  /** Made for this host as it is now (its kernel, runtime, QEMU and accelerator): restorable. */
  current: boolean;
}

/** Every snapshot in the cache, most recently used first. */
export async function listSnapshots(
  host: HostSetup | undefined,
  env = process.env,
): Promise<SnapshotProfile[]> {
  const root = cacheRoot(env);
  const directories: string[] = [];
  for (const kind of [KIND, FUNCTION_KIND]) {
    const names = await readdir(join(root, kind)).catch(() => [] as string[]);
    for (const name of names) if (/^[0-9a-f]{64}$/.test(name)) directories.push(join(root, kind, name));
  }
  const profiles: SnapshotProfile[] = [];
  for (const directory of directories) {
    const name = basename(directory);
    const info = await readFile(join(directory, "snapshot.json"), "utf8")
      .then((text) => JSON.parse(text) as Partial<SnapshotInfo>)
      .catch(() => ({}) as Partial<SnapshotInfo>);
    const modified = await stat(directory).catch(() => undefined);
    if (!modified) continue;
    const memoryMB = typeof info.memoryMB === "number" ? info.memoryMB : null;
    const folders = typeof info.folders === "number" ? info.folders : 0;
    // A function snapshot is current when the profile it was made from is.
    const profileKey = info.function?.profileKey ?? name;
    const current =
      host !== undefined &&
      memoryMB !== null &&
      snapshotProblem(host, { memoryMB, folders }) === null &&
      (await snapshotKey(host, { memoryMB, folders })) === profileKey;
    profiles.push({
      key: name,
      directory,
      memoryMB,
      folders,
      function: info.function?.name ?? null,
      accel: info.accel ?? null,
      createdAt: info.createdAt ?? null,
      lastUsed: new Date(modified.mtimeMs).toISOString(),
      bytes: await directorySize(directory),
      current,
    });
  }
  return profiles.sort((a, b) => b.lastUsed.localeCompare(a.lastUsed));
}

/**
 * Removes the snapshots `host`, as it is now, cannot restore (made with
 * another kernel, runtime, QEMU or accelerator: `fnrun snapshot --prune`).
 * Each is moved aside first, so a process that looks it up meanwhile finds it
 * whole or not at all; one that has its files open keeps reading them.
 */
export async function pruneStaleSnapshots(
  host: HostSetup,
  env = process.env,
): Promise<{ removed: SnapshotProfile[]; kept: SnapshotProfile[] }> {
  const profiles = await listSnapshots(host, env);
  const removed: SnapshotProfile[] = [];
  for (const profile of profiles.filter((candidate) => !candidate.current)) {
    const aside = `${profile.directory}.${process.pid}.pruned.tmp`;
    try {
      await rename(profile.directory, aside);
    } catch {
      continue; // gone already (another prune, the LRU)
    }
    await rm(aside, { recursive: true, force: true });
    removed.push(profile);
  }
  return { removed, kept: profiles.filter((profile) => profile.current) };
}
