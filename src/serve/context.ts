/**
 * What a running `fnrun serve` gives its routes (routes/, dashboard/): the
 * functions, the history, the queue, the pool, and run(), which runs a function
 * within the server's limits and records it.
 */
import type { FunctionDirectory, ServedFunction } from "../build/functions-dir.ts";
import type { InvokeResult } from "../invoke/options.ts";
import type { Pool } from "../invoke/pool.ts";
import type { History } from "../jobs/history.ts";
import type { JobQueue, Trigger } from "../jobs/queue.ts";
import type { Scheduler } from "../jobs/scheduler.ts";
import type { ClientLimits } from "./client-limits.ts";
import type { DeliveryLog } from "./deliveries.ts";

export interface ServerContext {
  directory: string;
  /** Required of every request when set (and always when not on loopback). */
  token: string | undefined;
  /** Listening on a loopback address: requests from this machine only, and never from a web page. */
  loopback: boolean;
  functions: FunctionDirectory;
  history: History;
  queue: JobQueue;
  pool: Pool;
  scheduler: Scheduler | undefined;
  /** Per-client bounds on connections and request bytes (beyond loopback only). */
  clientLimits: ClientLimits | undefined;
  /** Webhook deliveries accepted, to refuse replays. */
  deliveries: DeliveryLog;
  /** Aborted when the server shuts down. */
  shutdown: AbortSignal;
  notice: (line: string) => void;
  /** The function called `name`, or a 404 in Lambda's words. */
  requireFunction(name: string): Promise<ServedFunction>;
  /** Runs a function now, within the server's limits, and records it. */
  run(name: string, event: string, trigger: Trigger, signal?: AbortSignal): Promise<InvokeResult>;
}
