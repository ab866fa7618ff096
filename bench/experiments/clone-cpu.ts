/**
 * How much CPU a clone's QEMU spends, and on what (an experiment, not part of
 * `make bench`; docs/performance.md, "What a clone's QEMU spends"). hello's
 * function snapshot, one VM at a time:
 *
 * - fresh: `invoke()`, a clone restored, woken and invoked: the CPU of its
 *   QEMU's whole life, its main thread (start-up, the state load) apart;
 * - pooled: a pool's clone, restored, woken and warmed ahead: its CPU before
 *   the invocation and during it, when the code an invocation runs has been
 *   translated by TCG once already in that process.
 *
 * Each QEMU's threads are read from /proc every millisecond until it is gone
 * (a thread's last reading stands for it once it has ended).
 *
 *     npx esbuild bench/experiments/clone-cpu.ts --bundle --platform=node \
 *       --format=esm --packages=external --outfile=dist/clone-cpu.mjs
 *     N=15 node dist/clone-cpu.mjs
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { resolveHost } from "../../src/host/setup.ts";
import { invoke } from "../../src/invoke/invoke.ts";
import { createPool } from "../../src/invoke/pool.ts";
import { backgroundSnapshots } from "../../src/start/snapshot.ts";
import { packageRoot } from "../../src/util/paths.ts";
import { waitForIdle } from "../profiles.ts";

const HELLO = join(packageRoot, "functions/hello.ts");
const EVENT = { name: "Ada" };
const runs = Number(process.env.N ?? 10);

/** Each child process's threads: thread id to its CPU time in ns, as last read. */
const children = new Map<number, Map<number, number>>();

function read(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

function sample(): void {
  const listed = read(`/proc/${process.pid}/task/${process.pid}/children`) ?? "";
  for (const word of listed.split(" ").filter(Boolean)) {
    const pid = Number(word);
    const threads = children.get(pid) ?? new Map<number, number>();
    children.set(pid, threads);
    let tids: string[] = [];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {}
    for (const tid of tids) {
      const ns = read(`/proc/${pid}/task/${tid}/schedstat`)?.split(" ")[0];
      if (ns) threads.set(Number(tid), Number(ns));
    }
  }
}

/** ms of CPU of `pid`'s threads so far: all, and its main thread's. */
function cpuOf(pid: number): { all: number; main: number } {
  const threads = children.get(pid) ?? new Map<number, number>();
  let all = 0;
  for (const ns of threads.values()) all += ns;
  return { all: all / 1e6, main: (threads.get(pid) ?? 0) / 1e6 };
}

const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;
const show = (label: string, values: number[]) =>
  console.log(
    `${label}: median ${median(values).toFixed(1)} ms (${values.map((v) => v.toFixed(0)).join(" ")})`,
  );
const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const host = await resolveHost({});
const timer = setInterval(sample, 1);

const pool = await createPool({ size: 1, memory: 256, host, start: "snapshot" });
const before: number[] = [];
const during: number[] = [];
try {
  // The first invocation has hello's function snapshot made; the pool's VMs are clones of it.
  await pool.invoke(HELLO, { event: EVENT });
  await backgroundSnapshots();
  for (let run = 0; run <= runs; run++) {
    await waitForIdle(pool, 1);
    await settle(300);
    const pid = pool.stats().idlePids[0];
    if (pid === undefined) throw new Error("no idle VM");
    sample();
    const ready = cpuOf(pid).all;
    await pool.invoke(HELLO, { event: EVENT });
    await settle(50);
    // The first pooled VM may be a clone of the profile snapshot, started before hello's own.
    if (run === 0) continue;
    before.push(ready);
    during.push(cpuOf(pid).all - ready);
  }
} finally {
  await pool.close();
}

const fresh: number[] = [];
const freshMain: number[] = [];
for (let run = 0; run < runs; run++) {
  const known = new Set(children.keys());
  await invoke(HELLO, { event: EVENT, host });
  await settle(300);
  for (const pid of children.keys()) {
    if (known.has(pid)) continue;
    fresh.push(cpuOf(pid).all);
    freshMain.push(cpuOf(pid).main);
  }
}
clearInterval(timer);

show("fresh clone, its QEMU's whole life", fresh);
show("fresh clone, its QEMU's main thread", freshMain);
show("pooled clone, restored, woken and warmed", before);
show("pooled clone, its invocation", during);
process.exit(0);
