/**
 * A lock file for work that is expensive to do twice (a kernel build): the first
 * process does it, the others wait. A lock whose owner died is taken over. In a
 * race on a stale lock two processes may both go ahead: the work is then done
 * twice, never wrongly, since cache entries are installed atomically.
 */
import { mkdir, open, readFile, rm } from "node:fs/promises";
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
      // An empty file is a lock being written right now; only a dead owner is stale.
      if (Number.isInteger(owner) && owner > 0 && !processAlive(owner)) {
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
