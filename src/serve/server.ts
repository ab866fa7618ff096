/**
 * `fnrun serve`: a long-running server for the functions in a directory.
 *
 *   POST /2015-03-31/functions/{name}/invocations   AWS Lambda's Invoke API
 *        (X-Amz-Invocation-Type RequestResponse | Event | DryRun, X-Amz-Log-Type
 *        Tail, X-Amz-Function-Error), so AWS SDK clients work against it
 *   POST /invoke/{name}                              the event as the body, the result back
 *   POST /webhooks/{name}                            signed deliveries (config.webhook), queued
 *   GET  /_fnrun/...                                 the dashboard and its API (dashboard.ts)
 *
 * Synchronous invocations run through a warm pool, within global and
 * per-function concurrency limits; asynchronous ones (Event, webhooks,
 * schedules) go through a durable queue (SQLite under .fnrun/, or BullMQ on
 * Redis) with retries and a dead-letter list. Every invocation is recorded in
 * the history. close() drains: no VM is killed while its result is on the way.
 */
import { randomUUID } from "node:crypto";
import { mkdirSync, statSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import type Database from "better-sqlite3";
import { toPortable } from "../build/artifact.ts";
import { LIMITS } from "../build/config.ts";
import { FunctionDirectory, type ServedFunction } from "../build/functions-dir.ts";
import type { AccelRequest } from "../host/accel.ts";
import { type HostSetup, resolveHost } from "../host/setup.ts";
import { DEFAULTS, type InvokeResult } from "../invoke/options.ts";
import { createPool, type Pool } from "../invoke/pool.ts";
import { History, type InvocationRecord } from "../jobs/history.ts";
import {
  type JobOutcome,
  type JobQueue,
  openStateDatabase,
  SqliteQueue,
  type Trigger,
} from "../jobs/queue.ts";
import { recordOf } from "../jobs/record.ts";
import { Scheduler } from "../jobs/scheduler.ts";
import { FnrunError, FunctionError, UsageError } from "../util/errors.ts";
import { checkRange, shown } from "../util/validate.ts";
import { Admission, TooManyRequests } from "./admission.ts";
import { hasToken, hostOfHeader, isLoopbackAddress, TOKEN_COOKIE, verifyWebhookSignature } from "./auth.ts";

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
  /** "sqlite" (default: .fnrun/state.db) or a redis:// URL (BullMQ). */
  queue?: string;
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

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

const MAX_BODY = DEFAULTS.maxEventBytes;

function readBody(request: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(
          new HttpError(413, "RequestTooLargeException", `Request must be smaller than ${MAX_BODY} bytes`),
        );
        request.destroy();
        return;
      }
      chunks.push(chunk);
    });
    request.on("end", () => resolve(Buffer.concat(chunks)));
    request.on("error", reject);
  });
}

function sendJson(
  response: ServerResponse,
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
): void {
  const body = typeof value === "string" ? value : JSON.stringify(value);
  response.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    ...headers,
  });
  response.end(body);
}

/** Lambda's error responses: x-amzn-ErrorType names the exception, the body says why. */
function sendAwsError(response: ServerResponse, error: HttpError): void {
  sendJson(
    response,
    error.status,
    { Type: "User", message: error.message },
    { "x-amzn-errortype": error.type },
  );
}

/** The event a webhook delivery becomes: the shape of a Lambda function URL request (payload 2.0). */
export function httpEvent(
  request: IncomingMessage,
  body: Buffer,
  requestId: string,
): Record<string, unknown> {
  const url = new URL(request.url ?? "/", "http://fnrun.invalid");
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(",") : value;
  }
  const text = body.toString("utf8");
  const isText = Buffer.from(text, "utf8").equals(body);
  return {
    version: "2.0",
    routeKey: "$default",
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    headers,
    queryStringParameters: Object.fromEntries(url.searchParams),
    requestContext: {
      http: {
        method: request.method,
        path: url.pathname,
        protocol: `HTTP/${request.httpVersion}`,
        sourceIp: request.socket.remoteAddress,
        userAgent: request.headers["user-agent"] ?? "",
      },
      requestId,
      timeEpoch: Date.now(),
    },
    body: isText ? text : body.toString("base64"),
    isBase64Encoded: !isText,
  };
}

/** The function name in an Invoke path: a name, a name with a qualifier, or a full ARN. */
export function functionNameFromPath(segment: string): string {
  const decoded = decodeURIComponent(segment);
  const arn = decoded.match(/^arn:aws[^:]*:lambda:[^:]*:[^:]*:function:([^:]+)/);
  return arn?.[1] ?? decoded.split(":")[0] ?? decoded;
}

/** The error body Lambda returns with X-Amz-Function-Error. */
function functionErrorBody(error: FnrunError): Record<string, unknown> {
  if (error instanceof FunctionError) {
    return {
      errorType: error.errorType,
      errorMessage: error.errorMessage,
      trace: error.trace,
      stackTrace: error.trace,
    };
  }
  return { errorType: error.name, errorMessage: error.message };
}

/** Errors that are the function's doing, returned by Lambda as 200 + X-Amz-Function-Error. */
function isFunctionFault(error: FnrunError): boolean {
  return ["FUNCTION", "TIMEOUT", "OUT_OF_MEMORY", "RESULT_TOO_LARGE", "BUNDLE"].includes(error.code);
}

function logTail(logs: string): string {
  return Buffer.from(Buffer.from(logs).subarray(-4096)).toString("base64");
}

/** Checks the options once, before anything starts. */
function validateServeOptions(options: ServeOptions): void {
  if (typeof options !== "object" || options === null || Array.isArray(options))
    throw new UsageError("serve options must be an object");
  checkRange(options.port, "port", { min: 0, max: 65535 }, true);
  checkRange(options.pool, "pool", { min: 0, max: 64 }, true);
  checkRange(options.memory, "memory", LIMITS.memoryMB, true);
  checkRange(options.maxConcurrency, "maxConcurrency", { min: 1, max: 1024 }, true);
  checkRange(options.maxWaiting, "maxWaiting", { min: 0, max: 100_000 }, true);
  checkRange(options.workers, "workers", { min: 0, max: 256 }, true);
  checkRange(options.retryBaseMs, "retryBaseMs", { min: 0, max: 3_600_000 });
  for (const name of ["directory", "address", "token", "queue", "stateDirectory"] as const) {
    const value = options[name];
    if (value !== undefined && (typeof value !== "string" || value === ""))
      throw new UsageError(`${name} must be a non-empty string, not ${shown(value)}`);
  }
  if (options.queue !== undefined && options.queue !== "sqlite" && !/^rediss?:\/\//.test(options.queue)) {
    throw new UsageError(`queue must be "sqlite" or a redis:// URL, not ${shown(options.queue)}`);
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
  const functions = new FunctionDirectory(directory);
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
    const redis = await RedisQueue.connect(options.queue, { retryBaseMs: options.retryBaseMs ?? 1000 });
    // Workers on other hosts have no source tree: each job carries its function.
    queue = withArtifacts(redis, functions);
  } else {
    queue = new SqliteQueue(database, { retryBaseMs: options.retryBaseMs ?? 1000 });
  }

  const inFlight = new Set<Promise<unknown>>();
  const shutdown = new AbortController();

  async function requireFunction(name: string): Promise<ServedFunction> {
    const fn = await functions.get(name);
    if (!fn) {
      throw new HttpError(
        404,
        "ResourceNotFoundException",
        `Function not found: arn:aws:lambda:local:000000000000:function:${name}`,
      );
    }
    return fn;
  }

  /** Runs `name` now: admission, the pool, the history. */
  async function run(name: string, event: string, trigger: Trigger): Promise<InvokeResult> {
    const fn = await requireFunction(name);
    const release = await admission.enter(name, fn.config.concurrency, shutdown.signal);
    const startedAt = Date.now();
    const work = (async () => {
      try {
        const result = await pool.invoke(fn.file, { event: JSON.parse(event) });
        history.add(
          recordOf({ file: fn.file, functionName: name, trigger, event, startedAt, outcome: result }),
        );
        return result;
      } catch (error) {
        if (error instanceof FnrunError) {
          history.add(
            recordOf({ file: fn.file, functionName: name, trigger, event, startedAt, outcome: error }),
          );
        }
        throw error;
      } finally {
        release();
      }
    })();
    inFlight.add(work);
    work.catch(() => {}).finally(() => inFlight.delete(work));
    return work;
  }

  const handleJob = async (job: {
    functionName: string;
    event: string;
    trigger: Trigger;
    id: string;
    attempts: number;
  }) => {
    try {
      const result = await run(job.functionName, job.event, job.trigger);
      return { ok: true, requestId: result.requestId, detail: result.resultJson } satisfies JobOutcome;
    } catch (error) {
      const detail = error instanceof FnrunError ? error.toJSON() : { errorMessage: String(error) };
      notice(
        `fnrun: job ${job.id} (${job.functionName}, attempt ${job.attempts}) failed: ${JSON.stringify(detail).slice(0, 300)}`,
      );
      return {
        ok: false,
        ...(error instanceof FnrunError && error.report ? { requestId: error.report.requestId } : {}),
        detail: JSON.stringify(detail),
      } satisfies JobOutcome;
    }
  };
  queue.work(handleJob, options.workers ?? cores);

  const scheduler =
    options.schedules === false ? undefined : new Scheduler(database, functions, queue, notice);
  await scheduler?.start();

  const server: Server = createServer((request, response) => {
    const handling = handle(request, response).catch((error: unknown) => {
      if (response.headersSent) {
        response.destroy();
        return;
      }
      if (error instanceof HttpError) return sendAwsError(response, error);
      if (error instanceof TooManyRequests)
        return sendAwsError(response, new HttpError(429, "TooManyRequestsException", error.message));
      notice(`fnrun: internal error: ${(error as Error).stack ?? error}`);
      sendAwsError(response, new HttpError(500, "ServiceException", (error as Error).message));
    });
    inFlight.add(handling);
    handling.finally(() => inFlight.delete(handling));
  });

  const dashboard = await import("./dashboard/api.ts");
  let context: FnrunServer;

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? "/", "http://fnrun.invalid");
    if (loopback) {
      // A web page must not be able to drive fnrun through the user's browser.
      const host = hostOfHeader(request.headers.host ?? "");
      if (!isLoopbackAddress(host))
        throw new HttpError(403, "AccessDeniedException", "Host must be a loopback address");
      const origin = request.headers.origin;
      if (origin && !isLoopbackAddress(hostOfHeader(new URL(origin).host))) {
        throw new HttpError(403, "AccessDeniedException", "cross-origin requests are refused");
      }
    }
    const webhook = url.pathname.match(/^\/webhooks\/([^/]+)$/);
    const body = await readBody(request);
    // The dashboard's first page may bring the token in its URL; a cookie keeps it.
    const queryToken = url.pathname.startsWith("/_fnrun") ? url.searchParams.get("token") : null;
    if (token && !webhook) {
      const viaQuery = queryToken !== null && queryToken === token;
      if (!viaQuery && !hasToken(request, body, token)) {
        throw new HttpError(
          401,
          "UnrecognizedClientException",
          "a token is required (Authorization: Bearer TOKEN)",
        );
      }
      if (viaQuery) {
        response.setHeader(
          "set-cookie",
          `${TOKEN_COOKIE}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/`,
        );
      }
    }
    if (shutdown.signal.aborted) throw new HttpError(503, "ServiceException", "fnrun is shutting down");

    const invoke = url.pathname.match(/^\/2015-03-31\/functions\/([^/]+)\/invocations$/);
    if (invoke && request.method === "POST")
      return lambdaInvoke(request, response, functionNameFromPath(invoke[1] as string), body);
    const plain = url.pathname.match(/^\/invoke\/([^/]+)$/);
    if (plain && request.method === "POST")
      return plainInvoke(response, decodeURIComponent(plain[1] as string), body);
    if (webhook && request.method === "POST")
      return webhookDelivery(request, response, decodeURIComponent(webhook[1] as string), body);
    if (url.pathname === "/healthz") return sendJson(response, 200, { ok: true });
    if (url.pathname === "/_fnrun" || url.pathname.startsWith("/_fnrun/")) {
      return dashboard.handleDashboard(context, request, response, url, body);
    }
    throw new HttpError(404, "ResourceNotFoundException", `no route for ${request.method} ${url.pathname}`);
  }

  function parseEvent(body: Buffer): string {
    if (body.length === 0) return "{}";
    const text = body.toString("utf8");
    try {
      JSON.parse(text);
    } catch {
      throw new HttpError(400, "InvalidRequestContentException", "Could not parse request body into json");
    }
    return text;
  }

  async function lambdaInvoke(
    request: IncomingMessage,
    response: ServerResponse,
    name: string,
    body: Buffer,
  ) {
    const type = String(request.headers["x-amz-invocation-type"] ?? "RequestResponse");
    const fn = await requireFunction(name);
    const event = parseEvent(body);
    const common = { "x-amz-executed-version": "$LATEST" };
    if (type === "DryRun") {
      response.writeHead(204, common);
      response.end();
      return;
    }
    if (type === "Event") {
      const id = await queue.enqueue({ functionName: fn.name, event, trigger: "http" });
      response.writeHead(202, { ...common, "x-amzn-requestid": `job-${id}` });
      response.end();
      return;
    }
    if (type !== "RequestResponse") {
      throw new HttpError(
        400,
        "InvalidParameterValueException",
        `X-Amz-Invocation-Type must be RequestResponse, Event or DryRun`,
      );
    }
    const tail = request.headers["x-amz-log-type"] === "Tail";
    try {
      const result = await run(fn.name, event, "http");
      sendJson(response, 200, result.resultJson, {
        ...common,
        "x-amzn-requestid": result.requestId,
        ...(tail ? { "x-amz-log-result": logTail(result.logs) } : {}),
      });
    } catch (error) {
      if (!(error instanceof FnrunError) || !isFunctionFault(error)) throw error;
      sendJson(response, 200, functionErrorBody(error), {
        ...common,
        "x-amz-function-error": "Unhandled",
        ...(error.report ? { "x-amzn-requestid": error.report.requestId } : {}),
        ...(tail && error.report ? { "x-amz-log-result": logTail(error.report.logs) } : {}),
      });
    }
  }

  async function plainInvoke(response: ServerResponse, name: string, body: Buffer) {
    const fn = await requireFunction(name);
    try {
      const result = await run(fn.name, parseEvent(body), "http");
      sendJson(response, 200, result.resultJson, { "x-fnrun-request-id": result.requestId });
    } catch (error) {
      if (!(error instanceof FnrunError)) throw error;
      const status = error.code === "TIMEOUT" ? 504 : isFunctionFault(error) ? 500 : 502;
      sendJson(response, status, { ...functionErrorBody(error), requestId: error.report?.requestId });
    }
  }

  async function webhookDelivery(
    request: IncomingMessage,
    response: ServerResponse,
    name: string,
    body: Buffer,
  ) {
    const fn = await functions.get(name);
    const secretEnv = fn?.config.webhook?.secretEnv;
    if (!fn || !secretEnv) throw new HttpError(404, "ResourceNotFoundException", `no webhook named ${name}`);
    const secret = process.env[secretEnv];
    if (!secret)
      throw new HttpError(503, "ServiceException", `the webhook's secret is not set: export ${secretEnv}`);
    const signature = request.headers["x-hub-signature-256"];
    // A bad signature costs nothing: no VM, no queue entry.
    if (!verifyWebhookSignature(secret, body, typeof signature === "string" ? signature : undefined)) {
      throw new HttpError(
        401,
        "InvalidSignatureException",
        "the X-Hub-Signature-256 signature does not match",
      );
    }
    const requestId = randomUUID();
    const id = await queue.enqueue({
      functionName: fn.name,
      event: JSON.stringify(httpEvent(request, body, requestId)),
      trigger: "webhook",
    });
    sendJson(response, 202, { accepted: true, job: id });
  }

  await new Promise<void>((resolveListen, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 9000, address, () => resolveListen());
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = address.includes(":") ? `[${address}]` : address;
  let closing: Promise<void> | undefined;

  context = {
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
        scheduler?.stop();
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
  return context;
}

/** A queue whose jobs carry the bundle of their function (for workers elsewhere). */
function withArtifacts(queue: JobQueue, functions: FunctionDirectory): JobQueue {
  return {
    kind: queue.kind,
    enqueue: async (job) => {
      const fn = await functions.get(job.functionName);
      return queue.enqueue(fn?.bundle ? { ...job, artifact: toPortable(fn.bundle) } : job);
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
