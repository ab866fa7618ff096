/**
 * One QEMU process, wired to its console (QEMU's stdout) and its protocol
 * channel, and killed on every path.
 *
 * - QEMU is spawned by spawn-qemu.ts (under a parent-death signal, with an
 *   argv array), by launch() here, or by a prestart before this module has
 *   even loaded, whose QEMU a Vm then adopts: one way to wire it either way.
 * - `kill()` kills it when an invocation ends, and an exit hook on normal exits.
 * - Each VM has a private runtime directory (0700) for its sockets and its
 *   per-invocation initramfs, removed when the VM is gone.
 * - Everything the guest sends is parsed by the bounded FrameDecoder and
 *   validated; console text is kept as a bounded tail for error messages.
 *
 * Longer than most modules: one QEMU process and everything wired to it (its
 * console, channel, QMP and network guard sockets, its exit, its companions)
 * live and die together, and are read best together.
 */

import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { rm } from "node:fs/promises";
import type { Socket } from "node:net";
import { BootError } from "../util/errors.ts";
import { TextTail } from "../util/text-tail.ts";
import { framesSignedWith } from "./frame-keys.ts";
import { NetGuard } from "./net-guard.ts";
import {
  DEFAULT_DECODER_LIMITS,
  type DecoderLimits,
  encodeMessage,
  FrameDecoder,
  type GuestMessage,
  type HostMessage,
  parseGuestMessage,
} from "./protocol.ts";
import { buildQemuArgs, type VmSpec } from "./qemu.ts";
import { QmpClient } from "./qmp.ts";
import { deathSignalWrapper, type QemuCommand, type SpawnedQemu, spawnQemu } from "./spawn-qemu.ts";

/** Host-side timeline points, in ms since the VM's spawn. */
export interface HostMarks {
  spawn: number;
  firstConsoleOutput?: number;
  ready?: number;
  /** A snapshot's state began loading (restores only). */
  restoreStarted?: number;
  /** QEMU started the restored VM's CPU (restores only). */
  resumed?: number;
  /** An invocation took over this clone, prestarted before the CLI had loaded (src/prestart.ts). */
  adopted?: number;
  invocationSent?: number;
  resultReceived?: number;
  exited?: number;
}

export interface VmExit {
  code: number | null;
  signal: string | null;
  /** QEMU's own complaints (bounded). */
  stderr: string;
}

const live = new Set<Vm>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort on a normal exit: synchronous, so it runs even in process.exit().
  // QEMU itself is killed by spawn-qemu.ts's hook, registered at its spawn,
  // before this one: what is left is the VM's files.
  process.on("exit", () => {
    for (const vm of live) {
      try {
        rmSync(vm.runDirectory, { recursive: true, force: true });
      } catch {}
    }
  });
}

export interface LaunchOptions {
  qemuPath: string;
  /** The spec; the channel's, QMP's and the network guard's descriptors are filled in here. */
  spec: Omit<VmSpec, "channel" | "qmpFd" | "netGuardFds"> & {
    channel: VmSpec["channel"]["kind"];
    qmp?: boolean;
  };
  runDirectory: string;
  /** Key of the first frames expected (the boot nonce, or a cold invocation's key). */
  key: string;
  decoderLimits?: DecoderLimits;
  /** Extra environment for QEMU (none needed normally). */
  env?: NodeJS.ProcessEnv;
  /** Open file descriptors QEMU inherits as fd 3, 4, … (a snapshot's device state). */
  inheritFds?: number[];
  /**
   * A booted VM's nonce, which the runtime reads the host's frames with: the
   * Vm answers its one request for the host's clock ("clock") with it.
   */
  bootNonce?: string;
}

/** What a Vm needs beyond its QEMU: where its files go, and how to read its frames. */
export type WiringOptions = Pick<LaunchOptions, "runDirectory" | "key" | "decoderLimits" | "bootNonce">;

/**
 * The command that starts QEMU for `options`: its descriptors are the inherited
 * ones from fd 3 (a snapshot's device state), then the channel's, QMP's, and
 * the network guard's two.
 */
export function qemuCommand(options: Pick<LaunchOptions, "qemuPath" | "spec">, inherited = 0): QemuCommand {
  let next = 3 + inherited;
  const channel: VmSpec["channel"] =
    options.spec.channel === "virtio" ? { kind: "virtio", fd: next++ } : { kind: "serial" };
  const { channel: _kind, qmp, ...rest } = options.spec;
  const qmpFd = qmp ? next++ : undefined;
  const netGuardFds = rest.network ? { out: next++, in: next++ } : undefined;
  const spec: VmSpec = {
    ...rest,
    channel,
    ...(qmpFd !== undefined ? { qmpFd } : {}),
    ...(netGuardFds ? { netGuardFds } : {}),
  };
  return {
    wrapper: deathSignalWrapper(),
    qemuPath: options.qemuPath,
    args: buildQemuArgs(spec),
    inherited,
    ...(channel.kind === "virtio" ? { channelFd: channel.fd } : {}),
    ...(qmpFd !== undefined ? { qmpFd } : {}),
    ...(netGuardFds ? { netGuardFds } : {}),
    ...(spec.macAddress ? { macAddress: spec.macAddress } : {}),
  };
}

type Listener = (message: GuestMessage) => void;

export class Vm {
  readonly runDirectory: string;
  readonly marks: HostMarks;
  readonly consoleTail = new TextTail(16 * 1024);
  /** The QMP client, when the VM was launched with `qmp` (snapshots). */
  readonly qmp: Promise<QmpClient> | undefined;
  /** A VM with a network: the guard its guest's frames go through. */
  readonly netGuard: NetGuard | undefined;
  readonly exited: Promise<VmExit>;
  readonly args: string[];
  #startedAt: number;
  #child: SpawnedQemu["child"];
  #socket: Socket | undefined;
  #decoder: FrameDecoder;
  #messageListeners = new Set<Listener>();
  #consoleListeners = new Set<(text: string) => void>();
  #anomalies: Array<"oversize" | "corrupt"> = [];
  #hasExited = false;
  /** What goes with the VM when it is killed (its shared folders' daemons). */
  readonly #companions: Array<() => Promise<void>> = [];
  /** For a booted VM's request for the host's clock, answered once. */
  #clockNonce: string | undefined;

  private constructor(options: WiringOptions, spawned: SpawnedQemu) {
    const { child, command } = spawned;
    this.runDirectory = options.runDirectory;
    this.args = command.args;
    this.#child = child;
    this.#startedAt = spawned.startedAt;
    this.#clockNonce = options.bootNonce;
    this.marks = { spawn: 0 };
    this.#decoder = new FrameDecoder(
      framesSignedWith(options.key),
      {
        message: (value) => this.#onMessage(value),
        text: (text) => this.#onConsole(text),
        anomaly: (reason) => this.#anomalies.push(reason),
      },
      options.decoderLimits ?? DEFAULT_DECODER_LIMITS,
    );

    const pair = (fd: number | undefined) =>
      fd === undefined ? undefined : ((child.stdio[fd] as Socket | null | undefined) ?? undefined);
    const channel = pair(command.channelFd);
    if (channel) {
      this.#socket = channel;
      channel.on("data", (chunk: Buffer) => this.#decoder.push(chunk));
      channel.on("error", () => {});
    }
    const qmpSocket = pair(command.qmpFd);
    this.qmp =
      command.qmpFd === undefined
        ? undefined
        : qmpSocket
          ? Promise.resolve(new QmpClient(qmpSocket).start())
          : Promise.reject(new BootError("QEMU did not start", ""));
    // Unobserved failures (QEMU died first) surface through `exited`.
    this.qmp?.catch(() => {});
    // A network's guard: nothing the guest sends goes on until it has read it.
    const guardOut = pair(command.netGuardFds?.out);
    const guardIn = pair(command.netGuardFds?.in);
    this.netGuard = guardOut && guardIn ? new NetGuard(guardOut, guardIn) : undefined;

    // Without a virtio channel, the frames come on the serial console.
    const serialCarriesFrames = command.channelFd === undefined;
    child.stdout?.on("data", (chunk: Buffer) => {
      this.marks.firstConsoleOutput ??= this.elapsed();
      if (serialCarriesFrames) this.#decoder.push(chunk);
      else this.#onConsole(chunk.toString("utf8"));
    });
    const stderr = new TextTail(8 * 1024);
    child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk.toString("utf8")));

    this.exited = spawned.exited.then(({ code, signal, spawnError }) => {
      this.#hasExited = true;
      this.marks.exited = this.elapsed();
      live.delete(this);
      this.#decoder.end();
      this.#socket?.destroy();
      this.netGuard?.close();
      this.qmp?.then((client) => client.close()).catch(() => {});
      return { code, signal, stderr: spawnError ?? stderr.toString().trim() };
    });
    live.add(this);
    installExitHook();
  }

  static async launch(options: LaunchOptions): Promise<Vm> {
    const inheritFds = options.inheritFds ?? [];
    const spawned = spawnQemu(qemuCommand(options, inheritFds.length), inheritFds, options.env);
    return new Vm(options, spawned);
  }

  /**
   * A Vm for a QEMU spawned before this module had loaded (a prestart's): what
   * it said meanwhile waits in its sockets and pipes, and is read now.
   */
  static adopt(spawned: SpawnedQemu, options: WiringOptions): Vm {
    return new Vm(options, spawned);
  }

  elapsed(): number {
    return performance.now() - this.#startedAt;
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  get hasExited(): boolean {
    return this.#hasExited;
  }

  /** Malformed or oversize frames seen so far. */
  get anomalies(): ReadonlyArray<"oversize" | "corrupt"> {
    return this.#anomalies;
  }

  onMessage(listener: Listener): () => void {
    this.#messageListeners.add(listener);
    return () => this.#messageListeners.delete(listener);
  }

  onConsole(listener: (text: string) => void): () => void {
    this.#consoleListeners.add(listener);
    return () => this.#consoleListeners.delete(listener);
  }

  /** Waits for the first message matching `predicate`, or rejects when the VM exits first. */
  waitFor<T extends GuestMessage>(predicate: (message: GuestMessage) => message is T): Promise<T> {
    return new Promise((resolve, reject) => {
      const stop = this.onMessage((message) => {
        if (!predicate(message)) return;
        stop();
        resolve(message);
      });
      this.exited.then(() => {
        stop();
        reject(new BootError("the VM stopped before it was ready", this.consoleTail.lastLines(20)));
      });
    });
  }

  /**
   * Sends a message to the guest (virtio channel only), framed with the boot
   * nonce; from then on, only frames signed with `nextKey` are taken (an
   * invocation's key, or a pooled VM's).
   */
  send(message: HostMessage, nonce: string, nextKey?: string): void {
    const text = encodeMessage(nonce, 0, message);
    if (message.type === "invoke") this.marks.invocationSent = this.elapsed();
    if (nextKey) this.#decoder.setFormat(framesSignedWith(nextKey));
    this.#socket?.write(text);
  }

  /** Stops `companion` when the VM is killed, before its files are removed. */
  addCompanion(stop: () => Promise<void>): void {
    this.#companions.push(stop);
  }

  /** Kills QEMU, stops its companions and removes the VM's files. Safe to call more than once. */
  async kill(): Promise<VmExit> {
    this.killNow();
    const exit = await this.exited;
    await Promise.all(this.#companions.splice(0).map((stop) => stop()));
    await rm(this.runDirectory, { recursive: true, force: true });
    return exit;
  }

  /** The synchronous part of kill(), for exit hooks. */
  killNow(): void {
    if (!this.#hasExited) this.#child.kill("SIGKILL");
  }

  #onMessage(value: unknown): void {
    const message = parseGuestMessage(value);
    if (!message) {
      this.#anomalies.push("corrupt");
      return;
    }
    if (message.type === "ready") this.marks.ready ??= this.elapsed();
    if (message.type === "clock") {
      // Answered here, at once, whatever waits for the VM: the guest blocks on it.
      if (this.#clockNonce) this.send({ type: "time", epochMs: Date.now() }, this.#clockNonce);
      this.#clockNonce = undefined;
      return;
    }
    for (const listener of [...this.#messageListeners]) listener(message);
  }

  #onConsole(text: string): void {
    this.consoleTail.push(text);
    for (const listener of this.#consoleListeners) listener(text);
  }
}

export function randomNonce(): string {
  return randomBytes(16).toString("hex");
}
