/**
 * The durable queue of asynchronous invocations (`Event` invocations, webhook
 * deliveries, scheduled runs): at-least-once, with retries and a dead-letter
 * list. Two engines behind this one interface:
 *
 *   SqliteQueue - the embedded default (queue-sqlite.ts)
 *   RedisQueue  - BullMQ on Redis (queue-redis.ts), for workers on many hosts.
 */

export type Trigger = "http" | "webhook" | "cron" | "queue" | "hook" | "cli" | "replay";
export type JobState = "pending" | "running" | "done" | "dead";

export interface NewJob {
  functionName: string;
  /** The event as JSON text. */
  event: string;
  trigger: Trigger;
  /** Attempts in all: 1 + retries (Lambda's default for async: 2 retries). */
  maxAttempts?: number;
  /** Jobs sharing a key never run at the same time (a schedule with overlap "skip" uses it). */
  serialKey?: string;
  /** A bundled function shipped with the job (workers on other hosts have no source). */
  artifact?: unknown;
  /**
   * Enqueueing a job with a key already queued (a schedule's occurrence) adds
   * nothing and returns the first one's id.
   */
  dedupeKey?: string;
}

export interface JobRecord {
  id: string;
  functionName: string;
  event: string;
  trigger: Trigger;
  state: JobState;
  attempts: number;
  maxAttempts: number;
  availableAt: number;
  lastError: string | null;
  result: string | null;
  requestId: string | null;
  serialKey: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface JobOutcome {
  ok: boolean;
  /** A failure that retrying cannot mend (a job refused): it is dead-lettered at once. */
  final?: boolean;
  requestId?: string;
  /** The result JSON, or the error as JSON. */
  detail: string;
}

/** Runs one job; `signal` aborts when the job is no longer this run's (its claim was lost, or the queue closes). */
export type JobHandler = (
  job: JobRecord & { artifact?: unknown },
  signal: AbortSignal,
) => Promise<JobOutcome>;

export interface JobQueue {
  readonly kind: "sqlite" | "redis";
  enqueue(job: NewJob): Promise<string>;
  list(states?: JobState[], limit?: number): Promise<JobRecord[]>;
  get(id: string): Promise<JobRecord | undefined>;
  /** Runs a dead (or done) job's event again, as a new job. */
  replay(id: string): Promise<string>;
  /** Deletes dead jobs (or all finished ones). Returns how many. */
  purge(which: "dead" | "finished"): Promise<number>;
  /** Whether a job with this serial key is pending or running. */
  hasUnfinished(serialKey: string): Promise<boolean>;
  /** Starts `concurrency` workers that run jobs with `handler` until close(). */
  work(handler: JobHandler, concurrency: number): void;
  /** Stops taking jobs, waits for the running ones, closes the engine. */
  close(): Promise<void>;
}

export const DEFAULT_MAX_ATTEMPTS = 3;

/** Delay before attempt `attempt + 1` (1-based attempts): base, 2 x base, 4 x base... */
export function retryDelayMs(attempt: number, baseMs: number): number {
  return baseMs * 2 ** Math.max(0, attempt - 1);
}
