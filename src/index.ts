/**
 * fnrun's library API. Everything else in src/ is internal.
 *
 *     import { invoke } from "fnrun";
 *     const { result } = await invoke("functions/hello.ts", { event: { name: "Ada" } });
 */
export type { AccelRequest } from "./accel.ts";
export { type BuildOptions, type BuildResult, build } from "./build.ts";
export type { FunctionConfig, MountConfig } from "./config.ts";
export {
  BootError,
  BundleError,
  ExitCode,
  FnrunError,
  FunctionError,
  InternalError,
  InterruptedError,
  OutOfMemoryError,
  ResultTooLargeError,
  SetupError,
  TimeoutError,
  UsageError,
} from "./errors.ts";
export { type InvokeOptions, type InvokeResult, invoke, type StartMode } from "./invoke.ts";
export { createPool, Pool, type PoolOptions, type PoolStats } from "./pool.ts";
export { type FnrunServer, type ServeOptions, serve } from "./serve.ts";
export type { LogEntry, TimelineEntry } from "./session.ts";
export { backgroundSnapshots } from "./snapshot.ts";
export type {
  Callback,
  Context,
  Handler,
  HttpEvent,
  HttpResult,
  ScheduledEvent,
  WebhookEvent,
} from "./types.ts";
