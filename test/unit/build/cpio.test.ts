import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { encodeCpio } from "../../../src/build/cpio.ts";
import { temporaryDirectory } from "../temporary-directory.ts";

describe("encodeCpio", () => {
  it("writes the newc header of a file exactly", () => {
    const archive = encodeCpio([{ type: "file", path: "init", data: Buffer.from("hi"), mode: 0o755 }]);
    const header = archive.subarray(0, 110).toString("latin1");
    expect(header).toBe(
      "070701" +
        "00000001" + // inode
        "000081ed" + // regular file, 0755
        "00000000" + // uid
        "00000000" + // gid
        "00000001" + // nlink
        "00000000" + // mtime
        "00000002" + // size
        "00000000" +
        "00000000" +
        "00000000" +
        "00000000" +
        "00000005" + // "init\0"
        "00000000",
    );
    // name, padded so that header + name is a multiple of 4, then data padded to 4
    expect(archive.subarray(110, 115).toString("latin1")).toBe("init\0");
    expect(archive.subarray(115, 116)).toEqual(Buffer.from([0]));
    expect(archive.subarray(116, 118).toString("latin1")).toBe("hi");
    expect(archive.subarray(118, 120)).toEqual(Buffer.from([0, 0]));
    expect(archive.length % 4).toBe(0);
    expect(archive.subarray(-124).toString("latin1")).toContain("TRAILER!!!");
  });

  it("is listed and extracted by GNU cpio as written", () => {
    const archive = encodeCpio([
      { type: "directory", path: "fnrun" },
      { type: "file", path: "fnrun/guest.mjs", data: Buffer.from("console.log(1)\n") },
      { type: "file", path: "empty", data: new Uint8Array(0) },
      { type: "symlink", path: "lib64", target: "runtime/lib64" },
      { type: "characterDevice", path: "dev/console", major: 5, minor: 1 },
      { type: "file", path: "odd-length-name", data: Buffer.from("abc") },
    ]);
    const directory = temporaryDirectory("cpio");
    const file = join(directory, "test.cpio");
    writeFileSync(file, archive);
    const names = execFileSync("cpio", ["-it", "--quiet", "-F", file], { encoding: "utf8" });
    expect(names.trim().split("\n")).toEqual([
      "fnrun",
      "fnrun/guest.mjs",
      "empty",
      "lib64",
      "dev/console",
      "odd-length-name",
    ]);
    const lines = execFileSync("cpio", ["-itv", "--quiet", "-F", file], { encoding: "utf8" })
      .trim()
      .split("\n");
    expect(lines[3]).toMatch(/^lrwxrwxrwx .* lib64 -> runtime\/lib64$/);
    expect(lines[4]).toMatch(/^crw------- .* 5,\s+1 .* dev\/console$/);
    execFileSync(
      "cpio",
      ["-idm", "--quiet", "--no-absolute-filenames", "-F", file, "fnrun/guest.mjs", "odd-length-name"],
      {
        cwd: directory,
      },
    );
    expect(readFileSync(join(directory, "fnrun/guest.mjs"), "utf8")).toBe("console.log(1)\n");
    expect(readFileSync(join(directory, "odd-length-name"), "utf8")).toBe("abc");
  });

  it("rejects paths that would escape the archive root", () => {
    expect(() => encodeCpio([{ type: "directory", path: "../etc" }])).toThrow(/invalid cpio path/);
    expect(() => encodeCpio([{ type: "directory", path: "a//b" }])).toThrow(/invalid cpio path/);
    expect(() => encodeCpio([{ type: "directory", path: "/" }])).toThrow(/invalid cpio path/);
  });

  it("numbers inodes from the given start, so appended archives do not clash", () => {
    const archive = encodeCpio([{ type: "directory", path: "a" }], 1_000_000);
    expect(archive.subarray(6, 14).toString("latin1")).toBe((1_000_000).toString(16).padStart(8, "0"));
  });
});
