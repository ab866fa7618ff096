/** What `serve`'s numeric options accept (the CLI's flags too); apart from server.ts so the CLI reads them as it parses. */
import { LIMITS } from "../build/config.ts";
import type { NumberRange } from "../util/validate.ts";

export const SERVE_RANGES = {
  port: { min: 0, max: 65535, integer: true },
  pool: { min: 0, max: 64, integer: true },
  memory: LIMITS.memoryMB,
  maxConcurrency: { min: 1, max: 1024, integer: true },
  maxWaiting: { min: 0, max: 100_000, integer: true },
  maxConnectionsPerClient: { min: 1, max: 100_000, integer: true },
  maxBodyBytesPerClient: { min: 1024, max: 1024 ** 3, integer: true },
  workers: { min: 0, max: 256, integer: true },
  retryBaseMs: { min: 0, max: 3_600_000 },
} as const satisfies Record<string, NumberRange>;
