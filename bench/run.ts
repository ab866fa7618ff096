/**
 * `make bench`: fnrun's start-up against its floor and its seed's baseline,
 * interleaved in one run (these machines are noisy: compare ratios, not times).
 *
 *   (a)  floor: fnrun's microvm and kernel with a tiny static init (bench/floor-init.c)
 *   (a') the floor through qboot with the LZ4 bzImage instead of PVH entry
 *   (a'') (a) on the system's full QEMU, where fnrun runs on its own reduced one
 *   (b)  the seed's baseline: `-M pc` (SeaBIOS, default devices), Debian's cloud
 *        kernel, Node in the initramfs, hello over the serial console
 *   (c)  `fnrun invoke functions/hello.ts --start boot`, the whole CLI process
 *   (c')  a function's first two invocations: `fnrun invoke hello.ts`, a clone
 *        of the shared snapshot that imports hello (a copy of hello that never
 *        gets a function snapshot: FNRUN_FUNCTION_SNAPSHOTS=off)
 *   (c'') the default from a function's third invocation on: `fnrun invoke
 *        hello.ts`, a clone of hello's own function snapshot (made by its
 *        second invocation, docs/snapshots.md)
 *   (d)  hello on a warm pool VM (library API, in this process)
 *   (e)  `node` running hello's handler on the host (bench/direct.mjs)
 *   (f)  (c') with a shared folder (`--mount DIR:/mnt/data`): a clone of the
 *        one-folder profile (its own RAM copy, a new daemon); (f'') the
 *        same from the third invocation on, hello's function snapshot of that
 *        profile; (f') the same with `--start boot`
 *   (h)  (c') with `--net`, (i) with `--memory 512`: the snapshot profiles beyond
 *        the default (a clone with a network card plugged in; the 512 MB
 *        snapshot); (h'') and (i'') the same from the third invocation on.
 * then bursts of 32 requests to `fnrun serve` once its pool is drained (p50,
 * p99: the median of BENCH_BURSTS bursts, 3 by default, each its own server), the host RSS of an idle clone of each profile (profiles.ts), sustained throughput (pool; snapshot starts vs boots), QEMU memory, and
 * reading a 100 MB file through virtio-fs against the same file in the initramfs.
 *
 * Environment: BENCH_RUNS (default 10), BENCH_THROUGHPUT_SECONDS (default 60).
 * Writes bench/results/latest.json and the charts in docs/.
 *
 * One file on purpose: every row runs interleaved in one loop, so that drift in
 * the machine's speed hits them all alike.
 */
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { bundleFunction } from "../src/build/bundle.ts";
import { encodeCpio } from "../src/build/cpio.ts";
import { resolveHost } from "../src/host/setup.ts";
import { invoke } from "../src/invoke/invoke.ts";
import { createPool } from "../src/invoke/pool.ts";
import { prepareInvocation } from "../src/invoke/prepare.ts";
import { renderCharts } from "../src/serve/dashboard/charts.ts";
import { bootAndRun } from "../src/start/run.ts";
import { backgroundSnapshots, ensureSnapshot, memoryOnly } from "../src/start/snapshot.ts";
import { packageRoot } from "../src/util/paths.ts";
import { whichSync } from "../src/util/which.ts";
import { framesSignedWith } from "../src/vm/frame-keys.ts";
import { writeInitrd } from "../src/vm/initrd.ts";
import { bootTimeoutMs } from "../src/vm/launch.ts";
import { FrameDecoder } from "../src/vm/protocol.ts";
import { buildKernelCmdline, buildQemuArgs } from "../src/vm/qemu.ts";
import { idleCloneRss, type ProfileRss, rssMB, serveBurst, waitForIdle } from "./profiles.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 10);
const THROUGHPUT_SECONDS = Number(process.env.BENCH_THROUGHPUT_SECONDS ?? 60);
const HELLO = join(packageRoot, "functions/hello.ts");
const EVENT = '{"name":"Ada"}';
const CLI = join(packageRoot, "bin/fnrun.js");
const BURST = Number(process.env.BENCH_BURST ?? 32);
/** One burst is a single sample of a noisy machine: its p99 is the slowest of 32. */
const BURSTS = Number(process.env.BENCH_BURSTS ?? 3);

interface Row {
  id: string;
  label: string;
  samples: number[];
}

function log(message: string): void {
  process.stderr.write(`bench: ${message}\n`);
}

/** Spawns a process and resolves with the ms until `done` matches its stdout (or it exits); kills it. */
function timeUntil(
  command: string,
  args: string[],
  done?: (output: string) => boolean,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], env });
    let output = "";
    let errors = "";
    let finished = false;
    const finish = (error?: Error) => {
      if (finished) return;
      finished = true;
      const elapsed = performance.now() - started;
      child.kill("SIGKILL");
      if (error) reject(error);
      else resolve(elapsed);
    };
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString("latin1");
      if (done?.(output)) finish();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      errors = (errors + chunk.toString()).slice(-2000);
    });
    child.on("close", (code) => {
      if (done && !finished)
        finish(new Error(`${command} ended without its result (exit ${code}): ${errors}`));
      else if (code !== 0 && !finished) finish(new Error(`${command} failed (exit ${code}): ${errors}`));
      else finish();
    });
  });
}

function percentile(values: number[], fraction: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1));
  return sorted[index] ?? Number.NaN;
}

const median = (values: number[]) => percentile(values, 0.5);
const p90 = (values: number[]) => percentile(values, 0.9);

/** QEMU processes that are children of this process. */
function ourQemuPids(): number[] {
  const out = execFileSync("pgrep", ["-P", String(process.pid), "-f", "qemu-system"], {
    encoding: "utf8",
  }).trim();
  return out ? out.split("\n").map(Number) : [];
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "fnrun-bench-"));
  try {
    await run(work);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

async function run(work: string): Promise<void> {
  log(`preparing (${cpus().length} cores, ${RUNS} interleaved runs per row)`);
  const host = await resolveHost({ progress: log });
  if (!host.runtime.disk) throw new Error("the benchmark expects fnrun's kernel and the disk layout");
  const cloudHost = await resolveHost({
    env: { ...process.env, FNRUN_KERNEL_SOURCE: "debian-cloud" },
    progress: log,
  });
  const bzImageHost = await resolveHost({ kernelEntry: "bios", progress: log });
  await ensureSnapshot(host, memoryOnly(256), { progress: log });
  await ensureSnapshot(host, memoryOnly(512), { progress: log });
  await ensureSnapshot(host, { memoryMB: 256, folders: 1 }, { progress: log });

  // (a) the floor's initramfs
  execFileSync("gcc", [
    "-static",
    "-Os",
    "-s",
    "-o",
    join(work, "floor-init"),
    join(packageRoot, "bench/floor-init.c"),
  ]);
  const floorInitrd = join(work, "floor.cpio");
  writeFileSync(
    floorInitrd,
    encodeCpio([
      { type: "directory", path: "dev" },
      { type: "characterDevice", path: "dev/console", major: 5, minor: 1 },
      { type: "file", path: "init", data: readFileSync(join(work, "floor-init")), mode: 0o755 },
    ]),
  );
  const floorCmdline = "console=ttyS0 loglevel=1 panic=-1 reboot=t rdinit=/init 8250.nr_uarts=1";
  // fnrun's own machine (the argv builder every VM goes through) with nothing but the kernel and a static init.
  const floorArgs = (kernel: string, bios: boolean) =>
    buildQemuArgs({
      accel: "tcg",
      kernel: { path: kernel, entry: bios ? "bios" : "pvh" },
      initrd: floorInitrd,
      memoryMB: 256,
      cpus: 1,
      channel: { kind: "serial" },
      cmdline: floorCmdline,
      sandbox: false,
      sharedFolders: [],
      network: false,
    });

  // (b) the seed's baseline: hello, cold, on -M pc with the cloud kernel and Node in the initramfs
  const bundle = await bundleFunction(HELLO);
  const baselineRuns: Array<{ initrd: string; nonce: string }> = [];
  for (let i = 0; i < RUNS; i++) {
    const prepared = prepareInvocation(bundle, { event: JSON.parse(EVENT), memory: 256 });
    const directory = join(work, `baseline-${i}`);
    mkdirSync(directory);
    const initrd = await writeInitrd(directory, cloudHost.runtime.bootArchive, {
      kind: "invocation",
      invocation: prepared.invocation,
      bundleCode: bundle.code,
    });
    baselineRuns.push({ initrd, nonce: prepared.invocation.key });
  }
  const baselineArgs = (initrd: string) => [
    "-M",
    "pc",
    "-accel",
    "tcg",
    "-m",
    "512",
    "-display",
    "none",
    "-serial",
    "stdio",
    "-no-reboot",
    "-kernel",
    cloudHost.kernel.path,
    "-initrd",
    initrd,
    "-append",
    buildKernelCmdline({
      channel: "serial",
      runtime: "initrd",
      bootNonce: "baseline",
      snapshot: false,
      nodeOptions: ["--max-old-space-size=204"],
      network: false,
      verbose: false,
    }),
  ];
  const sawResult = (nonce: string) => {
    let seen = false;
    const decoder = new FrameDecoder(framesSignedWith(nonce), {
      message: (value) => {
        if ((value as { type?: string }).type === "result") seen = true;
      },
      text: () => {},
    });
    let fed = 0;
    return (output: string) => {
      decoder.push(Buffer.from(output.slice(fed), "latin1"));
      fed = output.length;
      return seen;
    };
  };

  // (e) the handler run directly on the host
  const directBundle = join(work, "hello.mjs");
  writeFileSync(directBundle, bundle.code);

  // (f) a shared folder with a 100 MB file (also read below)
  const sharedDirectory = join(work, "shared");
  mkdirSync(sharedDirectory);
  writeFileSync(join(sharedDirectory, "blob.bin"), randomBytes(100 * 1024 * 1024));

  // Reading 100 MB through virtio-fs and from the initramfs (first: it fails fast).
  const reads = await measureReads(host, work);

  // (c') and (c''): two copies of hello. One never gets a function snapshot, so
  // that every invocation of it is a function's first; the other has its own,
  // of each profile, made as a user's second invocation makes it.
  const copyOfHello = (name: string) => {
    mkdirSync(join(work, name));
    writeFileSync(join(work, name, "hello.ts"), readFileSync(HELLO));
    return join(work, name, "hello.ts");
  };
  const sharedHello = copyOfHello("first-invocations");
  const snapHello = copyOfHello("function-snapshot");
  const mountFlags = ["--mount", `${sharedDirectory}:/mnt/data`];
  for (const flags of [[], mountFlags, ["--memory", "512"]]) {
    log(`hello's function snapshot (${flags.join(" ") || "default profile"}): its first two invocations`);
    for (let i = 0; i < 2; i++) {
      execFileSync(process.execPath, [CLI, "invoke", snapHello, ...flags, "--quiet"], {
        stdio: ["ignore", "ignore", "inherit"],
      });
    }
  }
  const firstInvocations = { ...process.env, FNRUN_FUNCTION_SNAPSHOTS: "off" };

  // (d) a warm pool
  const pool = await createPool({ size: 1, host, functions: [HELLO] });
  // The pool asks for hello's function snapshot: made before the rows, not beside them.
  await waitForIdle(pool, 1);
  await backgroundSnapshots();
  await waitForIdle(pool, 1);

  const rows: Row[] = [
    { id: "a", label: "(a) floor: microvm + fnrun kernel (PVH) + static init", samples: [] },
    { id: "a-system", label: "(a'') (a) on the system's full qemu-system-x86_64", samples: [] },
    { id: "a-qboot", label: "(a') floor through qboot + LZ4 bzImage", samples: [] },
    { id: "b", label: "(b) seed baseline: -M pc + cloud kernel + Node initrd", samples: [] },
    { id: "c", label: "(c) fnrun invoke hello --start boot (whole CLI)", samples: [] },
    {
      id: "c-snapshot",
      label: "(c') fnrun invoke hello, a function's first invocations: the shared snapshot (whole CLI)",
      samples: [],
    },
    {
      id: "c-function",
      label: "(c'') fnrun invoke hello, the default from its third invocation on: its function snapshot",
      samples: [],
    },
    { id: "d", label: "(d) hello on a warm pool VM (library)", samples: [] },
    { id: "e", label: "(e) node runs hello's handler on the host", samples: [] },
    {
      id: "f",
      label: "(f) (c') with a shared folder (--mount): a clone of the one-folder profile",
      samples: [],
    },
    {
      id: "f-function",
      label: "(f'') (c'') with a shared folder: the function snapshot of the one-folder profile",
      samples: [],
    },
    { id: "f-boot", label: "(f') (c) with a shared folder (--mount, --start boot)", samples: [] },
    { id: "h", label: "(h) (c') with --net: a clone with a network", samples: [] },
    { id: "h-function", label: "(h'') (c'') with --net: the function snapshot, with a card", samples: [] },
    { id: "i", label: "(i) (c') with --memory 512: the 512 MB snapshot", samples: [] },
    { id: "i-function", label: "(i'') (c'') with --memory 512: the 512 MB function snapshot", samples: [] },
  ];
  const byId = (id: string) => rows.find((row) => row.id === id) as Row;
  /**
   * The whole `fnrun invoke` process on `file` with these flags, run as a user
   * runs `fnrun`: the file itself, whose first line starts Node (bin/fnrun.js).
   */
  const fnrunInvoke = (file: string, flags: string[], env?: NodeJS.ProcessEnv) =>
    timeUntil(CLI, ["invoke", file, ...flags, "--event", EVENT, "--quiet"], undefined, env);
  const invokeHello = (...flags: string[]) => fnrunInvoke(HELLO, flags);
  /** The same for hello's copy on its first invocations (the shared snapshot), or from its third (its own). */
  const invokeFirst = (...flags: string[]) => fnrunInvoke(sharedHello, flags, firstInvocations);
  const invokeLater = (...flags: string[]) => fnrunInvoke(snapHello, flags);
  // fnrun's QEMU (its own reduced build, when made); the seed's baseline ran on
  // the system's full one, which has the `pc` machine the reduced one has not.
  const qemu = host.qemuPath;
  const systemQemu = whichSync("qemu-system-x86_64") ?? qemu;

  for (let i = 0; i < RUNS; i++) {
    log(`run ${i + 1}/${RUNS}`);
    byId("a").samples.push(
      await timeUntil(qemu, floorArgs(host.kernel.path, false), (out) => out.includes("FLOOR-RESULT")),
    );
    byId("a-system").samples.push(
      await timeUntil(systemQemu, floorArgs(host.kernel.path, false), (out) => out.includes("FLOOR-RESULT")),
    );
    byId("a-qboot").samples.push(
      await timeUntil(qemu, floorArgs(bzImageHost.kernel.path, true), (out) => out.includes("FLOOR-RESULT")),
    );
    const baseline = baselineRuns[i] as { initrd: string; nonce: string };
    byId("b").samples.push(
      await timeUntil(systemQemu, baselineArgs(baseline.initrd), sawResult(baseline.nonce)),
    );
    byId("c").samples.push(await invokeHello("--start", "boot"));
    byId("c-snapshot").samples.push(await invokeFirst());
    byId("c-function").samples.push(await invokeLater());
    const started = performance.now();
    const pooled = await pool.invoke(HELLO, { event: JSON.parse(EVENT) });
    if (pooled.startMode !== "pool") throw new Error("the pooled row did not run on a pooled VM");
    byId("d").samples.push(performance.now() - started);
    await waitForIdle(pool, 1);
    byId("e").samples.push(
      await timeUntil(process.execPath, [join(packageRoot, "bench/direct.mjs"), directBundle, EVENT]),
    );
    byId("f").samples.push(await invokeFirst(...mountFlags));
    byId("f-function").samples.push(await invokeLater(...mountFlags));
    byId("f-boot").samples.push(await invokeHello("--start", "boot", ...mountFlags));
    byId("h").samples.push(await invokeFirst("--net"));
    byId("h-function").samples.push(await invokeLater("--net"));
    byId("i").samples.push(await invokeFirst("--memory", "512"));
    byId("i-function").samples.push(await invokeLater("--memory", "512"));
  }

  // Memory: idle pooled VMs, and VMs during an invocation.
  const idleRss = pool.stats().idlePids.map(rssMB);
  const sleeper = join(work, "sleeper.mjs");
  writeFileSync(
    sleeper,
    "export const handler = async () => { await new Promise((r) => setTimeout(r, 1500)); return 1; };\n",
  );
  const duringRss: Record<string, number> = {};
  for (const start of ["boot", "snapshot"] as const) {
    const running = invoke(sleeper, { start, host });
    let peak = 0;
    const sampler = setInterval(() => {
      for (const pid of ourQemuPids()) {
        try {
          const rss = rssMB(pid);
          // A process that is exiting has no VmRSS line any more.
          if (Number.isFinite(rss)) peak = Math.max(peak, rss);
        } catch {}
      }
    }, 100);
    await running;
    clearInterval(sampler);
    duringRss[start] = peak;
  }
  await pool.close();

  // A burst against fnrun serve, and what an idle clone of each profile holds.
  const bursts: number[][] = [];
  for (let round = 1; round <= BURSTS; round++) {
    log(`serve: a burst of ${BURST} requests once its pool is drained (${round}/${BURSTS})`);
    bursts.push(await serveBurst(host, join(work, `burst-${round}`), BURST));
  }
  log("idle clones of each profile");
  const profileRss = await idleCloneRss(host, sharedDirectory);

  // Throughput: back-to-back invocations from as many clients as cores, for a fixed time.
  const clients = cpus().length;
  const throughput = async (label: string, once: () => Promise<unknown>) => {
    log(`throughput: ${label}, ${clients} clients, ${THROUGHPUT_SECONDS} s`);
    const deadline = performance.now() + THROUGHPUT_SECONDS * 1000;
    let completed = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: clients }, async () => {
        while (performance.now() < deadline) {
          await once();
          completed++;
        }
      }),
    );
    return completed / ((performance.now() - started) / 1000);
  };
  const throughputPool = await createPool({ size: clients, host, functions: [HELLO] });
  await waitForIdle(throughputPool, clients);
  const poolRate = await throughput("warm pool", () =>
    throughputPool.invoke(HELLO, { event: JSON.parse(EVENT) }),
  );
  await throughputPool.close();
  const snapshotRate = await throughput("snapshot starts", () =>
    invoke(HELLO, { start: "snapshot", host, event: JSON.parse(EVENT) }),
  );
  const bootRate = await throughput("boots", () =>
    invoke(HELLO, { start: "boot", host, event: JSON.parse(EVENT) }),
  );

  report(rows, { idleRss, duringRss, poolRate, snapshotRate, bootRate, clients, reads, bursts, profileRss });
}

const READ_RUNS = 3;

/**
 * Reads the same 100 MB file in a booted VM (1 GB of RAM) through virtio-fs and
 * from the initramfs, timed in the guest: MB/s per run.
 */
async function measureReads(
  host: Awaited<ReturnType<typeof resolveHost>>,
  work: string,
): Promise<{ virtiofs: number[]; initrd: number[] }> {
  const reader = join(packageRoot, "bench/reader.mjs");
  const readerBundle = await bundleFunction(reader);
  const blob = readFileSync(join(work, "shared", "blob.bin"));
  const extraArchive = encodeCpio(
    [
      { type: "directory", path: "data" },
      { type: "file", path: "data/blob.bin", data: blob, mode: 0o644 },
    ],
    2_000_000,
  );
  const reads = { virtiofs: [] as number[], initrd: [] as number[] };
  const rate = (json: string | undefined) =>
    (JSON.parse(json ?? "{}") as { mbPerSecond: number }).mbPerSecond;
  for (let i = 0; i < READ_RUNS; i++) {
    log(`reading 100 MB, run ${i + 1}/${READ_RUNS}`);
    const viaMount = await invoke(reader, {
      host,
      start: "boot",
      memory: 1024,
      timeout: 300,
      mounts: [`${join(work, "shared")}:/mnt/data`],
      event: { path: "/mnt/data/blob.bin" },
    });
    reads.virtiofs.push(rate(viaMount.resultJson));
    const prepared = prepareInvocation(readerBundle, {
      memory: 1024,
      timeout: 300,
      event: { path: "/data/blob.bin" },
    });
    prepared.limits.bootTimeoutMs = bootTimeoutMs(host);
    const report = await bootAndRun(host, prepared, { extraArchive });
    if (report.outcome?.kind !== "result")
      throw new Error(`reading from the initramfs failed: ${report.failure?.message}`);
    reads.initrd.push(rate(report.outcome.json));
  }
  return reads;
}

interface Extras {
  idleRss: number[];
  duringRss: Record<string, number>;
  poolRate: number;
  snapshotRate: number;
  bootRate: number;
  clients: number;
  reads: { virtiofs: number[]; initrd: number[] };
  /** Latency of each request of each burst against fnrun serve, ms. */
  bursts: number[][];
  profileRss: ProfileRss[];
}

function report(rows: Row[], extras: Extras): void {
  const floor = median(rows.find((row) => row.id === "a")?.samples ?? []);
  // Each burst's p50 and p99; the figures are their medians.
  const perBurst = extras.bursts.map((samples) => ({ p50: median(samples), p99: percentile(samples, 0.99) }));
  const burstP50 = median(perBurst.map((burst) => burst.p50));
  const burstP99 = median(perBurst.map((burst) => burst.p99));
  const burstRequests = extras.bursts[0]?.length ?? 0;
  const ms = (value: number) => `${value.toFixed(0)} ms`;
  const lines = [
    "",
    `| row | median | p90 | median / floor (a) |`,
    `|---|---:|---:|---:|`,
    ...rows.map(
      (row) =>
        `| ${row.label} | ${ms(median(row.samples))} | ${ms(p90(row.samples))} | ${(median(row.samples) / floor).toFixed(2)} |`,
    ),
  ];
  const m = (id: string) => median(rows.find((row) => row.id === id)?.samples ?? []);
  const targets: Array<[string, boolean, string]> = [
    ["cold (c) / floor (a) <= 2.0", m("c") / m("a") <= 2.0, (m("c") / m("a")).toFixed(2)],
    ["cold (c) / seed baseline (b) <= 0.35", m("c") / m("b") <= 0.35, (m("c") / m("b")).toFixed(2)],
    ...(
      [
        ["c-function", "default snapshot start (c''), from a function's third invocation on", 0.35],
        ["c-snapshot", "snapshot start on a function's first invocations (c')", 0.35],
        ["f-function", "--mount snapshot start (f''), from the third invocation on", 0.6],
        ["f", "--mount snapshot start on the first invocations (f)", 0.6],
        ["h-function", "--net snapshot start (h''), from the third invocation on", 0.6],
        ["h", "--net snapshot start on the first invocations (h)", 0.6],
        ["i-function", "--memory 512 snapshot start (i''), from the third invocation on", 0.6],
        ["i", "--memory 512 snapshot start on the first invocations (i)", 0.6],
      ] as const
    ).map(([id, name, bound]): [string, boolean, string] => [
      `${name} / floor (a) <= ${bound}`,
      m(id) / m("a") <= bound,
      (m(id) / m("a")).toFixed(2),
    ]),
    [
      `serve burst of ${burstRequests}, drained pool: p99 (median of ${perBurst.length} bursts) / floor (a) <= 1.5`,
      burstP99 / m("a") <= 1.5,
      (burstP99 / m("a")).toFixed(2),
    ],
    ["pooled (d) <= 3 x (e) + 50 ms", m("d") <= 3 * m("e") + 50, `${ms(m("d"))} vs ${ms(3 * m("e") + 50)}`],
    [
      "idle pooled VM <= 150 MB host RSS",
      extras.idleRss.every((rss) => rss <= 150),
      extras.idleRss.map((rss) => `${rss.toFixed(0)} MB`).join(", "),
    ],
    [
      "snapshot-start throughput >= 4 x boots",
      extras.snapshotRate >= 4 * extras.bootRate,
      `${(extras.snapshotRate / extras.bootRate).toFixed(1)}x`,
    ],
  ];
  lines.push(
    "",
    `| throughput (${extras.clients} clients, ${THROUGHPUT_SECONDS} s) | invocations/s |`,
    "|---|---:|",
    `| warm pool | ${extras.poolRate.toFixed(2)} |`,
    `| snapshot starts | ${extras.snapshotRate.toFixed(2)} |`,
    `| boots | ${extras.bootRate.toFixed(2)} |`,
    "",
    "| QEMU memory (host RSS) | MB |",
    "|---|---:|",
    `| idle pooled VM (snapshot clone, hello loaded) | ${extras.idleRss.map((rss) => rss.toFixed(0)).join(", ")} |`,
    `| booted VM during an invocation (peak) | ${(extras.duringRss.boot ?? 0).toFixed(0)} |`,
    `| snapshot clone during an invocation (peak) | ${(extras.duringRss.snapshot ?? 0).toFixed(0)} |`,
    "",
    `| serve burst of ${burstRequests}, pool drained (median of ${perBurst.length} bursts) | ms | / floor (a) |`,
    "|---|---:|---:|",
    `| p50 | ${ms(burstP50)} | ${(burstP50 / m("a")).toFixed(2)} |`,
    `| p99 | ${ms(burstP99)} | ${(burstP99 / m("a")).toFixed(2)} |`,
    `| each burst's p99 | ${perBurst.map((burst) => burst.p99.toFixed(0)).join(", ")} ms | |`,
    "",
    "| idle clone of each profile (host RSS) | MB |",
    "|---|---:|",
    ...extras.profileRss.map((entry) => `| ${entry.profile} | ${entry.rssMB.toFixed(0)} |`),
    "",
    `| shared folders | median |`,
    "|---|---:|",
    `| cold start added by one --mount, (f') - (c) | ${ms(m("f-boot") - m("c"))} |`,
    `| snapshot start added by one --mount, (f) - (c') | ${ms(m("f") - m("c-snapshot"))} |`,
    `| reading 100 MB through virtio-fs (guest-timed, ${READ_RUNS} runs) | ${median(extras.reads.virtiofs).toFixed(0)} MB/s |`,
    `| reading the same 100 MB from the initramfs | ${median(extras.reads.initrd).toFixed(0)} MB/s |`,
    "",
    "| target | met | measured |",
    "|---|---|---|",
    ...targets.map(([name, met, value]) => `| ${name} | ${met ? "yes" : "NO"} | ${value} |`),
  );
  const text = lines.join("\n");
  process.stdout.write(`${text}\n`);

  const results = {
    date: new Date().toISOString(),
    runs: RUNS,
    cores: cpus().length,
    rows: rows.map((row) => ({
      id: row.id,
      label: row.label,
      median: median(row.samples),
      p90: p90(row.samples),
      samples: row.samples,
    })),
    throughput: {
      clients: extras.clients,
      seconds: THROUGHPUT_SECONDS,
      pool: extras.poolRate,
      snapshot: extras.snapshotRate,
      boot: extras.bootRate,
    },
    memory: {
      idlePooledMB: extras.idleRss,
      duringInvocationMB: extras.duringRss,
      idleCloneByProfileMB: extras.profileRss,
    },
    burst: {
      requests: burstRequests,
      bursts: perBurst.length,
      p50: burstP50,
      p99: burstP99,
      perBurst,
      samples: extras.bursts,
    },
    sharedFolders: {
      mountCostMs: m("f") - m("c"),
      readVirtiofsMBps: extras.reads.virtiofs,
      readInitrdMBps: extras.reads.initrd,
    },
    targets: targets.map(([name, met, value]) => ({ name, met, value })),
    table: text,
  };
  mkdirSync(join(packageRoot, "bench/results"), { recursive: true });
  writeFileSync(join(packageRoot, "bench/results/latest.json"), `${JSON.stringify(results, null, 2)}\n`);
  renderCharts(results, join(packageRoot, "docs"));
  log("wrote bench/results/latest.json, docs/performance-latency.svg and docs/performance-throughput.svg");
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${(error as Error).stack ?? error}\n`);
  // Whatever is still running (a pool's VMs) dies with this process.
  process.exit(1);
});
