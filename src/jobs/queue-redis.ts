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
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { rootCertificates } from "node:tls";
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

/** The URL as it may be shown: without its password. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@/]*@/, "//$1:***@");
  }
}

export interface RedisConnection {
  host: string;
  port: number;
  username?: string;
  password?: string;
  db?: number;
  /** rediss://: TLS, checking the server's certificate (trustedCas: FNRUN_REDIS_CA's PEM when set). */
  tls?: { servername: string; ca?: string | string[] };
}

function readPem(variable: "FNRUN_REDIS_CA" | "NODE_EXTRA_CA_CERTS", env: NodeJS.ProcessEnv): string {
  const path = env[variable] ?? "";
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new UsageError(`${variable}=${path}: cannot read it (${(error as Error).message})`);
  }
}

/**
 * What a rediss:// server's certificate is checked against: FNRUN_REDIS_CA's
 * PEM alone; else Node's roots and NODE_EXTRA_CA_CERTS's, as Node would, though
 * bin/fnrun.js starts Node without them (it would parse them at every start);
 * else Node's roots.
 */
function trustedCas(env: NodeJS.ProcessEnv): string | string[] | undefined {
  if (env.FNRUN_REDIS_CA) return readPem("FNRUN_REDIS_CA", env);
  if (env.NODE_EXTRA_CA_CERTS) return [...rootCertificates, readPem("NODE_EXTRA_CA_CERTS", env)];
  return undefined;
}

/**
 * redis://[user:password@]host:port[/db], or rediss:// for TLS. A Redis ACL user
 * (user:password) or AUTH (:password) comes from the URL; a CA for a private
 * certificate from FNRUN_REDIS_CA or NODE_EXTRA_CA_CERTS (PEM files).
 */
export function redisConnection(url: string, env: NodeJS.ProcessEnv = process.env): RedisConnection {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`--queue ${redactUrl(url)}: expected redis[s]://[user:password@]host:port[/db]`);
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:")
    throw new UsageError(`--queue ${redactUrl(url)}: only redis:// and rediss:// (TLS) URLs are supported`);
  const db = parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : undefined;
  const host = parsed.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1";
  const ca = parsed.protocol === "rediss:" ? trustedCas(env) : undefined;
  return {
    host,
    port: Number(parsed.port || 6379),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(db !== undefined && Number.isInteger(db) ? { db } : {}),
    ...(parsed.protocol === "rediss:" ? { tls: { servername: host, ...(ca ? { ca } : {}) } } : {}),
  };
}

/**
 * Connects once, without retrying, and says why that failed (Redis down, a
 * refused user or password, an untrusted certificate), or undefined: BullMQ's
 * own client would retry for ever and say nothing.
 */
async function probe(connection: RedisConnection): Promise<string | undefined> {
  const { Redis } = await import("ioredis");
  const client = new Redis({
    ...connection,
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
  });
  let first: unknown;
  client.on("error", (error) => {
    first ??= error;
  });
  try {
    await client.connect();
    await client.ping();
    return undefined;
  } catch (error) {
    return describeRedisError(first ?? error, connection);
  } finally {
    client.disconnect();
  }
}

/** A Redis error's words, without anything of the connection's secrets. */
function describeRedisError(error: unknown, connection: RedisConnection): string {
  let text = (error as Error)?.message ?? String(error);
  if (connection.password) text = text.split(connection.password).join("***");
  return text;
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

  readonly #notice: (line: string) => void;
  readonly #lastSaid = new Map<string, number>();

  private constructor(
    private readonly queue: Queue<JobData, JobReturn>,
    private readonly connection: RedisConnection,
    private readonly retryBaseMs: number,
    private readonly bullmq: typeof import("bullmq"),
    notice: (line: string) => void,
  ) {
    this.#notice = notice;
    queue.on("error", (error) => this.#say(error));
  }

  static async connect(
    url: string,
    options: { retryBaseMs?: number; onNotice?: (line: string) => void } = {},
  ): Promise<RedisQueue> {
    const connection = redisConnection(url);
    const problem = await probe(connection);
    if (problem) {
      throw new UsageError(
        `cannot use Redis at ${redactUrl(url)}: ${problem} ` +
          "(is it up, are the user and password in the URL right, and for rediss:// is its certificate trusted? FNRUN_REDIS_CA names a CA)",
      );
    }
    const bullmq = await import("bullmq");
    const queue = new bullmq.Queue<JobData, JobReturn>(QUEUE_NAME, { connection });
    return new RedisQueue(
      queue,
      connection,
      options.retryBaseMs ?? 1000,
      bullmq,
      options.onNotice ?? (() => {}),
    );
  }

  /** Says a Redis error (without secrets), at most once a minute for the same words. */
  #say(error: unknown): void {
    const text = describeRedisError(error, this.connection);
    const now = Date.now();
    if (now - (this.#lastSaid.get(text) ?? 0) < 60_000) return;
    this.#lastSaid.set(text, now);
    this.#notice(`fnrun: Redis (${this.connection.host}:${this.connection.port}): ${text}`);
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
        // BullMQ retries (with backoff) on a throw, and moves the job to "failed" after its
        // last attempt, or at once for an UnrecoverableError.
        if (!outcome.ok)
          throw outcome.final
            ? new this.bullmq.UnrecoverableError(outcome.detail)
            : new Error(outcome.detail);
        return {
          ...(outcome.requestId ? { requestId: outcome.requestId } : {}),
          detail: outcome.detail,
          worker: this.#workerName,
        };
      },
      { connection: { ...this.connection, maxRetriesPerRequest: null }, concurrency, name: this.#workerName },
    );
    worker.on("error", (error) => this.#say(error));
    this.#workers.push(worker);
  }

  async close(): Promise<void> {
    // Worker.close() waits for the jobs it is running, and for Redis: with Redis
    // gone it would wait for ever, so then the workers are closed at once.
    const reachable = (await probe(this.connection)) === undefined;
    await Promise.all(this.#workers.map((worker) => worker.close(!reachable).catch(() => {})));
    if (reachable) await this.queue.close();
    else await this.queue.disconnect().catch(() => {});
  }
}
