// Hostile functions, in real VMs: each ends in its documented outcome within its
// limit, fnrun's own memory stays bounded, the host stays responsive, and no QEMU
// survives.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { ExitCode } from "../../src/util/errors.ts";
import { expectNothingLeftBehind, qemuProcesses } from "./helpers.ts";

const CLI = resolve("bin/fnrun.js");
const fixture = (name: string) => `test/fixtures/hostile/${name}`;

interface Watched {
  code: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
  /** fnrun's own peak resident memory, sampled (QEMU, the guest's memory, is another process). */
  peakRssMB: number;
  /** The longest this test process's event loop was held up while it ran. */
  worstLagMs: number;
}

function residentMB(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    return Number(status.match(/^VmRSS:\s+(\d+) kB/m)?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

/** Runs `fnrun invoke ARGS` as a user would, watching it from outside. */
function watchInvoke(args: string[]): Promise<Watched> {
  return new Promise((done) => {
    const started = performance.now();
    const child = spawn(process.execPath, [CLI, "invoke", ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text));
    child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text));
    let peakRssMB = 0;
    let worstLagMs = 0;
    let expected = performance.now() + 100;
    const sampler = setInterval(() => {
      worstLagMs = Math.max(worstLagMs, performance.now() - expected);
      expected = performance.now() + 100;
      if (child.pid) peakRssMB = Math.max(peakRssMB, residentMB(child.pid));
    }, 100);
    child.on("close", (code) => {
      clearInterval(sampler);
      done({
        code,
        stdout,
        stderr,
        seconds: (performance.now() - started) / 1000,
        peakRssMB,
        worstLagMs,
      });
    });
  });
}

afterEach(() => {
  expect(qemuProcesses()).toEqual([]);
});

afterAll(() => expectNothingLeftBehind(expect));

function expectHealthyHost(run: Watched): void {
  expect(run.peakRssMB).toBeLessThan(400);
  expect(run.worstLagMs).toBeLessThan(1000);
  // fnrun's own failures never show a stack trace of fnrun itself.
  expect(run.stderr).not.toMatch(/\n\s+at .*\/src\//);
}

describe("hostile functions", () => {
  it("an infinite loop is killed at its timeout", async () => {
    const run = await watchInvoke(["test/fixtures/spin.ts", "--timeout", "3"]);
    expect(run.code).toBe(ExitCode.timeout);
    expect(run.stderr).toContain("Task timed out after 3.00 seconds");
    expect(run.seconds).toBeLessThan(3 + 15);
    expectHealthyHost(run);
  });

  it("a fork bomb is contained in its VM and ends at its timeout", async () => {
    const run = await watchInvoke([fixture("fork-bomb.ts"), "--timeout", "5"]);
    // Its processes fill the guest: it ends either at the deadline or out of memory, never otherwise.
    expect([ExitCode.timeout, ExitCode.outOfMemory]).toContain(run.code);
    expect(run.stderr).toMatch(/TimeoutError|OutOfMemoryError/);
    expect(run.seconds).toBeLessThan(5 + 15);
    expectHealthyHost(run);
  });

  it("a memory bomb is reported as out of memory", async () => {
    const run = await watchInvoke(["test/fixtures/memory-bomb.ts", "--memory", "128", "--timeout", "60"]);
    expect(run.code).toBe(ExitCode.outOfMemory);
    expect(run.stderr).toContain("OutOfMemoryError");
    expectHealthyHost(run);
  });

  it("an output flood is cut at the log limit, with a marker, and ends at its timeout", async () => {
    const run = await watchInvoke([fixture("output-flood.ts"), "--timeout", "4"]);
    expect(run.code).toBe(ExitCode.timeout);
    expect(run.stderr).toContain("flood flood");
    expect(run.stderr).toContain("[fnrun: log output truncated at the limit]");
    expect(run.stderr.length).toBeLessThan(1.1 * 1024 * 1024);
    expectHealthyHost(run);
  });

  it("closing stdout and stderr does not cut the function off from fnrun", async () => {
    const run = await watchInvoke([fixture("closes-stdout.ts")]);
    expect(run.code).toBe(ExitCode.ok);
    expect(JSON.parse(run.stdout)).toBe("still answering");
    expectHealthyHost(run);
  });

  it("cannot kill PID 1 with signals; crashing it is a function error", async () => {
    const signals = await watchInvoke([fixture("kills-pid1.ts")]);
    expect(signals.code).toBe(ExitCode.ok);
    expect(JSON.parse(signals.stdout)).toMatchObject({ alive: true, pid: 1 });

    const aborted = await watchInvoke([fixture("kills-pid1.ts"), "--handler", "abort"]);
    expect(aborted.code).toBe(ExitCode.function);
    expect(aborted.stderr).toContain("Runtime.ExitError");
    expect(aborted.stderr).toContain("signal: aborted (SIGABRT)");
    expectHealthyHost(aborted);

    // Past process.exit, PID 1 really exits and the guest kernel panics: still the function's error.
    const exited = await watchInvoke([fixture("kills-pid1.ts"), "--handler", "reallyExit"]);
    expect(exited.code).toBe(ExitCode.function);
    expect(exited.stderr).toContain("Attempted to kill init");
    expect(exited.stderr).toContain("the function's VM stopped before the handler returned");
  });

  it("reports an error whose stack or properties cannot be read, instead of crashing the runtime", async () => {
    const handler = await watchInvoke([fixture("breaks-stack-traces.ts")]);
    expect(handler.code).toBe(ExitCode.function);
    expect(handler.stderr).toContain("function error: Error: the real failure");
    expect(handler.stderr).toContain("breaks-stack-traces.ts:10:9");
    expect(handler.stderr).not.toContain("Kernel panic");
    expectHealthyHost(handler);

    const init = await watchInvoke([fixture("breaks-stack-traces-at-init.ts")]);
    expect(init.code).toBe(ExitCode.function);
    expect(init.stderr).toContain("Runtime.ImportModuleError: Error: the real failure at init");
    expect(init.stderr).not.toContain("Kernel panic");
    expectHealthyHost(init);

    const unreadable = await watchInvoke([fixture("breaks-stack-traces.ts"), "--handler", "unreadable"]);
    expect(unreadable.code).toBe(ExitCode.function);
    expect(unreadable.stderr).toContain("function error: Error: (its message could not be read)");
    expect(unreadable.stderr).not.toContain("Kernel panic");
    expectHealthyHost(unreadable);
  });

  it("has no /dev/mem, /dev/kmem or /dev/port to write to", async () => {
    const run = await watchInvoke([fixture("dev-mem.ts")]);
    expect(run.code).toBe(ExitCode.ok);
    expect(JSON.parse(run.stdout)).toEqual({
      "/dev/mem": "ENOENT",
      "/dev/kmem": "ENOENT",
      "/dev/port": "ENOENT",
    });
  });

  it("flooding the serial port after the result does not delay it", async () => {
    const run = await watchInvoke([fixture("floods-after-result.ts"), "--timeout", "30"]);
    expect(run.code).toBe(ExitCode.ok);
    expect(JSON.parse(run.stdout)).toBe("the real result");
    expect(run.seconds).toBeLessThan(15);
    expectHealthyHost(run);
  });

  it("forged result frames are shown as text, and terminal escapes never reach the terminal raw", async () => {
    const run = await watchInvoke([fixture("forges-frames.ts")]);
    expect(run.code).toBe(ExitCode.ok);
    expect(JSON.parse(run.stdout)).toBe("real");
    expect(run.stderr).toContain("FNRUN1:00000000000000000000000000000000");
    expect(run.stderr).toContain("\\x1b]0;pwned\\x07");
    expect(run.stderr).not.toContain("\u001b");
    expect(run.stderr).not.toContain("\u0007");
  });

  // It reads the runtime's framing from its own output and forges "ready" frames
  // (which reset the host's timers), handler marks, logs and a result.
  it("a function that forges the runtime's frames is still killed at --timeout, and none is taken", async () => {
    const [keepsAlive, forgesResult] = await Promise.all([
      watchInvoke([fixture("outlives-timeout.ts"), "--timeout", "2", "--json", "--start", "boot"]),
      watchInvoke([
        fixture("outlives-timeout.ts"),
        "--timeout",
        "2",
        "--json",
        "--event",
        '{"forgeResult":true}',
      ]),
    ]);
    for (const run of [keepsAlive, forgesResult]) {
      expect(run.code).toBe(ExitCode.timeout);
      expect(run.seconds).toBeLessThan(2 + 20);
      const output = JSON.parse(run.stdout);
      expect(output).toMatchObject({ ok: false, error: { errorType: "TimeoutError" } });
      expect(output.result).toBeUndefined();
      // Its log line is its own; the forged ones are not the runtime's and show as what they are.
      expect(output.logs).toContain("tell me your frames");
      expect(output.logs).not.toMatch(/^a forged log line$/m);
      expectHealthyHost(run);
    }
  });

  it("has no network to reach", async () => {
    const run = await watchInvoke(["test/fixtures/contract/network.ts"]);
    expect(run.code).toBe(ExitCode.ok);
    expect(JSON.parse(run.stdout)).toMatchObject({
      interfaces: ["lo"],
      fetched: expect.stringMatching(/^failed: /),
    });
  });
});
