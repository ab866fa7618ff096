/**
 * A warm pool: VMs started ahead of demand, each holding one function already
 * imported (its init phase done) and waiting for an event. An invocation takes
 * one, sends the event, and the VM is destroyed afterwards like any other:
 * every VM still serves exactly one invocation. A replacement starts in the
 * background.
 *
 * Pooled VMs are snapshot clones sent a "load" message (restore ~0.3 s under
 * TCG), or, where snapshots cannot be used, VMs booted with the function in
 * their initramfs. Invocations the pool cannot serve as they are (their own
 * environment, a network device, shared folders, another memory size) run
 * through invoke() as usual.
 */
import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import { type Bundle, bundleFunction } from "../build/bundle.ts";
import type { AccelRequest } from "../host/accel.ts";
import { guestNodeOptions } from "../host/runtime.ts";
import type { HostSetup } from "../host/setup.ts";
import { ensureSnapshot, restoreSnapshot, restoreTarget } from "../start/snapshot.ts";
import { sha256 } from "../util/cache.ts";
import { BootError, InternalError, toFnrunError, UsageError } from "../util/errors.ts";
import { Limiter } from "../util/limiter.ts";
import type { Progress } from "../util/progress.ts";
import { boundArchive } from "../vm/initrd.ts";
import { type ResolvedMount, SharedFolders } from "../vm/mounts.ts";
import { Vm } from "../vm/process.ts";
import type { FunctionSettings } from "../vm/protocol.ts";
import { buildKernelCmdline } from "../vm/qemu.ts";
import { makeRunDirectory } from "../vm/run-directory.ts";
import { runSession } from "../vm/session.ts";
import {
  baseVmSpec,
  bootTimeoutMs,
  DEFAULTS,
  decoderLimitsFor,
  finishReport,
  hostFor,
  type InvokeOptions,
  type InvokeResult,
  invoke,
  type PreparedInvocation,
  prepareInvocation,
  validateInvokeOptions,
} from "./invoke.ts";

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

interface PooledVm {
  vm: Vm;
  runDirectory: string;
  /** The nonce the VM's runtime reads frames with. */
  bootNonce: string;
  /** The virtiofsd daemons of a VM whose function has shared folders. */
  folders: SharedFolders | undefined;
  stopWatching: () => void;
}

interface Slot {
  key: string;
  file: string;
  bundle: Bundle;
  settings: FunctionSettings;
  /** The function's own shared folders (config.mounts): its VMs boot, with their daemons ready. */
  mounts: ResolvedMount[];
  ready: PooledVm[];
  starting: number;
}

function settingsOf(prepared: PreparedInvocation): FunctionSettings {
  const { invocation } = prepared;
  return {
    functionName: invocation.functionName,
    functionVersion: invocation.functionVersion,
    memoryLimitInMB: invocation.memoryLimitInMB,
    handler: invocation.handler,
    env: invocation.env,
    mounts: prepared.mounts.map((mount) => ({
      tag: mount.tag,
      guestPath: mount.target,
      readOnly: mount.readOnly,
    })),
  };
}

export class Pool {
  readonly #slots = new Map<string, Slot>();
  /** Background starts one at a time: they must not starve the invocations running now. */
  readonly #starter = new Limiter(1);
  readonly #inFlight = new Set<Promise<unknown>>();
  #closed = false;
  #served = 0;
  #bypassed = 0;

  private constructor(
    readonly host: HostSetup,
    private readonly options: Required<Pick<PoolOptions, "size" | "memory" | "maxIdleMemoryMB">> &
      PoolOptions,
    private readonly startMode: "boot" | "snapshot",
  ) {}

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
    const pool = new Pool(
      host,
      { ...options, size, memory, maxIdleMemoryMB: options.maxIdleMemoryMB ?? 2048 },
      startMode,
    );
    if (startMode === "snapshot") {
      await ensureSnapshot(host, memory, { ...(options.onProgress ? { progress: options.onProgress } : {}) });
    }
    for (const file of options.functions ?? []) await pool.warm(file);
    return pool;
  }

  /** Prepares `file` and starts its VMs in the background. */
  async warm(file: string, options: InvokeOptions = {}): Promise<void> {
    const bundle = await bundleFunction(file);
    const prepared = prepareInvocation(bundle, { memory: this.options.memory, ...options });
    this.#slotFor(bundle, prepared);
  }

  stats(): PoolStats {
    const slots = [...this.#slots.values()];
    const idleVms = slots.reduce((sum, slot) => sum + slot.ready.length, 0);
    return {
      size: this.options.size,
      idleVms,
      startingVms: slots.reduce((sum, slot) => sum + slot.starting, 0),
      idleMemoryMB: idleVms * this.options.memory,
      served: this.#served,
      bypassed: this.#bypassed,
      functions: slots.map((slot) => ({
        file: slot.file,
        ready: slot.ready.length,
        starting: slot.starting,
      })),
      idlePids: slots
        .flatMap((slot) => slot.ready.map((pooled) => pooled.vm.pid ?? 0))
        .filter((pid) => pid > 0),
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
    const reason = this.#unpoolable(prepared, options);
    if (reason) {
      this.#bypassed++;
      return invoke(file, { ...options, host: this.host });
    }
    const slot = this.#slotFor(bundle, prepared);
    const pooled = slot.ready.shift();
    this.#replenish(slot);
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

  /** Stops replacing VMs, kills the idle ones, and waits for invocations in flight. */
  async close(): Promise<void> {
    this.#closed = true;
    const idle = [...this.#slots.values()].flatMap((slot) => slot.ready.splice(0));
    await Promise.all(idle.map((pooled) => this.#discard(pooled)));
    await Promise.allSettled([...this.#inFlight]);
    // Starts that were under way when we closed kill their VMs themselves (see #start).
    while ([...this.#slots.values()].some((slot) => slot.starting > 0)) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  #unpoolable(prepared: PreparedInvocation, options: InvokeOptions): string | null {
    if (options.start === "boot") return "a boot was asked for";
    if (prepared.limits.memoryMB !== this.options.memory) return "another memory size";
    if (options.env && Object.keys(options.env).length > 0) return "an environment of its own";
    if (prepared.limits.maxResultBytes > DEFAULTS.maxResultBytes) return "a larger result limit";
    if (options.mounts && options.mounts.length > 0) return "shared folders of its own";
    if (prepared.network) return "a network device";
    // A function's configured folders are fine: its pooled VMs boot with their daemons ready.
    return null;
  }

  #slotFor(bundle: Bundle, prepared: PreparedInvocation): Slot {
    const settings = settingsOf(prepared);
    const key = sha256(bundle.code, JSON.stringify(settings), String(this.options.memory));
    let slot = this.#slots.get(key);
    if (!slot) {
      // The function changed (or its config): its old VMs hold the old code.
      for (const [otherKey, other] of this.#slots) {
        if (other.file !== bundle.entry) continue;
        for (const pooled of other.ready.splice(0)) void this.#discard(pooled);
        this.#slots.delete(otherKey);
      }
      slot = { key, file: bundle.entry, bundle, settings, mounts: prepared.mounts, ready: [], starting: 0 };
      this.#slots.set(key, slot);
      this.#replenish(slot);
    }
    return slot;
  }

  #idleBudgetLeft(): boolean {
    const slots = [...this.#slots.values()];
    const vms = slots.reduce((sum, slot) => sum + slot.ready.length + slot.starting, 0);
    return (vms + 1) * this.options.memory <= this.options.maxIdleMemoryMB;
  }

  #replenish(slot: Slot): void {
    while (
      !this.#closed &&
      this.#slots.get(slot.key) === slot &&
      slot.ready.length + slot.starting < this.options.size &&
      this.#idleBudgetLeft()
    ) {
      slot.starting++;
      void this.#starter
        .run(() => this.#start(slot))
        .then(
          (pooled) => {
            if (this.#closed || this.#slots.get(slot.key) !== slot) return this.#discard(pooled);
            slot.ready.push(pooled);
          },
          (error: unknown) => {
            this.options.onNotice?.(
              `fnrun: could not start a pooled VM for ${slot.file}: ${(error as Error).message}`,
            );
          },
        )
        .finally(() => {
          slot.starting--;
        });
    }
  }

  /** Starts one VM for `slot` and waits until it has imported the function. */
  async #start(slot: Slot): Promise<PooledVm> {
    if (this.#closed) throw new InternalError("the pool is closed");
    const runDirectory = await makeRunDirectory();
    try {
      // Clones cannot share folders (virtio-fs needs shared guest memory): such functions' VMs boot.
      const { vm, bootNonce, folders } =
        this.startMode === "snapshot" && slot.mounts.length === 0
          ? { ...(await this.#restoreAndLoad(slot, runDirectory)), folders: undefined }
          : await this.#bootBound(slot, runDirectory);
      const timer = setTimeout(() => vm.killNow(), bootTimeoutMs(this.host));
      try {
        await vm.waitFor(
          (message): message is Extract<typeof message, { type: "ready" }> => message.type === "ready",
        );
      } catch (error) {
        await vm.kill();
        await folders?.stop();
        throw error;
      } finally {
        clearTimeout(timer);
      }
      const pooled: PooledVm = { vm, runDirectory, bootNonce, folders, stopWatching: () => {} };
      // A VM that dies while idle leaves the pool, and is replaced.
      let watching = true;
      pooled.stopWatching = () => {
        watching = false;
      };
      void vm.exited.then(() => {
        if (!watching) return;
        const index = slot.ready.indexOf(pooled);
        if (index >= 0) slot.ready.splice(index, 1);
        void folders?.stop().then(() => rm(runDirectory, { recursive: true, force: true }));
        this.#replenish(slot);
      });
      return pooled;
    } catch (error) {
      await rm(runDirectory, { recursive: true, force: true });
      throw error;
    }
  }

  async #restoreAndLoad(slot: Slot, runDirectory: string): Promise<{ vm: Vm; bootNonce: string }> {
    const snapshot = await ensureSnapshot(this.host, this.options.memory);
    const limits = prepareLimits(this.options.memory);
    const vm = await restoreSnapshot(
      restoreTarget(this.host, snapshot),
      snapshot,
      runDirectory,
      decoderLimitsFor(limits),
    );
    vm.send(
      {
        type: "load",
        settings: slot.settings,
        bundle: slot.bundle.code,
      },
      snapshot.bootNonce,
    );
    return { vm, bootNonce: snapshot.bootNonce };
  }

  async #bootBound(
    slot: Slot,
    runDirectory: string,
  ): Promise<{ vm: Vm; bootNonce: string; folders: SharedFolders }> {
    const bootNonce = randomBytes(16).toString("hex");
    const folders = await SharedFolders.start(runDirectory, slot.mounts);
    const limits = prepareLimits(this.options.memory);
    const initrd = await boundArchive(
      runDirectory,
      this.host.runtime.bootArchive,
      slot.settings,
      slot.bundle.code,
    );
    const vm = await Vm.launch({
      qemuPath: this.host.qemuPath,
      runDirectory,
      nonce: bootNonce,
      decoderLimits: decoderLimitsFor(limits),
      spec: {
        ...baseVmSpec(this.host, this.options.memory, false),
        sharedFolders: folders.devices,
        initrd,
        channel: this.host.channel,
        cmdline: buildKernelCmdline({
          channel: this.host.channel,
          runtime: this.host.runtime.layout,
          bootNonce,
          snapshot: false,
          nodeOptions: guestNodeOptions(this.options.memory, this.host.accel.accel),
          network: false,
          verbose: false,
          firmwareBoot: this.host.kernel.entry === "bios",
        }),
      },
    });
    return { vm, bootNonce, folders };
  }

  async #runOn(
    pooled: PooledVm,
    prepared: PreparedInvocation,
    options: InvokeOptions,
    startedAt: number,
  ): Promise<InvokeResult> {
    pooled.stopWatching();
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
      vm.send(
        { type: "invoke", invocation: prepared.invocation },
        pooled.bootNonce,
        prepared.invocation.nonce,
      );
      const report = await session;
      return finishReport(prepared, report, this.host, "pool", startedAt);
    } catch (error) {
      throw toFnrunError(error);
    } finally {
      await vm.kill();
      await pooled.folders?.stop();
      await rm(pooled.runDirectory, { recursive: true, force: true });
    }
  }

  async #discard(pooled: PooledVm): Promise<void> {
    pooled.stopWatching();
    await pooled.vm.kill();
    await pooled.folders?.stop();
    await rm(pooled.runDirectory, { recursive: true, force: true });
  }
}

function prepareLimits(memoryMB: number) {
  return {
    bootTimeoutMs: 0,
    timeoutMs: 0,
    initTimeoutMs: 0,
    maxResultBytes: DEFAULTS.maxResultBytes,
    maxLogBytes: DEFAULTS.maxLogBytes,
    memoryMB,
  };
}

/** Creates a warm pool (see Pool). Close it when done: its VMs are processes. */
export function createPool(options: PoolOptions = {}): Promise<Pool> {
  return Pool.create(options);
}
