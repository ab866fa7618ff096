/**
 * Warm VMs: started ahead of demand, each holding one function already
 * imported (its init phase done) and waiting for an event. Each serves one
 * invocation and is destroyed after it like any other; a replacement starts in
 * the background, one start at a time so that the invocations running now are
 * not starved.
 *
 * A warm VM is a clone of the function's own snapshot (its init phase done
 * before it was saved: nothing to load, so a refill costs only a restore), or,
 * until that is made, a clone of its profile's snapshot sent a "load" message,
 * each with the function's network and folders (vm/launch.ts's restoreClone);
 * where clones cannot serve (no snapshots on this kernel, or folders without
 * the folder QEMU), a VM booted with the function in its initramfs. A pool
 * keeping a function warm asks for its function snapshot at once
 * (function-snapshots.ts): it will be invoked again. The pool (invoke/pool.ts)
 * decides which invocations run on one.
 */
import { rm } from "node:fs/promises";
import type { Bundle } from "../build/bundle.ts";
import type { HostSetup } from "../host/setup.ts";
import { BootError, InternalError } from "../util/errors.ts";
import { Limiter } from "../util/limiter.ts";
import { newFrameKey } from "../vm/frame-keys.ts";
import { bootTimeoutMs, bootVm, restoreClone } from "../vm/launch.ts";
import type { ResolvedMount } from "../vm/mounts.ts";
import type { Vm } from "../vm/process.ts";
import type { DecoderLimits } from "../vm/protocol.ts";
import { makeRunDirectory } from "../vm/run-directory.ts";
import { wantFunctionSnapshot } from "./function-snapshots.ts";
import {
  discardSnapshot,
  ensureSnapshot,
  type FunctionToSave,
  findFunctionSnapshot,
  functionSnapshotKey,
  type SavedShape,
  type Snapshot,
  snapshotBlameless,
  snapshotProblem,
} from "./snapshot.ts";

/** A function to keep VMs ready for. */
export interface WarmFunction {
  /** Changes with the function's code or settings: VMs of another key hold another function. */
  key: string;
  file: string;
  bundle: Bundle;
  /** The function as its function snapshot holds it: its profile, bundle and settings. */
  saved: FunctionToSave;
  /** The function's own shared folders (config.mounts): its VMs have their daemons ready. */
  mounts: ResolvedMount[];
  /** Its VMs have a network (guarded, vm/net-guard.ts). */
  network: boolean;
}

export interface WarmVm {
  vm: Vm;
  /** The nonce the VM's runtime reads frames with. */
  bootNonce: string;
  /** The key its frames are signed with, given before the function loaded: its invocation's too. */
  key: string;
}

export interface WarmVmsOptions {
  /** Ready VMs kept per function. */
  size: number;
  memoryMB: number;
  /** Upper bound on the guest RAM of all idle VMs together. */
  maxIdleMemoryMB: number;
  startMode: "boot" | "snapshot";
  decoderLimits: DecoderLimits;
  onNotice?: (message: string) => void;
}

interface Slot {
  fn: WarmFunction;
  ready: Array<WarmVm & { stopWatching: () => void }>;
  starting: number;
}

export class WarmVms {
  readonly #slots = new Map<string, Slot>();
  readonly #starter = new Limiter(1);
  #closed = false;

  constructor(
    private readonly host: HostSetup,
    private readonly options: WarmVmsOptions,
  ) {}

  /** Keeps VMs ready for `fn`; the VMs of an older version of its file are discarded. */
  keep(fn: WarmFunction): void {
    if (this.#slots.has(fn.key)) return;
    for (const [key, other] of this.#slots) {
      if (other.fn.file !== fn.file) continue;
      for (const warm of other.ready.splice(0)) void this.#discard(warm);
      this.#slots.delete(key);
    }
    const slot: Slot = { fn, ready: [], starting: 0 };
    this.#slots.set(fn.key, slot);
    this.#replenish(slot);
  }

  /** A ready VM of `key`, now the caller's to use once and kill; a replacement starts. */
  take(key: string): WarmVm | undefined {
    const slot = this.#slots.get(key);
    if (!slot) return undefined;
    const taken = slot.ready.shift();
    this.#replenish(slot);
    if (!taken) return undefined;
    taken.stopWatching();
    return { vm: taken.vm, bootNonce: taken.bootNonce, key: taken.key };
  }

  stats() {
    const slots = [...this.#slots.values()];
    return {
      idleVms: slots.reduce((sum, slot) => sum + slot.ready.length, 0),
      startingVms: slots.reduce((sum, slot) => sum + slot.starting, 0),
      functions: slots.map((slot) => ({
        file: slot.fn.file,
        ready: slot.ready.length,
        starting: slot.starting,
      })),
      idlePids: slots.flatMap((slot) => slot.ready.map((warm) => warm.vm.pid ?? 0)).filter((pid) => pid > 0),
    };
  }

  /** Stops replacing VMs, kills the idle ones, and waits for the starts under way (they kill theirs). */
  async close(): Promise<void> {
    this.#closed = true;
    const idle = [...this.#slots.values()].flatMap((slot) => slot.ready.splice(0));
    await Promise.all(idle.map((warm) => this.#discard(warm)));
    while ([...this.#slots.values()].some((slot) => slot.starting > 0)) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  #idleBudgetLeft(): boolean {
    const slots = [...this.#slots.values()];
    const vms = slots.reduce((sum, slot) => sum + slot.ready.length + slot.starting, 0);
    return (vms + 1) * this.options.memoryMB <= this.options.maxIdleMemoryMB;
  }

  #replenish(slot: Slot): void {
    while (
      !this.#closed &&
      this.#slots.get(slot.fn.key) === slot &&
      slot.ready.length + slot.starting < this.options.size &&
      this.#idleBudgetLeft()
    ) {
      slot.starting++;
      void this.#starter
        .run(() => this.#start(slot))
        .then(
          (warm) => {
            if (this.#closed || this.#slots.get(slot.fn.key) !== slot) return this.#discard(warm);
            slot.ready.push(warm);
          },
          (error: unknown) => {
            this.options.onNotice?.(
              `fnrun: could not start a pooled VM for ${slot.fn.file}: ${(error as Error).message}`,
            );
          },
        )
        .finally(() => {
          slot.starting--;
        });
    }
  }

  /** Starts one VM for `slot` and waits until it holds the function, imported. */
  async #start(slot: Slot): Promise<Slot["ready"][number]> {
    if (this.#closed) throw new InternalError("the pool is closed");
    // Clones of a profile this host cannot snapshot (folders without the folder QEMU) boot.
    const shape = slot.fn.saved.shape;
    const clones = this.options.startMode === "snapshot" && snapshotProblem(this.host, shape) === null;
    const own = clones ? await this.#functionSnapshot(slot.fn) : undefined;
    const { vm, bootNonce, key } = own
      ? await this.#restoreFunction(slot.fn, own)
      : clones
        ? await this.#restoreAndLoad(slot.fn, shape)
        : await this.#bootWithFunction(slot.fn);
    await this.#untilReady(vm);
    // A VM that dies while idle leaves the pool, and is replaced.
    let watching = true;
    const warm = {
      vm,
      bootNonce,
      key,
      stopWatching: () => {
        watching = false;
      },
    };
    void vm.exited.then(async () => {
      if (!watching) return;
      const index = slot.ready.indexOf(warm);
      if (index >= 0) slot.ready.splice(index, 1);
      await vm.kill();
      this.#replenish(slot);
    });
    return warm;
  }

  async #untilReady(vm: Vm): Promise<void> {
    const timer = setTimeout(() => vm.killNow(), bootTimeoutMs(this.host));
    try {
      await vm.waitFor(
        (message): message is Extract<typeof message, { type: "ready" }> => message.type === "ready",
      );
    } catch (error) {
      await vm.kill();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The function's own snapshot, if there is one; if not, it is asked for (in the background). */
  async #functionSnapshot(fn: WarmFunction): Promise<Snapshot | undefined> {
    const key = await functionSnapshotKey(this.host, fn.saved);
    const found = await findFunctionSnapshot(this.host, fn.saved.shape, key);
    if (!found && !this.#closed) {
      await wantFunctionSnapshot(this.host, key, fn.saved, "kept", {
        env: process.env,
        bootTimeoutMs: bootTimeoutMs(this.host),
        ...(this.options.onNotice ? { onNotice: this.options.onNotice } : {}),
      });
    }
    return found;
  }

  /**
   * A clone of the function's own snapshot: imported before it was saved,
   * nothing to load, but the runtime's per-invocation code is run once ahead
   * (translated by TCG in this VM before its invocation comes).
   */
  async #restoreFunction(fn: WarmFunction, snapshot: Snapshot): Promise<WarmVm> {
    const vm = await this.#restoreClone(fn, snapshot);
    const key = newFrameKey();
    // Its "ready", and its invocation's frames, are signed with this key.
    vm.send({ type: "warm", key }, snapshot.bootNonce, key);
    return { vm, bootNonce: snapshot.bootNonce, key };
  }

  async #restoreAndLoad(fn: WarmFunction, shape: SavedShape): Promise<WarmVm> {
    const snapshot = await ensureSnapshot(this.host, shape);
    const vm = await this.#restoreClone(fn, snapshot);
    const key = newFrameKey();
    // The key goes with the function, before its code runs; its "ready" is signed with it.
    vm.send(
      { type: "load", settings: fn.saved.settings, bundle: fn.bundle.code, key },
      snapshot.bootNonce,
      key,
    );
    return { vm, bootNonce: snapshot.bootNonce, key };
  }

  /** A clone of `snapshot` with the function's network and folders. */
  async #restoreClone(fn: WarmFunction, snapshot: Snapshot): Promise<Vm> {
    const runDirectory = await makeRunDirectory();
    return restoreClone(snapshot.host, snapshot, runDirectory, {
      network: fn.network,
      mounts: fn.mounts,
      decoderLimits: this.options.decoderLimits,
    }).catch(async (error: unknown) => {
      await rm(runDirectory, { recursive: true, force: true });
      // QEMU would not load the saved state: no later VM may use it, and the next
      // start makes it again (as an invocation does, start/run.ts), or loads the
      // function into a clone of its profile's. A clone with a network, or
      // whose RAM copy failed, keeps it (snapshotBlameless).
      if (error instanceof BootError && !snapshotBlameless(fn, error)) await discardSnapshot(snapshot);
      throw error;
    });
  }

  async #bootWithFunction(fn: WarmFunction): Promise<WarmVm> {
    const key = newFrameKey();
    const { vm, bootNonce } = await bootVm(this.host, {
      shape: { memoryMB: this.options.memoryMB, network: fn.network },
      mounts: fn.mounts,
      payload: { kind: "function", settings: { ...fn.saved.settings, key }, bundleCode: fn.bundle.code },
      decoderLimits: this.options.decoderLimits,
    });
    return { vm, bootNonce, key };
  }

  async #discard(warm: Slot["ready"][number]): Promise<void> {
    warm.stopWatching();
    await warm.vm.kill();
  }
}
