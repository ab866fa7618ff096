/**
 * Automatic function snapshots: `--start auto` makes a function's own snapshot
 * (what `fnrun snapshot FUNCTION` makes: snapshot.ts's ensureFunctionSnapshot)
 * on the second invocation of one version of it, in the background once that
 * invocation has its result; the later ones restore a clone with the function
 * already imported. Not on the first: a function run once (a test, an edit
 * tried out) costs no extra boot.
 *
 * One small marker per version (the function snapshot's key: profile, bundle
 * and the settings its init phase sees) in the cache's `function-seen`
 * remembers the first invocation, or that the snapshot was refused (an init
 * phase that draws randomness, reads the clock or throws); a refused version
 * restores the shared snapshot and is never tried again. The markers are
 * bounded like any cache kind (util/cache.ts). A pool (warm-vms.ts) asks for a
 * function's snapshot as soon as it keeps the function warm.
 * FNRUN_FUNCTION_SNAPSHOTS=off turns this off (`fnrun snapshot FUNCTION` still
 * makes one by hand).
 */
import { mkdir, readFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { HostSetup } from "../host/setup.ts";
import { cacheRoot, pruneOldEntries, writeFileAtomic } from "../util/cache.ts";
import { FunctionError } from "../util/errors.ts";
import type { Progress } from "../util/progress.ts";
import { ensureFunctionSnapshotInBackground, type FunctionToSave } from "./snapshot.ts";

const SEEN = "function-seen";
const SEEN_ONCE = "seen\n";
const REFUSED = "refused: ";

/** What an invocation on the shared snapshot does about its function's own, given the version's marker. */
export function nextStep(marker: string | undefined): "remember" | "make" | "none" {
  if (marker === SEEN_ONCE) return "make";
  if (marker?.startsWith(REFUSED)) return "none";
  return "remember"; // no marker yet (or one this version of fnrun does not know)
}

export function automaticFunctionSnapshots(env: NodeJS.ProcessEnv): boolean {
  return env.FNRUN_FUNCTION_SNAPSHOTS !== "off";
}

async function mark(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, text);
  await pruneOldEntries(dirname(path), basename(path));
}

export interface AfterInvocation {
  env: NodeJS.ProcessEnv;
  bootTimeoutMs: number;
  onProgress?: Progress;
  onNotice?: (message: string) => void;
}

/**
 * After an invocation with no function snapshot (`key`, functionSnapshotKey's)
 * succeeded: remember its version, or, on its second invocation, start making its
 * function snapshot in the background (snapshot.ts's backgroundSnapshots
 * waits for it). Never throws: a marker that cannot be written costs only the
 * snapshot.
 */
export async function afterInvocation(
  host: HostSetup,
  key: string,
  fn: FunctionToSave,
  options: AfterInvocation,
): Promise<void> {
  if (!automaticFunctionSnapshots(options.env)) return;
  const path = markerPath(options.env, key);
  const step = nextStep(await readMarker(path));
  if (step === "remember") await mark(path, SEEN_ONCE).catch(() => {});
  if (step === "make") make(host, key, fn, path, options);
}

/**
 * A pool keeps `fn` warm, so it will be invoked again: its function snapshot
 * is made now, in the background, unless its version was refused before.
 * Never throws.
 */
export async function keepFunctionSnapshot(
  host: HostSetup,
  key: string,
  fn: FunctionToSave,
  options: AfterInvocation,
): Promise<void> {
  if (!automaticFunctionSnapshots(options.env)) return;
  const path = markerPath(options.env, key);
  if (nextStep(await readMarker(path)) !== "none") make(host, key, fn, path, options);
}

function markerPath(env: NodeJS.ProcessEnv, key: string): string {
  return join(cacheRoot(env), SEEN, key);
}

function readMarker(path: string): Promise<string | undefined> {
  return readFile(path, "utf8").catch(() => undefined);
}

function make(
  host: HostSetup,
  key: string,
  fn: FunctionToSave,
  marker: string,
  options: AfterInvocation,
): void {
  ensureFunctionSnapshotInBackground(host, key, fn, {
    env: options.env,
    bootTimeoutMs: options.bootTimeoutMs,
    ...(options.onProgress ? { progress: options.onProgress } : {}),
    onError: async (error) => {
      // A failure of the function's own (its init phase) is for good; any
      // other (a VM that could not boot) is tried again next time.
      if (error instanceof FunctionError) await mark(marker, `${REFUSED}${error.message}\n`).catch(() => {});
      options.onNotice?.(
        `fnrun: no function snapshot of ${fn.name} (${(error as Error).message}); its invocations restore the shared snapshot`,
      );
    },
  });
}
