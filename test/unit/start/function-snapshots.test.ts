import { mkdirSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { HostSetup } from "../../../src/host/setup.ts";
import {
  automaticFunctionSnapshots,
  nextStep,
  wantFunctionSnapshot,
} from "../../../src/start/function-snapshots.ts";
import { backgroundSnapshots, type FunctionToSave } from "../../../src/start/snapshot.ts";
import { FUNCTION_SNAPSHOTS_KEPT, wouldPushOutRecentlyUsed } from "../../../src/util/cache.ts";
import { temporaryDirectory } from "../temporary-directory.ts";

describe("automatic function snapshots", () => {
  it("remembers a version's first invocation, makes its snapshot on the second, never after a refusal", () => {
    expect(nextStep(undefined)).toBe("remember");
    expect(nextStep("seen\n")).toBe("make");
    expect(nextStep("refused: Runtime.SnapshotError: f draws randomness\n")).toBe("none");
    // A marker this fnrun does not know (a later format): start again.
    expect(nextStep("made-by-a-later-fnrun\n")).toBe("remember");
  });

  it("is on unless FNRUN_FUNCTION_SNAPSHOTS=off", () => {
    expect(automaticFunctionSnapshots({})).toBe(true);
    expect(automaticFunctionSnapshots({ FNRUN_FUNCTION_SNAPSHOTS: "on" })).toBe(true);
    expect(automaticFunctionSnapshots({ FNRUN_FUNCTION_SNAPSHOTS: "off" })).toBe(false);
  });
});

describe("a function snapshot that would push out one in use", () => {
  // A host without virtio: were a snapshot made, it would be refused at once, quietly.
  const host = { channel: "serial", kernel: { origin: "test" } } as unknown as HostSetup;
  const fn = { name: "tenth", shape: { memoryMB: 256, folders: 0 } } as unknown as FunctionToSave;

  function cacheWith(entries: number, minutesAgo: number): NodeJS.ProcessEnv {
    const root = temporaryDirectory("function-snapshots");
    const when = new Date(Date.now() - minutesAgo * 60_000);
    for (let index = 0; index < entries; index++) {
      const directory = join(root, "function-snapshot", `${index}`.padStart(64, "0"));
      mkdirSync(directory, { recursive: true });
      utimesSync(directory, when, when);
    }
    // Its version invoked once before: the next asks for its snapshot.
    mkdirSync(join(root, "function-seen"), { recursive: true });
    writeFileSync(join(root, "function-seen", "key"), "seen\n");
    return { FNRUN_CACHE_DIR: root };
  }

  async function ask(env: NodeJS.ProcessEnv, why: "invoked" | "kept"): Promise<string[]> {
    const notices: string[] = [];
    await wantFunctionSnapshot(host, "key", fn, why, {
      env,
      bootTimeoutMs: 1000,
      onNotice: (line) => notices.push(line),
    });
    return notices;
  }

  it("is not made for a pool while every snapshot the cache keeps was used in the last 10 minutes, and says so once", async () => {
    const crowded = cacheWith(FUNCTION_SNAPSHOTS_KEPT, 2);
    expect(await ask(crowded, "kept")).toEqual([
      `fnrun: no function snapshot of tenth: the cache keeps ${FUNCTION_SNAPSHOTS_KEPT}, all used in the last 10 minutes; its invocations restore the shared snapshot`,
    ]);
    // Said once only; and an invocation (not a pool) is not held back: nothing said.
    expect(await ask(crowded, "kept")).toEqual([]);
    expect(await ask(crowded, "invoked")).toEqual([]);
    expect(await backgroundSnapshots()).toBeUndefined();
  });

  it("is made when the one it would push out has not been used for a while, or there is room", async () => {
    const pushesOutRecent = (env: NodeJS.ProcessEnv) =>
      wouldPushOutRecentlyUsed(join(env.FNRUN_CACHE_DIR as string, "function-snapshot"), 600_000);
    expect(await pushesOutRecent(cacheWith(FUNCTION_SNAPSHOTS_KEPT, 1))).toBe(true);
    expect(await pushesOutRecent(cacheWith(FUNCTION_SNAPSHOTS_KEPT, 30))).toBe(false);
    expect(await pushesOutRecent(cacheWith(FUNCTION_SNAPSHOTS_KEPT - 1, 1))).toBe(false);
    expect(await ask(cacheWith(FUNCTION_SNAPSHOTS_KEPT, 30), "kept")).toEqual([]);
  });
});
