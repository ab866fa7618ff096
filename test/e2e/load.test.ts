// Load: N concurrent invocations (N = 2, 8, 32 on a 2-core machine) each get their
// own result (no cross-talk: every one checks its own random token), with a bounded
// number of VMs at once, from one process (the library, as serve uses it) and from
// many separate fnrun processes (hooks, scripts).
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { invoke } from "../../src/index.ts";
import { defaultVmLimit } from "../../src/vm/slots.ts";
import { expectNothingLeftBehind, qemuProcesses } from "./helpers.ts";

const CLI = resolve("bin/fnrun.js");
const FUNCTION = "test/fixtures/echo-token.ts";

afterAll(() => expectNothingLeftBehind(expect));

/** Samples how many VMs run at once while `work` runs. */
async function peakVms<T>(work: () => Promise<T>): Promise<{ value: T; peak: number }> {
  let peak = 0;
  const sampler = setInterval(() => {
    peak = Math.max(peak, qemuProcesses().length);
  }, 50);
  try {
    return { value: await work(), peak };
  } finally {
    clearInterval(sampler);
  }
}

interface Answer {
  token: string;
  random: string;
  requestId: string;
}

function expectOwnAnswers(tokens: string[], answers: Answer[]): void {
  expect(answers.map((answer) => answer.token)).toEqual(tokens);
  expect(new Set(answers.map((answer) => answer.random)).size).toBe(tokens.length);
  expect(new Set(answers.map((answer) => answer.requestId)).size).toBe(tokens.length);
}

describe("concurrent invocations", () => {
  const limit = defaultVmLimit();

  for (const n of [2, 8, 32]) {
    it(`${n} at once through the library: each its own result, at most ${limit} VMs`, async () => {
      const tokens = Array.from({ length: n }, () => randomUUID());
      const started = performance.now();
      const { value: results, peak } = await peakVms(() =>
        Promise.all(tokens.map((token) => invoke(FUNCTION, { event: { token } }))),
      );
      const seconds = (performance.now() - started) / 1000;
      expectOwnAnswers(
        tokens,
        results.map((result) => result.result as Answer),
      );
      expect(peak).toBeGreaterThan(0);
      expect(peak).toBeLessThanOrEqual(limit);
      console.log(
        `load: N=${n} library: ${seconds.toFixed(1)} s, ${(n / seconds).toFixed(2)} invocations/s, peak ${peak} VMs`,
      );
    });
  }

  it(`8 separate fnrun processes at once: each its own result, at most ${limit} VMs on the machine`, async () => {
    const tokens = Array.from({ length: 8 }, () => randomUUID());
    const started = performance.now();
    const { value: outputs, peak } = await peakVms(() =>
      Promise.all(
        tokens.map(
          (token) =>
            new Promise<string>((done, fail) => {
              const child = spawn(process.execPath, [
                CLI,
                "invoke",
                FUNCTION,
                "--event",
                JSON.stringify({ token }),
                "--quiet",
              ]);
              let stdout = "";
              child.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text));
              child.on("close", (code) => (code === 0 ? done(stdout) : fail(new Error(`exit ${code}`))));
            }),
        ),
      ),
    );
    const seconds = (performance.now() - started) / 1000;
    expectOwnAnswers(
      tokens,
      outputs.map((output) => JSON.parse(output) as Answer),
    );
    expect(peak).toBeLessThanOrEqual(limit);
    console.log(`load: N=8 processes: ${seconds.toFixed(1)} s, peak ${peak} VMs`);
  });
});
