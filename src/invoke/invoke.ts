/**
 * invoke(): one function, one event, one throw-away VM.
 *
 *   bundle -> options checked and merged with the function's config -> host setup
 *   (QEMU, accelerator, kernel, runtime image) -> start a VM (cold boot, a
 *   snapshot clone, or a pooled VM) -> session (logs, marks, result) -> VM killed
 *   -> stack traces mapped to the TypeScript source.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { rm } from "node:fs/promises";
import { resolve as resolvePath } from "node:path";
import { type Bundle, bundleFunction } from "../build/bundle.ts";
import { LIMITS, type MountConfig, parseMount, validateEnv } from "../build/config.ts";
import { createStackMapper } from "../build/sourcemap.ts";
import type { AccelRequest } from "../host/accel.ts";
import { guestNodeOptions } from "../host/runtime.ts";
import { type HostSetup, resolveHost } from "../host/setup.ts";
import { abandonPrestart, adoptPrestarted, notePrestart, takePrestartSlot } from "../start/prestart.ts";
import {
  discardSnapshot,
  ensureSnapshot,
  ensureSnapshotInBackground,
  findSnapshot,
  restoreSnapshot,
  restoreTarget,
  type Snapshot,
  snapshotProblem,
} from "../start/snapshot.ts";
import {
  BootError,
  FnrunError,
  FunctionError,
  InternalError,
  InterruptedError,
  toFnrunError,
  UsageError,
} from "../util/errors.ts";
import type { Progress } from "../util/progress.ts";
import { checkRange, shown } from "../util/validate.ts";
import { writeInvocationInitrd } from "../vm/initrd.ts";
import { checkMounts, type ResolvedMount, SharedFolders } from "../vm/mounts.ts";
import { randomNonce, Vm } from "../vm/process.ts";
import type { Invocation } from "../vm/protocol.ts";
import { buildKernelCmdline, type VmSpec } from "../vm/qemu.ts";
import { makeRunDirectory } from "../vm/run-directory.ts";
import {
  type LogEntry,
  runSession,
  type SessionLimits,
  type SessionReport,
  type TimelineEntry,
} from "../vm/session.ts";
import { hostSlots, vmSlots } from "../vm/slots.ts";

export const DEFAULTS = {
  timeoutSeconds: 30,
  memoryMB: 256,
  maxResultBytes: 6 * 1024 * 1024,
  maxLogBytes: 1024 * 1024,
  maxEventBytes: 6 * 1024 * 1024,
  /** Under TCG a loaded 2-core machine can take long to boot many VMs at once. */
  bootTimeoutMs: { kvm: 30_000, tcg: 120_000 },
  initTimeoutSeconds: 10,
} as const;

export type StartMode = "auto" | "boot" | "snapshot";

export interface InvokeOptions {
  /** The event: any JSON value (default `{}`). */
  event?: unknown;
  /** The export to call (default: config.handler, else `handler`, else the default export). */
  handler?: string;
  /** Seconds the handler may run (default: config.timeout, else 30). */
  timeout?: number;
  /** Guest RAM in MB (default: config.memory, else 256). */
  memory?: number;
  /** Environment for the function, over config.env. */
  env?: Record<string, string>;
  /** Give the guest a network device (default: config.net, else off). */
  net?: boolean;
  /** Shared folders, "HOST:GUEST[:ro|rw]" or objects (added to config.mounts). */
  mounts?: Array<string | MountConfig>;
  accel?: AccelRequest;
  start?: StartMode;
  maxResultBytes?: number;
  maxLogBytes?: number;
  requestId?: string;
  signal?: AbortSignal;
  /** Each log chunk as it arrives (already counted against maxLogBytes). */
  onLog?: (entry: LogEntry) => void;
  /** One line per slow step (first kernel build, runtime image build). */
  onProgress?: Progress;
  /** One-line notices, e.g. which accelerator was chosen and why. */
  onNotice?: (message: string) => void;
  /** Show kernel messages on the console (debugging boot problems). */
  verbose?: boolean;
  /** Reuse a resolved host setup (serve and the pool do). */
  host?: HostSetup;
}

export interface InvokeResult {
  requestId: string;
  functionName: string;
  /** The handler's return value (parsed from its JSON). */
  result: unknown;
  resultJson: string;
  logs: string;
  logEntries: LogEntry[];
  logsTruncated: boolean;
  timeline: TimelineEntry[];
  durationMs: number;
  accel: "kvm" | "tcg";
  startMode: "boot" | "snapshot" | "pool";
}

/** Everything decided before a VM starts. */
export interface PreparedInvocation {
  bundle: Bundle;
  invocation: Invocation;
  limits: SessionLimits;
  network: boolean;
  /** Shared folders, checked (the folders exist) and tagged. */
  mounts: ResolvedMount[];
}

const KNOWN_OPTIONS = new Set([
  "event",
  "handler",
  "timeout",
  "memory",
  "env",
  "net",
  "mounts",
  "accel",
  "start",
  "maxResultBytes",
  "maxLogBytes",
  "requestId",
  "signal",
  "onLog",
  "onProgress",
  "onNotice",
  "verbose",
  "host",
]);

/** Checks the API options once, at the boundary; inner code trusts them. */
export function validateInvokeOptions(options: InvokeOptions): void {
  if (typeof options !== "object" || options === null || Array.isArray(options))
    throw new UsageError("invoke options must be an object");
  const unknown = Object.keys(options).filter((key) => !KNOWN_OPTIONS.has(key));
  if (unknown.length > 0) {
    throw new UsageError(
      `unknown invoke option(s): ${unknown.join(", ")}; known: ${[...KNOWN_OPTIONS].join(", ")}`,
    );
  }
  checkRange(options.timeout, "timeout", LIMITS.timeoutSeconds);
  checkRange(options.memory, "memory", LIMITS.memoryMB, true);
  checkRange(options.maxResultBytes, "maxResultBytes", { min: 1, max: 256 * 1024 * 1024 }, true);
  checkRange(options.maxLogBytes, "maxLogBytes", { min: 1024, max: 256 * 1024 * 1024 }, true);
  if (
    options.handler !== undefined &&
    (typeof options.handler !== "string" || !/^(?:[^/]+\.)?[A-Za-z_$][\w$]*$/.test(options.handler))
  ) {
    throw new UsageError(`handler must be an export name (or FILE.EXPORT), not ${shown(options.handler)}`);
  }
  if (options.accel !== undefined && !["auto", "kvm", "tcg"].includes(options.accel)) {
    throw new UsageError(`accel must be auto, kvm or tcg, not ${shown(options.accel)}`);
  }
  if (options.start !== undefined && !["auto", "boot", "snapshot"].includes(options.start)) {
    throw new UsageError(`start must be auto, boot or snapshot, not ${shown(options.start)}`);
  }
  if (
    options.requestId !== undefined &&
    (typeof options.requestId !== "string" || !/^[\w.:-]{1,128}$/.test(options.requestId))
  ) {
    throw new UsageError(
      `requestId must be 1-128 letters, digits, "-", "_", "." or ":", not ${shown(options.requestId)}`,
    );
  }
  for (const name of ["signal", "onLog", "onProgress", "onNotice"] as const) {
    const value = options[name];
    const ok = name === "signal" ? value instanceof AbortSignal : typeof value === "function";
    if (value !== undefined && !ok) {
      throw new UsageError(`${name} must be ${name === "signal" ? "an AbortSignal" : "a function"}`);
    }
  }
  if (options.net !== undefined && typeof options.net !== "boolean")
    throw new UsageError("net must be true or false");
  if (options.env !== undefined) {
    try {
      validateEnv(options.env, "env");
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  }
  if (options.mounts !== undefined && !Array.isArray(options.mounts)) {
    throw new UsageError('mounts must be an array of "HOST:GUEST[:ro|rw]"');
  }
}

/** The event as JSON text, within the size limit. */
export function eventJson(event: unknown): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(event === undefined ? {} : event);
  } catch (error) {
    throw new UsageError(`the event cannot be turned into JSON: ${(error as Error).message}`);
  }
  if (json === undefined) throw new UsageError("the event must be a JSON value");
  const size = Buffer.byteLength(json);
  if (size > DEFAULTS.maxEventBytes) {
    throw new UsageError(
      `the event is ${(size / 1024 / 1024).toFixed(1)} MB; the limit is ${DEFAULTS.maxEventBytes / 1024 / 1024} MB (as Lambda's)`,
    );
  }
  return json;
}

/** "greet", or Lambda's "FILE.EXPORT" form ("hello.greet" for hello.ts). */
export function exportName(handler: string, functionName: string): string {
  const dot = handler.lastIndexOf(".");
  if (dot < 0) return handler;
  const file = handler.slice(0, dot);
  const name = handler.slice(dot + 1);
  if (file !== functionName) {
    throw new UsageError(
      `handler "${handler}" names the file "${file}", but the function is ${functionName}: use ${functionName}.${name}, or just ${name}`,
    );
  }
  return name;
}

export function prepareInvocation(bundle: Bundle, options: InvokeOptions): PreparedInvocation {
  const config = bundle.config;
  const timeoutSeconds = options.timeout ?? config.timeout ?? DEFAULTS.timeoutSeconds;
  const memoryMB = options.memory ?? config.memory ?? DEFAULTS.memoryMB;
  const maxResultBytes = options.maxResultBytes ?? DEFAULTS.maxResultBytes;
  const baseDirectory = resolvePath(bundle.entry, "..");
  const mounts = [
    ...(config.mounts ?? []).map((mount) => ({ ...mount, source: resolvePath(baseDirectory, mount.source) })),
    ...(options.mounts ?? []).map((mount) => {
      try {
        const parsed = typeof mount === "string" ? parseMount(mount) : mount;
        return { ...parsed, source: resolvePath(parsed.source) };
      } catch (error) {
        throw new UsageError((error as Error).message);
      }
    }),
  ];
  const invocation: Invocation = {
    nonce: randomNonce(),
    requestId: options.requestId ?? randomUUID(),
    functionName: bundle.name,
    functionVersion: "$LATEST",
    invokedFunctionArn: `arn:aws:lambda:local:000000000000:function:${bundle.name}`,
    memoryLimitInMB: memoryMB,
    timeoutMs: Math.round(timeoutSeconds * 1000),
    handler: options.handler ? exportName(options.handler, bundle.name) : (config.handler ?? "handler"),
    env: { ...(config.env ?? {}), ...(options.env ?? {}) },
    event: eventJson(options.event),
    maxResultBytes,
    mounts: [],
  };
  const limits: SessionLimits = {
    bootTimeoutMs: 0, // set once the accelerator is known
    timeoutMs: invocation.timeoutMs,
    initTimeoutMs: Math.max(DEFAULTS.initTimeoutSeconds * 1000, invocation.timeoutMs),
    maxResultBytes,
    maxLogBytes: options.maxLogBytes ?? DEFAULTS.maxLogBytes,
    memoryMB,
  };
  return {
    bundle,
    invocation,
    limits,
    network: options.net ?? config.net ?? false,
    mounts: checkMounts(mounts),
  };
}

/** Guest RAM: the function's memory, plus the runtime's files when they live in RAM (initrd layout). */
export function guestRamMB(host: HostSetup, memoryMB: number): number {
  return host.runtime.layout === "initrd" ? memoryMB + 256 : memoryMB;
}

export function baseVmSpec(
  host: HostSetup,
  memoryMB: number,
  network: boolean,
): Omit<VmSpec, "channel" | "cmdline" | "initrd"> {
  return {
    accel: host.accel.accel,
    kernel: { path: host.kernel.path, entry: host.kernel.entry },
    ...(host.runtime.disk ? { runtimeDisk: host.runtime.disk } : {}),
    memoryMB: guestRamMB(host, memoryMB),
    cpus: 1,
    sandbox: true,
    sharedFolders: [],
    network,
  };
}

export function finishReport(
  prepared: PreparedInvocation,
  report: SessionReport,
  host: HostSetup,
  startMode: InvokeResult["startMode"],
  startedAt: number,
): InvokeResult {
  const { invocation, bundle } = prepared;
  const base = {
    requestId: invocation.requestId,
    functionName: invocation.functionName,
    logs: report.logs.text(),
    logsTruncated: report.logs.truncated,
    timeline: report.timeline,
    startMode,
  };
  if (report.failure) {
    let failure = report.failure;
    if (failure instanceof FunctionError) {
      const map = createStackMapper(bundle.sourceMap);
      failure = new FunctionError({
        errorType: failure.errorType,
        errorMessage: failure.errorMessage,
        // The runtime's own frames are noise to the function's author.
        stack: failure.trace.filter((line) => !line.includes("/fnrun/guest.mjs")).map(map),
      });
    }
    failure.report = base;
    throw failure;
  }
  const outcome = report.outcome;
  if (outcome?.kind !== "result")
    throw new InternalError("an invocation ended with neither a result nor an error");
  let result: unknown;
  try {
    result = JSON.parse(outcome.json);
  } catch {
    const error = new FunctionError({
      errorType: "Runtime.InvalidResult",
      errorMessage: "the guest sent a result that is not valid JSON",
      stack: [],
    });
    error.report = base;
    throw error;
  }
  return {
    ...base,
    result,
    resultJson: outcome.json,
    logEntries: report.logs.entries,
    durationMs: performance.now() - startedAt,
    accel: host.accel.accel,
    startMode,
  };
}

export async function bootAndRun(
  host: HostSetup,
  prepared: PreparedInvocation,
  options: Pick<InvokeOptions, "signal" | "onLog" | "verbose"> & { extraArchive?: Buffer },
): Promise<SessionReport> {
  const { bundle, limits } = prepared;
  const runDirectory = await makeRunDirectory();
  let folders: SharedFolders | undefined;
  try {
    folders = await SharedFolders.start(runDirectory, prepared.mounts);
    const invocation = { ...prepared.invocation, mounts: folders.requests };
    const initrd = await writeInvocationInitrd(
      runDirectory,
      host.runtime.bootArchive,
      invocation,
      bundle.code,
      options.extraArchive,
    );
    const vm = await Vm.launch({
      qemuPath: host.qemuPath,
      runDirectory,
      nonce: invocation.nonce,
      decoderLimits: decoderLimitsFor(limits),
      spec: {
        ...baseVmSpec(host, limits.memoryMB, prepared.network),
        sharedFolders: folders.devices,
        initrd,
        channel: host.channel,
        cmdline: buildKernelCmdline({
          channel: host.channel,
          runtime: host.runtime.layout,
          bootNonce: randomBytes(16).toString("hex"),
          snapshot: false,
          nodeOptions: guestNodeOptions(limits.memoryMB, host.accel.accel),
          network: prepared.network,
          verbose: options.verbose ?? false,
          firmwareBoot: host.kernel.entry === "bios",
        }),
      },
    });
    return await runSession(vm, {
      limits,
      ...(options.onLog ? { onLog: options.onLog } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } finally {
    await folders?.stop();
    await rm(runDirectory, { recursive: true, force: true });
  }
}

/**
 * Runs the invocation in a clone of `snapshot`: the one prestarted for it
 * (src/prestart.ts), else one restored now.
 */
export async function restoreAndRun(
  host: HostSetup,
  snapshot: Snapshot,
  prepared: PreparedInvocation,
  options: Pick<InvokeOptions, "signal" | "onLog">,
): Promise<SessionReport> {
  const { invocation, bundle, limits } = prepared;
  const decoderLimits = decoderLimitsFor(limits);
  const prestarted = await adoptPrestarted(snapshot, decoderLimits);
  const runDirectory = prestarted?.runDirectory ?? (await makeRunDirectory());
  try {
    const vm =
      prestarted?.vm ??
      (await restoreSnapshot(restoreTarget(host, snapshot), snapshot, runDirectory, decoderLimits));
    if (prestarted) vm.marks.adopted = vm.elapsed();
    const session = runSession(vm, {
      limits,
      alreadyReady: true,
      ...(options.onLog ? { onLog: options.onLog } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    // From here on, only frames with the invocation's nonce count.
    vm.send({ type: "invoke", invocation, bundle: bundle.code }, snapshot.bootNonce, invocation.nonce);
    return await session;
  } finally {
    await rm(runDirectory, { recursive: true, force: true });
  }
}

/** Why this invocation cannot start from a snapshot, or null. */
export function snapshotUnsuitable(host: HostSetup, prepared: PreparedInvocation): string | null {
  const problem = snapshotProblem(host);
  if (problem) return problem;
  if (prepared.network) return "--net needs a network device the snapshot does not have";
  if (prepared.mounts.length > 0) return "shared folders need shared guest memory, which clones do not have";
  return null;
}

/** A restore that failed before the function started: the snapshot, not the function, is at fault. */
function restoreFailed(report: SessionReport): boolean {
  return (
    report.failure instanceof BootError &&
    !report.timeline.some((entry) => entry.name === "invocationReceived")
  );
}

async function startAndRun(
  host: HostSetup,
  prepared: PreparedInvocation,
  options: InvokeOptions,
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
  const noted = notePrestart(host, snapshot, decoderLimitsFor(prepared.limits), env).catch(() => {});
  const report = await restoreAndRun(host, snapshot, prepared, options);
  await noted;
  if (!restoreFailed(report)) return { report, startMode: "snapshot" };
  // The snapshot cannot be restored (say, QEMU changed in place): never use it again.
  await discardSnapshot(snapshot, env);
  if (start === "snapshot") return { report, startMode: "snapshot" };
  options.onNotice?.("fnrun: the snapshot could not be restored; it was removed and this VM booted instead");
  return boot();
}

export function decoderLimitsFor(limits: SessionLimits) {
  return {
    maxLineBytes: 64 * 1024 + 256,
    // A result's JSON is embedded, escaped, in a message: allow for the escaping.
    maxMessageBytes: limits.maxResultBytes * 2 + 64 * 1024,
  };
}

export function bootTimeoutMs(host: HostSetup): number {
  return DEFAULTS.bootTimeoutMs[host.accel.accel];
}

export function accelNotice(host: HostSetup): string | undefined {
  return host.accel.fallbackReason
    ? `fnrun: using TCG (software emulation): ${host.accel.fallbackReason}`
    : undefined;
}

/**
 * Runs a function once in a fresh VM and returns its result, or throws a
 * FnrunError. `file` is a function's source file, or an artifact (.tgz) made
 * by `fnrun build`.
 */
export async function invoke(file: string, options: InvokeOptions = {}): Promise<InvokeResult> {
  if (typeof file !== "string" || file === "")
    throw new UsageError(`the function must be a file path, not ${shown(file)}`);
  validateInvokeOptions(options);
  let bundle: Bundle;
  if (file.endsWith(".tgz")) {
    const { readArtifact } = await import("../build/artifact.ts");
    bundle = await readArtifact(file);
  } else {
    bundle = await bundleFunction(file);
  }
  return invokeBundle(bundle, options);
}

/** invoke() for a function already bundled (a queue job's artifact, say). */
/** The machine set-up to run on (given, or resolved now), with the accelerator's notice said. */
export async function hostFor(
  options: Pick<InvokeOptions, "host" | "accel" | "onProgress" | "onNotice">,
): Promise<HostSetup> {
  const host =
    options.host ??
    (await resolveHost({
      ...(options.accel ? { accel: options.accel } : {}),
      ...(options.onProgress ? { progress: options.onProgress } : {}),
    }));
  const notice = accelNotice(host);
  if (notice) options.onNotice?.(notice);
  return host;
}

export async function invokeBundle(bundle: Bundle, options: InvokeOptions = {}): Promise<InvokeResult> {
  validateInvokeOptions(options);
  const startedAt = performance.now();
  for (const warning of bundle.warnings) options.onNotice?.(`fnrun: bundle warning: ${warning}`);
  const prepared = prepareInvocation(bundle, options);
  try {
    const host = await hostFor(options);
    prepared.limits.bootTimeoutMs = bootTimeoutMs(host);
    const { report, startMode } = await vmSlots
      .run(async () => {
        const release =
          takePrestartSlot() ??
          (await hostSlots.acquire(options.signal, () =>
            options.onProgress?.(
              `waiting for a free VM slot (${hostSlots.limit} VMs run at once; FNRUN_MAX_VMS sets it)`,
            ),
          ));
        try {
          return await startAndRun(host, prepared, options);
        } finally {
          await release();
        }
      }, options.signal)
      .catch((error: unknown) => {
        if (options.signal?.aborted && !(error instanceof FnrunError)) {
          throw new InterruptedError("interrupted while waiting for a free VM slot");
        }
        throw error;
      });
    return finishReport(prepared, report, host, startMode, startedAt);
  } catch (error) {
    throw toFnrunError(error);
  } finally {
    await abandonPrestart();
  }
}
