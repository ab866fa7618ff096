// The development loop: fnrun dev in a real terminal (tmux), init templates,
// history and replay, doctor, completion and progress lines.
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveHost } from "../../src/host/setup.ts";
import { ExitCode } from "../../src/util/errors.ts";
import { eventually, expectNothingLeftBehind, qemuProcesses, runCli } from "./helpers.ts";

const CLI = resolve("bin/fnrun.js");
let root: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "fnrun-test-dev-"));
  process.env.FNRUN_STATE_DIR = join(root, "history");
});

afterAll(async () => {
  rmSync(root, { recursive: true, force: true });
  await expectNothingLeftBehind(expect);
});

describe("fnrun dev", () => {
  it("runs the function again on each save, on a key, and quits with q, leaving no VM", async () => {
    const directory = join(root, "dev");
    execFileSync("mkdir", ["-p", directory]);
    const file = join(directory, "greet.ts");
    writeFileSync(
      file,
      'export const handler = async (event: { name: string }) => "version 1 greets " + event.name;\n',
    );
    const session = `fnrun-dev-${process.pid}`;
    const tmux = (...args: string[]) => spawnSync("tmux", args, { encoding: "utf8" });
    const screen = () => tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", session).stdout ?? "";
    const started = tmux(
      "new-session",
      "-d",
      "-s",
      session,
      "-x",
      "160",
      "-y",
      "50",
      `${process.execPath} ${CLI} dev ${file} --event '{"name":"Ada"}'; sleep 5`,
    );
    expect(started.status).toBe(0);
    try {
      await eventually("the first result", () => screen().includes('"version 1 greets Ada"'), 90_000);
      expect(screen()).toContain("watching for changes");

      writeFileSync(
        file,
        'export const handler = async (event: { name: string }) => "version 2 greets " + event.name;\n',
      );
      await eventually(
        "the result after the edit",
        () => screen().includes('"version 2 greets Ada"'),
        90_000,
      );

      // A syntax error is shown where it is, and fixing it runs again.
      writeFileSync(file, "export const handler = async ( => 1;\n");
      await eventually("the bundle error", () => screen().includes("greet.ts:1:"), 90_000);
      writeFileSync(file, 'export const handler = async () => "version 3";\n');
      await eventually("the result after the fix", () => screen().includes('"version 3"'), 90_000);

      const runs = (screen().match(/: running /g) ?? []).length;
      tmux("send-keys", "-t", session, "r");
      await eventually("a run on the key", () => (screen().match(/: running /g) ?? []).length > runs, 90_000);
      await eventually("that run's result", () => (screen().match(/"version 3"/g) ?? []).length >= 2, 90_000);

      tmux("send-keys", "-t", session, "q");
      await eventually("dev to stop", () => screen().includes("stopping…"), 90_000);
      await eventually("its VMs to go", () => qemuProcesses().length === 0, 20_000);
    } finally {
      tmux("kill-session", "-t", session);
    }
  });
});

describe("fnrun init", () => {
  it("scaffolds a function and an example event for each template, and each runs", async () => {
    const directory = join(root, "init");
    execFileSync("mkdir", ["-p", directory]);
    const expected: Record<string, (result: unknown) => void> = {
      plain: (result) => expect(result).toMatchObject({ message: "Hello, Ada!" }),
      http: (result) =>
        expect(result).toMatchObject({
          statusCode: 200,
          body: JSON.stringify({ message: "Hello, Ada!", method: "GET" }),
        }),
      cron: (result) => expect(result).toEqual({ ranAt: "2026-01-01T00:00:00Z", missed: 0 }),
      webhook: (result) => expect(result).toEqual({ received: "issues", action: "opened" }),
    };
    for (const template of Object.keys(expected)) {
      const created = spawnSync(process.execPath, [CLI, "init", `my-${template}`, "--template", template], {
        cwd: directory,
        encoding: "utf8",
      });
      expect(created.status, created.stderr).toBe(0);
      expect(created.stdout.trim().split("\n")).toEqual([
        `functions/my-${template}.ts`,
        `events/my-${template}.json`,
      ]);
      const run = spawnSync(
        process.execPath,
        [
          CLI,
          "invoke",
          `functions/my-${template}.ts`,
          "--event-file",
          `events/my-${template}.json`,
          "--quiet",
        ],
        { cwd: directory, encoding: "utf8" },
      );
      expect(run.status, run.stderr).toBe(0);
      expected[template]?.(JSON.parse(run.stdout));
    }
    const again = spawnSync(process.execPath, [CLI, "init", "my-plain"], {
      cwd: directory,
      encoding: "utf8",
    });
    expect(again.status).toBe(2);
    expect(again.stderr).toContain("exists already");
  });
});

describe("history and replay", () => {
  it("keeps every invocation and replays one with the same event", async () => {
    const first = await runCli(["invoke", "functions/hello.ts", "--event", '{"name":"History"}', "--json"]);
    const { requestId } = JSON.parse(first.stdout);
    const listed = await runCli(["history", "--limit", "5"]);
    expect(listed.stdout).toContain(requestId.slice(0, 8));
    const shown = await runCli(["history", requestId.slice(0, 8)]);
    const record = JSON.parse(shown.stdout);
    expect(record).toMatchObject({ requestId, functionName: "hello", status: "ok", trigger: "cli" });
    expect(JSON.parse(record.event)).toEqual({ name: "History" });
    expect(record.timeline.length).toBeGreaterThan(3);

    const replayed = await runCli(["replay", requestId.slice(0, 8), "--json"]);
    expect(replayed.code).toBe(0);
    const replay = JSON.parse(replayed.stdout);
    expect(replay.result.message).toBe("Hello, History!");
    expect(replay.requestId).not.toBe(requestId);
    const latest = JSON.parse((await runCli(["history", "--json", "--limit", "1"])).stdout)[0];
    expect(latest).toMatchObject({ requestId: replay.requestId, trigger: "replay" });
    expect((await runCli(["replay", "no-such-id"])).code).toBe(2);
  });
});

describe("doctor, completion and help", () => {
  it("checks the machine and explains the accelerator in one line", async () => {
    const run = await runCli(["doctor"]);
    expect(run.code).toBe(0);
    const accelerator = run.stdout.split("\n").filter((line) => line.includes("Accelerator:"));
    expect(accelerator).toHaveLength(1);
    expect(accelerator[0]).toMatch(/(KVM|TCG)/);
    expect(run.stdout).toContain("fnrun is ready.");
    // make setup built fnrun's QEMU, patched to restore clones with shared folders.
    expect(run.stdout).toMatch(
      /✔ Folder QEMU: .+\/microvm-qemu\/bin\/qemu-system-x86_64 \(QEMU emulator version 7\./,
    );
  });

  it("sets everything up ahead of time and says where it is", async () => {
    const run = await runCli(["setup"]);
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.trim().split("\n");
    expect(lines.map((line) => line.split(":")[0])).toEqual(["kernel", "runtime", "qemu", "snapshot"]);
    expect(run.stdout).toMatch(/^snapshot: \/.+\/snapshot\/[0-9a-f]{64}$/m);
  });

  it("says what is missing, with the fix", async () => {
    const run = spawnSync(process.execPath, [CLI, "doctor"], {
      encoding: "utf8",
      env: { ...process.env, FNRUN_QEMU: "/nonexistent/qemu", FNRUN_KERNEL: "/nonexistent/vmlinux" },
    });
    expect(run.status).toBe(8);
    expect(run.stdout).toContain("✘ QEMU: FNRUN_QEMU=/nonexistent/qemu is not an executable file");
    expect(run.stdout).toMatch(/✘ Guest kernel: FNRUN_KERNEL=\/nonexistent\/vmlinux cannot be read/);
    expect(run.stdout).toContain("fix:");
    const noFolderQemu = spawnSync(process.execPath, [CLI, "doctor"], {
      encoding: "utf8",
      env: { ...process.env, FNRUN_FOLDER_QEMU: "/nonexistent/qemu" },
    });
    expect(noFolderQemu.stdout).toContain("! Folder QEMU: none: --mount invocations boot");
  });

  it("starts as a command without parsing NODE_EXTRA_CA_CERTS, and hands the variable on", async () => {
    // Node 20 parses the file as it starts (and warns when it cannot); what
    // fnrun starts (here doctor's QEMU, through a script that notes it) gets it.
    const directory = mkdtempSync(join(root, "ca-"));
    const seen = join(directory, "seen");
    const qemu = join(directory, "qemu");
    const realQemu = /✔ QEMU: (\S+) /.exec((await runCli(["doctor"])).stdout)?.[1];
    writeFileSync(qemu, `#!/bin/sh\nprintf %s "$NODE_EXTRA_CA_CERTS" > ${seen}\nexec ${realQemu} "$@"\n`, {
      mode: 0o755,
    });
    const env = { ...process.env, NODE_EXTRA_CA_CERTS: "/nonexistent/ca.pem", FNRUN_QEMU: qemu };
    const asCommand = spawnSync(CLI, ["doctor"], { encoding: "utf8", env });
    expect(asCommand.stderr).not.toContain("extra certs");
    expect(asCommand.stdout).toContain("✔ QEMU:");
    expect(readFileSync(seen, "utf8")).toBe("/nonexistent/ca.pem");
    // Through node itself, Node parses it as before.
    expect(spawnSync(process.execPath, [CLI, "--version"], { encoding: "utf8", env }).stderr).toContain(
      "Ignoring extra certs from `/nonexistent/ca.pem`",
    );
  });

  it("as a command, leaves --env-file to fnrun: Node 20 reads one it finds after the script", async () => {
    // `node script.js --env-file x` exits 9 with "node: x: not found" when x is missing
    // (nodejs/node#54232); the command's `node --` keeps it the script's.
    const missing = spawnSync(CLI, ["invoke", "functions/hello.ts", "--env-file", "/nonexistent/.env"], {
      encoding: "utf8",
    });
    expect(missing.status, missing.stderr).toBe(ExitCode.usage);
    expect(missing.stderr).toContain("fnrun: UsageError: env file not found: /nonexistent/.env");
  });

  it("prints a completion script and help with examples for every command", async () => {
    const completion = await runCli(["completion"]);
    expect(completion.stdout).toContain("fnrun completion");
    for (const command of [
      "invoke",
      "serve",
      "dev",
      "init",
      "history",
      "replay",
      "queue",
      "hook",
      "build",
      "doctor",
      "snapshot",
      "worker",
      "setup",
    ]) {
      const help = await runCli([command, "--help"]);
      expect(help.code, command).toBe(0);
      expect(help.stdout, command).toContain("Examples:");
    }
  });
});

describe("the library API", () => {
  it("builds a function into an artifact that invoke runs, and serves a directory", async () => {
    const api = await import("../../src/index.ts");
    const built = await api.build("functions/hello.ts", { output: join(root, "hello.tgz") });
    expect(built).toMatchObject({ name: "hello", artifact: join(root, "hello.tgz") });
    expect(built.code).toContain("Hello");
    const { result } = await api.invoke(join(root, "hello.tgz"), { event: { name: "Library" } });
    expect(result).toMatchObject({ message: "Hello, Library!" });
    await expect(api.build(join(root, "missing.ts"))).rejects.toBeInstanceOf(api.UsageError);

    const server = await api.serve({
      directory: "functions",
      port: 0,
      pool: 0,
      schedules: false,
      stateDirectory: join(root, "state"),
    });
    try {
      const response = await fetch(`${server.url}/invoke/hello`, {
        method: "POST",
        body: JSON.stringify({ name: "Served" }),
      });
      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({ message: "Hello, Served!" });
    } finally {
      await server.close();
    }
  });
});

describe("progress", () => {
  it("prints one plain line per slow step, and nothing in CI or with --json", async () => {
    const host = await resolveHost();
    const run = (cache: string, extra: Record<string, string>, args: string[] = []) => {
      const env: Record<string, string | undefined> = {
        ...process.env,
        FNRUN_CACHE_DIR: cache,
        FNRUN_KERNEL: host.kernel.path,
        ...extra,
      };
      if (!("CI" in extra)) delete env.CI;
      return spawnSync(process.execPath, [CLI, "invoke", "functions/hello.ts", ...args], {
        encoding: "utf8",
        env,
      });
    };
    const plain = run(join(root, "cache-plain"), {});
    expect(plain.status, plain.stderr).toBe(0);
    expect(plain.stderr).toMatch(/^fnrun: building the guest runtime image \(disk layout\)$/m);
    expect(plain.stderr).toMatch(/^fnrun: making a snapshot of a booted VM/m);
    const quiet = run(join(root, "cache-ci"), { CI: "true" });
    expect(quiet.status).toBe(0);
    expect(quiet.stderr).not.toContain("building the guest runtime image");
    const json = run(join(root, "cache-json"), {}, ["--json"]);
    expect(json.status).toBe(0);
    expect(json.stderr).not.toContain("building");
    expect(JSON.parse(json.stdout).ok).toBe(true);
    // Nothing of these caches is left in use.
    expect(readdirSync(join(root, "cache-plain")).sort()).toEqual([
      "bundles",
      "host-tools", // the TSC rate's helper (host/tsc.ts)
      "runtime-disk",
      "snapshot",
    ]);
    copyFileSync(host.kernel.path, join(root, "kernel-copy")); // the kernel file itself is the user's
  });
});
