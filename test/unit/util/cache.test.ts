import { createHash } from "node:crypto";
import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ensureEntry, findEntry, hashContent } from "../../../src/util/cache.ts";

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "fnrun-cache-test-"));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function builder(content: string) {
  let builds = 0;
  const build = async (directory: string) => {
    builds += 1;
    writeFileSync(join(directory, "data"), content);
    return ["data"];
  };
  return { build, builds: () => builds };
}

describe("cache entries", () => {
  it("builds once, then finds the entry", async () => {
    const { build, builds } = builder("one");
    const first = await ensureEntry("thing", "k1", build, {}, root);
    const second = await ensureEntry("thing", "k1", build, {}, root);
    expect(second.directory).toBe(first.directory);
    expect(builds()).toBe(1);
  });

  it("detects a corrupted entry, removes it and builds it again", async () => {
    const { build, builds } = builder("good content");
    const { directory } = await ensureEntry("thing", "k1", build, {}, root);
    writeFileSync(join(directory, "data"), "evil content"); // same size, new mtime
    expect(await findEntry("thing", "k1", {}, root)).toBeUndefined();
    await ensureEntry("thing", "k1", build, {}, root);
    expect(builds()).toBe(2);
    writeFileSync(join(directory, "data"), "short"); // another size
    expect(await findEntry("thing", "k1", {}, root)).toBeUndefined();
  });

  it("never uses a half-built entry", async () => {
    await expect(
      ensureEntry(
        "thing",
        "k1",
        async (directory) => {
          writeFileSync(join(directory, "data"), "half");
          throw new Error("killed while building");
        },
        {},
        root,
      ),
    ).rejects.toThrow("killed");
    expect(await findEntry("thing", "k1", {}, root)).toBeUndefined();
    expect(readdirSync(join(root, "thing"))).toEqual([]);
  });

  it("agrees with itself when parallel builders race", async () => {
    const { build } = builder("same");
    const entries = await Promise.all(
      Array.from({ length: 8 }, () => ensureEntry("thing", "k1", build, {}, root)),
    );
    expect(new Set(entries.map((entry) => entry.directory)).size).toBe(1);
    expect(readdirSync(join(root, "thing"))).toEqual(["k1"]);
  });

  it("keeps the most recently used entries of a kind", async () => {
    const { build } = builder("x");
    const hour = 3_600_000;
    for (const [index, key] of ["a", "b", "c"].entries()) {
      const { directory } = await ensureEntry("thing", key, build, {}, root);
      const when = new Date(Date.now() - (10 - index) * hour);
      utimesSync(directory, when, when);
    }
    // "a" is the oldest, but used now: it stays, and "b" goes when "d" arrives.
    expect(await findEntry("thing", "a", {}, root)).toBeDefined();
    await ensureEntry("thing", "d", build, {}, root);
    expect(readdirSync(join(root, "thing")).sort()).toEqual(["a", "c", "d"]);
  });

  // A serve burst in make bench found hello's function snapshot gone: used for
  // minutes, but its use was recorded only once an hour, so it was the oldest
  // when the snapshot of a function served alongside was made.
  it("records a use a minute after the last, so pruning goes by use, not by age", async () => {
    const { build } = builder("x");
    const minutes = (n: number) => new Date(Date.now() - n * 60_000);
    const { directory } = await ensureEntry("thing", "used", build, {}, root);
    utimesSync(directory, minutes(5), minutes(5));
    await ensureEntry("thing", "newer", build, {}, root);
    utimesSync(join(root, "thing", "newer"), minutes(2), minutes(2));
    expect(await findEntry("thing", "used", {}, root)).toBeDefined();
    expect(Date.now() - statSync(directory).mtimeMs).toBeLessThan(10_000);
    await ensureEntry("thing", "third", build, {}, root);
    await ensureEntry("thing", "fourth", build, {}, root);
    expect(readdirSync(join(root, "thing")).sort()).toEqual(["fourth", "third", "used"]);
    // Used again within the minute: nothing written.
    utimesSync(directory, minutes(0.5), minutes(0.5));
    const before = statSync(directory).mtimeMs;
    await findEntry("thing", "used", {}, root);
    expect(statSync(directory).mtimeMs).toBe(before);
  });

  // Four helpers (src/host/tools.ts) share the kind: with three kept, compiling
  // the fourth removed one a prestart's note still named (the proxy's spawn
  // failed with ENOENT, and the invocation with it).
  it("keeps every host tool fnrun compiles, each under its own key", async () => {
    const { build } = builder("x");
    const tools = ["wrapper", "proxy", "tsc-khz", "ram-copy", "next-one"];
    for (const key of tools) await ensureEntry("host-tools", key, build, {}, root);
    expect(readdirSync(join(root, "host-tools")).sort()).toEqual([...tools].sort());
  });
});

describe("hashContent", () => {
  const PAGE = 4096;
  /** A file of `size` bytes, all hole but for `bytes` written at `offset`. */
  function sparseFile(name: string, size: number, writes: Array<[number, Buffer]>): string {
    const path = join(root, name);
    writeFileSync(path, "");
    truncateSync(path, size);
    const fd = openSync(path, "r+");
    for (const [offset, bytes] of writes) writeSync(fd, bytes, 0, bytes.length, offset);
    closeSync(fd);
    return path;
  }

  it("is the content's: a hole and written zeros hash alike, any other byte does not", async () => {
    const data = Buffer.from("guest RAM");
    const size = 64 * PAGE + 100; // a last page that is not whole
    const sparse = await hashContent(sparseFile("sparse", size, [[5 * PAGE, data]]));
    const written = Buffer.alloc(size);
    data.copy(written, 5 * PAGE);
    writeFileSync(join(root, "dense"), written);
    expect(await hashContent(join(root, "dense"))).toBe(sparse);

    const other = Buffer.from("guest RAN");
    expect(await hashContent(sparseFile("changed", size, [[5 * PAGE, other]]))).not.toBe(sparse);
    expect(await hashContent(sparseFile("moved", size, [[6 * PAGE, data]]))).not.toBe(sparse);
    expect(await hashContent(sparseFile("longer", size + 1, [[5 * PAGE, data]]))).not.toBe(sparse);
    const tail = await hashContent(sparseFile("tail", size, [[5 * PAGE, data]]));
    expect(
      await hashContent(
        sparseFile("tail2", size, [
          [5 * PAGE, data],
          [size - 1, Buffer.from([1])],
        ]),
      ),
    ).not.toBe(tail);
  });

  it("still verifies an entry recorded with a plain SHA-256 of its files (by an older fnrun)", async () => {
    const { build, builds } = builder("made by an older fnrun");
    const { directory } = await ensureEntry("thing", "k1", build, {}, root);
    const manifestPath = join(directory, "manifest.json");
    const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
    const plain = createHash("sha256").update("made by an older fnrun").digest("hex");
    manifest.files.data = { ...manifest.files.data, sha256: plain, scheme: undefined, mtimeMs: 1 };
    writeFileSync(manifestPath, JSON.stringify(manifest));
    expect(await findEntry("thing", "k1", {}, root)).toBeDefined(); // touched: hashed again, the old way
    writeFileSync(join(directory, "data"), "made by an older fnruN");
    expect(await findEntry("thing", "k1", {}, root)).toBeUndefined();
    expect(builds()).toBe(1);
  });
});
