/**
 * Schedules: `config.schedule` (cron expressions, in UTC; five fields, or six
 * with seconds first) runs a function while `fnrun serve` runs. Each run is a
 * queued job with an EventBridge-shaped "Scheduled Event".
 *
 * Overlap (config.overlap): "skip" (the default) drops an occurrence while the
 * previous run of that schedule is still queued or running; "queue" queues it
 * to run after; "allow" lets runs overlap.
 *
 * Missed runs: the time of each schedule's last run is kept in the state
 * database. When the server starts after missing occurrences, the function runs
 * once to catch up, with `detail.missed` saying how many were missed (as a
 * persistent systemd timer or anacron would); they are not replayed one by one.
 */
import { randomUUID } from "node:crypto";
import type Database from "better-sqlite3";
import cronParser from "cron-parser";
import type { FunctionDirectory } from "../build/functions-dir.ts";
import type { JobQueue } from "./queue.ts";

export interface ScheduleEntry {
  functionName: string;
  expression: string;
  overlap: "skip" | "queue" | "allow";
  next: number;
  key: string;
  problem?: string;
}

const MAX_TIMER_MS = 60_000;
const MAX_COUNTED_MISSES = 10_000;

/**
 * cron-parser fills in missing fields at the front, so it would run "0 9 * *"
 * (a field left out) every minute of the 9th, and "" every minute: anything but
 * 5 or 6 fields, or an alias such as "@daily", is refused before it is parsed.
 */
function parseSchedule(expression: string, options: { currentDate: Date; endDate?: Date }) {
  const text = expression.trim();
  const fields = text === "" ? 0 : text.split(/\s+/).length;
  if (!text.startsWith("@") && fields !== 5 && fields !== 6) {
    throw new Error(
      `a cron expression has 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first; ${JSON.stringify(expression)} has ${fields}`,
    );
  }
  return cronParser.parseExpression(text, { ...options, tz: "UTC" });
}

export function nextOccurrence(expression: string, after: number): number {
  return parseSchedule(expression, { currentDate: new Date(after) })
    .next()
    .getTime();
}

/** Occurrences strictly after `from` and at or before `to` (counting stops at a cap). */
export function countOccurrences(
  expression: string,
  from: number,
  to: number,
): { count: number; last: number | null } {
  const interval = parseSchedule(expression, { currentDate: new Date(from), endDate: new Date(to + 1) });
  let count = 0;
  let last: number | null = null;
  while (count < MAX_COUNTED_MISSES) {
    try {
      last = interval.next().getTime();
      count++;
    } catch {
      break; // past endDate
    }
  }
  return { count, last };
}

export function scheduledEvent(
  entry: { functionName: string; expression: string },
  time: number,
  missed = 0,
) {
  return {
    version: "0",
    id: randomUUID(),
    "detail-type": "Scheduled Event",
    source: "aws.events",
    account: "000000000000",
    time: new Date(time).toISOString(),
    region: "local",
    resources: [`arn:aws:events:local:000000000000:rule/fnrun-${entry.functionName}`],
    detail: { schedule: entry.expression, ...(missed > 0 ? { missed } : {}) },
  };
}

export class Scheduler {
  #entries: ScheduleEntry[] = [];
  #timer: NodeJS.Timeout | undefined;
  #rescan: NodeJS.Timeout | undefined;
  #stopped = false;
  /** Scans and ticks under way, which stop() waits for: the database closes after them. */
  readonly #working = new Set<Promise<void>>();
  #scanning = false;

  constructor(
    private readonly database: Database.Database,
    private readonly functions: FunctionDirectory,
    private readonly queue: JobQueue,
    private readonly notice: (line: string) => void,
    private readonly options: { rescanMs?: number } = {},
  ) {
    database.exec(`
      CREATE TABLE IF NOT EXISTS schedule_runs (
        function_name TEXT NOT NULL,
        expression TEXT NOT NULL,
        last_run_at INTEGER NOT NULL,
        PRIMARY KEY (function_name, expression)
      );
    `);
  }

  entries(): ScheduleEntry[] {
    return this.#entries.map((entry) => ({ ...entry }));
  }

  async start(): Promise<void> {
    await this.#load(true);
    this.#arm();
    // Functions and their schedules change while the server runs.
    this.#rescan = setInterval(() => {
      if (this.#scanning) return; // a slow scan is still going: no second one behind it
      this.#scanning = true;
      this.#run(async () => {
        try {
          await this.#load(false);
          this.#arm();
        } finally {
          this.#scanning = false;
        }
      });
    }, this.options.rescanMs ?? 5000);
    this.#rescan.unref();
  }

  /** Stops scheduling; resolves once a scan or tick under way has ended. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearInterval(this.#rescan);
    await Promise.all([...this.#working]);
  }

  /** Runs a scan or a tick, kept for stop() to wait for, its failure said rather than thrown into the void. */
  #run(work: () => Promise<void>): void {
    if (this.#stopped) return;
    const running = work().catch((error: unknown) => {
      if (!this.#stopped) this.notice(`fnrun: the scheduler failed: ${(error as Error).message}`);
    });
    this.#working.add(running);
    void running.finally(() => this.#working.delete(running));
  }

  #lastRun(entry: ScheduleEntry): number | undefined {
    const row = this.database
      .prepare("SELECT last_run_at FROM schedule_runs WHERE function_name = ? AND expression = ?")
      .get(entry.functionName, entry.expression) as { last_run_at: number } | undefined;
    return row?.last_run_at;
  }

  #setLastRun(entry: ScheduleEntry, at: number): void {
    this.database
      .prepare(
        `INSERT INTO schedule_runs (function_name, expression, last_run_at) VALUES (?, ?, ?)
         ON CONFLICT (function_name, expression) DO UPDATE SET last_run_at = MAX(last_run_at, excluded.last_run_at)`,
      )
      .run(entry.functionName, entry.expression, at);
  }

  async #load(catchUp: boolean): Promise<void> {
    const served = await this.functions.list();
    if (this.#stopped) return;
    // Taken after the scan, which may take long (bundling): not before.
    const now = Date.now();
    const fresh: ScheduleEntry[] = [];
    for (const fn of served) {
      for (const expression of fn.config.schedule ?? []) {
        const entry: ScheduleEntry = {
          functionName: fn.name,
          expression,
          overlap: fn.config.overlap ?? "skip",
          next: Number.NaN,
          key: `schedule:${fn.name}:${expression}`,
        };
        try {
          entry.next = nextOccurrence(expression, now);
        } catch (error) {
          entry.problem = `invalid cron expression: ${(error as Error).message}`;
          const known = this.#entries.some((old) => old.key === entry.key && old.problem);
          if (!known) this.notice(`fnrun: ${fn.name}: schedule "${expression}": ${entry.problem}`);
        }
        fresh.push(entry);
      }
    }
    for (const entry of fresh) {
      if (entry.problem) continue;
      const last = this.#lastRun(entry);
      // The next occurrence follows the last one that ran, which the database knows
      // (not a time taken before the scan): one fired meanwhile is not due again.
      if (last !== undefined && !catchUp) entry.next = nextOccurrence(entry.expression, Math.min(now, last));
      if (last === undefined) {
        this.#setLastRun(entry, now);
      } else if (catchUp) {
        const missed = countOccurrences(entry.expression, last, now);
        if (missed.count > 0 && missed.last !== null) {
          this.notice(
            `fnrun: ${entry.functionName}: ${missed.count} scheduled run(s) missed while stopped; running once now`,
          );
          await this.#fire(entry, missed.last, missed.count);
        }
      }
    }
    this.#entries = fresh;
  }

  #arm(): void {
    clearTimeout(this.#timer);
    if (this.#stopped) return;
    const upcoming = this.#entries.filter((entry) => !entry.problem).map((entry) => entry.next);
    if (upcoming.length === 0) return;
    const wait = Math.max(0, Math.min(Math.min(...upcoming) - Date.now(), MAX_TIMER_MS));
    this.#timer = setTimeout(() => this.#run(() => this.#tick()), wait);
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    const now = Date.now();
    for (const entry of this.#entries) {
      if (entry.problem || entry.next > now) continue;
      const due = entry.next;
      entry.next = nextOccurrence(entry.expression, now);
      await this.#fire(entry, due, 0);
    }
    this.#arm();
  }

  /**
   * Queues the occurrence due at `time`, then records it as run: a crash between
   * the two fires it again after a restart, and the job's key (the schedule and
   * the occurrence) makes that second enqueue a no-op; nor can two firings of one
   * occurrence (two servers on one state directory, a rescan racing a tick) queue it twice.
   */
  async #fire(entry: ScheduleEntry, time: number, missed: number): Promise<void> {
    if (entry.overlap === "skip" && (await this.queue.hasUnfinished(entry.key))) {
      this.notice(
        `fnrun: ${entry.functionName}: skipped the run due ${new Date(time).toISOString()}: the previous one is still going`,
      );
    } else {
      await this.queue.enqueue({
        functionName: entry.functionName,
        event: JSON.stringify(scheduledEvent(entry, time, missed)),
        trigger: "cron",
        dedupeKey: `${entry.key}@${new Date(time).toISOString()}`,
        ...(entry.overlap === "allow" ? {} : { serialKey: entry.key }),
      });
    }
    this.#setLastRun(entry, time);
  }
}
