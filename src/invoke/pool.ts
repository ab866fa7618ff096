/**
 * A warm pool (createPool): invocations run on VMs started ahead of demand,
 * each holding one function already imported and waiting for an event
 * (start/warm-vms.ts). Every VM still serves exactly one invocation.
 * A function's configured shared folders and network are part of what its VMs
 * are kept ready with. Invocations the pool cannot serve as they are (their own
 * environment, another memory size, a larger result limit) run through
 * invoke() as usual, and so does one that finds no VM ready yet.
 */
import { type Bundle, bundleFunction } from "../build/bundle.ts";
import type { AccelRequest } from "../host/accel.ts";
import type { HostSetup } from "../host/setup.ts";
import { functionToSave, type PreparedInvocation } from "../start/run.ts";
import { backgroundSnapshots, ensureSnapshot, memoryOnly } from "../start/snapshot.ts";
import { type WarmFunction, type WarmVm, WarmVms } from "../start/warm-vms.ts";
import { sha256 } from "../util/cache.ts";
import { BootError, toFnrunError, UsageError } from "../util/errors.ts";
import type { Progress } from "../util/progress.ts";
import { bootTimeoutMs, mountRequests } from "../vm/launch.ts";
import { decoderLimitsFor, runSession } from "../vm/session.ts";
import { invoke } from "./invoke.ts";
import { DEFAULTS, type InvokeOptions, type InvokeResult, validateInvokeOptions } from "./options.ts";
import { hostFor, prepareInvocation } from "./prepare.ts";
import { finishReport } from "./report.ts";

export interface PoolOptions {
  /** Ready VMs kept per function (default 2). */
  size?: number;
  /** Guest RAM of pooled VMs in MB (default 256); invocations asking for another size bypass the pool. */
  memory?: number;
  /** Upper bound on the guest RAM of all idle pooled VMs together, in MB (default 2048). */
  maxIdleMemoryMB?: number;
  /** How pooled VMs start: snapshot clones (default when possible) or boots. */
  start?: "auto" | "boot" | "snapshot";
  accel?: AccelRequest;
  host?: HostSetup;
  /** Functions to warm at once (others are warmed on their first invocation). */
  functions?: string[];
  onProgress?: Progress;
  onNotice?: (message: string) => void;
}

export interface PoolStats {
  size: number;
  idleVms: number;
  startingVms: number;
  idleMemoryMB: number;
  served: number;
  bypassed: number;
  functions: Array<{ file: string; ready: number; starting: number }>;
  /** Process ids of the idle VMs' QEMUs (for measuring their memory). */
  idlePids: number[];
}

/** What the pool keeps VMs ready for: the function with these settings, in VMs of the pool's size. */
function warmFunctionOf(bundle: Bundle, prepared: PreparedInvocation, memoryMB: number): WarmFunction {
  const saved = functionToSave(prepared);
  // The folders' host sides and the network shape the VM too.
  const devices = JSON.stringify({ mounts: prepared.mounts, network: prepared.network });
  return {
    key: sha256(bundle.code, JSON.stringify(saved.settings), String(memoryMB), devices),
    file: bundle.entry,
    bundle,
    saved,
    mounts: prepared.mounts,
    network: prepared.network,
  };
}

export class Pool {
  readonly #warm: WarmVms;
  readonly #inFlight = new Set<Promise<unknown>>();
  #closed = false;
  #served = 0;
  #bypassed = 0;

  private constructor(
    readonly host: HostSetup,
    private readonly options: Required<Pick<PoolOptions, "size" | "memory">> & PoolOptions,
    startMode: "boot" | "snapshot",
  ) {
    this.#warm = new WarmVms(host, {
      size: options.size,
      memoryMB: options.memory,
      maxIdleMemoryMB: options.maxIdleMemoryMB ?? 2048,
      startMode,
      decoderLimits: decoderLimitsFor(DEFAULTS.maxResultBytes),
      ...(options.onNotice ? { onNotice: options.onNotice } : {}),
    });
  }

  static async create(options: PoolOptions = {}): Promise<Pool> {
    const size = options.size ?? 2;
    const memory = options.memory ?? DEFAULTS.memoryMB;
    if (!Number.isInteger(size) || size < 0 || size > 64)
      throw new UsageError("pool size must be an integer from 0 to 64");
    if (!Number.isFinite(memory) || memory < 64) throw new UsageError("pool memory must be at least 64 MB");
    const host = await hostFor(options);
    const wanted = options.start ?? "auto";
    const canSnapshot = host.channel === "virtio";
    if (wanted === "snapshot" && !canSnapshot)
      throw new UsageError("pool start snapshot: this kernel has no virtio");
    const startMode = wanted === "boot" || !canSnapshot ? "boot" : "snapshot";
    const pool = new Pool(host, { ...options, size, memory }, startMode);
    if (startMode === "snapshot") {
      await ensureSnapshot(host, memoryOnly(memory), {
        ...(options.onProgress ? { progress: options.onProgress } : {}),
      });
    }
    for (const file of options.functions ?? []) await pool.warm(file);
    return pool;
  }

  /** Prepares `file` and starts its VMs in the background. */
  async warm(file: string, options: InvokeOptions = {}): Promise<void> {
    const bundle = await bundleFunction(file);
    const prepared = prepareInvocation(bundle, { memory: this.options.memory, ...options });
    this.#warm.keep(warmFunctionOf(bundle, prepared, this.options.memory));
  }

  stats(): PoolStats {
    const warm = this.#warm.stats();
    return {
      size: this.options.size,
      idleVms: warm.idleVms,
      startingVms: warm.startingVms,
      idleMemoryMB: warm.idleVms * this.options.memory,
      served: this.#served,
      bypassed: this.#bypassed,
      functions: warm.functions,
      idlePids: warm.idlePids,
    };
  }

  /** Runs one invocation, on a pooled VM when one fits. */
  async invoke(file: string, options: InvokeOptions = {}): Promise<InvokeResult> {
    if (this.#closed) throw new UsageError("the pool is closed");
    validateInvokeOptions(options);
    const startedAt = performance.now();
    const bundle = await bundleFunction(file);
    for (const warning of bundle.warnings) options.onNotice?.(`fnrun: bundle warning: ${warning}`);
    const prepared = prepareInvocation(bundle, { memory: this.options.memory, ...options });
    if (this.#unpoolable(prepared, options)) {
      this.#bypassed++;
      return invoke(file, { ...options, host: this.host });
    }
    const fn = warmFunctionOf(bundle, prepared, this.options.memory);
    this.#warm.keep(fn);
    const pooled = this.#warm.take(fn.key);
    if (!pooled) {
      // Nothing ready yet: start as a one-off, like invoke() would.
      this.#bypassed++;
      return invoke(file, { ...options, host: this.host });
    }
    this.#served++;
    const run = this.#runOn(pooled, prepared, options, startedAt);
    this.#inFlight.add(run);
    try {
      return await run;
    } finally {
      this.#inFlight.delete(run);
    }
  }

  /**
   * Stops replacing VMs, kills the idle ones, and waits for invocations in
   * flight and for a function snapshot being made (the pool asks for them), so
   * that no VM of the pool's outlives it.
   */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#warm.close();
    await Promise.allSettled([...this.#inFlight]);
    await backgroundSnapshots();
  }

  #unpoolable(prepared: PreparedInvocation, options: InvokeOptions): string | null {
    if (options.start === "boot") return "a boot was asked for";
    if (prepared.limits.memoryMB !== this.options.memory) return "another memory size";
    if (options.env && Object.keys(options.env).length > 0) return "an environment of its own";
    if (prepared.limits.maxResultBytes > DEFAULTS.maxResultBytes) return "a larger result limit";
    // Its config's folders and network are part of the function's key; an
    // invocation's own would replace its VMs (keep() keeps one version per
    // file), so it runs as a one-off, which restores a clone with them.
    if (options.mounts && options.mounts.length > 0) return "shared folders of its own";
    if (options.net !== undefined && options.net !== (prepared.bundle.config.net ?? false))
      return "a network of its own";
    return null;
  }

  async #runOn(
    pooled: WarmVm,
    prepared: PreparedInvocation,
    options: InvokeOptions,
    startedAt: number,
  ): Promise<InvokeResult> {
    const { vm } = pooled;
    try {
      if (vm.hasExited) throw new BootError("the pooled VM stopped while idle", vm.consoleTail.lastLines(10));
      const session = runSession(vm, {
        limits: { ...prepared.limits, bootTimeoutMs: bootTimeoutMs(this.host) },
        alreadyReady: true,
        timeOrigin: vm.elapsed(),
        ...(options.onLog ? { onLog: options.onLog } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      // A pooled VM signs with the key it was loaded with. A clone of the
      // function's snapshot mounts its folders now (one that loaded it has).
      vm.send(
        {
          type: "invoke",
          invocation: { ...prepared.invocation, key: pooled.key, mounts: mountRequests(prepared.mounts) },
        },
        pooled.bootNonce,
        pooled.key,
      );
      const report = await session;
      return finishReport(prepared, report, this.host, "pool", startedAt);
    } catch (error) {
      throw toFnrunError(error);
    } finally {
      await vm.kill();
    }
  }
}

/** Creates a warm pool (see Pool). Close it when done: its VMs are processes. */
export function createPool(options: PoolOptions = {}): Promise<Pool> {
  return Pool.create(options);
}
