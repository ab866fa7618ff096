import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { History, type InvocationRecord, SPOOL_BATCH, spoolRecord } from "../../../src/jobs/history.ts";
import { HISTORY_LIMITS } from "../../../src/jobs/limits.ts";

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
    for (let index = 0; index < HISTORY_LIMITS.records + 5; index++) history.add(record(index));
    const kept = history.list(HISTORY_LIMITS.records + 100);
    expect(kept).toHaveLength(HISTORY_LIMITS.records);
    expect(kept[0]?.requestId).toBe(`request-${HISTORY_LIMITS.records + 4}`);
    expect(kept.at(-1)?.requestId).toBe("request-5");

    history.add(record(99_999, HISTORY_LIMITS.fieldBytes + 10));
    const big = history.get("request-99999");
    expect(big?.event.length).toBe(HISTORY_LIMITS.fieldBytes);
    expect(big?.eventTruncated).toBe(true);
  });
});

describe("the history's spool (what `fnrun invoke` leaves without loading SQLite)", () => {
  it("is taken in when the history is opened or read: by start, cut as the history keeps it, and emptied", async () => {
    const env = { FNRUN_STATE_DIR: mkdtempSync(join(directory, "spool-")) };
    const spool = join(env.FNRUN_STATE_DIR, "history-spool");
    await spoolRecord(record(30), env);
    await spoolRecord(record(10, HISTORY_LIMITS.fieldBytes + 10), env);
    writeFileSync(join(spool, "000000000000020-broken.json"), "{ not json");
    const history = await History.open(env);
    expect(readdirSync(spool)).toEqual([]);
    expect(history.list().map((kept) => kept.requestId)).toEqual(["request-30", "request-10"]);
    expect(history.get("request-10")?.eventTruncated).toBe(true);

    // Spooled while it is open (an invocation beside `fnrun serve`): taken in when read.
    const seen: string[] = [];
    history.on("record", (taken) => seen.push(taken.requestId));
    await spoolRecord(record(40), env);
    expect(history.get("request-40")?.requestId).toBe("request-40");
    expect(seen).toEqual(["request-40"]);
    expect(history.list(1)[0]?.requestId).toBe("request-40");
    history.close();
  });

  it("is taken in by the invocation that fills it, when nobody reads the history", async () => {
    const env = { FNRUN_STATE_DIR: mkdtempSync(join(directory, "spool-")) };
    const spool = join(env.FNRUN_STATE_DIR, "history-spool");
    for (let index = 1; index < SPOOL_BATCH; index++) await spoolRecord(record(index), env);
    expect(readdirSync(spool)).toHaveLength(SPOOL_BATCH - 1);
    await spoolRecord(record(SPOOL_BATCH), env);
    expect(readdirSync(spool)).toEqual([]);
    const history = await History.open(env);
    expect(history.list(SPOOL_BATCH + 1)).toHaveLength(SPOOL_BATCH);
    history.close();
  });
});
