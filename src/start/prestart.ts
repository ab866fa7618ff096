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
 * `fnrun invoke --net` prestarts a clone with a network card, from a note of
 * its own (the last `--net` snapshot start's): its guard listens before QEMU
 * starts, the card gets its own MAC address, and the clone binds it when it
 * wakes, as restoreClone's would. It is adopted only by an invocation with a
 * network, and a plain one only by one without.
 */
import { readFileSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type { HostSetup } from "../host/setup.ts";
import { cacheRoot, fileIdentitySync, writeFileAtomic } from "../util/cache.ts";
import { type RestoreTarget, restoreTarget, restoreVm, withNetworkCard } from "../vm/launch.ts";
import { NetGuard } from "../vm/net-guard.ts";
import type { Vm } from "../vm/process.ts";
import { type DecoderLimits, SLIRP_NETWORK } from "../vm/protocol.ts";
import { makeRunDirectorySync } from "../vm/run-directory.ts";
import { hostSlots } from "../vm/slots.ts";
import type { Snapshot } from "./snapshot.ts";

const NOTE_FORMAT = 3;
/** Environment that changes which QEMU or kernel fnrun picks. */
const HOST_ENVIRONMENT = ["FNRUN_QEMU", "FNRUN_KERNEL", "FNRUN_KERNEL_SOURCE"] as const;
/** Flags with which a clone of the usual snapshot is not what the invocation will run on. */
const OTHER_VM_FLAGS = new Set([
  "mount",
  "memory",
  "accel",
  "max-result-size",
  "max-log-size",
  "help",
  "h",
  "version",
]);

/** What a prestarted clone has: a network card (`fnrun invoke --net`) or nothing of its own. */
export type PrestartKind = "plain" | "network";

interface Note {
  format: number;
  kind: PrestartKind;
  snapshot: Snapshot;
  target: RestoreTarget;
  decoderLimits: DecoderLimits;
  /** The identity (path, size, mtime, inode) of every file the restore reads. */
  files: Record<string, string>;
  environment: Record<string, string | null>;
}

interface Launched {
  kind: PrestartKind;
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
export function prestartable(args: readonly string[]): PrestartKind | undefined {
  if (args[0] !== "invoke") return undefined;
  let kind: PrestartKind = "plain";
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
      kind = "network";
    } else if (OTHER_VM_FLAGS.has(flag)) {
      return undefined;
    }
  }
  return kind;
}

function notePath(env: NodeJS.ProcessEnv, kind: PrestartKind): string {
  return join(cacheRoot(env), "snapshot", kind === "network" ? "prestart-net.json" : "prestart.json");
}

function hostEnvironment(env: NodeJS.ProcessEnv): Record<string, string | null> {
  return Object.fromEntries(HOST_ENVIRONMENT.map((name) => [name, env[name] ?? null]));
}

function restoredFiles(target: RestoreTarget, snapshot: Snapshot): string[] {
  const { spec } = target;
  return [
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
  host: HostSetup,
  snapshot: Snapshot,
  decoderLimits: DecoderLimits,
  kind: PrestartKind,
  env: NodeJS.ProcessEnv = process.env,
): Promise<void> {
  const target = restoreTarget(host, snapshot);
  const files: Record<string, string> = {};
  for (const path of restoredFiles(target, snapshot)) files[path] = fileIdentitySync(path);
  const note: Note = {
    format: NOTE_FORMAT,
    kind,
    snapshot,
    target,
    decoderLimits,
    files,
    environment: hostEnvironment(env),
  };
  const text = JSON.stringify(note);
  const path = notePath(env, kind);
  if ((await readFile(path, "utf8").catch(() => "")) === text) return;
  await writeFileAtomic(path, text, 0o600);
}

/** The note, if it still describes files that are there, unchanged, for this environment. */
function readNote(env: NodeJS.ProcessEnv, kind: PrestartKind): Note | undefined {
  const note = JSON.parse(readFileSync(notePath(env, kind), "utf8")) as Note;
  if (note.format !== NOTE_FORMAT || note.kind !== kind) return undefined;
  if (JSON.stringify(hostEnvironment(env)) !== JSON.stringify(note.environment)) return undefined;
  for (const path of restoredFiles(note.target, note.snapshot)) {
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
  const kind = prestarted ? undefined : prestartable(args);
  if (!kind) return;
  let note: Note | undefined;
  try {
    note = readNote(env, kind);
  } catch {
    return;
  }
  if (!note) return;
  const release = hostSlots.tryAcquire();
  if (!release) return;
  const found = note;
  const launched = (async (): Promise<Launched | undefined> => {
    let runDirectory: string | undefined;
    let guard: NetGuard | undefined;
    try {
      runDirectory = makeRunDirectorySync();
      // A card's guard listens before QEMU starts (it connects to it at once).
      if (kind === "network") guard = await NetGuard.start(runDirectory);
      const target = guard ? withNetworkCard(found.target, guard.sockets) : found.target;
      const vm = await restoreVm(target, found.snapshot, runDirectory, {
        ...(found.decoderLimits ? { decoderLimits: found.decoderLimits } : {}),
        ...(guard ? { attach: { network: SLIRP_NETWORK } } : {}),
      });
      const owned = guard;
      if (owned) vm.addCompanion(() => owned.close());
      return { kind, vm, snapshot: found.snapshot, decoderLimits: found.decoderLimits, runDirectory };
    } catch {
      await guard?.close();
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
 * The prestarted clone, if it is a clone of `snapshot` of this kind (with a
 * network card or without) and with these decoder limits; any other is killed.
 * Either way there is no prestarted clone after.
 */
export async function adoptPrestarted(
  snapshot: Snapshot,
  decoderLimits: DecoderLimits,
  kind: PrestartKind,
): Promise<{ vm: Vm; runDirectory: string } | undefined> {
  const kept = await settle(
    (launched) =>
      launched.kind === kind &&
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
