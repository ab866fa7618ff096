/**
 * Spawning QEMU: the one spawn on fnrun's hot path, kept in a module of its own
 * with nothing heavy to load, so that a prestart (start/prestart.ts) can spawn a
 * clone from a noted command before the rest of fnrun has loaded. The Vm
 * (process.ts) wires itself to what is spawned here, at once or later.
 *
 * - QEMU runs under `setpriv --pdeathsig KILL`, so it dies with fnrun even when
 *   fnrun is SIGKILLed; an exit hook kills it on normal exits.
 * - Spawned with node:child_process rather than execa: loading execa costs
 *   ~30 ms of every CLI run. Same discipline: an argv array, no shell.
 * - The channel, QMP and a network's guard are socket pairs made with the
 *   process (Node's "pipe" descriptors are), connected before QEMU runs: what
 *   fnrun writes to them waits there, and nothing between QEMU's start and
 *   the guest's waits for this process to accept a connection while it is
 *   busy loading.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { whichSync } from "../util/which.ts";
import type { NetGuardFds } from "./qemu.ts";

/** How a QEMU is started: a pure description, which a prestart's note keeps. */
export interface QemuCommand {
  /** `setpriv --pdeathsig KILL --`, where there is a setpriv. */
  wrapper: string[];
  qemuPath: string;
  args: string[];
  /** How many descriptors QEMU inherits, as fd 3, 4, … (a snapshot's device state). */
  inherited: number;
  /** The channel's socket pair (a virtio channel), after the inherited descriptors. */
  channelFd?: number;
  /** QMP's socket pair, after the channel's. */
  qmpFd?: number;
  /** A VM with a network: its guard's two socket pairs (guest frames out, allowed frames in), after QMP's. */
  netGuardFds?: NetGuardFds;
  /** Its network card's MAC address, as `args` name it. */
  macAddress?: string;
}

export interface QemuExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Why the spawn itself failed, if it did. */
  spawnError?: string;
}

/** A QEMU just spawned: its process, when, and its exit, watched from the start. */
export interface SpawnedQemu {
  child: ChildProcess;
  command: QemuCommand;
  /** performance.now() at the spawn. */
  startedAt: number;
  exited: Promise<QemuExit>;
}

let setprivPath: string | null | undefined;

export function deathSignalWrapper(): string[] {
  if (setprivPath === undefined) setprivPath = whichSync("setpriv") ?? null;
  return setprivPath ? [setprivPath, "--pdeathsig", "KILL", "--"] : [];
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Last resort on a normal exit: synchronous, so it runs even in process.exit(). */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const child of running) child.kill("SIGKILL");
  });
}

/**
 * Spawns `command`, with `inheritFds` (open descriptors, as many as
 * `command.inherited`) as fd 3, 4, … Never throws: a failed spawn is an exit.
 */
export function spawnQemu(
  command: QemuCommand,
  inheritFds: number[],
  env: NodeJS.ProcessEnv = process.env,
): SpawnedQemu {
  if (inheritFds.length !== command.inherited)
    throw new Error(`QEMU inherits ${command.inherited} descriptors, not ${inheritFds.length}`);
  const stdio: Array<"ignore" | "pipe" | number> = ["ignore", "pipe", "pipe", ...inheritFds];
  if (command.channelFd !== undefined) stdio[command.channelFd] = "pipe";
  if (command.qmpFd !== undefined) stdio[command.qmpFd] = "pipe";
  if (command.netGuardFds) {
    stdio[command.netGuardFds.out] = "pipe";
    stdio[command.netGuardFds.in] = "pipe";
  }
  const [file, ...rest] = [...command.wrapper, command.qemuPath, ...command.args] as [string, ...string[]];
  const startedAt = performance.now();
  const child = spawn(file, rest, { stdio, env });
  running.add(child);
  installExitHook();
  const exited = new Promise<QemuExit>((resolve) => {
    let spawnError: string | undefined;
    child.once("error", (error) => {
      spawnError = `cannot start ${file}: ${error.message}`;
      // A failed spawn emits "error" and possibly no "close".
      if (child.pid === undefined) resolve({ code: 1, signal: null, spawnError });
    });
    child.once("close", (code, signal) =>
      resolve(spawnError ? { code: 1, signal, spawnError } : { code, signal }),
    );
  }).finally(() => running.delete(child));
  return { child, command, startedAt, exited };
}

/** A random unicast, locally administered MAC address: each VM's network card its own. */
export function randomMacAddress(bytes: Uint8Array): string {
  if (bytes.length !== 5) throw new Error("a MAC address takes 5 random bytes");
  return ["02", ...Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0"))].join(":");
}

/**
 * `command` with another MAC address for its network card: a command noted
 * once (a prestart's) serves many clones, and each gets a card of its own.
 */
export function withMacAddress(command: QemuCommand, macAddress: string): QemuCommand {
  const old = command.macAddress;
  if (!old) throw new Error("a command without a network card has no MAC address to change");
  const args = command.args.map((arg) => arg.replace(`,mac=${old}`, `,mac=${macAddress}`));
  if (args.every((arg, index) => arg === command.args[index]))
    throw new Error(`the command names no MAC address ${old}`);
  return { ...command, args, macAddress };
}

/**
 * Spawns a clone's QEMU (`command`, restoreVm's or a prestart note's) with the
 * saved VM's device state as fd 3, and its own RAM copy as fd 4 when it has
 * one (a clone with folders). QEMU reads the state from the inherited
 * descriptor: a clone, which runs a function, may not start processes (no
 * `exec:cat`).
 */
export function spawnClone(
  command: QemuCommand,
  statePath: string,
  ramFd?: number,
  env: NodeJS.ProcessEnv = process.env,
): SpawnedQemu {
  const state = openSync(statePath, "r");
  try {
    return spawnQemu(command, ramFd === undefined ? [state] : [state, ramFd], env);
  } finally {
    closeSync(state); // QEMU has its own
  }
}
