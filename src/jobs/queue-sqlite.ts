/**
 * The embedded queue: one SQLite file under the project (.fnrun/state.db), WAL
 * mode, synchronous=FULL. A job is accepted only once its row is committed, so a
 * server killed at any moment (SIGKILL included) loses no accepted event; a job
 * that was running when its server died is run again.
 *
 * Longer than most modules: the schema and every statement on it are kept
 * side by side, so the claims, leases and retries read as one protocol.
 */
import { hostname } from "node:os";
import type Database from "better-sqlite3";
import { UsageError } from "../util/errors.ts";
import { processAlive } from "../util/process.ts";
import {
  DEFAULT_MAX_ATTEMPTS,
  type JobHandler,
  type JobOutcome,
  type JobQueue,
  type JobRecord,
  type JobState,
  type NewJob,
  retryDelayMs,
  type Trigger,
} from "./queue.ts";

interface JobRow {
  id: number;
  function_name: string;
  event: string;
  trigger: Trigger;
  state: JobState;
  attempts: number;
  max_attempts: number;
  available_at: number;
  lease_until: number | null;
  owner: string | null;
  last_error: string | null;
  result: string | null;
  request_id: string | null;
  serial_key: string | null;
  created_at: number;
  updated_at: number;
}

function toRecord(row: JobRow): JobRecord {
  return {
    id: String(row.id),
    functionName: row.function_name,
    event: row.event,
    trigger: row.trigger,
    state: row.state,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    availableAt: row.available_at,
    lastError: row.last_error,
    result: row.result,
    requestId: row.request_id,
    serialKey: row.serial_key,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS jobs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  function_name TEXT NOT NULL,
  event TEXT NOT NULL,
  trigger TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL,
  available_at INTEGER NOT NULL,
  lease_until INTEGER,
  owner TEXT,
  last_error TEXT,
  result TEXT,
  request_id TEXT,
  serial_key TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (state, available_at);
CREATE INDEX IF NOT EXISTS jobs_serial ON jobs (serial_key, state);
`;

/** Opens (creating) fnrun's state database: WAL, fully synchronous commits. */
export async function openStateDatabase(path: string): Promise<Database.Database> {
  let DatabaseClass: typeof Database;
  try {
    DatabaseClass = (await import("better-sqlite3")).default;
  } catch (error) {
    throw new UsageError(
      `the embedded queue needs better-sqlite3, which did not load (${(error as Error).message}): run \`make setup\``,
    );
  }
  const database = new DatabaseClass(path);
  database.pragma("journal_mode = WAL");
  // FULL: a commit survives the machine losing power, not only fnrun being killed.
  database.pragma("synchronous = FULL");
  database.pragma("busy_timeout = 5000");
  return database;
}

export interface SqliteQueueOptions {
  /** Delay before the first retry; doubles after each (default 1 s: local development). */
  retryBaseMs?: number;
  /** How long a running job's claim lasts without renewal (default 30 s). */
  leaseMs?: number;
  /** Finished jobs kept for inspection (default 1000). */
  keepFinished?: number;
  pollMs?: number;
}

export class SqliteQueue implements JobQueue {
  readonly kind = "sqlite";
  readonly #owner = `${hostname()}/${process.pid}`;
  readonly #retryBaseMs: number;
  readonly #leaseMs: number;
  readonly #keepFinished: number;
  readonly #pollMs: number;
  #closing = false;
  readonly #running = new Set<Promise<void>>();
  readonly #wakers = new Set<() => void>();
  readonly #loops: Promise<void>[] = [];

  constructor(
    private readonly database: Database.Database,
    options: SqliteQueueOptions = {},
  ) {
    this.#retryBaseMs = options.retryBaseMs ?? 1000;
    this.#leaseMs = options.leaseMs ?? 30_000;
    this.#keepFinished = options.keepFinished ?? 1000;
    this.#pollMs = options.pollMs ?? 250;
    database.exec(SCHEMA);
    this.reclaim();
  }

  /** Jobs whose runner died (its lease ran out, or its process on this host is gone) run again. */
  reclaim(now = Date.now()): number {
    const rows = this.database
      .prepare("SELECT id, owner, lease_until FROM jobs WHERE state = 'running'")
      .all() as Array<Pick<JobRow, "id" | "owner" | "lease_until">>;
    const host = hostname();
    const orphans = rows.filter((row) => {
      if ((row.lease_until ?? 0) < now) return true;
      const [ownerHost, ownerPid] = (row.owner ?? "").split("/");
      return ownerHost === host && Number(ownerPid) !== process.pid && !processAlive(Number(ownerPid));
    });
    const release = this.database.prepare(
      "UPDATE jobs SET state = 'pending', owner = NULL, lease_until = NULL, updated_at = ? WHERE id = ? AND state = 'running'",
    );
    for (const row of orphans) release.run(now, row.id);
    return orphans.length;
  }

  async enqueue(job: NewJob): Promise<string> {
    const now = Date.now();
    const result = this.database
      .prepare(
        `INSERT INTO jobs (function_name, event, trigger, state, attempts, max_attempts, available_at, serial_key, created_at, updated_at)
         VALUES (?, ?, ?, 'pending', 0, ?, ?, ?, ?, ?)`,
      )
      .run(
        job.functionName,
        job.event,
        job.trigger,
        job.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
        now,
        job.serialKey ?? null,
        now,
        now,
      );
    this.#wakeAll();
    return String(result.lastInsertRowid);
  }

  async list(states: JobState[] = ["pending", "running", "done", "dead"], limit = 100): Promise<JobRecord[]> {
    const marks = states.map(() => "?").join(", ");
    const rows = this.database
      .prepare(`SELECT * FROM jobs WHERE state IN (${marks}) ORDER BY id DESC LIMIT ?`)
      .all(...states, limit) as JobRow[];
    return rows.map(toRecord);
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const row = this.database.prepare("SELECT * FROM jobs WHERE id = ?").get(Number(id)) as
      | JobRow
      | undefined;
    return row ? toRecord(row) : undefined;
  }

  async replay(id: string): Promise<string> {
    const job = await this.get(id);
    if (!job) throw new UsageError(`no job ${id} in the queue`);
    return this.enqueue({
      functionName: job.functionName,
      event: job.event,
      trigger: "replay",
      maxAttempts: job.maxAttempts,
    });
  }

  async purge(which: "dead" | "finished"): Promise<number> {
    const states = which === "dead" ? "('dead')" : "('dead', 'done')";
    return this.database.prepare(`DELETE FROM jobs WHERE state IN ${states}`).run().changes;
  }

  async hasUnfinished(serialKey: string): Promise<boolean> {
    const row = this.database
      .prepare("SELECT 1 FROM jobs WHERE serial_key = ? AND state IN ('pending', 'running') LIMIT 1")
      .get(serialKey);
    return row !== undefined;
  }

  /** Claims the oldest job that is due (one transaction: two workers never take the same job). */
  claim(now = Date.now()): JobRecord | undefined {
    const take = this.database.transaction(() => {
      const row = this.database
        .prepare(
          `SELECT * FROM jobs WHERE state = 'pending' AND available_at <= ?
             AND (serial_key IS NULL OR serial_key NOT IN (SELECT serial_key FROM jobs WHERE state = 'running' AND serial_key IS NOT NULL))
           ORDER BY available_at, id LIMIT 1`,
        )
        .get(now) as JobRow | undefined;
      if (!row) return undefined;
      this.database
        .prepare(
          "UPDATE jobs SET state = 'running', attempts = attempts + 1, owner = ?, lease_until = ?, updated_at = ? WHERE id = ?",
        )
        .run(this.#owner, now + this.#leaseMs, now, row.id);
      return toRecord({ ...row, state: "running", attempts: row.attempts + 1 });
    });
    return take.immediate();
  }

  /** Records how a claimed job went: done, retried later, or dead after its last attempt. */
  settle(job: JobRecord, outcome: JobOutcome, now = Date.now()): JobState {
    let state: JobState;
    if (outcome.ok) {
      state = "done";
      this.database
        .prepare(
          "UPDATE jobs SET state = 'done', result = ?, request_id = ?, owner = NULL, lease_until = NULL, updated_at = ? WHERE id = ?",
        )
        .run(outcome.detail, outcome.requestId ?? null, now, Number(job.id));
    } else {
      state = job.attempts >= job.maxAttempts ? "dead" : "pending";
      this.database
        .prepare(
          `UPDATE jobs SET state = ?, last_error = ?, request_id = ?, available_at = ?, owner = NULL, lease_until = NULL, updated_at = ?
           WHERE id = ?`,
        )
        .run(
          state,
          outcome.detail,
          outcome.requestId ?? null,
          now + retryDelayMs(job.attempts, this.#retryBaseMs),
          now,
          Number(job.id),
        );
    }
    this.#trimFinished();
    return state;
  }

  #trimFinished(): void {
    this.database
      .prepare(
        "DELETE FROM jobs WHERE state = 'done' AND id NOT IN (SELECT id FROM jobs WHERE state = 'done' ORDER BY id DESC LIMIT ?)",
      )
      .run(this.#keepFinished);
  }

  work(handler: JobHandler, concurrency: number): void {
    for (let i = 0; i < concurrency; i++) this.#loops.push(this.#loop(handler));
  }

  async #loop(handler: JobHandler): Promise<void> {
    while (!this.#closing) {
      this.reclaim();
      const job = this.claim();
      if (!job) {
        await new Promise<void>((resolve) => {
          const wake = () => {
            clearTimeout(timer);
            this.#wakers.delete(wake);
            resolve();
          };
          const timer = setTimeout(wake, this.#pollMs);
          this.#wakers.add(wake);
        });
        continue;
      }
      const renew = setInterval(() => {
        this.database
          .prepare("UPDATE jobs SET lease_until = ? WHERE id = ? AND owner = ?")
          .run(Date.now() + this.#leaseMs, Number(job.id), this.#owner);
      }, this.#leaseMs / 3);
      const run = handler(job)
        .catch(
          (error: unknown): JobOutcome => ({
            ok: false,
            detail: JSON.stringify({ errorMessage: String(error) }),
          }),
        )
        .then((outcome) => {
          this.settle(job, outcome);
        })
        .finally(() => clearInterval(renew));
      this.#running.add(run);
      await run;
      this.#running.delete(run);
    }
  }

  #wakeAll(): void {
    for (const wake of [...this.#wakers]) wake();
  }

  async close(): Promise<void> {
    this.#closing = true;
    this.#wakeAll();
    await Promise.allSettled([...this.#running, ...this.#loops]);
  }
}
