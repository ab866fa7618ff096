/** Limits of the history and of queue workers; apart from history.ts and worker.ts so the CLI reads them as it parses. */
import type { NumberRange } from "../util/validate.ts";

export const HISTORY_LIMITS = {
  records: 1000,
  /** Per field: events and logs larger than this are cut. */
  fieldBytes: 256 * 1024,
} as const;

/** What a worker's numeric options accept (the CLI's flags too). */
export const WORKER_RANGES = {
  concurrency: { min: 1, max: 256, integer: true },
} as const satisfies Record<string, NumberRange>;
