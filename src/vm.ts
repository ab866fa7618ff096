/**
 * One QEMU process: spawned with an argv array, wired to its console (QEMU's
 * stdout) and its protocol channel, and killed on every path.
 *
 * - QEMU runs under `setpriv --pdeathsig KILL`, so it dies with fnrun even when
 *   fnrun is SIGKILLed; execa's cleanup and an exit hook kill it on normal exits
 *   and signals; `kill()` kills it when an invocation ends.
 * - Each VM has a private runtime directory (0700) for its sockets and its
 *   per-invocation initramfs, removed when the VM is gone.
 * - Everything the guest sends is parsed by the bounded FrameDecoder and
 *   validated; console text is kept as a bounded tail for error messages.
 */
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { BootError } from "./errors.ts";
import {
  DEFAULT_DECODER_LIMITS,
  type DecoderLimits,
  encodeMessage,
  FrameDecoder,
  type GuestMessage,
  type HostMessage,
  parseGuestMessage,
} from "./protocol.ts";
import { buildQemuArgs, type VmSpec, which } from "./qemu.ts";

/** Host-side timeline points, in ms since the VM's spawn. */
export interface HostMarks {
  spawn: number;
  firstConsoleOutput?: number;
  ready?: number;
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

/** Keeps the last `limit` characters of a text stream. */
export class TextTail {
  #text = "";
  constructor(private readonly limit: number) {}
  push(text: string): void {
    this.#text = (this.#text + text).slice(-this.limit);
  }
  toString(): string {
    return this.#text;
  }
  lastLines(count: number): string {
    return this.#text
      .split("\n")
      .slice(-count - 1)
      .join("\n")
      .trim();
  }
}

const live = new Set<Vm>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort on a normal exit: synchronous, so it runs even in process.exit().
  process.on("exit", () => {
    for (const vm of live) {
      vm.killNow();
      try {
        rmSync(vm.runDirectory, { recursive: true, force: true });
      } catch {}
    }
  });
}

let setprivPath: string | null | undefined;

async function deathSignalWrapper(): Promise<string[]> {
  if (setprivPath === undefined) setprivPath = (await which("setpriv")) ?? null;
  return setprivPath ? [setprivPath, "--pdeathsig", "KILL", "--"] : [];
}

/** A private directory for one VM's sockets and files. */
export async function makeRunDirectory(): Promise<string> {
  const base =
    process.env.XDG_RUNTIME_DIR && process.env.XDG_RUNTIME_DIR.length < 60
      ? process.env.XDG_RUNTIME_DIR
      : tmpdir();
  // Unix socket paths are limited to 107 bytes: keep the directory short.
  const parent = base.length < 60 ? base : "/tmp";
  return mkdtemp(join(parent, "fnrun-"));
}

export interface LaunchOptions {
  qemuPath: string;
  /** The spec; channel socket and QMP socket paths are filled in here. */
  spec: Omit<VmSpec, "channel" | "qmpSocket"> & { channel: VmSpec["channel"]["kind"]; qmp?: boolean };
  runDirectory: string;
  /** Nonce of the first frames expected (the boot's, or a cold invocation's). */
  nonce: string;
  decoderLimits?: DecoderLimits;
  /** Extra environment for QEMU (none needed normally). */
  env?: NodeJS.ProcessEnv;
}

type Listener = (message: GuestMessage) => void;

export class Vm {
  readonly runDirectory: string;
  readonly marks: HostMarks;
  readonly consoleTail = new TextTail(16 * 1024);
  readonly qmpSocket: string | undefined;
  readonly exited: Promise<VmExit>;
  readonly args: string[];
  #startedAt: number;
  #child: ResultPromise;
  #server: Server | undefined;
  #socket: Socket | undefined;
  #decoder: FrameDecoder;
  #messageListeners = new Set<Listener>();
  #consoleListeners = new Set<(text: string) => void>();
  #anomalies: Array<"oversize" | "corrupt"> = [];
  #hasExited = false;
  #pendingWrites: string[] = [];

  private constructor(options: LaunchOptions, args: string[], server: Server | undefined, wrapper: string[]) {
    this.runDirectory = options.runDirectory;
    this.args = args;
    this.qmpSocket = options.spec.qmp ? join(options.runDirectory, "qmp.sock") : undefined;
    this.#server = server;
    this.#startedAt = performance.now();
    this.marks = { spawn: 0 };
    this.#decoder = new FrameDecoder(
      options.nonce,
      {
        message: (value) => this.#onMessage(value),
        text: (text) => this.#onConsole(text),
        anomaly: (reason) => this.#anomalies.push(reason),
      },
      options.decoderLimits ?? DEFAULT_DECODER_LIMITS,
    );

    const [command, ...rest] = [...wrapper, options.qemuPath, ...args] as [string, ...string[]];
    this.#child = execa(command, rest, {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      buffer: false,
      reject: false,
      cleanup: true,
      killSignal: "SIGKILL",
      env: options.env,
    });
    const serialCarriesFrames = options.spec.channel === "serial";
    this.#child.stdout?.on("data", (chunk: Buffer) => {
      this.marks.firstConsoleOutput ??= this.elapsed();
      if (serialCarriesFrames) this.#decoder.push(chunk);
      else this.#onConsole(chunk.toString("utf8"));
    });
    const stderr = new TextTail(8 * 1024);
    this.#child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk.toString("utf8")));

    if (server) {
      server.once("connection", (socket) => {
        this.#socket = socket;
        server.close();
        socket.on("data", (chunk) => this.#decoder.push(chunk));
        socket.on("error", () => {});
        for (const text of this.#pendingWrites.splice(0)) socket.write(text);
      });
    }

    this.exited = this.#child.then((result) => {
      this.#hasExited = true;
      this.marks.exited = this.elapsed();
      live.delete(this);
      this.#decoder.end();
      this.#socket?.destroy();
      this.#server?.close();
      return {
        code: result.exitCode ?? null,
        signal: result.signal ?? null,
        stderr: stderr.toString().trim(),
      };
    });
    live.add(this);
    installExitHook();
  }

  static async launch(options: LaunchOptions): Promise<Vm> {
    let server: Server | undefined;
    let channel: VmSpec["channel"];
    if (options.spec.channel === "virtio") {
      const socketPath = join(options.runDirectory, "channel.sock");
      // QEMU connects to us at start-up: listening first means nothing is lost.
      server = createServer();
      await new Promise<void>((resolve, reject) => {
        server?.once("error", reject);
        server?.listen(socketPath, resolve);
      });
      channel = { kind: "virtio", socketPath };
    } else {
      channel = { kind: "serial" };
    }
    const { channel: _kind, qmp: _qmp, ...rest } = options.spec;
    const spec: VmSpec = {
      ...rest,
      channel,
      ...(options.spec.qmp ? { qmpSocket: join(options.runDirectory, "qmp.sock") } : {}),
    };
    return new Vm(options, buildQemuArgs(spec), server, await deathSignalWrapper());
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

  /** Sends a message to the guest (virtio channel only). */
  send(message: HostMessage, nonce: string, nextNonce?: string): void {
    const text = encodeMessage(nonce, 0, message);
    if (nextNonce) this.#decoder.setNonce(nextNonce);
    if (this.#socket) this.#socket.write(text);
    else this.#pendingWrites.push(text);
  }

  /** Kills QEMU and removes the VM's files. Safe to call more than once. */
  async kill(): Promise<VmExit> {
    this.killNow();
    const exit = await this.exited;
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
