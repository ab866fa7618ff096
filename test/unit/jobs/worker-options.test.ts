import { describe, expect, it } from "vitest";
import { startWorker } from "../../../src/jobs/worker.ts";
import { UsageError } from "../../../src/util/errors.ts";

describe("startWorker's options", () => {
  it.each([0, -1, 2.5, 257, Number.NaN])(
    "refuses concurrency %s before it connects to the queue",
    async (concurrency) => {
      const started = startWorker({ queue: "redis://127.0.0.1:1", directory: "functions", concurrency });
      await expect(started).rejects.toThrow(UsageError);
      await expect(started).rejects.toThrow(/^concurrency must be a whole number from 1 to 256, not /);
    },
  );
});
