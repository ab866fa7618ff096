/**
 * A function's own configuration (`export const config = { ... }`): its shape,
 * its limits, and their validation. Reading it from a file is config-extract.ts.
 */
import { resolve as resolvePath } from "node:path";
import { inRange, type NumberRange, outOfRangeMessage, shown } from "../util/validate.ts";
import { isHandlerString } from "./handler.ts";

export interface MountConfig {
  /** Host directory; relative paths are relative to the function's file. */
  source: string;
  /** Where the guest sees it. */
  target: string;
  readOnly: boolean;
}

export interface WebhookConfig {
  /** The environment variable (on the host running `fnrun serve`) that holds the shared secret. */
  secretEnv: string;
  /** Whose signatures the deliveries carry (default "github"). */
  scheme?: WebhookScheme;
}

export const WEBHOOK_SCHEMES = ["github", "stripe", "slack"] as const;
export type WebhookScheme = (typeof WEBHOOK_SCHEMES)[number];

export interface FunctionConfig {
  /** Seconds the handler may run. */
  timeout?: number;
  /** Guest RAM in MB. */
  memory?: number;
  env?: Record<string, string>;
  /** Give the guest a network device (user-mode networking). Off by default. */
  net?: boolean;
  /** What to call: an export, a path in the exports ("nested.handler"), or Lambda's MODULE.PATH. */
  handler?: string;
  mounts?: MountConfig[];
  /** Cron expressions (5 fields) on which `fnrun serve` runs the function. */
  schedule?: string[];
  /** What to do when a scheduled run is due while the previous one still runs. */
  overlap?: "skip" | "queue" | "allow";
  webhook?: WebhookConfig;
  /** At most this many VMs of this function at once under `fnrun serve`. */
  concurrency?: number;
}

/**
 * Changes whenever what validateConfig keeps changes: cached bundles carry their
 * config, and one read by an older fnrun must not be reused (build/bundle.ts).
 */
export const CONFIG_FORMAT = 2;

export const CONFIG_KEYS = [
  "timeout",
  "memory",
  "env",
  "net",
  "handler",
  "mounts",
  "schedule",
  "overlap",
  "webhook",
  "concurrency",
] as const;

/** A function's memory when neither its config nor its invocation says (Lambda's minimum is 128). */
export const DEFAULT_MEMORY_MB = 256;

export const LIMITS = {
  timeoutSeconds: { min: 0.1, max: 900 },
  memoryMB: { min: 64, max: 16384, integer: true },
  concurrency: { min: 1, max: 256, integer: true },
} as const satisfies Record<string, NumberRange>;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function checkNumber(value: unknown, name: string, range: NumberRange): number {
  if (typeof value !== "number" || !inRange(value, range))
    throw new Error(outOfRangeMessage(name, range, shown(value)));
  return value;
}

export function validateEnv(value: unknown, name: string): Record<string, string> {
  if (!isRecord(value)) throw new Error(`${name} must be an object of strings`);
  const env: Record<string, string> = {};
  for (const [key, entry] of Object.entries(value)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key))
      throw new Error(`${name}: "${key}" is not a valid variable name`);
    if (typeof entry !== "string" && typeof entry !== "number" && typeof entry !== "boolean") {
      throw new Error(`${name}.${key} must be a string`);
    }
    env[key] = String(entry);
  }
  return env;
}

/** Parses "HOST:GUEST[:ro|rw]". */
export function parseMount(spec: string): MountConfig {
  const parts = spec.split(":");
  const mode = parts.length === 3 ? parts[2] : "ro";
  if (parts.length < 2 || parts.length > 3 || !parts[0] || !parts[1] || (mode !== "ro" && mode !== "rw")) {
    throw new Error(`mount "${spec}" must look like HOST_DIR:GUEST_DIR[:ro|rw]`);
  }
  return { source: parts[0], target: parts[1], readOnly: mode === "ro" };
}

/**
 * A mount from the command line: parsed, its host folder resolved from the
 * working directory (the invocation and a prestart read it alike, prestart.ts).
 */
export function commandLineMount(mount: string | MountConfig): MountConfig {
  const parsed = typeof mount === "string" ? parseMount(mount) : mount;
  return { ...parsed, source: resolvePath(parsed.source) };
}

function validateMounts(value: unknown, name: string): MountConfig[] {
  if (!Array.isArray(value)) throw new Error(`${name} must be an array of "HOST:GUEST[:ro|rw]" strings`);
  return value.map((entry, index) => {
    if (typeof entry === "string") return parseMount(entry);
    if (isRecord(entry) && typeof entry.source === "string" && typeof entry.target === "string") {
      return { source: entry.source, target: entry.target, readOnly: entry.readOnly !== false };
    }
    throw new Error(`${name}[${index}] must be "HOST:GUEST[:ro|rw]" or { source, target, readOnly }`);
  });
}

export function validateConfig(value: unknown, name: string): FunctionConfig {
  if (!isRecord(value)) throw new Error(`${name} must be an object`);
  const unknownKeys = Object.keys(value).filter((key) => !(CONFIG_KEYS as readonly string[]).includes(key));
  if (unknownKeys.length > 0) {
    throw new Error(
      `${name} has unknown key(s) ${unknownKeys.join(", ")}; known keys: ${CONFIG_KEYS.join(", ")}`,
    );
  }
  const config: FunctionConfig = {};
  if (value.timeout !== undefined)
    config.timeout = checkNumber(value.timeout, `${name}.timeout`, LIMITS.timeoutSeconds);
  if (value.memory !== undefined)
    config.memory = checkNumber(value.memory, `${name}.memory`, LIMITS.memoryMB);
  if (value.env !== undefined) config.env = validateEnv(value.env, `${name}.env`);
  if (value.net !== undefined) {
    if (typeof value.net !== "boolean") throw new Error(`${name}.net must be true or false`);
    config.net = value.net;
  }
  if (value.handler !== undefined) {
    if (!isHandlerString(value.handler) || value.handler.includes("/")) {
      throw new Error(
        `${name}.handler must be an export, a path to one ("nested.handler") or MODULE.PATH, not ${JSON.stringify(value.handler)}`,
      );
    }
    config.handler = value.handler;
  }
  if (value.mounts !== undefined) config.mounts = validateMounts(value.mounts, `${name}.mounts`);
  if (value.schedule !== undefined) {
    const schedule = typeof value.schedule === "string" ? [value.schedule] : value.schedule;
    if (!Array.isArray(schedule) || !schedule.every((entry) => typeof entry === "string")) {
      throw new Error(`${name}.schedule must be a cron expression or an array of them`);
    }
    config.schedule = schedule as string[];
  }
  if (value.overlap !== undefined) {
    if (value.overlap !== "skip" && value.overlap !== "queue" && value.overlap !== "allow") {
      throw new Error(`${name}.overlap must be "skip", "queue" or "allow"`);
    }
    config.overlap = value.overlap;
  }
  if (value.webhook !== undefined) {
    const webhook = value.webhook;
    if (!isRecord(webhook) || typeof webhook.secretEnv !== "string" || !webhook.secretEnv) {
      throw new Error(`${name}.webhook must be { secretEnv: "NAME_OF_THE_VARIABLE_HOLDING_THE_SECRET" }`);
    }
    const scheme = webhook.scheme ?? "github";
    if (!(WEBHOOK_SCHEMES as readonly unknown[]).includes(scheme)) {
      throw new Error(
        `${name}.webhook.scheme must be one of ${WEBHOOK_SCHEMES.join(", ")}, not ${JSON.stringify(scheme)}`,
      );
    }
    config.webhook = {
      secretEnv: webhook.secretEnv,
      ...(webhook.scheme !== undefined ? { scheme: scheme as WebhookScheme } : {}),
    };
  }
  if (value.concurrency !== undefined) {
    config.concurrency = checkNumber(value.concurrency, `${name}.concurrency`, LIMITS.concurrency);
  }
  return config;
}
