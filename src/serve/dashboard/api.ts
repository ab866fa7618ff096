/**
 * The dashboard of `fnrun serve`, under /_fnrun/: a JSON API (invocations,
 * functions, queue, performance), a server-sent event stream of invocations as
 * they end, and the page itself (dashboard-page.ts).
 */
import { readFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import type { InvocationRecord } from "../../jobs/history.ts";
import { packageRoot } from "../../util/paths.ts";
import type { ServerContext } from "../context.ts";
import type { BenchResults } from "./charts.ts";

function json(response: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  response.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
  });
  response.end(body);
}

/** What the list shows of an invocation (the rest is fetched when it is opened). */
function summary(record: InvocationRecord) {
  return {
    requestId: record.requestId,
    functionName: record.functionName,
    trigger: record.trigger,
    status: record.status,
    startMode: record.startMode,
    startedAt: record.startedAt,
    durationMs: record.durationMs,
  };
}

async function functionsView(server: ServerContext) {
  const schedules = server.scheduler?.entries() ?? [];
  return (await server.functions.list()).map((fn) => ({
    name: fn.name,
    file: fn.file,
    problem: fn.problem ?? null,
    timeout: fn.config.timeout ?? null,
    memory: fn.config.memory ?? null,
    net: fn.config.net ?? false,
    concurrency: fn.config.concurrency ?? null,
    // Names only: a secret's value never leaves the server.
    env: Object.keys(fn.config.env ?? {}),
    mounts: (fn.config.mounts ?? []).map(
      (mount) => `${mount.target}${mount.readOnly ? " (read-only)" : " (read-write)"}`,
    ),
    webhook: fn.config.webhook
      ? { path: `/webhooks/${fn.name}`, secretEnv: fn.config.webhook.secretEnv }
      : null,
    schedules: schedules
      .filter((entry) => entry.functionName === fn.name)
      .map((entry) => ({
        expression: entry.expression,
        overlap: entry.overlap,
        next: Number.isFinite(entry.next) ? new Date(entry.next).toISOString() : null,
        problem: entry.problem ?? null,
      })),
  }));
}

function streamInvocations(server: ServerContext, request: IncomingMessage, response: ServerResponse): void {
  response.writeHead(200, {
    "content-type": "text/event-stream",
    "cache-control": "no-store",
    connection: "keep-alive",
  });
  response.write(": fnrun\n\n");
  const send = (record: InvocationRecord) =>
    response.write(`event: invocation\ndata: ${JSON.stringify(summary(record))}\n\n`);
  server.history.on("record", send);
  const keepAlive = setInterval(() => response.write(": ping\n\n"), 15_000);
  request.on("close", () => {
    clearInterval(keepAlive);
    server.history.off("record", send);
  });
}

async function readBenchResults(): Promise<(BenchResults & { table: string }) | undefined> {
  try {
    return JSON.parse(
      await readFile(join(packageRoot, "bench/results/latest.json"), "utf8"),
    ) as BenchResults & { table: string };
  } catch {
    return undefined;
  }
}

export async function handleDashboard(
  server: ServerContext,
  request: IncomingMessage,
  response: ServerResponse,
  url: URL,
  _body: Buffer,
): Promise<void> {
  const path = url.pathname.replace(/\/+$/, "") || "/";
  const method = request.method ?? "GET";
  if (method === "GET" && (path === "/_fnrun" || path === "/_fnrun/index.html")) {
    const { dashboardPage } = await import("./page.ts");
    const page = await dashboardPage();
    response.writeHead(200, {
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
      // Nothing but our own script and styles: a function's output can never run as code here.
      "content-security-policy":
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
      "x-content-type-options": "nosniff",
    });
    response.end(page.html);
    return;
  }
  if (method === "GET" && path.startsWith("/_fnrun/assets/")) {
    const { dashboardPage } = await import("./page.ts");
    const asset = (await dashboardPage()).assets.get(path.slice("/_fnrun/assets/".length));
    if (!asset) return json(response, 404, { message: "no such asset" });
    response.writeHead(200, {
      "content-type": asset.type,
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
    });
    response.end(asset.body);
    return;
  }
  if (method === "GET" && path === "/_fnrun/api/invocations") {
    const limit = Math.min(500, Math.max(1, Number(url.searchParams.get("limit") ?? 100)));
    return json(response, 200, server.history.list(limit).map(summary));
  }
  if (method === "GET" && path === "/_fnrun/api/events") return streamInvocations(server, request, response);
  const one = path.match(/^\/_fnrun\/api\/invocations\/([^/]+)$/);
  if (method === "GET" && one) {
    const record = server.history.get(decodeURIComponent(one[1] as string));
    return record ? json(response, 200, record) : json(response, 404, { message: "no such invocation" });
  }
  const replay = path.match(/^\/_fnrun\/api\/invocations\/([^/]+)\/replay$/);
  if (method === "POST" && replay) {
    const record = server.history.get(decodeURIComponent(replay[1] as string));
    if (!record) return json(response, 404, { message: "no such invocation" });
    if (record.eventTruncated)
      return json(response, 409, { message: "the event was too large to keep; it cannot be replayed" });
    const id = await server.queue.enqueue({
      functionName: record.functionName,
      event: record.event,
      trigger: "replay",
    });
    return json(response, 202, { job: id });
  }
  if (method === "GET" && path === "/_fnrun/api/functions")
    return json(response, 200, await functionsView(server));
  if (method === "GET" && path === "/_fnrun/api/queue") {
    const jobs = await server.queue.list(["pending", "running", "dead"], 200);
    return json(
      response,
      200,
      jobs.map((job) => ({ ...job, retrying: job.state === "pending" && job.attempts > 0 })),
    );
  }
  const jobReplay = path.match(/^\/_fnrun\/api\/queue\/([^/]+)\/replay$/);
  if (method === "POST" && jobReplay) {
    const id = await server.queue.replay(decodeURIComponent(jobReplay[1] as string));
    return json(response, 202, { job: id });
  }
  if (method === "POST" && path === "/_fnrun/api/queue/purge") {
    return json(response, 200, { purged: await server.queue.purge("dead") });
  }
  const chart = path.match(/^\/_fnrun\/api\/performance\/(latency|throughput)\.svg$/);
  if (method === "GET" && chart) {
    const results = await readBenchResults();
    if (!results) return json(response, 404, { message: "no benchmark results yet: run `make bench`" });
    const { latencyChart, throughputChart } = await import("./charts.ts");
    const body = chart[1] === "latency" ? latencyChart(results) : throughputChart(results);
    response.writeHead(200, {
      "content-type": "image/svg+xml",
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
    });
    response.end(body);
    return;
  }
  if (method === "GET" && path === "/_fnrun/api/performance") {
    try {
      return json(
        response,
        200,
        JSON.parse(await readFile(join(packageRoot, "bench/results/latest.json"), "utf8")),
      );
    } catch {
      return json(response, 404, { message: "no benchmark results yet: run `make bench`" });
    }
  }
  json(response, 404, { message: `no route for ${method} ${path}` });
}
