import { mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { withLock } from "../../../src/util/lock.ts";

describe("withLock", () => {
  let directory: string;
  let path: string;
  beforeEach(() => {
    directory = mkdtempSync(join(tmpdir(), "fnrun-test-lock-"));
    path = join(directory, "work.lock");
  });
  afterEach(() => rmSync(directory, { recursive: true, force: true }));

  it("takes over an empty lock left by an owner killed before it wrote its PID", async () => {
    writeFileSync(path, "");
    const old = new Date(Date.now() - 60_000);
    utimesSync(path, old, old);
    expect(await withLock(path, async () => "done", 10)).toBe("done");
  }, 5_000);

  it("waits on an empty lock being written right now", async () => {
    writeFileSync(path, "");
    setTimeout(() => rmSync(path), 200);
    const started = Date.now();
    expect(await withLock(path, async () => "done", 10)).toBe("done");
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
  });
});
