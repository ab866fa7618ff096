// Bad user input: every CLI flag and API option given wrong types, out-of-range
// values, missing paths, directories, invalid or 50 MB JSON. Each is a typed usage
// error with its exit code, and never a stack trace of fnrun's own.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitCode, invoke, UsageError } from "../../src/index.ts";
import { expectNothingLeftBehind, qemuProcesses, runCli } from "./helpers.ts";

let root: string;
let bigEvent: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "fnrun-test-input-"));
  mkdirSync(join(root, "a-directory"));
  writeFileSync(join(root, "invalid.json"), "{ not json");
  writeFileSync(join(root, "binary.json"), Buffer.from([0xff, 0xfe, 0x00, 0x01, 0x7b]));
  writeFileSync(join(root, "empty.json"), "");
  bigEvent = join(root, "50mb.json");
  writeFileSync(bigEvent, JSON.stringify({ blob: "x".repeat(50 * 1024 * 1024) }));
  writeFileSync(join(root, "bad.env"), "this is not an env file\n=novalue\n1BAD=x\n");
  writeFileSync(join(root, "notes.txt"), "hello");
});

afterAll(async () => {
  rmSync(root, { recursive: true, force: true });
  await expectNothingLeftBehind(expect);
});

const HELLO = "functions/hello.ts";

async function expectUsageError(args: string[]): Promise<void> {
  const run = await runCli(args);
  const what = `fnrun ${args.join(" ").slice(0, 120)}`;
  expect(run.code, `${what}\n${run.stderr}`).toBe(ExitCode.usage);
  expect(run.stderr, what).toMatch(/^fnrun: /m);
  expect(run.stderr, what).not.toMatch(/\n\s+at /);
  expect(run.stdout, what).toBe("");
}

describe("the command line", () => {
  it("refuses bad values for every invoke flag, before any VM starts", async () => {
    const p = (name: string) => join(root, name);
    const cases: string[][] = [
      [],
      ["/nonexistent/function.ts"],
      [p("a-directory")],
      [p("notes.txt")],
      [""],
      ...["abc", "-1", "0", "0.01", "1e9", "NaN", "Infinity", "", "1.5x", "901"].map((v) => [
        HELLO,
        "--timeout",
        v,
      ]),
      ...["abc", "0", "-5", "63", "99999999", "64.5", "Infinity", ""].map((v) => [HELLO, "--memory", v]),
      ...["{", "nul", "'x'", '{"a":}', "\u0000"].map((v) => [HELLO, "--event", v]),
      ...[
        "/nonexistent.json",
        p("a-directory"),
        p("invalid.json"),
        p("binary.json"),
        p("empty.json"),
        bigEvent,
      ].map((v) => [HELLO, "--event-file", v]),
      [HELLO, "--event", "{}", "--event-file", p("invalid.json")],
      ...["NOEQUALS", "=x", "1BAD=x", "A B=c"].map((v) => [HELLO, "--env", v]),
      ...["/nonexistent.env", p("a-directory"), p("bad.env")].map((v) => [HELLO, "--env-file", v]),
      ...["", "a b", "../x", "x/y.z", "1abc"].map((v) => [HELLO, "--handler", v]),
      ...[
        "nope",
        "/nonexistent:/mnt/x",
        "functions:relative",
        "functions:/mnt/x:xx",
        `${HELLO}:/mnt/x`,
        "functions:/",
        "functions:/proc",
        "functions:/mnt/x:ro:extra",
      ].map((v) => [HELLO, "--mount", v]),
      [HELLO, "--start", "warp"],
      [HELLO, "--accel", "hvf"],
      [HELLO, "--net", "maybe"],
      [HELLO, "--tiemout", "3"],
      [HELLO, "--timeout", "1", "--timeout", "2"],
      [HELLO, "extra-positional"],
    ];
    for (const args of cases) await expectUsageError(["invoke", ...args]);
    expect(qemuProcesses()).toEqual([]);
  });

  it("refuses random garbage in numeric flags", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("--timeout", "--memory"),
        fc.string({ maxLength: 12 }),
        async (flag, value) => {
          const number = Number(value);
          const valid =
            value.trim() !== "" &&
            Number.isFinite(number) &&
            (flag === "--timeout"
              ? number >= 0.1 && number <= 900
              : Number.isInteger(number) && number >= 64);
          fc.pre(!valid && !value.startsWith("-"));
          await expectUsageError(["invoke", HELLO, flag, value]);
        },
      ),
      { numRuns: 60 },
    );
  });

  it("refuses bad values for the other commands", async () => {
    const cases: string[][] = [
      ["nonsense-command"],
      ["serve", "--port", "-1"],
      ["serve", "--port", "70000"],
      ["serve", "--port", "abc"],
      ["serve", "/nonexistent-dir"],
      ["serve", "--host", "0.0.0.0"],
      ["serve", "--pool", "-3"],
      ["serve", "--queue", "mysql://x"],
      ["snapshot", "--memory", "12"],
      ["history", "--limit", "-4"],
      ["replay"],
      ["init", "../escape"],
      ["init", "x", "--template", "graphql"],
      ["hook", "install", "no-such-hook", HELLO],
      ["build", "/nonexistent.ts"],
      ["dev", "/nonexistent.ts"],
      ["dev", "functions"],
      ["dev", HELLO, "--event", "{"],
      ["queue", "frobnicate"],
    ];
    for (const args of cases) await expectUsageError(args);
  });
});

describe("the library API", () => {
  const invalid: Record<string, fc.Arbitrary<unknown>> = {
    timeout: fc.oneof(
      fc.string(),
      fc.constantFrom(-1, 0, 0.01, 901, Number.NaN, Number.POSITIVE_INFINITY, null, 10n),
      fc.object(),
    ),
    memory: fc.oneof(
      fc.string(),
      fc.constantFrom(0, 63, 64.5, 1e9, Number.NaN, null, true, 256n),
      fc.array(fc.nat()),
    ),
    maxResultBytes: fc.oneof(fc.string(), fc.constantFrom(0, -1, 1.5, 1e12, null)),
    maxLogBytes: fc.oneof(fc.string(), fc.constantFrom(0, 1023, 1e12, null)),
    handler: fc.oneof(fc.integer(), fc.constantFrom("", "a b", "../x", "1x", null, Symbol("h")), fc.object()),
    env: fc.oneof(
      fc.string(),
      fc.integer(),
      fc.constantFrom(null, [], { "1BAD": "x" }, { "A B": "x" }, { OK: { nested: true } }, { OK: null }),
    ),
    net: fc.oneof(fc.string(), fc.integer(), fc.constantFrom(null, "true")),
    mounts: fc.oneof(
      fc.string(),
      fc.constantFrom(null, {}, ["nope"], ["/nonexistent:/mnt/x"], ["functions:relative"], [42]),
    ),
    accel: fc.oneof(fc.integer(), fc.constantFrom("hvf", "", null, "KVM")),
    start: fc.oneof(fc.integer(), fc.constantFrom("warp", "", null)),
    requestId: fc.oneof(fc.integer(), fc.constantFrom("", "a b", "x".repeat(200), "../../etc", null, {})),
    signal: fc.oneof(fc.string(), fc.constantFrom({ aborted: false }, 1)),
    onLog: fc.oneof(fc.string(), fc.integer(), fc.constantFrom({})),
    event: fc.constantFrom(
      10n,
      { big: 1n },
      () => 1,
      Symbol("e"),
      (() => {
        const circular: Record<string, unknown> = {};
        circular.self = circular;
        return circular;
      })(),
    ),
    unknownOption: fc.anything(),
  };

  it("rejects each bad option with a UsageError, never something else", async () => {
    for (const [name, arbitrary] of Object.entries(invalid)) {
      await fc.assert(
        fc.asyncProperty(arbitrary, async (value) => {
          const error = await invoke(HELLO, { [name]: value } as never).then(
            () => undefined,
            (caught: unknown) => caught,
          );
          expect(error, `${name}: ${String(typeof value)}`).toBeInstanceOf(UsageError);
          expect((error as UsageError).message).not.toMatch(/\n\s+at /);
        }),
        { numRuns: 25 },
      );
    }
    for (const options of [null, "x", 42, []]) {
      await expect(invoke(HELLO, options as never)).rejects.toBeInstanceOf(UsageError);
    }
    await expect(invoke(42 as never)).rejects.toBeInstanceOf(UsageError);
    await expect(invoke(join(root, "a-directory"))).rejects.toBeInstanceOf(UsageError);
    const big = { blob: "x".repeat(7 * 1024 * 1024) };
    await expect(invoke(HELLO, { event: big })).rejects.toThrow(/the limit is 6 MB/);
    expect(qemuProcesses()).toEqual([]);
  });
});
