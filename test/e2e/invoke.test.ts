// The vertical slice, end to end: real microvms under QEMU (TCG here).
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { bundleFunction } from "../../src/build/bundle.ts";
import { resolveHost } from "../../src/host/setup.ts";
import { ExitCode, invoke, TimeoutError } from "../../src/index.ts";
import { prepareInvocation } from "../../src/invoke/prepare.ts";
import { bootVm, mountRequests } from "../../src/vm/launch.ts";
import { decoderLimitsFor } from "../../src/vm/session.ts";
import { expectNothingLeftBehind, runCli } from "./helpers.ts";

afterAll(() => expectNothingLeftBehind(expect));

describe.concurrent("fnrun invoke", () => {
  it("runs hello with an event and prints only the result on stdout", async () => {
    const run = await runCli(["invoke", "functions/hello.ts", "--event", '{"name":"Ada"}']);
    expect(run.code).toBe(ExitCode.ok);
    const result = JSON.parse(run.stdout);
    expect(result.message).toBe("Hello, Ada!");
    // It really ran in the guest: its own kernel, the runtime as PID 1.
    expect(result.ranIn).toMatch(/^a microvm: Linux 6\.1\.\d+, pid 1, Node v/);
    expect(run.stdout.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).toContain("saying hello to Ada");
  });

  it("ends a log that does not end its line before what fnrun writes next", async () => {
    const run = await runCli(["invoke", "test/fixtures/unended-log.ts", "--start", "snapshot"]);
    expect(run.code).toBe(ExitCode.ok);
    expect(run.stdout).toBe('"done"\n');
    expect(run.stderr).toMatch(/no newline and none here\n/);
    expect(run.stderr.endsWith("\n")).toBe(true);
  });

  it("sets the guest's clock from the host's: a boot's to a fraction of a second (the RTC has whole ones), a clone's too, not ahead", async () => {
    const starts = ["boot", "boot", "snapshot", "snapshot"] as const;
    const runs = await Promise.all(
      starts.map(async (start) => {
        const run = await invoke("test/fixtures/clock.ts", { start });
        const after = Date.now();
        const at = (name: string) => run.timeline.find((entry) => entry.name === name)?.atMs ?? Number.NaN;
        // The host's time when the handler started was at most this: QEMU had
        // exited before `after`, and guest points are mapped onto the host's
        // clock no earlier than they happened.
        const latest = after - (at("vmGone") - at("handlerStart"));
        return { start, behind: latest - (run.result as { now: number }).now };
      }),
    );
    for (const { start, behind } of runs) {
      // Not ahead, but for the guest's clock running a little fast under TCG.
      expect(behind, start).toBeGreaterThanOrEqual(-50);
      // A boot's was up to ~1 s behind (the RTC's seconds). A clone's lags by
      // QEMU's start and the state load, ~0.05 s here but more on a busy host.
      expect(behind, start).toBeLessThan(start === "boot" ? 400 : 1500);
    }
  });

  it("keeps a VM booted on a busy host on the TSC clock, not in jiffies' 4 ms steps", async () => {
    // Three busy loops beside the boot: before, its kernel failed to calibrate
    // the TSC against the emulated PIT and fell back to jiffies, every time.
    const busy = Array.from({ length: 3 }, () =>
      spawn("sh", ["-c", "while :; do :; done"], { stdio: "ignore" }),
    );
    try {
      const { result } = await invoke("test/fixtures/clock-resolution.ts", { start: "boot" });
      const { distinct, smallestStepNs, clocksource } = result as {
        distinct: number;
        smallestStepNs: number;
        clocksource: string;
      };
      expect(clocksource).toMatch(/^tsc/);
      expect(distinct).toBeGreaterThan(1);
      expect(smallestStepNs).toBeLessThan(1_000_000); // a jiffy here is 4 ms
    } finally {
      for (const child of busy) child.kill("SIGKILL");
    }
  });

  it("reads the event from standard input", async () => {
    const run = await runCli(["invoke", "functions/hello.ts", "--event", "-"], { stdin: '{"name":"Stdin"}' });
    expect(run.code).toBe(ExitCode.ok);
    expect(JSON.parse(run.stdout).message).toBe("Hello, Stdin!");
  });

  it("reads the event from standard input with --event-file -, and past a UTF-8 byte order mark", async () => {
    const run = await runCli(["invoke", "functions/hello.ts", "--event-file", "-"], {
      stdin: '\uFEFF{"name":"Notepad"}',
    });
    expect(run.code, run.stderr).toBe(ExitCode.ok);
    expect(JSON.parse(run.stdout).message).toBe("Hello, Notepad!");
  });

  it("reports a thrown error with its type, message and a stack mapped to the TypeScript source", async () => {
    const run = await runCli(["invoke", "functions/fails.ts", "--event", '{"order":"A-17"}']);
    expect(run.code).toBe(ExitCode.function);
    expect(run.stdout).toBe("");
    expect(run.stderr).toContain('OrderNotFound: no order with id "A-17"');
    expect(run.stderr).toContain("at findOrder (functions/fails.ts:12:9)");
    expect(run.stderr).toContain("at handler (functions/fails.ts:16:10)");
  });

  it("gives --json one object, with the Lambda-shaped error, logs and timeline", async () => {
    const run = await runCli(["invoke", "functions/fails.ts", "--json"]);
    expect(run.code).toBe(ExitCode.function);
    const output = JSON.parse(run.stdout);
    expect(output.ok).toBe(false);
    expect(output.error.errorType).toBe("OrderNotFound");
    expect(output.error.errorMessage).toBe("no order with id undefined");
    expect(output.error.stack.some((line: string) => line.includes("functions/fails.ts:12:9"))).toBe(true);
    expect(output.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(output.timeline.map((entry: { name: string }) => entry.name)).toContain("handlerStart");
  });

  it("bundles npm dependencies: an ESM import from functions/node_modules", async () => {
    const run = await runCli(["invoke", "functions/duration.ts", "--event", '{"ms":90061000}']);
    expect(run.code).toBe(ExitCode.ok);
    expect(JSON.parse(run.stdout)).toEqual({ short: "1d", long: "1 day" });
  });

  it("bundles a CommonJS dependency that requires Node built-ins and uses __dirname", async () => {
    const { result } = await invoke("test/fixtures/cjs-dependency/uses-cjs.ts", { event: { name: "Grace" } });
    expect(result).toEqual({
      greeting: "Hi Grace",
      platform: "linux",
      digest: "01c95267dd2972bc29add243b05a8d514d510d68",
      // The bundle's own place in the guest, as Lambda gives a bundled function its file's.
      file: "/fnrun/function.mjs",
      directory: "/fnrun",
      data: "/fnrun/data.json",
    });
  });

  it("kills the VM at the timeout and reports it with its own exit code", async () => {
    const started = Date.now();
    const run = await runCli(["invoke", "test/fixtures/spin.ts", "--timeout", "2", "--json"]);
    expect(run.code).toBe(ExitCode.timeout);
    const output = JSON.parse(run.stdout);
    expect(output.error.errorType).toBe("TimeoutError");
    expect(output.error.errorMessage).toMatch(/timed out after 2\.00 seconds/);
    const handlerStart = output.timeline.find(
      (entry: { name: string }) => entry.name === "handlerStart",
    ).atMs;
    const vmGone = output.timeline.find((entry: { name: string }) => entry.name === "vmGone").atMs;
    // Killed within a second of the deadline.
    expect(vmGone - handlerStart).toBeGreaterThanOrEqual(2000);
    expect(vmGone - handlerStart).toBeLessThan(3000);
    expect(Date.now() - started).toBeLessThan(60_000);
  });

  it("reports memory exhaustion as out of memory", async () => {
    const error = await invoke("test/fixtures/memory-bomb.ts", { memory: 128 }).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: "OutOfMemoryError", exitCode: ExitCode.outOfMemory, memoryMB: 128 });
  });
});

describe("the guest after its outcome", () => {
  it("stays up until the host stops it, so nothing it sent is lost in QEMU", async () => {
    // PID 1 ending panics the kernel and QEMU exits, dropping what the channel
    // still held: with a host slow to read, the end of a large result.
    const host = await resolveHost();
    const prepared = prepareInvocation(await bundleFunction("functions/hello.ts"), {});
    const { vm } = await bootVm(host, {
      shape: { memoryMB: prepared.limits.memoryMB, network: false },
      mounts: [],
      payload: {
        kind: "invocation",
        invocation: { ...prepared.invocation, mounts: mountRequests([]) },
        bundleCode: prepared.bundle.code,
      },
      decoderLimits: decoderLimitsFor(prepared.limits.maxResultBytes),
      verbose: false,
    });
    try {
      const result = await vm.waitFor((message) => message.type === "result");
      expect(JSON.parse(result.json).message).toBe("Hello, world!");
      await new Promise((resolve) => setTimeout(resolve, 3000));
      expect(vm.hasExited).toBe(false);
    } finally {
      await vm.kill();
    }
  });
});

describe("artifacts", () => {
  it("builds a portable .tgz that runs as is, and refuses one that was tampered with", async () => {
    const directory = mkdtempSync(join(tmpdir(), "fnrun-test-artifact-"));
    try {
      const output = join(directory, "hello.tgz");
      const built = await runCli(["build", "functions/hello.ts", "-o", output]);
      expect(built.code).toBe(ExitCode.ok);
      const listing = execFileSync("tar", ["-tzf", output], { encoding: "utf8" }).trim().split("\n").sort();
      expect(listing).toEqual(["config.json", "function.mjs", "function.mjs.map", "manifest.json"]);
      const run = await runCli(["invoke", output, "--event", '{"name":"Artifact"}']);
      expect(run.code).toBe(ExitCode.ok);
      expect(JSON.parse(run.stdout).message).toBe("Hello, Artifact!");

      const unpacked = join(directory, "unpacked");
      mkdirSync(unpacked);
      execFileSync("tar", ["-xzf", output, "-C", unpacked]);
      writeFileSync(join(unpacked, "function.mjs"), "export const handler = async () => 'tampered';\n");
      execFileSync("tar", ["-czf", join(directory, "tampered.tgz"), "-C", unpacked, "."]);
      const refused = await runCli(["invoke", join(directory, "tampered.tgz")]);
      expect(refused.code).toBe(ExitCode.usage);
      expect(refused.stderr).toContain("function.mjs is missing or does not match the manifest's hash");
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});

describe("errors before any VM boots", () => {
  it("reports a syntax error with file:line:col", async () => {
    const run = await runCli(["invoke", "test/fixtures/syntax-error.ts"]);
    expect(run.code).toBe(ExitCode.bundle);
    expect(run.stderr).toContain('test/fixtures/syntax-error.ts:2:21: Expected "}" but found ";"');
  });

  it("rejects a missing file, bad JSON and unknown flags as usage errors", async () => {
    const cases: Array<[string[], RegExp]> = [
      [["invoke", "functions/nope.ts"], /function file not found: functions\/nope\.ts/],
      [["invoke", "functions/hello.ts", "--event", "{nope"], /--event is not valid JSON/],
      [["invoke", "functions/hello.ts", "--bogus"], /Unknown argument: bogus/],
      [["invoke", "functions/hello.ts", "--timeout", "-1"], /timeout must be a number from 0.1 to 900/],
      [["invoke", "functions"], /functions is a directory/],
      [["invoke", "functions/hello.ts", "--event", "-"], /standard input is empty/],
    ];
    for (const [args, message] of cases) {
      const run = await runCli(args);
      expect(run.code, args.join(" ")).toBe(ExitCode.usage);
      expect(run.stderr).toMatch(message);
    }
  });

  it("throws typed errors from the library API too", async () => {
    await expect(invoke("test/fixtures/spin.ts", { timeout: 0 })).rejects.toMatchObject({
      name: "UsageError",
    });
    await expect(invoke("test/fixtures/spin.ts", { bogus: 1 } as never)).rejects.toThrow(
      /unknown invoke option/,
    );
    expect(TimeoutError).toBeDefined();
  });
});
