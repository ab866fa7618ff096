// Schedules (with overlap and missed runs) and git hooks, with real VMs.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveHost } from "../../src/host/setup.ts";
import { openStateDatabase } from "../../src/jobs/queue-sqlite.ts";
import { serve } from "../../src/serve/server.ts";
import { expectNothingLeftBehind } from "./helpers.ts";

let state: string;

beforeAll(() => {
  state = mkdtempSync(join(tmpdir(), "fnrun-test-triggers-"));
  process.env.FNRUN_STATE_DIR = join(state, "history");
});

afterAll(async () => {
  rmSync(state, { recursive: true, force: true });
  await expectNothingLeftBehind(expect);
});

describe("schedules", () => {
  it("runs config.schedule on time, and never overlaps runs of a schedule with overlap skip", async () => {
    const notices: string[] = [];
    const server = await serve({
      directory: "test/fixtures/scheduled",
      port: 0,
      pool: 0,
      stateDirectory: join(state, "scheduled"),
      machine: await resolveHost(),
      onNotice: (line) => notices.push(line),
    });
    try {
      await new Promise((wait) => setTimeout(wait, 9000));
    } finally {
      await server.close();
    }
    const { History } = await import("../../src/jobs/history.ts");
    const history = await History.open();
    const ticks = history.list(100, "ticker").filter((record) => record.trigger === "cron");
    // Every 2 s for ~9 s: four or so (the first run of a VM takes longer under TCG).
    expect(ticks.length).toBeGreaterThanOrEqual(3);
    for (const tick of ticks) {
      expect(JSON.parse(tick.result ?? "{}").kind).toBe("Scheduled Event");
      expect(new Date(JSON.parse(tick.result ?? "{}").time).getUTCSeconds() % 2).toBe(0);
    }
    const sleepy = history
      .list(100, "sleepy")
      .map((record) => JSON.parse(record.result ?? "{}") as { started: number; ended: number })
      .sort((a, b) => a.started - b.started);
    expect(sleepy.length).toBeGreaterThanOrEqual(1);
    for (let i = 1; i < sleepy.length; i++) {
      expect(sleepy[i]?.started).toBeGreaterThanOrEqual(sleepy[i - 1]?.ended ?? 0);
    }
    expect(notices.some((line) => line.includes("sleepy: skipped the run"))).toBe(true);
    history.close();
  });

  it("runs once to catch up on runs missed while the server was down, saying how many", async () => {
    const stateDirectory = join(state, "catch-up");
    mkdirSync(stateDirectory, { recursive: true });
    const database = await openStateDatabase(join(stateDirectory, "state.db"));
    database.exec(
      "CREATE TABLE IF NOT EXISTS schedule_runs (function_name TEXT NOT NULL, expression TEXT NOT NULL, last_run_at INTEGER NOT NULL, PRIMARY KEY (function_name, expression))",
    );
    // The server last ran this minutely schedule ten minutes ago.
    const lastRun = Math.floor((Date.now() - 10 * 60_000) / 60_000) * 60_000;
    database.prepare("INSERT INTO schedule_runs VALUES (?, ?, ?)").run("minutely", "0 * * * * *", lastRun);
    database.close();
    const notices: string[] = [];
    const server = await serve({
      directory: "test/fixtures/catch-up",
      port: 0,
      pool: 0,
      stateDirectory,
      machine: await resolveHost(),
      onNotice: (line) => notices.push(line),
    });
    try {
      const deadline = Date.now() + 60_000;
      let record = server.history.list(10, "minutely")[0];
      while (!record && Date.now() < deadline) {
        await new Promise((wait) => setTimeout(wait, 200));
        record = server.history.list(10, "minutely")[0];
      }
      expect(record?.trigger).toBe("cron");
      const missed = JSON.parse(record?.result ?? "{}").missed as number;
      expect(missed).toBeGreaterThanOrEqual(9);
      expect(missed).toBeLessThanOrEqual(11);
      expect(
        notices.some((line) =>
          /minutely: \d+ scheduled run\(s\) missed while stopped; running once now/.test(line),
        ),
      ).toBe(true);
    } finally {
      await server.close();
    }
  });
});

describe("git hooks", () => {
  it("installs a pre-commit hook whose verdict comes from the function, and uninstalls it", () => {
    const repository = join(state, "repository");
    mkdirSync(repository);
    const git = (...args: string[]) => execFileSync("git", args, { cwd: repository, encoding: "utf8" });
    git("init", "-q", "-b", "main");
    git("config", "user.email", "test@example.com");
    git("config", "user.name", "Test");
    const cli = resolve("bin/fnrun.js");
    const fnrun = (...args: string[]) =>
      spawnSync(process.execPath, [cli, ...args], { cwd: repository, encoding: "utf8", env: process.env });
    const installed = fnrun("hook", "install", "pre-commit", resolve("functions/lint-check.ts"));
    expect(installed.status).toBe(0);
    expect(installed.stderr).toContain("installed");

    writeFileSync(join(repository, "clean.ts"), "export const answer = 42;\n");
    git("add", "clean.ts");
    const good = spawnSync("git", ["commit", "-q", "-m", "clean"], { cwd: repository, encoding: "utf8" });
    expect(good.status).toBe(0);
    expect(good.stderr).toContain("lint-check: 1 file(s) clean");

    writeFileSync(
      join(repository, "conflicted.ts"),
      "<<<<<<< HEAD\nconst a = 1;\n=======\nconst a = 2;\n>>>>>>> other\n",
    );
    git("add", "conflicted.ts");
    const refused = spawnSync("git", ["commit", "-q", "-m", "conflicted"], {
      cwd: repository,
      encoding: "utf8",
    });
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toContain("conflicted.ts: merge-conflict marker");
    expect(git("log", "--oneline").trim().split("\n")).toHaveLength(1);

    // A hook fnrun did not write is left alone unless --force.
    expect(fnrun("hook", "uninstall", "pre-commit").status).toBe(0);
    writeFileSync(join(repository, ".git", "hooks", "pre-commit"), "#!/bin/sh\nexit 0\n");
    const clash = fnrun("hook", "install", "pre-commit", resolve("functions/lint-check.ts"));
    expect(clash.status).toBe(2);
    expect(clash.stderr).toContain("was not written by fnrun");
    expect(spawnSync("git", ["commit", "-q", "-m", "conflicted"], { cwd: repository }).status).toBe(0);
  });
});
