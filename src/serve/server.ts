import { setMaxListeners } from "node:events";
import { mkdirSync, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import type Database from "better-sqlite3";
import { signPortable, toPortable } from "../build/artifact.ts";
import { FunctionDirectory, type ServedFunction } from "../build/functions-dir.ts";
import type { AccelRequest } from "../host/accel.ts";
import { type HostSetup, resolveHost } from "../host/setup.ts";
import type { InvokeResult } from "../invoke/options.ts";
import { createPool, type Pool } from "../invoke/pool.ts";
import { History, type InvocationRecord } from "../jobs/history.ts";
import type { JobQueue, Trigger } from "../jobs/queue.ts";
import { redactUrl } from "../jobs/queue-redis.ts";
import { openStateDatabase, SqliteQueue } from "../jobs/queue-sqlite.ts";
import { jobOutcome, runAndRecord } from "../jobs/record.ts";
import { Scheduler } from "../jobs/scheduler.ts";
import { UsageError } from "../util/errors.ts";
import { checkRange, shown } from "../util/validate.ts";
import { Admission } from "./admission.ts";
import { isLoopbackAddress } from "./auth.ts";
import { ClientLimits } from "./client-limits.ts";
import type { ServerContext } from "./context.ts";
import { DeliveryLog } from "./deliveries.ts";
import { answerFailure, handleRequest } from "./handler.ts";
import { HttpError } from "./http.ts";
import { SERVE_RANGES } from "./limits.ts";

export interface ServeOptions {
  /** The functions' directory (default "functions"). */
  directory?: string;
  /** TCP port (default 9000; 0 picks a free one). */
  port?: number;
  /** Address to listen on (default 127.0.0.1). Anything else needs allowRemote and a token. */
  address?: string;
  allowRemote?: boolean;
  /** Required of every request when set (and always when not on loopback). */
  token?: string;
  /** "sqlite" (default: .fnrun/state.db) or a redis:// or rediss:// URL (BullMQ). */
  queue?: string;
  /**
   * With a Redis queue: the key the bundles each job carries are signed with; the
   * workers are given the same key, and run nothing it did not sign.
   */
  signingKey?: string;
  /** Where fnrun keeps the queue and schedule state (default .fnrun in the current directory). */
  stateDirectory?: string;
  /** Warm VMs kept per function (default 1; 0 turns the pool off). */
  pool?: number;
  /** Guest RAM of pooled VMs (default 256 MB). */
  memory?: number;
  /** Invocations running at once (default: two per core). */
  maxConcurrency?: number;
  /** Synchronous requests waiting for a place before 429 (default 32). */
  maxWaiting?: number;
  /** Beyond loopback: connections one client may hold open at once (default 32). */
  maxConnectionsPerClient?: number;
  /** Beyond loopback: request body bytes one client may have in flight (default 16 MB). */
  maxBodyBytesPerClient?: number;
  /** Queue workers in this server (default: one per core; 0: only enqueue). */
  workers?: number;
  /** First retry delay of failed asynchronous invocations (default 1 s, doubling). */
  retryBaseMs?: number;
  /** Run config.schedule (default true). */
  schedules?: boolean;
  accel?: AccelRequest;
  machine?: HostSetup;
  /** One line per notable thing (requests, schedule runs, retries). */
  onNotice?: (line: string) => void;
}

export interface FnrunServer {
  url: string;
  port: number;
  directory: string;
  token: string | undefined;
  functions: FunctionDirectory;
  history: History;
  queue: JobQueue;
  pool: Pool;
  scheduler: Scheduler | undefined;
  /** Runs a function now, within the server's limits, and records it. */
  run(name: string, event: string, trigger: Trigger): Promise<InvokeResult>;
  close(): Promise<void>;
}

/** Checks the options once, before anything starts. */
function validateServeOptions(options: ServeOptions): void {
  if (typeof options !== "object" || options === null || Array.isArray(options))
    throw new UsageError("serve options must be an object");
  for (const [name, range] of Object.entries(SERVE_RANGES))
    checkRange(options[name as keyof typeof SERVE_RANGES], name, range);
  for (const name of ["directory", "address", "token", "queue", "stateDirectory", "signingKey"] as const) {
    const value = options[name];
    if (value !== undefined && (typeof value !== "string" || value === ""))
      throw new UsageError(`${name} must be a non-empty string, not ${shown(value)}`);
  }
  if (options.queue !== undefined && options.queue !== "sqlite" && !/^rediss?:\/\//.test(options.queue)) {
    throw new UsageError(`queue must be "sqlite" or a redis:// URL, not ${shown(redactUrl(options.queue))}`);
  }
  if (options.queue !== undefined && options.queue !== "sqlite" && !options.signingKey) {
    throw new UsageError(
      "a Redis queue needs a signing key shared with its workers (FNRUN_SIGNING_KEY, or --signing-key-file): " +
        "they run only the bundles it signed",
    );
  }
  const directory = resolve(options.directory ?? "functions");
  let isDirectory = false;
  try {
    isDirectory = statSync(directory).isDirectory();
  } catch {
    throw new UsageError(
      `${directory} does not exist: give the directory of your functions (default functions/)`,
    );
  }
  if (!isDirectory) throw new UsageError(`${directory} is not a directory of functions`);
}

export async function serve(options: ServeOptions = {}): Promise<FnrunServer> {
  validateServeOptions(options);
  const address = options.address ?? "127.0.0.1";
  const loopback = isLoopbackAddress(address);
  const token = options.token;
  if (!loopback && !options.allowRemote) {
    throw new UsageError(
      `refusing to listen on ${address}: anyone who reaches it could run your functions. Add --allow-remote (and --token).`,
    );
  }
  if (!loopback && !token)
    throw new UsageError(`listening on ${address} needs a token (--token or FNRUN_TOKEN)`);
  const notice = options.onNotice ?? (() => {});
  const directory = resolve(options.directory ?? "functions");
  const functions = new FunctionDirectory(directory, notice);
  const stateDirectory = resolve(options.stateDirectory ?? ".fnrun");
  mkdirSync(stateDirectory, { recursive: true, mode: 0o700 });
  const database: Database.Database = await openStateDatabase(join(stateDirectory, "state.db"));
  const machine =
    options.machine ??
    (await resolveHost({ ...(options.accel ? { accel: options.accel } : {}), progress: notice }));
  const history = await History.open();
  const found = await functions.scan();
  for (const fn of found.values()) if (fn.problem) notice(`fnrun: ${fn.name}: ${fn.problem}`);

  const pool = await createPool({
    size: options.pool ?? 1,
    ...(options.memory ? { memory: options.memory } : {}),
    host: machine,
    functions: [...found.values()].filter((fn) => !fn.problem).map((fn) => fn.file),
    onNotice: notice,
  });
  const cores = availableParallelism();
  const admission = new Admission(options.maxConcurrency ?? 2 * cores, options.maxWaiting ?? 32);

  let queue: JobQueue;
  if (options.queue && options.queue !== "sqlite") {
    const { RedisQueue } = await import("../jobs/queue-redis.ts");
    const redis = await RedisQueue.connect(options.queue, {
      retryBaseMs: options.retryBaseMs ?? 1000,
      onNotice: notice,
    });
    // Workers on other hosts have no source tree: each job carries its function, signed.
    queue = withArtifacts(redis, functions, options.signingKey as string);
  } else {
    queue = new SqliteQueue(database, { retryBaseMs: options.retryBaseMs ?? 1000, onNotice: notice });
  }

  const inFlight = new Set<Promise<unknown>>();
  const shutdown = new AbortController();
  // Every request waiting for a place listens to it (at most maxWaiting): that is
  // load, not a leak, and Node's warning at 11 listeners would say otherwise.
  setMaxListeners(0, shutdown.signal);

  async function requireFunction(name: string): Promise<ServedFunction> {
    const fn = await functions.get(name);
    if (!fn) {
      // A file that would be this function but cannot be served says why.
      const skipped = functions.skipped.find((file) => file.name === name);
      throw new HttpError(
        404,
        "ResourceNotFoundException",
        `Function not found: arn:aws:lambda:local:000000000000:function:${name}${skipped ? ` (${skipped.reason})` : ""}`,
      );
    }
    return fn;
  }

  /** Runs `name` now: admission, the pool, the history. */
  async function run(
    name: string,
    event: string,
    trigger: Trigger,
    signal?: AbortSignal,
  ): Promise<InvokeResult> {
    const fn = await requireFunction(name);
    const release = await admission.enter(name, fn.config.concurrency, shutdown.signal);
    const work = runAndRecord(history, { file: fn.file, functionName: name, trigger, event }, () =>
      pool.invoke(fn.file, { event: JSON.parse(event), ...(signal ? { signal } : {}) }),
    ).finally(release);
    inFlight.add(work);
    work.catch(() => {}).finally(() => inFlight.delete(work));
    return work;
  }

  queue.work(async (job, signal) => {
    try {
      return jobOutcome(await run(job.functionName, job.event, job.trigger, signal));
    } catch (error) {
      const outcome = jobOutcome(error);
      notice(
        `fnrun: job ${job.id} (${job.functionName}, attempt ${job.attempts}) failed: ${outcome.detail.slice(0, 300)}`,
      );
      return outcome;
    }
  }, options.workers ?? cores);

  const scheduler =
    options.schedules === false ? undefined : new Scheduler(database, functions, queue, notice);
  await scheduler?.start();

  const context: ServerContext = {
    directory,
    token,
    loopback,
    functions,
    history,
    queue,
    pool,
    scheduler,
    deliveries: new DeliveryLog(database),
    clientLimits: loopback
      ? undefined
      : new ClientLimits(
          options.maxConnectionsPerClient ?? 32,
          options.maxBodyBytesPerClient ?? 16 * 1024 * 1024,
        ),
    shutdown: shutdown.signal,
    notice,
    requireFunction,
    run,
  };
  const server: Server = createServer((request, response) => {
    const handling = handleRequest(context, request, response).catch((error: unknown) =>
      answerFailure(context, response, error),
    );
    inFlight.add(handling);
    handling.finally(() => inFlight.delete(handling));
    // A request answered before all of its body came (refused, or over a limit):
    // the rest is drained for a moment, then the connection goes.
    response.once("finish", () => {
      if (request.complete) return;
      request.resume();
      setTimeout(() => request.socket.destroy(), 2000).unref();
    });
  });
  if (context.clientLimits) {
    const limits = context.clientLimits;
    server.on("connection", (socket) => limits.admit(socket));
  }
  await new Promise<void>((resolveListen, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 9000, address, () => resolveListen());
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = address.includes(":") ? `[${address}]` : address;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${shownHost}:${port}`,
    port,
    directory,
    token,
    functions,
    history,
    queue,
    pool,
    scheduler,
    run,
    close: () => {
      closing ??= (async () => {
        // Stop taking work, then let what runs finish: no VM is killed mid-result.
        server.close();
        await scheduler?.stop();
        await queue.close();
        await Promise.allSettled([...inFlight]);
        shutdown.abort(new Error("fnrun is shutting down"));
        server.closeAllConnections();
        await pool.close();
        history.close();
        database.close();
      })();
      return closing;
    },
  };
}

/** A queue whose jobs carry the bundle of their function, signed with `key` (for workers elsewhere). */
function withArtifacts(queue: JobQueue, functions: FunctionDirectory, key: string): JobQueue {
  return {
    kind: queue.kind,
    enqueue: async (job) => {
      const fn = await functions.get(job.functionName);
      return queue.enqueue(fn?.bundle ? { ...job, artifact: signPortable(toPortable(fn.bundle), key) } : job);
    },
    list: (states, limit) => queue.list(states, limit),
    get: (id) => queue.get(id),
    replay: (id) => queue.replay(id),
    purge: (which) => queue.purge(which),
    hasUnfinished: (key) => queue.hasUnfinished(key),
    work: (handler, concurrency) => queue.work(handler, concurrency),
    close: () => queue.close(),
  };
}

export type { InvocationRecord };
