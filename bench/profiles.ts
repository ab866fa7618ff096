/**
 * The bench's measurements of snapshot profiles beyond the default (run.ts
 * calls these): a burst of invocations against `fnrun serve` once its pool is
 * drained, and the memory of an idle clone of each profile.
 */
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { HostSetup } from "../src/host/setup.ts";
import { createPool, type Pool } from "../src/invoke/pool.ts";
import { serve } from "../src/serve/server.ts";
import { backgroundSnapshots } from "../src/start/snapshot.ts";
import { packageRoot } from "../src/util/paths.ts";

const HELLO = join(packageRoot, "functions/hello.ts");

/** Resident memory of a process in MB (VmRSS). */
export function rssMB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(status.match(/^VmRSS:\s+(\d+) kB/m)?.[1] ?? Number.NaN);
  return kb / 1024;
}

export async function waitForIdle(pool: Pool, count: number): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (pool.stats().idleVms < count || pool.stats().startingVms > 0) {
    if (Date.now() > deadline) throw new Error("the pool did not refill");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * `count` requests at once to `fnrun serve`'s POST /invoke/hello, its one pooled
 * VM ready: the first takes it, the others start as clones (of hello's function
 * snapshot, which the pool had made). Each request's
 * latency in ms, from its send to its whole answer.
 */
export async function serveBurst(host: HostSetup, work: string, count: number): Promise<number[]> {
  const stateDirectory = join(work, "burst-state");
  mkdirSync(stateDirectory, { recursive: true });
  const server = await serve({
    directory: join(packageRoot, "functions"),
    port: 0,
    pool: 1,
    workers: 0,
    schedules: false,
    stateDirectory,
    machine: host,
    maxWaiting: count,
  });
  try {
    const once = async () => {
      const started = performance.now();
      const response = await fetch(`${server.url}/invoke/hello`, { method: "POST", body: '{"name":"Ada"}' });
      const text = await response.text();
      if (response.status !== 200) throw new Error(`the burst got ${response.status}: ${text}`);
      return performance.now() - started;
    };
    // The first invocation warms the function's pool, which has its function
    // snapshot made; the burst starts once both are ready, as on a server that
    // has run the function before.
    await once();
    await waitForIdle(server.pool, 1);
    await backgroundSnapshots();
    await waitForIdle(server.pool, 1);
    return await Promise.all(Array.from({ length: count }, once));
  } finally {
    await server.close();
  }
}

export interface ProfileRss {
  profile: string;
  rssMB: number;
}

/** Host RSS of an idle pooled VM (hello loaded) of each profile: a clone of each. */
export async function idleCloneRss(host: HostSetup, sharedDirectory: string): Promise<ProfileRss[]> {
  const profiles: Array<{ profile: string; memory: number; warm: Parameters<Pool["warm"]>[1] }> = [
    { profile: "256 MB", memory: 256, warm: {} },
    // Its RAM is its own shared copy (in /dev/shm), which its daemon maps too.
    { profile: "256 MB + --mount", memory: 256, warm: { mounts: [`${sharedDirectory}:/mnt/data`] } },
    { profile: "256 MB + --net", memory: 256, warm: { net: true } },
    { profile: "512 MB", memory: 512, warm: {} },
  ];
  const measured: ProfileRss[] = [];
  for (const { profile, memory, warm } of profiles) {
    const pool = await createPool({ size: 1, memory, host, start: "snapshot" });
    try {
      await pool.warm(HELLO, warm);
      await waitForIdle(pool, 1);
      // Settled: what an idle clone keeps, not its restore's peak.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      for (const pid of pool.stats().idlePids) measured.push({ profile, rssMB: rssMB(pid) });
    } finally {
      await pool.close();
    }
  }
  return measured;
}
