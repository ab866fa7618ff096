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
 * Two steps. The first, prestart-spawn.ts, is loaded alone before the CLI:
 * it reads the note, takes a VM slot and, for a clone without folders,
 * spawns QEMU from the command the note keeps. The second, this
 * module (loaded while QEMU starts), sends the wake message and loads the
 * state over QMP, or, for a clone with folders, starts their daemons and
 * restores it as restoreClone would.
 *
 * A function with its own snapshot (`fnrun snapshot FUNCTION`) has a note of its
 * own, per function file: its last invocation wrote it, and the next `fnrun
 * invoke` of that file prestarts a clone of its function snapshot (adopted only
 * if the invocation resolves the very same one: same bundle, same settings).
 */
import { existsSync } from "node:fs";
import { readdir, readFile, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileIdentitySync, writeFileAtomic } from "../util/cache.ts";
import {
  cloneRestoreOptions,
  type RestoreTarget,
  restoreCloneOf,
  restoreTarget,
  resumeClone,
  withCloneDevices,
} from "../vm/launch.ts";
import { checkMounts, folderTools, type ResolvedMount } from "../vm/mounts.ts";
import { qemuCommand, type Vm } from "../vm/process.ts";
import type { DecoderLimits } from "../vm/protocol.ts";
import type { QemuCommand } from "../vm/spawn-qemu.ts";
import {
  type EarlyClone,
  hostEnvironment,
  NOTE_FORMAT,
  type Note,
  notePath,
  type PrestartKind,
  restoredFiles,
} from "./prestart-spawn.ts";
import type { Snapshot } from "./snapshot.ts";

export { type PrestartKind, type PrestartPlan, prestartable } from "./prestart-spawn.ts";

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
    ...(kind.folders === 0 ? { command: notedCommand(target, kind.network) } : {}),
    decoderLimits,
    files,
    environment: hostEnvironment(env),
  };
  const text = JSON.stringify(note);
  const path = notePath(env, kind);
  if ((await readFile(path, "utf8").catch(() => "")) === text) return;
  await writeFileAtomic(path, text, 0o600);
  await sweepNotes(dirname(path), path);
}

/** The MAC address a noted command names: a stand-in, which each prestart replaces with its clone's own. */
const NOTED_MAC_ADDRESS = "02:00:00:00:00:00";

/** The QEMU command a note keeps for a clone without folders: it inherits one descriptor, the device state. */
function notedCommand(target: RestoreTarget, network: boolean): QemuCommand {
  const machine = withCloneDevices(target, { network });
  if (network) machine.spec.macAddress = NOTED_MAC_ADDRESS; // a note written once, not at every invocation
  return qemuCommand(machine, 1);
}

/** Notes kept at most: one per profile, and per function recently invoked. */
export const NOTES_KEPT = 32;

/**
 * Removes the notes no prestart can follow: of an older format, or of a
 * snapshot since pruned (a function's, say). Of the others, keeps the
 * NOTES_KEPT last written, and always `written`. Run when a note is written,
 * which is when what an invocation restores changes, not on every one.
 */
export async function sweepNotes(directory: string, written: string): Promise<void> {
  const names = await readdir(directory).catch(() => [] as string[]);
  const notes = await Promise.all(
    names
      .filter((name) => name.startsWith("prestart-") && name.endsWith(".json"))
      .map(async (name) => {
        const path = join(directory, name);
        const [text, info] = await Promise.all([
          readFile(path, "utf8").catch(() => ""),
          stat(path).catch(() => undefined),
        ]);
        let followable = false;
        try {
          const note = JSON.parse(text) as Partial<Note>;
          followable = note.format === NOTE_FORMAT && existsSync(note.snapshot?.state ?? "");
        } catch {}
        return { path, followable, writtenAt: info?.mtimeMs ?? 0 };
      }),
  );
  const kept = notes
    .filter((note) => note.followable && note.path !== written)
    .sort((a, b) => b.writtenAt - a.writtenAt)
    .slice(0, NOTES_KEPT - 1)
    .map((note) => note.path);
  const keep = new Set([written, ...kept]);
  // A prestart reading a note removed now just finds none: it costs a prestart, no more.
  await Promise.all(
    notes.filter((note) => !keep.has(note.path)).map((note) => rm(note.path, { force: true })),
  );
}

/** The function's own note is gone: it has no function snapshot (or a broken one). */
export async function forgetFunctionPrestart(
  kind: PrestartKind,
  env: NodeJS.ProcessEnv = process.env,
): Promise<void> {
  if (kind.entry) await rm(notePath(env, kind), { force: true });
}

/**
 * The second step of a prestart whose first (prestart-spawn.ts's spawnFromNote)
 * found a note and a slot: restores its clone in the background. Never throws.
 * Whatever goes wrong, the invocation restores (or boots) as it would have.
 */
export function prestart(early: EarlyClone | undefined): void {
  if (!early) return;
  if (prestarted) {
    // One per process: a second is not needed (and has seen nothing).
    early.spawned?.child.kill("SIGKILL");
    void early.release();
    void rm(early.runDirectory, { recursive: true, force: true });
    return;
  }
  const launched = (async (): Promise<Launched | undefined> => {
    const { note, runDirectory } = early;
    try {
      const { network } = early.plan;
      const restored = early.spawned
        ? {
            network,
            mounts: [],
            vm: await resumeClone(
              early.spawned,
              note.snapshot,
              runDirectory,
              cloneRestoreOptions({ network, decoderLimits: note.decoderLimits }),
            ),
          }
        : await restoreWithDevices(early);
      return { ...restored, snapshot: note.snapshot, decoderLimits: note.decoderLimits, runDirectory };
    } catch {
      await rm(runDirectory, { recursive: true, force: true });
      return undefined;
    }
  })();
  prestarted = { release: early.release, launched, slotTaken: false };
}

/** A clone with folders: their daemons start first, as restoreClone starts them. */
async function restoreWithDevices(early: EarlyClone): Promise<Pick<Launched, "network" | "mounts" | "vm">> {
  const { plan, note, runDirectory } = early;
  // Checked as the invocation will check them: what does not pass is not prestarted.
  const mounts = checkMounts(early.mounts, plan.network);
  const vm = await restoreCloneOf(note.target, note.snapshot, runDirectory, {
    network: plan.network,
    mounts,
    decoderLimits: note.decoderLimits,
    ...(note.folderTools ? { folderTools: note.folderTools } : {}),
  });
  return { network: plan.network, mounts, vm };
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
