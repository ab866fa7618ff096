/**
 * The first step of a prestart (start/prestart.ts): the clone's QEMU spawned
 * from the note the last snapshot start left, before the rest of fnrun loads.
 * `fnrun invoke` waits for this module before that spawn, so it is a file of
 * its own (scripts/build-cli.mjs bundles it alone: every module Node loads
 * costs ~1.5 ms, node:crypto ~4 ms) that imports only what spawning needs. The
 * rest of the restore, and everything else about prestarts, is prestart.ts's.
 *
 * A clone without folders is spawned here, from the QEMU command its note
 * keeps (as restoreVm would have built it; a network card gets a MAC address
 * of its own, and its guard is wired to QEMU's socket pairs once the Vm is).
 * One with folders needs their daemons started first: prestart.ts starts it.
 */
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import { join, resolve } from "node:path";
import { commandLineMount, DEFAULT_MEMORY_MB, type MountConfig } from "../build/config.ts";
import { cacheRoot, fileIdentitySync } from "../util/cache.ts";
import type { RestoreTarget } from "../vm/launch.ts";
import type { FolderTools } from "../vm/mounts.ts";
import type { DecoderLimits } from "../vm/protocol.ts";
import { makeRunDirectorySync } from "../vm/run-directory.ts";
import { hostSlots } from "../vm/slots.ts";
import {
  type QemuCommand,
  randomMacAddress,
  type SpawnedQemu,
  spawnClone,
  withMacAddress,
} from "../vm/spawn-qemu.ts";
import type { Snapshot } from "./snapshot.ts";

/** v7: a network profile's note keeps its QEMU command too (its guard is on socket pairs). */
export const NOTE_FORMAT = 7;
/** Environment that changes which QEMU or kernel fnrun picks. */
const HOST_ENVIRONMENT = ["FNRUN_QEMU", "FNRUN_FOLDER_QEMU", "FNRUN_KERNEL", "FNRUN_KERNEL_SOURCE"] as const;
/** Flags with which no noted clone is what the invocation will run on. */
const OTHER_VM_FLAGS = new Set(["accel", "max-result-size", "max-log-size", "help", "h", "version"]);

/**
 * What a prestarted clone has of its own: a network card (`--net`), shared
 * folders (`--mount` specs), another memory size (`--memory`).
 */
export interface PrestartPlan {
  network: boolean;
  mounts: string[];
  memoryMB?: number;
  /** The function, as the command line names it right after `invoke` (its function snapshot's note). */
  function?: string;
}

/** Which profile a clone is of, beyond its snapshot: what its note is for. */
export interface PrestartKind {
  network: boolean;
  folders: number;
  memoryMB: number;
  /** A clone of this function's own snapshot (the function's absolute path). */
  entry?: string;
}

export interface Note {
  format: number;
  kind: PrestartKind;
  snapshot: Snapshot;
  target: RestoreTarget;
  /** For a profile with folders: what serves them, found once, when the note was written. */
  folderTools?: FolderTools;
  /**
   * For a clone without folders: its QEMU, with the device state as fd 3 (and,
   * with a network, a stand-in MAC address that each prestart replaces).
   */
  command?: QemuCommand;
  decoderLimits: DecoderLimits;
  /** The identity (path, size, mtime, inode) of every file the restore reads. */
  files: Record<string, string>;
  environment: Record<string, string | null>;
}

/** Which clone an `fnrun` command line may start ahead of time, if any. */
export function prestartable(args: readonly string[]): PrestartPlan | undefined {
  if (args[0] !== "invoke") return undefined;
  const plan: PrestartPlan = { network: false, mounts: [] };
  const named = args[1];
  if (named !== undefined && !named.startsWith("-")) plan.function = named;
  for (let index = 1; index < args.length; index++) {
    const arg = args[index] as string;
    if (arg === "--") break;
    if (!arg.startsWith("-")) continue;
    const [flag = "", inline] = arg.replace(/^-{1,2}/, "").split("=", 2);
    if (flag === "start") {
      const value = inline ?? args[index + 1];
      if (value !== "auto" && value !== "snapshot") return undefined;
    } else if (flag === "net") {
      if (inline !== undefined) return undefined; // --net=...: left to the CLI to read
      plan.network = true;
    } else if (flag === "mount") {
      // An array option: it takes every word up to the next flag, as the CLI's parser does.
      if (inline !== undefined) plan.mounts.push(inline);
      else
        while (index + 1 < args.length && !(args[index + 1] as string).startsWith("-"))
          plan.mounts.push(args[++index] as string);
    } else if (flag === "memory") {
      // A size the CLI will accept is a whole number of MB: anything else, it refuses.
      const memoryMB = Number(inline ?? args[index + 1]);
      if (!Number.isInteger(memoryMB) || memoryMB <= 0) return undefined;
      plan.memoryMB = memoryMB;
    } else if (OTHER_VM_FLAGS.has(flag)) {
      return undefined;
    }
  }
  return plan;
}

export function notePath(env: NodeJS.ProcessEnv, kind: PrestartKind): string {
  const name = `${kind.network ? "net" : "plain"}-${kind.memoryMB}mb${kind.folders > 0 ? `-folders${kind.folders}` : ""}${kind.entry ? `-function-${shortName(kind.entry)}` : ""}`;
  return join(cacheRoot(env), "snapshot", `prestart-${name}.json`);
}

export function hostEnvironment(env: NodeJS.ProcessEnv): Record<string, string | null> {
  return Object.fromEntries(HOST_ENVIRONMENT.map((name) => [name, env[name] ?? null]));
}

export function restoredFiles(note: Pick<Note, "target" | "snapshot" | "folderTools">): string[] {
  const { target, snapshot, folderTools: tools } = note;
  const { spec } = target;
  return [
    ...(tools ? Object.values(tools) : []), // every helper the folders need
    target.qemuPath,
    spec.kernel.path,
    spec.initrd,
    ...(spec.runtimeDisk ? [spec.runtimeDisk] : []),
    snapshot.ram,
    snapshot.state,
  ];
}

/** The note, if it still describes files that are there, unchanged, for this environment. */
export function readNote(env: NodeJS.ProcessEnv, kind: PrestartKind): Note | undefined {
  let note: Note;
  try {
    note = JSON.parse(readFileSync(notePath(env, kind), "utf8")) as Note;
  } catch {
    return undefined; // none yet
  }
  if (note.format !== NOTE_FORMAT || JSON.stringify(note.kind) !== JSON.stringify(kind)) return undefined;
  if (JSON.stringify(hostEnvironment(env)) !== JSON.stringify(note.environment)) return undefined;
  for (const path of restoredFiles(note)) {
    if (note.files[path] !== fileIdentitySync(path)) return undefined;
  }
  return note;
}

/**
 * A short file name for a path. Not node:crypto (it costs the prestart ~4 ms to
 * load): two 32-bit FNV-1a hashes. A collision costs a prestart, never a wrong
 * clone: the note's own kind is checked against the invocation's.
 */
function shortName(text: string): string {
  let first = 0x811c9dc5;
  let second = 0x01000193;
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    first = Math.imul(first ^ code, 0x01000193);
    second = Math.imul(second ^ code, 0x5bd1e995);
  }
  return [first, second].map((hash) => (hash >>> 0).toString(16).padStart(8, "0")).join("");
}

/** Random bytes, without node:crypto (it costs a prestart ~4 ms to load). */
function urandomBytes(count: number): Uint8Array {
  const bytes = new Uint8Array(count);
  const fd = openSync("/dev/urandom", "r");
  try {
    if (readSync(fd, bytes) !== count) throw new Error("a short read from /dev/urandom");
  } finally {
    closeSync(fd);
  }
  return bytes;
}

/** A prestart's first step, done: the note it follows, and the clone's QEMU if it could be spawned here. */
export interface EarlyClone {
  plan: PrestartPlan;
  note: Note;
  mounts: MountConfig[];
  /** Frees the VM slot the clone holds. */
  release: () => Promise<void>;
  runDirectory: string;
  /** Spawned with the snapshot's state as fd 3 (a clone without folders). */
  spawned?: SpawnedQemu;
}

/**
 * Starts a clone for `fnrun ARGS` if the command line and the note allow it and
 * a VM slot is free: spawns its QEMU at once if it needs nothing else started
 * first. Never throws, and waits for no I/O (a few calls on small local files).
 */
export function spawnFromNote(
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): EarlyClone | undefined {
  const plan = prestartable(args);
  if (!plan) return undefined;
  let note: Note | undefined;
  let mounts: MountConfig[];
  try {
    mounts = plan.mounts.map(commandLineMount);
    // A clone of the function's own snapshot, if the last invocation of it had one.
    // Of the size the command line asks for, else the default (a function's
    // config may ask for another: its clone is then not adopted).
    const profile = {
      network: plan.network,
      folders: mounts.length,
      memoryMB: plan.memoryMB ?? DEFAULT_MEMORY_MB,
    };
    const own = plan.function ? { ...profile, entry: resolve(plan.function) } : undefined;
    note = (own ? readNote(env, own) : undefined) ?? readNote(env, profile);
  } catch {
    return undefined;
  }
  if (!note) return undefined;
  let command: QemuCommand | undefined;
  try {
    command =
      note.command && note.kind.network
        ? withMacAddress(note.command, randomMacAddress(urandomBytes(5)))
        : note.command;
  } catch {
    return undefined;
  }
  const release = hostSlots.tryAcquire();
  if (!release) return undefined;
  let runDirectory: string;
  try {
    runDirectory = makeRunDirectorySync();
  } catch {
    void release();
    return undefined;
  }
  const early: EarlyClone = { plan, note, mounts, release, runDirectory };
  if (command) early.spawned = spawnClone(command, note.snapshot.state, undefined, env);
  return early;
}
