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
import {
  cacheRoot,
  FUNCTION_SNAPSHOTS_KEPT,
  pruneOldEntries,
  wouldPushOutRecentlyUsed,
  writeFileAtomic,
} from "../util/cache.ts";
import { FunctionError } from "../util/errors.ts";
import type { Progress } from "../util/progress.ts";
import { ensureFunctionSnapshotInBackground, FUNCTION_KIND, type FunctionToSave } from "./snapshot.ts";

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

export interface WantOptions {
  env: NodeJS.ProcessEnv;
  bootTimeoutMs: number;
  onProgress?: Progress;
  onNotice?: (message: string) => void;
}

/**
 * A function with no snapshot of its own (`key`, functionSnapshotKey's) was
 * just invoked, successfully, or is kept warm by a pool. After an invocation,
 * its version is remembered, or, on its second invocation, its function
 * snapshot is made; a pool's function will be invoked again, so it is made at
 * once. Either way in the background (snapshot.ts's backgroundSnapshots waits
 * for it), and never for a version refused before. Never throws: a marker
 * that cannot be written costs only the snapshot.
 */
export async function wantFunctionSnapshot(
  host: HostSetup,
  key: string,
  fn: FunctionToSave,
  why: "invoked" | "kept",
  options: WantOptions,
): Promise<void> {
  if (!automaticFunctionSnapshots(options.env)) return;
  const path = markerPath(options.env, key);
  const step = nextStep(await readMarker(path));
  if (step === "none") return;
  if (step === "remember" && why === "invoked") {
    await mark(path, SEEN_ONCE).catch(() => {});
  } else if (
    why === "kept" &&
    (await wouldPushOutRecentlyUsed(join(cacheRoot(options.env), FUNCTION_KIND), IN_USE_MS))
  ) {
    // A pool keeping more functions warm than the cache keeps snapshots of:
    // making this one would push out another in use, which its pool would ask
    // for again at its next refill (a boot each time, without end). This one
    // restores the shared snapshot instead. (An invocation asks once, on a
    // version's second run: its snapshot is made.)
    if (!crowdedOut.has(fn.name)) {
      crowdedOut.add(fn.name);
      options.onNotice?.(
        `fnrun: no function snapshot of ${fn.name}: the cache keeps ${FUNCTION_SNAPSHOTS_KEPT}, all used in the last ${IN_USE_MS / 60_000} minutes; its invocations restore the shared snapshot`,
      );
    }
  } else {
    make(host, key, fn, path, options);
  }
}

/** A function snapshot used this recently counts as in use: no new one pushes it out. */
const IN_USE_MS = 10 * 60_000;
/** Functions told of being crowded out, once each per process. */
const crowdedOut = new Set<string>();

function markerPath(env: NodeJS.ProcessEnv, key: string): string {
  return join(cacheRoot(env), SEEN, key);
}

function readMarker(path: string): Promise<string | undefined> {
  return readFile(path, "utf8").catch(() => undefined);
}

function make(host: HostSetup, key: string, fn: FunctionToSave, marker: string, options: WantOptions): void {
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
