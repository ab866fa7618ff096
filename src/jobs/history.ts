/**
 * The local history of invocations: event, outcome, logs and timeline of the
 * last ones, from the CLI and from `fnrun serve` alike, for `fnrun history`,
 * `fnrun replay` and the dashboard. One SQLite file in fnrun's state directory
 * ($FNRUN_STATE_DIR, else $XDG_STATE_HOME/fnrun, else ~/.local/state/fnrun),
 * bounded in rows and in the size of what each row keeps.
 *
 * `fnrun invoke` does not load SQLite (~20 ms of every invocation: the native
 * module, the database, its journal): it leaves its record in a spool
 * directory beside the database, one file each (spoolRecord), and the history
 * takes them in whenever it is opened or read. A spool that nobody reads is
 * taken in by the invocation that finds it full (one in SPOOL_BATCH).
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { mkdirSync, readdirSync, readFileSync, statSync, unlinkSync } from "node:fs";
import { mkdir, readdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type Database from "better-sqlite3";
import { stateDirectory } from "../util/paths.ts";
import { loadSqlite } from "../util/sqlite.ts";
import type { TimelineEntry } from "../vm/timeline.ts";
import { HISTORY_LIMITS } from "./limits.ts";
import type { Trigger } from "./queue.ts";

export type InvocationStatus =
  | "ok"
  | "function error"
  | "timeout"
  | "out of memory"
  | "boot failure"
  | "result too large"
  | "bundle error"
  | "interrupted"
  | "error";

export interface InvocationRecord {
  requestId: string;
  functionName: string;
  /** The function's file (or artifact) on this host. */
  file: string;
  trigger: Trigger;
  status: InvocationStatus;
  startMode: string;
  startedAt: number;
  durationMs: number;
  /** The event as JSON text (cut at the size limit: then `eventTruncated`). */
  event: string;
  eventTruncated: boolean;
  /** The result as JSON text, when the status is ok. */
  result: string | null;
  /** The error (errorType, errorMessage, stack...), otherwise. */
  error: Record<string, unknown> | null;
  logs: string;
  timeline: TimelineEntry[];
}

/** Spooled records an invocation leaves before the one that takes them all in. */
export const SPOOL_BATCH = 100;

function spoolDirectory(env: NodeJS.ProcessEnv): string {
  return join(stateDirectory(env), "history-spool");
}

function cut(text: string, limit: number): { text: string; truncated: boolean } {
  if (Buffer.byteLength(text) <= limit) return { text, truncated: false };
  return { text: Buffer.from(text).subarray(0, limit).toString("utf8"), truncated: true };
}

interface Row {
  request_id: string;
  function_name: string;
  file: string;
  trigger: Trigger;
  status: InvocationStatus;
  start_mode: string;
  started_at: number;
  duration_ms: number;
  event: string;
  event_truncated: number;
  result: string | null;
  error: string | null;
  logs: string;
  timeline: string;
}

function toRecord(row: Row): InvocationRecord {
  return {
    requestId: row.request_id,
    functionName: row.function_name,
    file: row.file,
    trigger: row.trigger,
    status: row.status,
    startMode: row.start_mode,
    startedAt: row.started_at,
    durationMs: row.duration_ms,
    event: row.event,
    eventTruncated: row.event_truncated === 1,
    result: row.result,
    error: row.error ? (JSON.parse(row.error) as Record<string, unknown>) : null,
    logs: row.logs,
    timeline: JSON.parse(row.timeline) as TimelineEntry[],
  };
}

/** A record as the history keeps it: its big fields cut. */
function storedForm(record: InvocationRecord): InvocationRecord {
  const event = cut(record.event, HISTORY_LIMITS.fieldBytes);
  const logs = cut(record.logs, HISTORY_LIMITS.fieldBytes);
  const result = record.result === null ? null : cut(record.result, HISTORY_LIMITS.fieldBytes).text;
  return {
    ...record,
    event: event.text,
    eventTruncated: record.eventTruncated || event.truncated,
    logs: logs.truncated ? `${logs.text}\n[fnrun: log cut in the history]\n` : logs.text,
    result,
  };
}

/**
 * Leaves `record` for the history to take in (an invocation's, without loading
 * SQLite): one file, cut as the history keeps it, written whole under a
 * temporary name first. Not synced: the history may lose a record with the
 * machine, as its database may (synchronous = NORMAL), never a part of one.
 * The invocation that finds SPOOL_BATCH records spooled takes them all in.
 */
export async function spoolRecord(
  record: InvocationRecord,
  env: NodeJS.ProcessEnv = process.env,
): Promise<void> {
  const directory = spoolDirectory(env);
  await mkdir(directory, { recursive: true, mode: 0o700 });
  // Named by start, then request id (a UUID): taken in in the order they started.
  const name = `${String(record.startedAt).padStart(15, "0")}-${record.requestId.replace(/[^\w-]/g, "")}.json`;
  const temporary = join(directory, `.${name}.${randomBytes(4).toString("hex")}.tmp`);
  await writeFile(temporary, JSON.stringify(storedForm(record)), { mode: 0o600 });
  await rename(temporary, join(directory, name));
  const spooled = (await readdir(directory)).filter((entry) => entry.endsWith(".json")).sort();
  if (spooled.length < SPOOL_BATCH) return;
  try {
    (await History.open(env)).close();
  } catch (error) {
    // No SQLite to take them in: the spool keeps the newest records, as the history would.
    await Promise.all(
      spooled.slice(0, -HISTORY_LIMITS.records).map((name) => rm(join(directory, name), { force: true })),
    );
    throw error;
  }
}

export class History extends EventEmitter<{ record: [InvocationRecord] }> {
  private constructor(
    private readonly database: Database.Database,
    private readonly spool: string,
  ) {
    super();
    database.exec(`
      CREATE TABLE IF NOT EXISTS invocations (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id TEXT NOT NULL UNIQUE,
        function_name TEXT NOT NULL,
        file TEXT NOT NULL,
        trigger TEXT NOT NULL,
        status TEXT NOT NULL,
        start_mode TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        duration_ms REAL NOT NULL,
        event TEXT NOT NULL,
        event_truncated INTEGER NOT NULL,
        result TEXT,
        error TEXT,
        logs TEXT NOT NULL,
        timeline TEXT NOT NULL
      );
    `);
  }

  static async open(env: NodeJS.ProcessEnv = process.env): Promise<History> {
    const directory = stateDirectory(env);
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    const DatabaseClass = loadSqlite();
    const database = new DatabaseClass(join(directory, "history.db"));
    database.pragma("journal_mode = WAL");
    // History is a convenience: a commit may be lost with the machine, not with fnrun.
    database.pragma("synchronous = NORMAL");
    database.pragma("busy_timeout = 5000");
    const history = new History(database, spoolDirectory(env));
    history.#takeSpool();
    return history;
  }

  add(record: InvocationRecord): void {
    const stored = storedForm(record);
    this.#insert(stored);
    this.#prune();
    this.emit("record", stored);
  }

  #insert(stored: InvocationRecord): void {
    this.database
      .prepare(
        `INSERT OR REPLACE INTO invocations
           (request_id, function_name, file, trigger, status, start_mode, started_at, duration_ms, event, event_truncated, result, error, logs, timeline)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        stored.requestId,
        stored.functionName,
        stored.file,
        stored.trigger,
        stored.status,
        stored.startMode,
        stored.startedAt,
        stored.durationMs,
        stored.event,
        stored.eventTruncated ? 1 : 0,
        stored.result,
        stored.error ? JSON.stringify(stored.error) : null,
        stored.logs,
        JSON.stringify(stored.timeline),
      );
  }

  #prune(): void {
    this.database
      .prepare(
        // Keeps the newest `records`: one walk down the primary key, not a scan of the table.
        "DELETE FROM invocations WHERE seq <= (SELECT seq FROM invocations ORDER BY seq DESC LIMIT 1 OFFSET ?)",
      )
      .run(HISTORY_LIMITS.records);
  }

  /**
   * Takes in what invocations spooled (oldest first, in one transaction), then
   * removes their files. Another process taking in the same files at once
   * stores nothing twice: a record replaces the one with its request id.
   */
  #takeSpool(): void {
    let entries: string[];
    try {
      entries = readdirSync(this.spool);
    } catch {
      return; // no spool yet
    }
    for (const name of entries.filter((entry) => entry.endsWith(".tmp"))) {
      // Left by an invocation killed while it wrote (one still writing is younger).
      const path = join(this.spool, name);
      try {
        if (Date.now() - statSync(path).mtimeMs > 10 * 60_000) unlinkSync(path);
      } catch {}
    }
    const names = entries.filter((entry) => entry.endsWith(".json"));
    if (names.length === 0) return;
    names.sort();
    const records: InvocationRecord[] = [];
    for (const name of names) {
      try {
        records.push(
          storedForm(JSON.parse(readFileSync(join(this.spool, name), "utf8")) as InvocationRecord),
        );
      } catch {
        // Unreadable (a full disk when it was written, say): dropped with its file below.
      }
    }
    this.database.transaction(() => {
      for (const record of records) this.#insert(record);
      this.#prune();
    })();
    for (const name of names) {
      try {
        unlinkSync(join(this.spool, name));
      } catch {}
    }
    for (const record of records) this.emit("record", record);
  }

  list(limit = 50, functionName?: string): InvocationRecord[] {
    this.#takeSpool();
    // By start: a spooled record is taken in after ones that started later.
    const rows = functionName
      ? this.database
          .prepare(
            "SELECT * FROM invocations WHERE function_name = ? ORDER BY started_at DESC, seq DESC LIMIT ?",
          )
          .all(functionName, limit)
      : this.database
          .prepare("SELECT * FROM invocations ORDER BY started_at DESC, seq DESC LIMIT ?")
          .all(limit);
    return (rows as Row[]).map(toRecord);
  }

  /** By request id, or a unique prefix of one. */
  get(id: string): InvocationRecord | undefined {
    this.#takeSpool();
    const rows = this.database
      .prepare(
        "SELECT * FROM invocations WHERE request_id = ? OR request_id LIKE ? ORDER BY seq DESC LIMIT 2",
      )
      .all(id, `${id.replace(/[%_]/g, "")}%`) as Row[];
    const exact = rows.find((row) => row.request_id === id);
    if (exact) return toRecord(exact);
    return rows.length === 1 && rows[0] ? toRecord(rows[0]) : undefined;
  }

  close(): void {
    this.database.close();
  }
}
