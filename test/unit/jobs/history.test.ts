import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { History, type InvocationRecord, LIMITS } from "../../../src/jobs/history.ts";

const directory = mkdtempSync(join(tmpdir(), "fnrun-history-test-"));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

function record(index: number, size = 10): InvocationRecord {
  return {
    requestId: `request-${index}`,
    functionName: "hello",
    file: "functions/hello.ts",
    trigger: "cli",
    status: "ok",
    startMode: "snapshot",
    startedAt: index,
    durationMs: 1,
    event: "x".repeat(size),
    eventTruncated: false,
    result: "1",
    error: null,
    logs: "",
    timeline: [],
  };
}

describe("the invocation history", () => {
  it("keeps the newest records only, and cuts big fields", async () => {
    const history = await History.open({ FNRUN_STATE_DIR: directory });
    for (let index = 0; index < LIMITS.records + 5; index++) history.add(record(index));
    const kept = history.list(LIMITS.records + 100);
    expect(kept).toHaveLength(LIMITS.records);
    expect(kept[0]?.requestId).toBe(`request-${LIMITS.records + 4}`);
    expect(kept.at(-1)?.requestId).toBe("request-5");

    history.add(record(99_999, LIMITS.fieldBytes + 10));
    const big = history.get("request-99999");
    expect(big?.event.length).toBe(LIMITS.fieldBytes);
    expect(big?.eventTruncated).toBe(true);
  });
});
