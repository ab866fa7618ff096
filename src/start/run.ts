/**
 * Running one prepared invocation on a VM of its own: a boot, or a clone of a
 * snapshot (prestarted, or restored now), chosen by the start mode; the
 * snapshot made in the background when there is none yet, and a function's
 * own snapshot on its second invocation (function-snapshots.ts); a broken one
 * discarded and the invocation booted instead.
 */
import { rm } from "node:fs/promises";
import type { Bundle } from "../build/bundle.ts";
import type { HostSetup } from "../host/setup.ts";
import { BootError, UsageError } from "../util/errors.ts";
import type { Progress } from "../util/progress.ts";
import { bootTimeoutMs, bootVm, mountRequests, restoreClone } from "../vm/launch.ts";
import type { LogEntry } from "../vm/log-collector.ts";
import type { ResolvedMount } from "../vm/mounts.ts";
import type { Invocation } from "../vm/protocol.ts";
import { makeRunDirectory } from "../vm/run-directory.ts";
import { decoderLimitsFor, runSession, type SessionLimits, type SessionReport } from "../vm/session.ts";
import { wantFunctionSnapshot } from "./function-snapshots.ts";
import {
  abandonPrestart,
  adoptPrestarted,
  forgetFunctionPrestart,
  notePrestart,
  type PrestartKind,
} from "./prestart.ts";
import {
  discardSnapshot,
  ensureSnapshot,
  ensureSnapshotInBackground,
  type FunctionToSave,
  findFunctionSnapshot,
  findSnapshot,
  functionSettingsOf,
  functionSnapshotKey,
  type SavedShape,
  type Snapshot,
  snapshotBlameless,
  snapshotProblem,
} from "./snapshot.ts";

export type StartMode = "auto" | "boot" | "snapshot";

/** Everything decided before a VM starts (invoke/prepare.ts makes it). */
export interface PreparedInvocation {
  bundle: Bundle;
  invocation: Invocation;
  limits: SessionLimits;
  network: boolean;
  /** Shared folders, checked (the folders exist) and tagged. */
  mounts: ResolvedMount[];
}

export interface RunOptions {
  start?: StartMode;
  signal?: AbortSignal;
  /** Each log chunk as it arrives. */
  onLog?: (entry: LogEntry) => void;
  onProgress?: Progress;
  onNotice?: (message: string) => void;
  verbose?: boolean;
}

export async function bootAndRun(
  host: HostSetup,
  prepared: PreparedInvocation,
  options: Pick<RunOptions, "signal" | "onLog" | "verbose"> & { extraArchive?: Buffer },
): Promise<SessionReport> {
  const { bundle, limits, invocation } = prepared;
  const { vm } = await bootVm(host, {
    shape: { memoryMB: limits.memoryMB, network: prepared.network },
    mounts: prepared.mounts,
    payload: {
      kind: "invocation",
      invocation: { ...invocation, mounts: mountRequests(prepared.mounts) },
      bundleCode: bundle.code,
      ...(options.extraArchive ? { extraArchive: options.extraArchive } : {}),
    },
    decoderLimits: decoderLimitsFor(limits.maxResultBytes),
    verbose: options.verbose ?? false,
  });
  return runSession(vm, {
    limits,
    ...(options.onLog ? { onLog: options.onLog } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
}

/**
 * Runs the invocation in a clone of `snapshot`: the one prestarted for it
 * (prestart.ts), else one restored now, with the invocation's network and
 * folders, on the host the snapshot was saved on (its QEMU).
 */
export async function restoreAndRun(
  snapshot: Snapshot,
  prepared: PreparedInvocation,
  options: Pick<RunOptions, "signal" | "onLog">,
): Promise<SessionReport> {
  const { invocation, bundle, limits } = prepared;
  const decoderLimits = decoderLimitsFor(limits.maxResultBytes);
  // The prestarted clone, if it has just this invocation's network and folders.
  const prestarted = await adoptPrestarted(snapshot, decoderLimits, {
    network: prepared.network,
    mounts: prepared.mounts,
  });
  const runDirectory = prestarted?.runDirectory ?? (await makeRunDirectory());
  try {
    const vm =
      prestarted?.vm ??
      (await restoreClone(snapshot.host, snapshot, runDirectory, {
        network: prepared.network,
        mounts: prepared.mounts,
        decoderLimits,
      }));
    if (prestarted) vm.marks.adopted = vm.elapsed();
    const session = runSession(vm, {
      limits,
      alreadyReady: true,
      ...(options.onLog ? { onLog: options.onLog } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    // From here on, only frames signed with the invocation's key count. A
    // function snapshot's clone has its function already.
    vm.send(
      {
        type: "invoke",
        invocation: { ...invocation, mounts: mountRequests(prepared.mounts) },
        ...(snapshot.functionName === undefined ? { bundle: bundle.code } : {}),
      },
      snapshot.bootNonce,
      invocation.key,
    );
    return await session;
  } finally {
    await rm(runDirectory, { recursive: true, force: true });
  }
}

/** The snapshot profile an invocation's clone comes from. */
export function savedShapeOf(prepared: PreparedInvocation): SavedShape {
  return { memoryMB: prepared.limits.memoryMB, folders: prepared.mounts.length };
}

/** Which prestarted clone this invocation's is: the note a clone of its profile is made from next time. */
function prestartKindOf(prepared: PreparedInvocation): PrestartKind {
  return { network: prepared.network, folders: prepared.mounts.length, memoryMB: prepared.limits.memoryMB };
}

/** The invocation's function, as its function snapshot would hold it. */
export function functionToSave(prepared: PreparedInvocation): FunctionToSave {
  const { bundle, invocation, mounts } = prepared;
  return {
    shape: savedShapeOf(prepared),
    settings: functionSettingsOf(invocation, mountRequests(mounts)),
    bundleCode: bundle.code,
    name: bundle.name,
    entry: bundle.entry,
  };
}

/** Why this invocation cannot start from a snapshot, or null. */
export function snapshotUnsuitable(host: HostSetup, prepared: PreparedInvocation): string | null {
  return snapshotProblem(host, savedShapeOf(prepared));
}

/**
 * Why a clone failed before its function started (the snapshot or the clone's
 * devices, not the function, are at fault), or undefined if it did not: QEMU
 * refused to start or to load the state, or the VM died before the invocation
 * reached it.
 */
async function failedRestore(
  run: Promise<SessionReport>,
): Promise<{ report: SessionReport } | { failure: BootError; report?: SessionReport }> {
  let report: SessionReport;
  try {
    report = await run;
  } catch (error) {
    if (error instanceof BootError) return { failure: error };
    throw error;
  }
  const beforeTheFunction =
    report.failure instanceof BootError &&
    !report.timeline.some((entry) => entry.name === "invocationReceived");
  return beforeTheFunction ? { failure: report.failure as BootError, report } : { report };
}

/**
 * Runs the invocation on a clone of its function's own snapshot (`key`), if
 * there is one for this very bundle and these settings (`fnrun snapshot
 * FUNCTION` or a second invocation made it). One that fails to restore is
 * removed, and the invocation goes on as if it had never been (undefined).
 */
async function runOnFunctionSnapshot(
  host: HostSetup,
  prepared: PreparedInvocation,
  key: string,
  options: RunOptions,
  start: StartMode,
): Promise<{ report: SessionReport; startMode: "snapshot" } | undefined> {
  const snapshot = await findFunctionSnapshot(host, savedShapeOf(prepared), key);
  const kind = { ...prestartKindOf(prepared), entry: prepared.bundle.entry };
  if (!snapshot) {
    await forgetFunctionPrestart(kind);
    return undefined;
  }
  const noted = notePrestart(snapshot, decoderLimitsFor(prepared.limits.maxResultBytes), kind).catch(
    () => {},
  );
  const outcome = await failedRestore(restoreAndRun(snapshot, prepared, options));
  await noted;
  if (!("failure" in outcome)) return { report: outcome.report, startMode: "snapshot" };
  if (start === "snapshot" && outcome.report) return { report: outcome.report, startMode: "snapshot" };
  const kept = snapshotBlameless(prepared, outcome.failure);
  if (!kept) await discardSnapshot(snapshot);
  await forgetFunctionPrestart(kind);
  options.onNotice?.(
    `fnrun: ${snapshot.functionName}'s function snapshot could not be restored${kept ? "" : "; it was removed"} (${outcome.failure.message})`,
  );
  return undefined;
}

export async function startAndRun(
  host: HostSetup,
  prepared: PreparedInvocation,
  options: RunOptions,
): Promise<{ report: SessionReport; startMode: "boot" | "snapshot" }> {
  const start = options.start ?? "auto";
  const env = process.env;
  const unsuitable = snapshotUnsuitable(host, prepared);
  if (start === "snapshot" && unsuitable) throw new UsageError(`--start snapshot: ${unsuitable}`);
  if (start === "boot" || unsuitable) return bootInstead(host, prepared, options);

  // The function's own snapshot, if it has one.
  const fn = functionToSave(prepared);
  const functionKey = await functionSnapshotKey(host, fn);
  const done = await runOnFunctionSnapshot(host, prepared, functionKey, options, start);
  if (done) return done;
  const started = await runOnSharedSnapshot(host, prepared, options, start, env);
  if (start === "auto" && started.report.failure === undefined) {
    await wantFunctionSnapshot(host, functionKey, fn, "invoked", {
      env,
      bootTimeoutMs: bootTimeoutMs(host),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      ...(options.onNotice ? { onNotice: options.onNotice } : {}),
    });
  }
  return started;
}

async function bootInstead(
  host: HostSetup,
  prepared: PreparedInvocation,
  options: RunOptions,
): Promise<{ report: SessionReport; startMode: "boot" }> {
  await abandonPrestart(); // a clone prestarted for nothing: its core goes to the boot
  return { report: await bootAndRun(host, prepared, options), startMode: "boot" };
}

/**
 * Runs the invocation on a clone of its profile's snapshot; with none yet (in
 * `--start auto`), boots it while the snapshot is made alongside. A snapshot
 * that fails to restore is removed, and the invocation boots.
 */
async function runOnSharedSnapshot(
  host: HostSetup,
  prepared: PreparedInvocation,
  options: RunOptions,
  start: StartMode,
  env: NodeJS.ProcessEnv,
): Promise<{ report: SessionReport; startMode: "boot" | "snapshot" }> {
  const boot = () => bootInstead(host, prepared, options);
  const making = {
    ...(options.onProgress ? { progress: options.onProgress } : {}),
    env,
    bootTimeoutMs: bootTimeoutMs(host),
  };
  const shape = savedShapeOf(prepared);
  const found = start === "auto" ? await findSnapshot(host, shape, env) : undefined;
  if (start === "auto" && !found) {
    // No snapshot yet: this invocation boots, and the snapshot is made alongside
    // for the next ones.
    ensureSnapshotInBackground(host, shape, {
      ...making,
      onError: (error) =>
        options.onNotice?.(
          `fnrun: making a snapshot failed (${(error as Error).message}); VMs boot meanwhile`,
        ),
    });
    return boot();
  }
  const snapshot = found ?? (await ensureSnapshot(host, shape, making));
  // For the next `fnrun invoke` to prestart; a failure to write it costs only that.
  const noted = notePrestart(
    snapshot,
    decoderLimitsFor(prepared.limits.maxResultBytes),
    prestartKindOf(prepared),
    env,
  ).catch(() => {});
  const outcome = await failedRestore(restoreAndRun(snapshot, prepared, options));
  await noted;
  if (!("failure" in outcome)) return { report: outcome.report, startMode: "snapshot" };
  const giveUp = () => {
    if (outcome.report) return { report: outcome.report, startMode: "snapshot" as const };
    throw outcome.failure;
  };
  if (snapshotBlameless(prepared, outcome.failure)) {
    if (start === "snapshot") return giveUp();
    options.onNotice?.(
      `fnrun: a clone${prepared.network ? " with a network" : ""} could not be restored (${outcome.failure.message}); this VM booted instead, and the snapshot is kept`,
    );
    return boot();
  }
  // The snapshot cannot be restored (say, QEMU changed in place): never use it again.
  await discardSnapshot(snapshot, env);
  if (start === "snapshot") return giveUp();
  options.onNotice?.("fnrun: the snapshot could not be restored; it was removed and this VM booted instead");
  return boot();
}
