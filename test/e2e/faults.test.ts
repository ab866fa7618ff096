// Faults: fnrun killed (SIGINT, SIGTERM, SIGKILL) at many points of an invocation
// and of its cache builds, corrupted cache entries, and a machine missing what
// fnrun needs. Afterwards no QEMU, build or half-written cache entry survives,
// and the next run succeeds.
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveHost } from "../../src/host/setup.ts";
import { ExitCode } from "../../src/util/errors.ts";
import {
  eventually,
  expectNothingLeftBehind,
  folderDaemons,
  leftoverRamCopies,
  leftoverRunDirectories,
  qemuProcesses,
} from "./helpers.ts";

const CLI = resolve("bin/fnrun.js");
let root: string;
let kernel: string;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "fnrun-test-faults-"));
  kernel = (await resolveHost()).kernel.path;
});

afterAll(async () => {
  rmSync(root, { recursive: true, force: true });
  await expectNothingLeftBehind(expect);
});

function start(args: string[], env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, [CLI, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
}

function exited(
  child: ChildProcess,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (text: string) => (stderr += text));
  child.stdout?.resume();
  return new Promise((done) => child.on("close", (code, signal) => done({ code, signal, stderr })));
}

function run(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", env: { ...process.env, ...env } });
}

const buildProcesses = (cache: string) =>
  spawnSync("pgrep", ["-f", cache], { encoding: "utf8" })
    .stdout.split("\n")
    .filter((pid) => pid.trim());

/** Directories a builder was writing when it died, anywhere in a cache. */
function halfBuilt(cache: string): string[] {
  if (!existsSync(cache)) return [];
  return readdirSync(cache).flatMap((kind) => {
    try {
      return readdirSync(join(cache, kind)).filter((name) => name.startsWith(".building-"));
    } catch {
      return [];
    }
  });
}

describe("fnrun killed during an invocation", () => {
  const points = [150, 600, 1500, 3000];
  // SIGHUP: the terminal fnrun runs in was closed (an SSH session dropped).
  const signals = ["SIGINT", "SIGTERM", "SIGHUP", "SIGKILL"] as const;
  const expectedExit = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129, SIGKILL: null };

  it("leaves no QEMU behind, whatever the signal and the moment, and the next run succeeds", async () => {
    for (const signal of signals) {
      for (const [index, delay] of points.entries()) {
        // Every other run boots instead of restoring, to be killed during a kernel boot too.
        const mode = index % 2 === 0 ? "auto" : "boot";
        const child = start(["invoke", "test/fixtures/sleeps.ts", "--start", mode, "--timeout", "60"]);
        const ended = exited(child);
        await new Promise((wait) => setTimeout(wait, delay));
        child.kill(signal);
        const outcome = await ended;
        const where = `${signal} after ${delay} ms (${mode})`;
        if (signal === "SIGKILL") expect(outcome.signal, where).toBe("SIGKILL");
        else if (delay === points[0] && outcome.signal === signal) {
          // Early enough, the signal lands while Node itself is still starting, before
          // any of fnrun's code (its handlers are the first thing it runs) and before
          // anything that could be left behind: Node's default action ends it.
        } else expect(outcome.code, `${where}: ${outcome.stderr}`).toBe(expectedExit[signal]);
        await eventually(`no QEMU after ${where}`, () => qemuProcesses().length === 0, 5000);
        // Anything but SIGKILL: fnrun removed its VM's run directory itself.
        if (signal !== "SIGKILL") expect(leftoverRunDirectories(), where).toEqual([]);
      }
    }
    // The next run succeeds, and sweeps the run directories a SIGKILLed fnrun left.
    const next = run(["invoke", "functions/hello.ts", "--quiet"]);
    expect(next.status, next.stderr).toBe(0);
    expect(JSON.parse(next.stdout).message).toBe("Hello, world!");
    expect(leftoverRunDirectories()).toEqual([]);
  });

  // A clone's folders have a proxy before each daemon, and a RAM copy of its own.
  it.each(["boot", "snapshot"])(
    "stops virtiofsd with the VM when fnrun is SIGKILLed (--start %s)",
    async (mode) => {
      const mount = ["--mount", "test/fixtures/mounts:/mnt/data", "--start", mode];
      // The profile's snapshot first, so that the VM killed is the clone.
      if (mode === "snapshot") expect(run(["invoke", "functions/hello.ts", ...mount]).status).toBe(0);
      const child = start(["invoke", "test/fixtures/sleeps.ts", ...mount]);
      const ended = exited(child);
      await eventually("the VM", () => qemuProcesses().length > 0, 60_000);
      await new Promise((wait) => setTimeout(wait, 1000));
      child.kill("SIGKILL");
      await ended;
      await eventually("no QEMU", () => qemuProcesses().length === 0, 5000);
      await eventually("no virtiofsd or proxy", () => folderDaemons().length === 0, 5000);
      expect(leftoverRamCopies()).toEqual([]);
    },
  );
});

describe("fnrun's output closed under it (a pipe whose reader is gone: `| head`)", () => {
  /** `fnrun ARGS`, with the given stream closed by its reader after its first output. */
  async function closedUnder(stream: "stdout" | "stderr", args: string[]) {
    const child = start(args);
    let stdout = "";
    child.stdout?.setEncoding("utf8").on("data", (text: string) => (stdout += text));
    child[stream]?.once("data", () => child[stream]?.destroy());
    return { ...(await exited(child)), stdout };
  }

  it("stops when the reader of its result goes, as on SIGPIPE: exit 141, no crash, nothing left", async () => {
    for (const args of [[], ["--json"]]) {
      const cut = await closedUnder("stdout", [
        "invoke",
        "test/fixtures/contract/failures.ts",
        "--handler",
        "hugeResult",
        "--event",
        '{"bytes":1000000}',
        ...args,
      ]);
      expect(cut.code, cut.stderr).toBe(ExitCode.outputClosed);
      expect(cut.stderr).not.toMatch(/EPIPE|Unhandled|node:/);
      await eventually("no QEMU", () => qemuProcesses().length === 0, 5000);
    }
  });

  it("says so when its result cannot be written (a full disk: `> /dev/full`), with the setup exit code", async () => {
    // An invocation, and a command whose write fails only after its work is done.
    for (const args of [["invoke", "functions/hello.ts"], ["history"]]) {
      const full = openSync("/dev/full", "w");
      const outcome = spawnSync(process.execPath, [CLI, ...args], {
        stdio: ["ignore", full, "pipe"],
        encoding: "utf8",
      });
      closeSync(full);
      expect(outcome.status, outcome.stderr).toBe(ExitCode.setup);
      expect(outcome.stderr).toContain("fnrun: SetupError: cannot write to standard output (ENOSPC");
      expect(outcome.stderr).not.toMatch(/\n\s+at /);
    }
    await eventually("no QEMU", () => qemuProcesses().length === 0, 5000);
  });

  it("stops the invocation when the reader of its logs goes: its VM stopped, no result", async () => {
    // Logs without end, cut after the first line fnrun writes to its standard error.
    const cut = await closedUnder("stderr", ["invoke", "test/fixtures/hostile/output-flood.ts"]);
    expect(cut.code).toBe(ExitCode.outputClosed);
    expect(cut.stdout).toBe("");
    await eventually("no QEMU", () => qemuProcesses().length === 0, 5000);
    expect(leftoverRunDirectories()).toEqual([]);
  });
});

describe("fnrun killed while building its cache", () => {
  it("never uses a half-built runtime image or snapshot, and the next run rebuilds and succeeds", async () => {
    const cache = join(root, "cache-killed");
    const env = { FNRUN_CACHE_DIR: cache, FNRUN_KERNEL: kernel };
    for (const delay of [400, 1500, 4000, 8000]) {
      const child = start(["invoke", "functions/hello.ts"], env);
      const ended = exited(child);
      await new Promise((wait) => setTimeout(wait, delay));
      child.kill("SIGKILL");
      await ended;
      await eventually("no QEMU", () => qemuProcesses().length === 0, 5000);
    }
    const next = run(["invoke", "functions/hello.ts", "--quiet"], env);
    expect(next.status, next.stderr).toBe(0);
    expect(JSON.parse(next.stdout).message).toBe("Hello, world!");
    expect(halfBuilt(cache)).toEqual([]);
  });

  it("stops a kernel build with fnrun, SIGINT or SIGKILL, leaving nothing running", async () => {
    for (const signal of ["SIGINT", "SIGKILL"] as const) {
      const cache = join(root, `cache-kernel-${signal}`);
      const child = start(["invoke", "functions/hello.ts"], { FNRUN_CACHE_DIR: cache });
      const ended = exited(child);
      await eventually("the kernel build", () => buildProcesses(cache).length > 0, 60_000);
      await new Promise((wait) => setTimeout(wait, 2000));
      child.kill(signal);
      const outcome = await ended;
      if (signal === "SIGINT") expect(outcome.code).toBe(130);
      await eventually("the build to stop", () => buildProcesses(cache).length === 0, 10_000);
      // No kernel entry exists, only the abandoned build, which the next build sweeps.
      expect(readdirSync(join(cache, "kernel")).filter((name) => !name.startsWith("."))).toEqual(
        readdirSync(join(cache, "kernel")).filter((name) => name.endsWith(".lock")),
      );
    }
  });

  it("detects corrupted cache entries and rebuilds them", async () => {
    const cache = join(root, "cache-corrupted");
    const env = { FNRUN_CACHE_DIR: cache, FNRUN_KERNEL: kernel };
    expect(run(["invoke", "functions/hello.ts", "--quiet"], env).status).toBe(0);
    const corrupt = (kind: string, file: string) => {
      const [key] = readdirSync(join(cache, kind)).filter((name) => !name.startsWith("."));
      const path = join(cache, kind, key as string, file);
      const data = readFileSync(path);
      data.fill(0x5a, Math.floor(data.length / 2), Math.floor(data.length / 2) + 4096);
      writeFileSync(path, data);
    };
    corrupt("runtime-disk", "runtime.erofs");
    corrupt("snapshot", "ram");
    const next = run(["invoke", "functions/hello.ts"], { ...env, CI: "" });
    expect(next.status, next.stderr).toBe(0);
    expect(JSON.parse(next.stdout).message).toBe("Hello, world!");
    expect(next.stderr).toContain("building the guest runtime image");
    expect(next.stderr).toContain("making a snapshot");
  });
});

describe("a machine missing what fnrun needs", () => {
  it("says what is missing and how to fix it, each with the setup exit code", () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ FNRUN_QEMU: "/nonexistent/qemu-system-x86_64" }, /QEMU.*nonexistent/],
      [{ FNRUN_KERNEL: "/nonexistent/vmlinux" }, /FNRUN_KERNEL=\/nonexistent\/vmlinux cannot be read/],
      [{ FNRUN_KERNEL: root }, /FNRUN_KERNEL=.* cannot be read/],
    ];
    for (const [env, message] of cases) {
      const outcome = run(["invoke", "functions/hello.ts"], env);
      expect(outcome.status, JSON.stringify(env)).toBe(ExitCode.setup);
      expect(outcome.stderr).toMatch(message);
      expect(outcome.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it("reports a kernel that is not a kernel as a boot failure with the console's last lines", () => {
    const fake = join(root, "not-a-kernel");
    writeFileSync(fake, Buffer.alloc(64 * 1024, 7));
    const outcome = run(["invoke", "functions/hello.ts", "--start", "boot"], { FNRUN_KERNEL: fake });
    expect(outcome.status).toBe(ExitCode.boot);
    expect(outcome.stderr).toContain("the guest kernel is not one QEMU can boot");
    expect(outcome.stderr).not.toMatch(/\n\s+at /);
  });

  it("reports a full disk as a setup error that says so", () => {
    const script = [
      "set -e",
      `mount -t tmpfs -o size=2m tmpfs "${join(root, "full")}"`,
      `FNRUN_CACHE_DIR="${join(root, "full")}" FNRUN_KERNEL="${kernel}" "${process.execPath}" "${CLI}" invoke functions/hello.ts`,
    ].join("\n");
    execFileSync("mkdir", ["-p", join(root, "full")]);
    const outcome = spawnSync("unshare", ["--user", "--map-root-user", "--mount", "sh", "-c", script], {
      encoding: "utf8",
    });
    expect(outcome.status, outcome.stderr).toBe(ExitCode.setup);
    expect(outcome.stderr).toMatch(/no space left on the device|ENOSPC/i);
    expect(outcome.stderr).not.toMatch(/\n\s+at /);
  });
});
