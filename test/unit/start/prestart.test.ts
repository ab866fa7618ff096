import { readdirSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { NOTES_KEPT, prestartable, sweepNotes } from "../../../src/start/prestart.ts";
import { NOTE_FORMAT } from "../../../src/start/prestart-spawn.ts";
import { temporaryDirectory } from "../temporary-directory.ts";

const lines = (...commandLines: string[]) => commandLines.map((line) => prestartable(line.split(" ")));
const hello = "functions/hello.ts";
const plain = { network: false, mounts: [], function: hello };

describe("prestartable", () => {
  it("prestarts a clone for invocations of the usual snapshot", () => {
    expect(
      lines(
        "invoke functions/hello.ts",
        "invoke functions/hello.ts --event {} --json --trace --quiet",
        "invoke functions/hello.ts -e - --timeout 5 --env A=1 --handler greet",
        "invoke functions/hello.ts --start snapshot",
        "invoke functions/hello.ts --start=auto",
        "invoke functions/hello.ts --no-net",
        "invoke build/hello.tgz",
        "invoke --quiet functions/hello.ts",
      ),
    ).toEqual([
      ...Array(6).fill(plain),
      { ...plain, function: "build/hello.tgz" },
      { network: false, mounts: [] },
    ]);
  });

  it("prestarts a clone with a network card for --net, and with the folders --mount names", () => {
    expect(
      lines(
        "invoke functions/hello.ts --net",
        "invoke functions/hello.ts --net --event {} --start snapshot",
        "invoke functions/hello.ts --net=true",
        "invoke functions/hello.ts --mount data:/mnt/data",
        "invoke functions/hello.ts --mount=data:/mnt/data --net --mount out:/mnt/out:rw",
        // An array option takes every word up to the next flag.
        "invoke functions/hello.ts --mount a:/mnt/a b:/mnt/b --quiet",
      ),
    ).toEqual([
      { network: true, mounts: [], function: hello },
      { network: true, mounts: [], function: hello },
      undefined,
      { network: false, mounts: ["data:/mnt/data"], function: hello },
      { network: true, mounts: ["data:/mnt/data", "out:/mnt/out:rw"], function: hello },
      { network: false, mounts: ["a:/mnt/a", "b:/mnt/b"], function: hello },
    ]);
  });

  it("does not for other commands, or for flags that need another VM", () => {
    expect(
      lines(
        "serve",
        "dev functions/hello.ts",
        "replay 3f2a",
        "invoke functions/hello.ts --start boot",
        "invoke functions/hello.ts --start=boot",
        "invoke functions/hello.ts --net --start boot",
        "invoke functions/hello.ts --mount data:/mnt/data --start boot",
        "invoke functions/hello.ts --accel kvm",
        "invoke functions/hello.ts --max-result-size 10",
        "invoke functions/hello.ts --max-log-size=4096",
        "invoke functions/hello.ts --help",
        "invoke -h",
        "invoke --version",
      ),
    ).toEqual(Array(13).fill(undefined));
  });

  it("prestarts a clone of another memory size's snapshot for --memory, and none for a size the CLI refuses", () => {
    expect(
      lines(
        "invoke functions/hello.ts --memory 512",
        "invoke functions/hello.ts --memory=1024 --net",
        "invoke functions/hello.ts --memory lots",
        "invoke functions/hello.ts --memory=0",
        "invoke functions/hello.ts --memory 1.5",
      ),
    ).toEqual([
      { ...plain, memoryMB: 512 },
      { ...plain, network: true, memoryMB: 1024 },
      undefined,
      undefined,
      undefined,
    ]);
  });

  it("reads no further than --", () => {
    expect(lines("invoke functions/hello.ts -- --net")).toEqual([plain]);
  });
});

describe("prestart-spawn.ts", () => {
  const src = resolve(import.meta.dirname, "../../../src");

  /** The modules `file` loads, transitively: imports that are not type-only. */
  function loads(file: string, seen = new Set<string>()): Set<string> {
    const text = readFileSync(file, "utf8");
    for (const match of text.matchAll(/(?:^|\n)import\s+(?!type\s)[^;]*?from\s+"(\.[^"]+)"/g)) {
      const target = resolve(dirname(file), match[1] as string);
      if (seen.has(target)) continue;
      seen.add(target);
      loads(target, seen);
    }
    return seen;
  }

  it("loads only what spawning a noted clone needs: QEMU is spawned after it has loaded", () => {
    const loaded = [...loads(resolve(src, "start/prestart-spawn.ts"))]
      .map((file) => relative(src, file))
      .sort();
    expect(loaded).toEqual([
      "build/config.ts",
      "build/handler.ts",
      "util/cache.ts",
      "util/errors.ts",
      "util/fs.ts",
      "util/limiter.ts",
      "util/process.ts",
      "util/validate.ts",
      "util/which.ts",
      "vm/run-directory.ts",
      "vm/slots.ts",
      "vm/spawn-qemu.ts",
    ]);
  });
});

describe("sweepNotes", () => {
  it("removes notes of old formats and of pruned snapshots, and keeps the last written", async () => {
    const directory = temporaryDirectory("notes");
    const state = join(directory, "state");
    writeFileSync(state, "");
    const note = (name: string, format: number, statePath: string, ageS: number) => {
      const path = join(directory, `prestart-${name}.json`);
      writeFileSync(path, JSON.stringify({ format, snapshot: { state: statePath } }));
      const at = new Date(Date.now() - ageS * 1000);
      utimesSync(path, at, at);
      return path;
    };
    note("old-format", NOTE_FORMAT - 1, state, 1);
    note("pruned", NOTE_FORMAT, join(directory, "gone"), 1);
    writeFileSync(join(directory, "prestart-broken.json"), "{");
    for (let index = 0; index < NOTES_KEPT + 5; index++)
      note(`live-${index}`, NOTE_FORMAT, state, 10 + index);
    // Written just now, yet older on disk than the rest (a clock step): kept anyway.
    const written = note("written", NOTE_FORMAT, state, 1000);
    writeFileSync(join(directory, "other.json"), "{}");
    await sweepNotes(directory, written);
    const left = readdirSync(directory).sort();
    const live = Array.from({ length: NOTES_KEPT - 1 }, (_, index) => `prestart-live-${index}.json`);
    expect(left).toEqual(["other.json", ...live, "prestart-written.json", "state"].sort());
  });
});
