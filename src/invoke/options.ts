/**
 * What invoke() takes and gives: its options, their defaults (the Lambda
 * contract's), and their checks at the boundary, so inner code trusts them.
 */
import { DEFAULT_MEMORY_MB, LIMITS, type MountConfig, validateEnv } from "../build/config.ts";
import { isHandlerString } from "../build/handler.ts";
import type { AccelRequest } from "../host/accel.ts";
import type { HostSetup } from "../host/setup.ts";
import type { StartMode } from "../start/run.ts";
import { UsageError } from "../util/errors.ts";
import type { Progress } from "../util/progress.ts";
import { checkRange, type NumberRange, shown } from "../util/validate.ts";
import type { LogEntry } from "../vm/log-collector.ts";
import type { TimelineEntry } from "../vm/timeline.ts";

export type { StartMode };

export const DEFAULTS = {
  timeoutSeconds: 30,
  memoryMB: DEFAULT_MEMORY_MB,
  maxResultBytes: 6 * 1024 * 1024,
  maxLogBytes: 1024 * 1024,
  maxEventBytes: 6 * 1024 * 1024,
  initTimeoutSeconds: 10,
} as const;

/** What the numeric options accept (the CLI's flags too). */
export const INVOKE_RANGES = {
  timeout: LIMITS.timeoutSeconds,
  memory: LIMITS.memoryMB,
  maxResultBytes: { min: 1, max: 256 * 1024 * 1024, integer: true },
  maxLogBytes: { min: 1024, max: 256 * 1024 * 1024, integer: true },
} as const satisfies Record<string, NumberRange>;

export interface InvokeOptions {
  /** The event: any JSON value (default `{}`). */
  event?: unknown;
  /**
   * What to call (default: config.handler, else `handler`, else the default export): an
   * export, a path in the exports ("nested.handler"), or Lambda's MODULE.PATH for this file.
   */
  handler?: string;
  /** Seconds the handler may run (default: config.timeout, else 30). */
  timeout?: number;
  /** Guest RAM in MB (default: config.memory, else 256). */
  memory?: number;
  /** Environment for the function, over config.env. */
  env?: Record<string, string>;
  /** Give the guest a network device (default: config.net, else off). */
  net?: boolean;
  /** Shared folders, "HOST:GUEST[:ro|rw]" or objects (added to config.mounts). */
  mounts?: Array<string | MountConfig>;
  accel?: AccelRequest;
  start?: StartMode;
  maxResultBytes?: number;
  maxLogBytes?: number;
  requestId?: string;
  signal?: AbortSignal;
  /** Each log chunk as it arrives (already counted against maxLogBytes). */
  onLog?: (entry: LogEntry) => void;
  /** One line per slow step (first kernel build, runtime image build). */
  onProgress?: Progress;
  /** One-line notices, e.g. which accelerator was chosen and why. */
  onNotice?: (message: string) => void;
  /** Show kernel messages on the console (debugging boot problems). */
  verbose?: boolean;
  /** Reuse a resolved host setup (serve and the pool do). */
  host?: HostSetup;
}

export interface InvokeResult {
  requestId: string;
  functionName: string;
  /** The handler's return value (parsed from its JSON). */
  result: unknown;
  resultJson: string;
  logs: string;
  logEntries: LogEntry[];
  logsTruncated: boolean;
  timeline: TimelineEntry[];
  durationMs: number;
  accel: "kvm" | "tcg";
  startMode: "boot" | "snapshot" | "pool";
}

/** Everything decided before a VM starts. */
const KNOWN_OPTIONS = new Set([
  "event",
  "handler",
  "timeout",
  "memory",
  "env",
  "net",
  "mounts",
  "accel",
  "start",
  "maxResultBytes",
  "maxLogBytes",
  "requestId",
  "signal",
  "onLog",
  "onProgress",
  "onNotice",
  "verbose",
  "host",
]);

/** Checks the API options once, at the boundary; inner code trusts them. */
export function validateInvokeOptions(options: InvokeOptions): void {
  if (typeof options !== "object" || options === null || Array.isArray(options))
    throw new UsageError("invoke options must be an object");
  const unknown = Object.keys(options).filter((key) => !KNOWN_OPTIONS.has(key));
  if (unknown.length > 0) {
    throw new UsageError(
      `unknown invoke option(s): ${unknown.join(", ")}; known: ${[...KNOWN_OPTIONS].join(", ")}`,
    );
  }
  for (const name of ["timeout", "memory", "maxResultBytes", "maxLogBytes"] as const)
    checkRange(options[name], name, INVOKE_RANGES[name]);
  if (options.handler !== undefined && !isHandlerString(options.handler)) {
    throw new UsageError(
      `handler must be an export or a path to one (nested.handler), or Lambda's MODULE.PATH, not ${shown(options.handler)}`,
    );
  }
  if (options.accel !== undefined && !["auto", "kvm", "tcg"].includes(options.accel)) {
    throw new UsageError(`accel must be auto, kvm or tcg, not ${shown(options.accel)}`);
  }
  if (options.start !== undefined && !["auto", "boot", "snapshot"].includes(options.start)) {
    throw new UsageError(`start must be auto, boot or snapshot, not ${shown(options.start)}`);
  }
  if (
    options.requestId !== undefined &&
    (typeof options.requestId !== "string" || !/^[\w.:-]{1,128}$/.test(options.requestId))
  ) {
    throw new UsageError(
      `requestId must be 1-128 letters, digits, "-", "_", "." or ":", not ${shown(options.requestId)}`,
    );
  }
  for (const name of ["signal", "onLog", "onProgress", "onNotice"] as const) {
    const value = options[name];
    const ok = name === "signal" ? value instanceof AbortSignal : typeof value === "function";
    if (value !== undefined && !ok) {
      throw new UsageError(`${name} must be ${name === "signal" ? "an AbortSignal" : "a function"}`);
    }
  }
  if (options.net !== undefined && typeof options.net !== "boolean")
    throw new UsageError("net must be true or false");
  if (options.env !== undefined) {
    try {
      validateEnv(options.env, "env");
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  }
  if (options.mounts !== undefined && !Array.isArray(options.mounts)) {
    throw new UsageError('mounts must be an array of "HOST:GUEST[:ro|rw]"');
  }
}

/** The event as JSON text, within the size limit. */
export function eventJson(event: unknown): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(event === undefined ? {} : event);
  } catch (error) {
    throw new UsageError(`the event cannot be turned into JSON: ${(error as Error).message}`);
  }
  if (json === undefined) throw new UsageError("the event must be a JSON value");
  const size = Buffer.byteLength(json);
  if (size > DEFAULTS.maxEventBytes) {
    throw new UsageError(
      `the event is ${(size / 1024 / 1024).toFixed(1)} MB; the limit is ${DEFAULTS.maxEventBytes / 1024 / 1024} MB (as Lambda's)`,
    );
  }
  return json;
}
