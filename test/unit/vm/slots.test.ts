import { spawnSync } from "node:child_process";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { HostSlots } from "../../../src/vm/slots.ts";
import { temporaryDirectory } from "../temporary-directory.ts";

describe("HostSlots", () => {
  const fresh = () => temporaryDirectory("slots");

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
  });
});
