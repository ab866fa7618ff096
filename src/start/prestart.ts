/**
 * Prestart: `fnrun invoke` begins restoring a snapshot clone before it has even
 * loaded the rest of the CLI. QEMU's start, the state load and the clone's
 * reseed then run on one core while the CLI reads its command line, bundles the
 * function and resolves the host on the other; the invocation is sent to a
 * clone that is already awake.
 *
 * It starts from a note the last snapshot start left in the cache: which
 * snapshot, and the QEMU it was restored with, checked against the files it
 * names (size, mtime, inode). The note is only a guess: the invocation adopts
 * the clone only if the snapshot it resolves itself, through the usual checks,
 * is the very same one, and kills the clone otherwise (a kernel or runtime that
 * changed, a function that asks for a network or more memory, `--start boot`).
 * A clone that is not adopted has seen nothing of the invocation.
 *
 * `fnrun invoke --net` and `--mount` prestart a clone with what they ask for,
 * from a note of that profile's own (the last such snapshot start's), as
 * restoreClone would: a card with its guard and its own MAC address; the
 * folders (as the command line names them, checked as the CLI checks them)
 * with their daemons, and a RAM copy. It is adopted only by an invocation with
 * the very same network and folders (a function's config can add either).
 *
 * A function with its own snapshot (`fnrun snapshot FUNCTION`) has a note of its
 * own, per function file: its last invocation wrote it, and the next `fnrun
 * invoke` of that file prestarts a clone of its function snapshot (adopted only
 * if the invocation resolves the very same one: same bundle, same settings).
 */
import { existsSync, readFileSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { commandLineMount, DEFAULT_MEMORY_MB } from "../build/config.ts";
import { cacheRoot, fileIdentitySync, sha256, writeFileAtomic } from "../util/cache.ts";
import { type RestoreTarget, restoreCloneOf, restoreTarget } from "../vm/launch.ts";
import { checkMounts, type FolderTools, folderTools, type ResolvedMount } from "../vm/mounts.ts";
import type { Vm } from "../vm/process.ts";
import type { DecoderLimits } from "../vm/protocol.ts";
import { makeRunDirectorySync } from "../vm/run-directory.ts";
import { hostSlots } from "../vm/slots.ts";
import type { Snapshot } from "./snapshot.ts";

/** v4: a clone's memory size is part of its kind (a note per size). */
const NOTE_FORMAT = 4;
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

interface Note {
  format: number;
  kind: PrestartKind;
  snapshot: Snapshot;
  target: RestoreTarget;
  /** For a profile with folders: what serves them, found once, when the note was written. */
  folderTools?: FolderTools;
  decoderLimits: DecoderLimits;
  /** The identity (path, size, mtime, inode) of every file the restore reads. */
  files: Record<string, string>;
  environment: Record<string, string | null>;
}

interface Launched {
  network: boolean;
  mounts: ResolvedMount[];
  vm: Vm;
  snapshot: Snapshot;
  decoderLimits: DecoderLimits;
  runDirectory: string;
}

interface Prestarted {
  /** Frees the VM slot the clone holds, unless the invocation took it over. */
  release: () => Promise<void>;
  launched: Promise<Launched | undefined>;
  slotTaken: boolean;
}

let prestarted: Prestarted | undefined;

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

function notePath(env: NodeJS.ProcessEnv, kind: PrestartKind): string {
  const name = `${kind.network ? "net" : "plain"}-${kind.memoryMB}mb${kind.folders > 0 ? `-folders${kind.folders}` : ""}${kind.entry ? `-function-${sha256(kind.entry).slice(0, 16)}` : ""}`;
  return join(cacheRoot(env), "snapshot", `prestart-${name}.json`);
}

function hostEnvironment(env: NodeJS.ProcessEnv): Record<string, string | null> {
  return Object.fromEntries(HOST_ENVIRONMENT.map((name) => [name, env[name] ?? null]));
}

function restoredFiles(note: Pick<Note, "target" | "snapshot" | "folderTools">): string[] {
  const { target, snapshot, folderTools: tools } = note;
  const { spec } = target;
  return [
    ...(tools ? [tools.virtiofsd, tools.wrapper, ...(tools.proxy ? [tools.proxy] : [])] : []),
    target.qemuPath,
    spec.kernel.path,
    spec.initrd,
    ...(spec.runtimeDisk ? [spec.runtimeDisk] : []),
    snapshot.ram,
    snapshot.state,
  ];
}

/**
 * Remembers the snapshot an invocation was just restored from, for the next
 * `fnrun invoke` to prestart. Written only when it changed.
 */
export async function notePrestart(
  snapshot: Snapshot,
  decoderLimits: DecoderLimits,
  kind: PrestartKind,
  env: NodeJS.ProcessEnv = process.env,
): Promise<void> {
  const target = restoreTarget(snapshot.host, snapshot);
  const tools = kind.folders > 0 ? await folderTools(true, env) : undefined;
  const files: Record<string, string> = {};
  for (const path of restoredFiles({ target, snapshot, folderTools: tools }))
    files[path] = fileIdentitySync(path);
  const note: Note = {
    format: NOTE_FORMAT,
    kind,
    snapshot,
    target,
    ...(tools ? { folderTools: tools } : {}),
    decoderLimits,
    files,
    environment: hostEnvironment(env),
  };
  const text = JSON.stringify(note);
  const path = notePath(env, kind);
  if ((await readFile(path, "utf8").catch(() => "")) === text) return;
  await writeFileAtomic(path, text, 0o600);
}

/** The function's own note is gone: it has no function snapshot (or a broken one). */
export async function forgetFunctionPrestart(
  kind: PrestartKind,
  env: NodeJS.ProcessEnv = process.env,
): Promise<void> {
  if (kind.entry) await rm(notePath(env, kind), { force: true });
}

/** The note, if it still describes files that are there, unchanged, for this environment. */
function readNote(env: NodeJS.ProcessEnv, kind: PrestartKind): Note | undefined {
  const note = JSON.parse(readFileSync(notePath(env, kind), "utf8")) as Note;
  if (note.format !== NOTE_FORMAT || JSON.stringify(note.kind) !== JSON.stringify(kind)) return undefined;
  if (JSON.stringify(hostEnvironment(env)) !== JSON.stringify(note.environment)) return undefined;
  for (const path of restoredFiles(note)) {
    if (note.files[path] !== fileIdentitySync(path)) return undefined;
  }
  return note;
}

/**
 * Starts restoring a clone for `fnrun ARGS` if the command line and the note
 * allow it and a VM slot is free. Never throws, and nothing before QEMU's spawn
 * waits for I/O, so QEMU starts at once even while the CLI goes on loading; the
 * rest of the restore follows in the background. Whatever goes wrong, the
 * invocation restores (or boots) as it would have.
 */
export function prestart(args: readonly string[], env: NodeJS.ProcessEnv = process.env): void {
  const plan = prestarted ? undefined : prestartable(args);
  if (!plan) return;
  let note: Note | undefined;
  let mounts: ResolvedMount[];
  try {
    // Checked as the invocation will check them: what does not pass is not prestarted.
    mounts = checkMounts(plan.mounts.map(commandLineMount), plan.network);
    // A clone of the function's own snapshot, if the last invocation of it had one.
    // Of the size the command line asks for, else the default (a function's
    // config may ask for another: its clone is then not adopted).
    const profile = {
      network: plan.network,
      folders: mounts.length,
      memoryMB: plan.memoryMB ?? DEFAULT_MEMORY_MB,
    };
    const own = plan.function ? { ...profile, entry: resolve(plan.function) } : undefined;
    note = (own && existsSync(notePath(env, own)) ? readNote(env, own) : undefined) ?? readNote(env, profile);
  } catch {
    return;
  }
  if (!note) return;
  const release = hostSlots.tryAcquire();
  if (!release) return;
  const found = note;
  const launched = (async (): Promise<Launched | undefined> => {
    let runDirectory: string | undefined;
    try {
      runDirectory = makeRunDirectorySync();
      const vm = await restoreCloneOf(found.target, found.snapshot, runDirectory, {
        network: plan.network,
        mounts,
        decoderLimits: found.decoderLimits,
        ...(found.folderTools ? { folderTools: found.folderTools } : {}),
      });
      return {
        network: plan.network,
        mounts,
        vm,
        snapshot: found.snapshot,
        decoderLimits: found.decoderLimits,
        runDirectory,
      };
    } catch {
      if (runDirectory) await rm(runDirectory, { recursive: true, force: true });
      return undefined;
    }
  })();
  prestarted = { release, launched, slotTaken: false };
}

/** The VM slot a prestarted clone holds, handed to the invocation (which then releases it). */
export function takePrestartSlot(): (() => Promise<void>) | undefined {
  if (!prestarted || prestarted.slotTaken) return undefined;
  prestarted.slotTaken = true;
  return prestarted.release;
}

function sameLimits(a: DecoderLimits, b: DecoderLimits): boolean {
  return a.maxLineBytes === b.maxLineBytes && a.maxMessageBytes === b.maxMessageBytes;
}

/**
 * Ends the prestart: keeps its clone if `keep` says so (only when the slot went
 * to the invocation), or kills it and frees its slot.
 */
async function settle(keep: (launched: Launched) => boolean): Promise<Launched | undefined> {
  const current = prestarted;
  if (!current) return undefined;
  prestarted = undefined;
  const launched = await current.launched;
  const release = current.slotTaken ? undefined : current.release;
  if (launched && !release && !launched.vm.hasExited && keep(launched)) return launched;
  await launched?.vm.kill(); // and its run directory with it
  await release?.();
  return undefined;
}

/**
 * The prestarted clone, if it is a clone of `snapshot` with these devices
 * (a network card or none; the very same folders, in the same order) and
 * decoder limits; any other is killed. Either way there is no prestarted clone
 * after.
 */
export async function adoptPrestarted(
  snapshot: Snapshot,
  decoderLimits: DecoderLimits,
  devices: { network: boolean; mounts: ResolvedMount[] },
): Promise<{ vm: Vm; runDirectory: string } | undefined> {
  const kept = await settle(
    (launched) =>
      launched.network === devices.network &&
      JSON.stringify(launched.mounts) === JSON.stringify(devices.mounts) &&
      launched.snapshot.key === snapshot.key &&
      launched.snapshot.directory === snapshot.directory &&
      sameLimits(launched.decoderLimits, decoderLimits),
  );
  return kept ? { vm: kept.vm, runDirectory: kept.runDirectory } : undefined;
}

/** Kills a prestarted clone nobody adopted, and frees its slot. */
export async function abandonPrestart(): Promise<void> {
  await settle(() => false);
}
