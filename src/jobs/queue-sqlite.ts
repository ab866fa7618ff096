/**
 * The embedded queue: one SQLite file under the project (.fnrun/state.db), WAL
 * mode, synchronous=FULL. A job is accepted only once its row is committed, so a
 * server killed at any moment (SIGKILL included) loses no accepted event; a job
 * that was running when its server died is run again.
 *
 * Longer than most modules: the schema and every statement on it are kept
 * side by side, so the claims, leases and retries read as one protocol.
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type Database from "better-sqlite3";
import { UsageError } from "../util/errors.ts";
import { processAlive } from "../util/process.ts";
import { loadSqlite } from "../util/sqlite.ts";
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
  claim_token: string | null;
  dedupe_key: string | null;
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
  updated_at INTEGER NOT NULL,
  claim_token TEXT,
  dedupe_key TEXT
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (state, available_at);
CREATE INDEX IF NOT EXISTS jobs_serial ON jobs (serial_key, state);
`;

/** Opens (creating) fnrun's state database: WAL, fully synchronous commits. */
export async function openStateDatabase(path: string): Promise<Database.Database> {
  const DatabaseClass = loadSqlite();
  const database = new DatabaseClass(path);
  database.pragma("journal_mode = WAL");
  // FULL: a commit survives the machine losing power, not only fnrun being killed.
  database.pragma("synchronous = FULL");
  database.pragma("busy_timeout = 5000");
  return database;
}

/** Columns added since the first schema, for state databases made before them. */
const ADDED_COLUMNS: Array<[name: string, definition: string]> = [
  ["claim_token", "TEXT"],
  ["dedupe_key", "TEXT"],
];

function migrate(database: Database.Database): void {
  const present = new Set(
    (database.prepare("PRAGMA table_info(jobs)").all() as Array<{ name: string }>).map(
      (column) => column.name,
    ),
  );
  for (const [name, definition] of ADDED_COLUMNS) {
    if (!present.has(name)) database.exec(`ALTER TABLE jobs ADD COLUMN ${name} ${definition}`);
  }
  database.exec(
    "CREATE UNIQUE INDEX IF NOT EXISTS jobs_dedupe ON jobs (dedupe_key) WHERE dedupe_key IS NOT NULL",
  );
}

/** A job as its claimant holds it: the record, and the token that fences its claim. */
export interface Claim {
  job: JobRecord;
  token: string;
}

export interface SqliteQueueOptions {
  /** Delay before the first retry; doubles after each (default 1 s: local development). */
  retryBaseMs?: number;
  /** How long a running job's claim lasts without renewal (default 30 s). */
  leaseMs?: number;
  /** Finished jobs kept for inspection (default 1000). */
  keepFinished?: number;
  pollMs?: number;
  /** Lines about claims lost and settles refused. */
  onNotice?: (line: string) => void;
}

export class SqliteQueue implements JobQueue {
  readonly kind = "sqlite";
  readonly #owner = `${hostname()}/${process.pid}`;
  readonly #retryBaseMs: number;
  readonly #leaseMs: number;
  readonly #keepFinished: number;
  readonly #pollMs: number;
  readonly #notice: (line: string) => void;
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
    this.#notice = options.onNotice ?? (() => {});
    database.exec(SCHEMA);
    migrate(database);
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
      "UPDATE jobs SET state = 'pending', owner = NULL, lease_until = NULL, claim_token = NULL, updated_at = ? WHERE id = ? AND state = 'running'",
    );
    for (const row of orphans) release.run(now, row.id);
    return orphans.length;
  }

  async enqueue(job: NewJob): Promise<string> {
    const now = Date.now();
    const result = this.database
      .prepare(
        `INSERT OR IGNORE INTO jobs (function_name, event, trigger, state, attempts, max_attempts, available_at, serial_key, dedupe_key, created_at, updated_at)
         VALUES (?, ?, ?, 'pending', 0, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        job.functionName,
        job.event,
        job.trigger,
        job.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
        now,
        job.serialKey ?? null,
        job.dedupeKey ?? null,
        now,
        now,
      );
    if (result.changes === 0 && job.dedupeKey !== undefined) {
      const first = this.database.prepare("SELECT id FROM jobs WHERE dedupe_key = ?").get(job.dedupeKey) as {
        id: number;
      };
      return String(first.id);
    }
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

  /**
   * Claims the oldest job that is due (one transaction: two workers never take
   * the same job). The claim's token fences it: renewing the lease and settling
   * the job succeed only with it, so a claimant that lost its claim (its lease
   * ran out while it was stopped, and the job was claimed again) changes nothing.
   */
  claim(now = Date.now()): Claim | undefined {
    const take = this.database.transaction(() => {
      const row = this.database
        .prepare(
          `SELECT * FROM jobs WHERE state = 'pending' AND available_at <= ?
             AND (serial_key IS NULL OR serial_key NOT IN (SELECT serial_key FROM jobs WHERE state = 'running' AND serial_key IS NOT NULL))
           ORDER BY available_at, id LIMIT 1`,
        )
        .get(now) as JobRow | undefined;
      if (!row) return undefined;
      const token = randomUUID();
      this.database
        .prepare(
          "UPDATE jobs SET state = 'running', attempts = attempts + 1, owner = ?, lease_until = ?, claim_token = ?, updated_at = ? WHERE id = ?",
        )
        .run(this.#owner, now + this.#leaseMs, token, now, row.id);
      return { job: toRecord({ ...row, state: "running", attempts: row.attempts + 1 }), token };
    });
    return take.immediate();
  }

  /** Extends a claim's lease; false when the claim is no longer held (another claimant has the job). */
  renew(claim: Claim, now = Date.now()): boolean {
    return (
      this.database
        .prepare("UPDATE jobs SET lease_until = ? WHERE id = ? AND state = 'running' AND claim_token = ?")
        .run(now + this.#leaseMs, Number(claim.job.id), claim.token).changes === 1
    );
  }

  /**
   * Records how a claimed job went: done, retried later, or dead after its last
   * attempt. Undefined (nothing recorded) when the claim is no longer held.
   */
  settle(claim: Claim, outcome: JobOutcome, now = Date.now()): JobState | undefined {
    const { job, token } = claim;
    let state: JobState;
    let changes: number;
    if (outcome.ok) {
      state = "done";
      changes = this.database
        .prepare(
          `UPDATE jobs SET state = 'done', result = ?, request_id = ?, owner = NULL, lease_until = NULL, claim_token = NULL, updated_at = ?
           WHERE id = ? AND state = 'running' AND claim_token = ?`,
        )
        .run(outcome.detail, outcome.requestId ?? null, now, Number(job.id), token).changes;
    } else {
      state = outcome.final || job.attempts >= job.maxAttempts ? "dead" : "pending";
      changes = this.database
        .prepare(
          `UPDATE jobs SET state = ?, last_error = ?, request_id = ?, available_at = ?, owner = NULL, lease_until = NULL, claim_token = NULL, updated_at = ?
           WHERE id = ? AND state = 'running' AND claim_token = ?`,
        )
        .run(
          state,
          outcome.detail,
          outcome.requestId ?? null,
          now + retryDelayMs(job.attempts, this.#retryBaseMs),
          now,
          Number(job.id),
          token,
        ).changes;
    }
    if (changes === 0) return undefined;
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
      const claim = this.claim();
      if (!claim) {
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
      const { job } = claim;
      // A claim lost (the lease ran out and another claimant has the job) stops the run.
      const lost = new AbortController();
      const renew = setInterval(() => {
        if (this.renew(claim) || lost.signal.aborted) return;
        this.#notice(`fnrun: job ${job.id} (${job.functionName}): its claim was lost; stopping this run`);
        lost.abort(new Error("the job's claim was lost"));
      }, this.#leaseMs / 3);
      const run = handler(job, lost.signal)
        .catch(
          (error: unknown): JobOutcome => ({
            ok: false,
            detail: JSON.stringify({ errorMessage: String(error) }),
          }),
        )
        .then((outcome) => {
          if (this.settle(claim, outcome) === undefined) {
            this.#notice(
              `fnrun: job ${job.id} (${job.functionName}): settle refused, another claimant holds the job (this run took longer than its lease)`,
            );
          }
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
