/**
 * Running one prepared invocation on a VM of its own: a boot, or a clone of a
 * snapshot (prestarted, or restored now), chosen by the start mode; the
 * snapshot made in the background when there is none yet; a broken one
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
import { abandonPrestart, adoptPrestarted, notePrestart } from "./prestart.ts";
import {
  discardSnapshot,
  ensureSnapshot,
  ensureSnapshotInBackground,
  findSnapshot,
  type Snapshot,
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
 * (prestart.ts; clones without a network only), else one restored now, with
 * the invocation's network.
 */
export async function restoreAndRun(
  host: HostSetup,
  snapshot: Snapshot,
  prepared: PreparedInvocation,
  options: Pick<RunOptions, "signal" | "onLog">,
): Promise<SessionReport> {
  const { invocation, bundle, limits } = prepared;
  const decoderLimits = decoderLimitsFor(limits.maxResultBytes);
  // A prestarted clone has no network card: one with a network is restored now.
  const prestarted = prepared.network
    ? await abandonPrestart().then(() => undefined)
    : await adoptPrestarted(snapshot, decoderLimits);
  const runDirectory = prestarted?.runDirectory ?? (await makeRunDirectory());
  try {
    const vm =
      prestarted?.vm ??
      (await restoreClone(host, snapshot, runDirectory, { network: prepared.network, decoderLimits }));
    if (prestarted) vm.marks.adopted = vm.elapsed();
    const session = runSession(vm, {
      limits,
      alreadyReady: true,
      ...(options.onLog ? { onLog: options.onLog } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    // From here on, only frames signed with the invocation's key count.
    vm.send({ type: "invoke", invocation, bundle: bundle.code }, snapshot.bootNonce, invocation.key);
    return await session;
  } finally {
    await rm(runDirectory, { recursive: true, force: true });
  }
}

/** Why this invocation cannot start from a snapshot, or null. */
export function snapshotUnsuitable(host: HostSetup, prepared: PreparedInvocation): string | null {
  const problem = snapshotProblem(host);
  if (problem) return problem;
  // vm/launch.ts's restoreClone says why.
  if (prepared.mounts.length > 0)
    return "shared folders need virtio-fs, whose device QEMU 7.2 cannot restore into (vhost-user-fs is unmigratable)";
  return null;
}

/** A restore that failed before the function started: the snapshot, not the function, is at fault. */
function restoreFailed(report: SessionReport): boolean {
  return (
    report.failure instanceof BootError &&
    !report.timeline.some((entry) => entry.name === "invocationReceived")
  );
}

export async function startAndRun(
  host: HostSetup,
  prepared: PreparedInvocation,
  options: RunOptions,
): Promise<{ report: SessionReport; startMode: "boot" | "snapshot" }> {
  const start = options.start ?? "auto";
  const boot = async () => {
    await abandonPrestart(); // a clone prestarted for nothing: its core goes to the boot
    return { report: await bootAndRun(host, prepared, options), startMode: "boot" as const };
  };
  const unsuitable = snapshotUnsuitable(host, prepared);
  if (start === "snapshot" && unsuitable) throw new UsageError(`--start snapshot: ${unsuitable}`);
  if (start === "boot" || unsuitable) return boot();

  const env = process.env;
  const making = {
    ...(options.onProgress ? { progress: options.onProgress } : {}),
    env,
    bootTimeoutMs: bootTimeoutMs(host),
  };
  const memoryMB = prepared.limits.memoryMB;
  const found = start === "auto" ? await findSnapshot(host, memoryMB, env) : undefined;
  if (start === "auto" && !found) {
    // No snapshot yet: this invocation boots, and the snapshot is made alongside
    // for the next ones.
    ensureSnapshotInBackground(host, memoryMB, {
      ...making,
      onError: (error) =>
        options.onNotice?.(
          `fnrun: making a snapshot failed (${(error as Error).message}); VMs boot meanwhile`,
        ),
    });
    return boot();
  }
  const snapshot = found ?? (await ensureSnapshot(host, memoryMB, making));
  // For the next `fnrun invoke` to prestart; a failure to write it costs only that.
  const noted = prepared.network
    ? Promise.resolve()
    : notePrestart(host, snapshot, decoderLimitsFor(prepared.limits.maxResultBytes), env).catch(() => {});
  const report = await restoreAndRun(host, snapshot, prepared, options);
  await noted;
  if (!restoreFailed(report)) return { report, startMode: "snapshot" };
  // The snapshot cannot be restored (say, QEMU changed in place): never use it again.
  await discardSnapshot(snapshot, env);
  if (start === "snapshot") return { report, startMode: "snapshot" };
  options.onNotice?.("fnrun: the snapshot could not be restored; it was removed and this VM booted instead");
  return boot();
}
