import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Limiter } from "../../../src/util/limiter.ts";
import { HostSlots } from "../../../src/vm/slots.ts";

describe("Limiter", () => {
  it("never runs more than its limit at once, and runs everything", async () => {
    const limiter = new Limiter(2);
    let running = 0;
    let peak = 0;
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, index) =>
        limiter.run(async () => {
          running++;
          peak = Math.max(peak, running);
          await new Promise((resolve) => setTimeout(resolve, 5));
          running--;
          return index;
        }),
      ),
    );
    expect(results).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(peak).toBe(2);
    expect(limiter.active).toBe(0);
  });

  it("lets a waiter give up when its signal aborts", async () => {
    const limiter = new Limiter(1);
    let release: () => void = () => {};
    const holder = limiter.run(() => new Promise<void>((resolve) => (release = resolve)));
    const controller = new AbortController();
    const waiter = limiter.run(async () => "never", controller.signal);
    expect(limiter.waiting).toBe(1);
    controller.abort(new Error("stop"));
    await expect(waiter).rejects.toThrow("stop");
    expect(limiter.waiting).toBe(0);
    release();
    await holder;
    expect(await limiter.run(async () => "free again")).toBe("free again");
  });
});

describe("HostSlots", () => {
  const fresh = () => mkdtempSync(join(tmpdir(), "fnrun-slots-test-"));

  it("bounds holders across instances (as across processes), and frees on release", async () => {
    const directory = fresh();
    const a = new HostSlots(2, directory, 5);
    const b = new HostSlots(2, directory, 5);
    const first = await a.acquire();
    const second = await b.acquire();
    expect(readdirSync(directory).sort()).toEqual(["0", "1"]);
    let waited = 0;
    let third: (() => Promise<void>) | undefined;
    const pending = b.acquire(undefined, () => waited++).then((release) => (third = release));
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(third).toBeUndefined();
    expect(waited).toBe(1);
    await first();
    await pending;
    expect(third).toBeDefined();
    await second();
    await third?.();
    expect(readdirSync(directory)).toEqual([]);
    rmSync(directory, { recursive: true });
  });

  it("takes over a slot whose owner died or whose pid was reused", async () => {
    const directory = fresh();
    const dead = spawnSync("true").pid as number;
    writeFileSync(join(directory, "0"), `${dead}:12345`);
    writeFileSync(join(directory, "1"), `${process.pid}:1`); // a live pid, another start time
    const slots = new HostSlots(2, directory, 5);
    const releases = [await slots.acquire(), await slots.acquire()];
    for (const release of releases) await release();
    expect(readdirSync(directory)).toEqual([]);
    rmSync(directory, { recursive: true });
  });

  it("takes a free or stale slot in one try without waiting, and says when there is none", async () => {
    const directory = fresh();
    const dead = spawnSync("true").pid as number;
    writeFileSync(join(directory, "0"), `${dead}:12345`);
    writeFileSync(join(directory, "1"), `${dead}:12345`);
    const slots = new HostSlots(3, directory, 5);
    const releases = [slots.tryAcquire(), slots.tryAcquire(), slots.tryAcquire()];
    expect(releases.every((release) => release !== undefined)).toBe(true);
    expect(slots.tryAcquire()).toBeUndefined();
    for (const release of releases) await release?.();
    expect(readdirSync(directory)).toEqual([]);
    rmSync(directory, { recursive: true });
  });

  it("gives up waiting when the signal aborts", async () => {
    const directory = fresh();
    const slots = new HostSlots(1, directory, 5);
    const release = await slots.acquire();
    const controller = new AbortController();
    const waiting = slots.acquire(controller.signal);
    controller.abort(new Error("interrupted"));
    await expect(waiting).rejects.toThrow("interrupted");
    await release();
    rmSync(directory, { recursive: true });
  });
});
