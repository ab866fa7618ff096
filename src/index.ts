/**
 * fnrun's library API. Everything else in src/ is internal.
 *
 *     import { invoke } from "fnrun";
 *     const { result } = await invoke("functions/hello.ts", { event: { name: "Ada" } });
 */

export { type BuildOptions, type BuildResult, build } from "./build/build.ts";
export type { FunctionConfig, MountConfig } from "./build/config.ts";
export type { AccelRequest } from "./host/accel.ts";
export { invoke } from "./invoke/invoke.ts";
export type { InvokeOptions, InvokeResult, StartMode } from "./invoke/options.ts";
export { createPool, Pool, type PoolOptions, type PoolStats } from "./invoke/pool.ts";
export { type FnrunServer, type ServeOptions, serve } from "./serve/server.ts";
export { backgroundSnapshots, stopBackgroundSnapshots } from "./start/snapshot.ts";
export type {
  Callback,
  Context,
  Handler,
  HttpEvent,
  HttpResult,
  ScheduledEvent,
  WebhookEvent,
} from "./types.ts";
export {
  BootError,
  BundleError,
  ExitCode,
  FnrunError,
  FunctionError,
  HandlerNotFoundError,
  InternalError,
  InterruptedError,
  OutOfMemoryError,
  ResultTooLargeError,
  SetupError,
  TimeoutError,
  UsageError,
} from "./util/errors.ts";
export type { LogEntry } from "./vm/log-collector.ts";
export type { TimelineEntry } from "./vm/timeline.ts";
