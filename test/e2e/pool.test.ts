// The warm pool: VMs started ahead, one invocation each, replaced in the background.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { bundleFunction } from "../../src/build/bundle.ts";
import { resolveHost } from "../../src/host/setup.ts";
import { createPool, type Pool } from "../../src/index.ts";
import { prepareInvocation } from "../../src/invoke/prepare.ts";
import { functionToSave } from "../../src/start/run.ts";
import {
  backgroundSnapshots,
  discardSnapshot,
  findFunctionSnapshot,
  functionSnapshotKey,
} from "../../src/start/snapshot.ts";
import { expectNothingLeftBehind, folderDaemons, qemuProcesses } from "./helpers.ts";

afterAll(() => expectNothingLeftBehind(expect));

async function waitForIdle(pool: Pool, count: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pool.stats().idleVms < count) {
    if (Date.now() > deadline)
      throw new Error(`pool never reached ${count} idle VMs: ${JSON.stringify(pool.stats())}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe("warm pool", () => {
  it("serves each invocation from its own VM, replaces it, and leaves nothing behind when closed", async () => {
    const host = await resolveHost();
    const pool = await createPool({ size: 2, host, functions: ["test/fixtures/load-id.ts"] });
    try {
      await waitForIdle(pool, 2);
      const results = [];
      for (let n = 0; n < 4; n++) {
        const run = await pool.invoke("test/fixtures/load-id.ts", { event: { n } });
        expect(run.startMode).toBe("pool");
        results.push(run.result as { loadId: string; loadedAt: number; n: number; pid: number });
        await waitForIdle(pool, 2); // the used VM was replaced
      }
      expect(results.map((result) => result.n)).toEqual([0, 1, 2, 3]);
      // A VM per invocation: four different init phases (and fresh randomness in each clone).
      expect(new Set(results.map((result) => result.loadId)).size).toBe(4);
      expect(results.every((result) => result.pid === 1)).toBe(true);
      expect(pool.stats()).toMatchObject({ served: 4, bypassed: 0, idleVms: 2, idleMemoryMB: 512 });
      expect(pool.stats().idlePids).toHaveLength(2);
      // The function's init ran ahead of the event: its timeline starts at the invocation.
      const traced = await pool.invoke("test/fixtures/load-id.ts", { event: { n: 9 } });
      expect(traced.timeline[0]?.name).toBe("invocationSent");
      expect(traced.timeline.map((entry) => entry.name)).not.toContain("qemuSpawn");
    } finally {
      await pool.close();
    }
    expect(pool.stats().idleVms).toBe(0);
    expect(qemuProcesses()).toEqual([]);
  });

  it("keeps clones with a network ready for a function whose config asks for one, each with its own card", async () => {
    const host = await resolveHost();
    const pool = await createPool({
      size: 2,
      host,
      start: "snapshot",
      functions: ["test/fixtures/wants-network.ts"],
    });
    try {
      await waitForIdle(pool, 2);
      const runs = [];
      for (let n = 0; n < 2; n++) runs.push(await pool.invoke("test/fixtures/wants-network.ts"));
      expect(runs.map((run) => run.startMode)).toEqual(["pool", "pool"]);
      for (const run of runs) expect(run.result).toEqual({ interfaces: ["eth0", "lo"] });
      // An invocation asking for no network, against its config, is not served a card.
      const without = await pool.invoke("test/fixtures/wants-network.ts", { net: false });
      expect(without.startMode).not.toBe("pool");
      expect(without.result).toEqual({ interfaces: ["lo"] });
      expect(pool.stats().served).toBe(2);
    } finally {
      await pool.close();
    }
    expect(qemuProcesses()).toEqual([]);
  });

  it("runs what it cannot serve through an ordinary invocation, and drops VMs holding old code", async () => {
    const host = await resolveHost();
    const directory = mkdtempSync(join(tmpdir(), "fnrun-test-pool-"));
    const file = join(directory, "version.ts");
    writeFileSync(file, 'export const handler = async () => "version 1";\n');
    const pool = await createPool({ size: 1, host, functions: [file] });
    try {
      await waitForIdle(pool, 1);
      const withEnv = await pool.invoke(file, { env: { EXTRA: "1" } });
      expect(withEnv.startMode).not.toBe("pool");
      expect(pool.stats().bypassed).toBe(1);
      const pooled = await pool.invoke(file);
      expect(pooled).toMatchObject({ startMode: "pool", result: "version 1" });

      await waitForIdle(pool, 1);
      writeFileSync(file, 'export const handler = async () => "version 2";\n');
      // The idle VM holds version 1: it is dropped, and this runs as a one-off.
      expect((await pool.invoke(file)).result).toBe("version 2");
      await waitForIdle(pool, 1);
      expect(pool.stats().functions).toEqual([{ file, ready: 1, starting: 0 }]);
      expect(await pool.invoke(file)).toMatchObject({ startMode: "pool", result: "version 2" });
    } finally {
      await pool.close();
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it("refills from the function's own snapshot, made as soon as the pool keeps it warm: clones with its folder mounted", async () => {
    const file = "test/fixtures/mounts/configured-once.ts";
    const host = await resolveHost();
    // Its function snapshot, made afresh by this pool (the suite turns automatic ones off).
    const fn = functionToSave(prepareInvocation(await bundleFunction(file), {}));
    const existing = await findFunctionSnapshot(host, fn.shape, await functionSnapshotKey(host, fn));
    if (existing) await discardSnapshot(existing);
    process.env.FNRUN_FUNCTION_SNAPSHOTS = "on";
    const pool = await createPool({ size: 1, host, start: "snapshot", functions: [file] });
    try {
      // Its first VM loads the function; by then its function snapshot is being made.
      await waitForIdle(pool, 1);
      await backgroundSnapshots();
      expect(await findFunctionSnapshot(host, fn.shape, await functionSnapshotKey(host, fn))).toBeDefined();
      type Result = { importedAtNs: string; value: string; uuid: string };
      const runs: Result[] = [];
      for (let n = 0; n < 3; n++) {
        await waitForIdle(pool, 1);
        const run = await pool.invoke(file);
        expect(run.startMode).toBe("pool");
        runs.push(run.result as Result);
      }
      for (const run of runs) expect(run.value).toBe("from the config's folder");
      // The first VM loaded the function itself; its replacements are clones of the
      // snapshot, imported once before it was saved, each with its own randomness.
      const [first, second, third] = runs as [Result, Result, Result];
      expect(second.importedAtNs).not.toBe(first.importedAtNs);
      expect(third.importedAtNs).toBe(second.importedAtNs);
      expect(third.uuid).not.toBe(second.uuid);
    } finally {
      process.env.FNRUN_FUNCTION_SNAPSHOTS = "off"; // as vitest.config.ts sets it
      await pool.close();
    }
    expect(qemuProcesses()).toEqual([]);
    expect(folderDaemons()).toEqual([]);
  });

  it("reports a function whose init phase failed when its event comes", async () => {
    const host = await resolveHost();
    const pool = await createPool({ size: 1, host, functions: ["test/fixtures/init-fails.ts"] });
    try {
      await waitForIdle(pool, 1);
      const error = await pool.invoke("test/fixtures/init-fails.ts").catch((caught: unknown) => caught);
      expect(error).toMatchObject({
        name: "FunctionError",
        errorType: "Runtime.ImportModuleError",
        errorMessage: "Error: cannot start: missing configuration",
      });
    } finally {
      await pool.close();
    }
  });
});
