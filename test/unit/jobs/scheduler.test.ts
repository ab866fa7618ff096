import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { FunctionDirectory } from "../../../src/build/functions-dir.ts";
import type { JobQueue, NewJob } from "../../../src/jobs/queue.ts";
import { openStateDatabase, SqliteQueue } from "../../../src/jobs/queue-sqlite.ts";
import { Scheduler } from "../../../src/jobs/scheduler.ts";

const EVERY_MINUTE = "* * * * *";
/** One served function on a schedule (the scheduler reads names and configs only). */
const functions = {
  list: async () => [
    { name: "tick", file: "/f/tick.ts", config: { schedule: [EVERY_MINUTE], overlap: "allow" } },
  ],
} as unknown as FunctionDirectory;

let directory: string;
let database: Database.Database;
let queue: SqliteQueue;

beforeEach(async () => {
  directory = mkdtempSync(join(tmpdir(), "fnrun-test-scheduler-"));
  database = await openStateDatabase(join(directory, "state.db"));
  queue = new SqliteQueue(database);
  // The schedule last ran five minutes ago: the server was down since.
  database.exec(
    "CREATE TABLE IF NOT EXISTS schedule_runs (function_name TEXT NOT NULL, expression TEXT NOT NULL, last_run_at INTEGER NOT NULL, PRIMARY KEY (function_name, expression))",
  );
  database
    .prepare("INSERT INTO schedule_runs VALUES (?, ?, ?)")
    .run("tick", EVERY_MINUTE, Date.now() - 5 * 60_000);
});

afterEach(async () => {
  await queue.close();
  database.close();
  rmSync(directory, { recursive: true, force: true });
});

/** The queue, with a crash (a throw, as the process dying) before or after the job is stored. */
function crashing(when: "before" | "after"): JobQueue {
  return new Proxy(queue, {
    get(target, property, receiver) {
      if (property !== "enqueue") return Reflect.get(target, property, receiver);
      return async (job: NewJob) => {
        if (when === "after") await target.enqueue(job);
        throw new Error(`crashed ${when} enqueueing`);
      };
    },
  });
}

const scheduledJobs = async () =>
  (await queue.list()).filter((job) => job.trigger === "cron").map((job) => JSON.parse(job.event).time);

describe("the scheduler's missed runs", () => {
  it("loses no run when the server dies after recording it and before queueing it", async () => {
    await expect(new Scheduler(database, functions, crashing("before"), () => {}).start()).rejects.toThrow(
      "crashed before",
    );
    // The restart catches up the same occurrence.
    const restarted = new Scheduler(database, functions, queue, () => {});
    await restarted.start();
    await restarted.stop();
    expect(await scheduledJobs()).toHaveLength(1);
  });

  it("queues a run once when the server dies after queueing it and before recording it", async () => {
    await expect(new Scheduler(database, functions, crashing("after"), () => {}).start()).rejects.toThrow(
      "crashed after",
    );
    const restarted = new Scheduler(database, functions, queue, () => {});
    await restarted.start();
    await restarted.stop();
    expect(await scheduledJobs()).toHaveLength(1);
  });

  it("fires an occurrence once even when a slow rescan of the functions ends after it fired", async () => {
    database.prepare("DELETE FROM schedule_runs").run();
    let calls = 0;
    const slowToScan = {
      // Every scan after the first takes longer than the time between occurrences.
      list: async () => {
        if (calls++ > 0) await new Promise((resolve) => setTimeout(resolve, 1300));
        return [
          { name: "tick", file: "/f/tick.ts", config: { schedule: ["* * * * * *"], overlap: "allow" } },
        ];
      },
    } as unknown as FunctionDirectory;
    const scheduler = new Scheduler(database, slowToScan, queue, () => {}, { rescanMs: 200 });
    await scheduler.start();
    await new Promise((resolve) => setTimeout(resolve, 4500));
    await scheduler.stop();
    const times = await scheduledJobs();
    expect(times.length).toBeGreaterThanOrEqual(3);
    expect(times.length).toBe(new Set(times).size);
  }, 15_000);
});
