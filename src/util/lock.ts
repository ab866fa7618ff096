/**
 * A lock file for work that is expensive to do twice (a kernel build): the first
 * process does it, the others wait. A lock whose owner died is taken over. In a
 * race on a stale lock two processes may both go ahead: the work is then done
 * twice, never wrongly, since cache entries are installed atomically.
 */
import { mkdir, open, readFile, rm, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { processAlive } from "./process.ts";

export async function withLock<T>(path: string, work: () => Promise<T>, pollMs = 500): Promise<T> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  for (;;) {
    try {
      const handle = await open(path, "wx", 0o600);
      await handle.writeFile(String(process.pid));
      await handle.close();
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const owner = Number.parseInt(await readFile(path, "utf8").catch(() => ""), 10);
      // An empty file is a lock being written right now, or one whose owner was
      // killed between creating it and writing its PID: stale after a few seconds.
      // Otherwise only a dead owner's is stale.
      const stale = Number.isInteger(owner) ? owner > 0 && !processAlive(owner) : await emptyFor(path, 5_000);
      if (stale) {
        await rm(path, { force: true });
        continue;
      }
      await sleep(pollMs);
    }
  }
  try {
    return await work();
  } finally {
    await rm(path, { force: true });
  }
}

/** Whether the lock at `path` has been there, with no owner written, for `ms`. */
async function emptyFor(path: string, ms: number): Promise<boolean> {
  const info = await stat(path).catch(() => undefined);
  return info !== undefined && info.size === 0 && Date.now() - info.mtimeMs > ms;
}
