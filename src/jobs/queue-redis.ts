/**
 * The queue on Redis, with BullMQ: for running workers on many hosts
 * (`fnrun serve --queue redis://...` enqueues, `fnrun worker --queue redis://...`
 * on any host runs jobs). Jobs carry the function's bundle, so a worker needs no
 * source tree. Retries use BullMQ's exponential backoff; jobs that used up their
 * attempts stay in BullMQ's failed set, which is the dead-letter list.
 *
 * Durability is Redis's: configure its persistence (AOF) to keep jobs across a
 * Redis restart. Overlap "queue" for schedules is not enforced across hosts
 * here (runs may overlap); "skip" is.
 */
import { createHash } from "node:crypto";
import { hostname } from "node:os";
import type { Job, Queue, Worker } from "bullmq";
import { UsageError } from "../util/errors.ts";
import {
  DEFAULT_MAX_ATTEMPTS,
  type JobHandler,
  type JobQueue,
  type JobRecord,
  type JobState,
  type NewJob,
  type Trigger,
} from "./queue.ts";

const QUEUE_NAME = "fnrun";

interface JobData {
  functionName: string;
  event: string;
  trigger: Trigger;
  serialKey?: string;
  artifact?: unknown;
}

interface JobReturn {
  requestId?: string;
  detail: string;
  worker: string;
}

export function redisConnection(url: string): {
  host: string;
  port: number;
  password?: string;
  db?: number;
  username?: string;
} {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`--queue ${url}: expected redis://[user:password@]host:port[/db]`);
  }
  if (parsed.protocol !== "redis:") throw new UsageError(`--queue ${url}: only redis:// URLs are supported`);
  const db = parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : undefined;
  return {
    host: parsed.hostname || "127.0.0.1",
    port: Number(parsed.port || 6379),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(db !== undefined && Number.isInteger(db) ? { db } : {}),
  };
}

async function stateOf(job: Job): Promise<JobState> {
  const state = await job.getState();
  if (state === "active") return "running";
  if (state === "completed") return "done";
  if (state === "failed") return "dead";
  return "pending"; // waiting, delayed (a retry), prioritized
}

async function toRecord(job: Job<JobData, JobReturn>): Promise<JobRecord> {
  const returned = job.returnvalue as JobReturn | null;
  return {
    id: String(job.id),
    functionName: job.data.functionName,
    event: job.data.event,
    trigger: job.data.trigger,
    state: await stateOf(job),
    attempts: job.attemptsMade,
    maxAttempts: job.opts.attempts ?? DEFAULT_MAX_ATTEMPTS,
    availableAt: job.timestamp + (job.delay ?? 0),
    lastError: job.failedReason ?? null,
    result: returned?.detail ?? null,
    requestId: returned?.requestId ?? null,
    serialKey: job.data.serialKey ?? null,
    createdAt: job.timestamp,
    updatedAt: job.finishedOn ?? job.processedOn ?? job.timestamp,
  };
}

export class RedisQueue implements JobQueue {
  readonly kind = "redis";
  readonly #workers: Worker[] = [];
  readonly #workerName = `${hostname()}/${process.pid}`;

  private constructor(
    private readonly queue: Queue<JobData, JobReturn>,
    private readonly connection: ReturnType<typeof redisConnection>,
    private readonly retryBaseMs: number,
    private readonly bullmq: typeof import("bullmq"),
  ) {}

  static async connect(url: string, options: { retryBaseMs?: number } = {}): Promise<RedisQueue> {
    const connection = redisConnection(url);
    const bullmq = await import("bullmq");
    const queue = new bullmq.Queue<JobData, JobReturn>(QUEUE_NAME, { connection });
    try {
      await queue.waitUntilReady();
      // Fail fast and clearly when Redis is not there.
      await ((await queue.client) as unknown as { ping(): Promise<string> }).ping();
    } catch (error) {
      await queue.close().catch(() => {});
      throw new UsageError(`cannot reach Redis at ${url}: ${(error as Error).message}`);
    }
    return new RedisQueue(queue, connection, options.retryBaseMs ?? 1000, bullmq);
  }

  async enqueue(job: NewJob): Promise<string> {
    const added = await this.queue.add(
      job.functionName,
      {
        functionName: job.functionName,
        event: job.event,
        trigger: job.trigger,
        ...(job.serialKey ? { serialKey: job.serialKey } : {}),
        ...(job.artifact ? { artifact: job.artifact } : {}),
      },
      {
        attempts: job.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
        backoff: { type: "exponential", delay: this.retryBaseMs },
        removeOnComplete: { count: 1000 },
        removeOnFail: false,
        // BullMQ adds nothing for an id it holds already (ids may not contain ":").
        ...(job.dedupeKey
          ? { jobId: `dedupe-${createHash("sha256").update(job.dedupeKey).digest("hex")}` }
          : {}),
      },
    );
    return String(added.id);
  }

  async list(states: JobState[] = ["pending", "running", "done", "dead"], limit = 100): Promise<JobRecord[]> {
    const types: Array<"waiting" | "delayed" | "prioritized" | "active" | "completed" | "failed"> = [];
    if (states.includes("pending")) types.push("waiting", "delayed", "prioritized");
    if (states.includes("running")) types.push("active");
    if (states.includes("done")) types.push("completed");
    if (states.includes("dead")) types.push("failed");
    const jobs = await this.queue.getJobs(types, 0, limit - 1);
    const records = await Promise.all(jobs.filter(Boolean).map((job) => toRecord(job)));
    return records.sort((a, b) => Number(b.id) - Number(a.id)).slice(0, limit);
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const job = await this.queue.getJob(id);
    return job ? toRecord(job) : undefined;
  }

  async replay(id: string): Promise<string> {
    const job = await this.queue.getJob(id);
    if (!job) throw new UsageError(`no job ${id} in the queue`);
    return this.enqueue({
      functionName: job.data.functionName,
      event: job.data.event,
      trigger: "replay",
      ...(job.data.artifact ? { artifact: job.data.artifact } : {}),
    });
  }

  async purge(which: "dead" | "finished"): Promise<number> {
    const removed = await this.queue.clean(0, 100_000, "failed");
    const done = which === "finished" ? await this.queue.clean(0, 100_000, "completed") : [];
    return removed.length + done.length;
  }

  async hasUnfinished(serialKey: string): Promise<boolean> {
    const jobs = await this.queue.getJobs(["waiting", "delayed", "prioritized", "active"], 0, 999);
    return jobs.some((job) => job?.data.serialKey === serialKey);
  }

  work(handler: JobHandler, concurrency: number): void {
    if (concurrency <= 0) return;
    const worker = new this.bullmq.Worker<JobData, JobReturn>(
      QUEUE_NAME,
      async (job, _token, signal) => {
        const record = await toRecord(job);
        const outcome = await handler(
          { ...record, state: "running", attempts: job.attemptsMade + 1, artifact: job.data.artifact },
          // BullMQ's own lock renewal fences its jobs; its signal says when this run is no longer wanted.
          signal ?? new AbortController().signal,
        );
        // BullMQ retries (with backoff) on a throw, and moves the job to "failed" after its last attempt.
        if (!outcome.ok) throw new Error(outcome.detail);
        return {
          ...(outcome.requestId ? { requestId: outcome.requestId } : {}),
          detail: outcome.detail,
          worker: this.#workerName,
        };
      },
      { connection: { ...this.connection, maxRetriesPerRequest: null }, concurrency, name: this.#workerName },
    );
    worker.on("error", () => {});
    this.#workers.push(worker);
  }

  async close(): Promise<void> {
    // Worker.close() waits for the jobs it is running.
    await Promise.all(this.#workers.map((worker) => worker.close()));
    await this.queue.close();
  }
}
