import { describe, expect, it } from "vitest";
import { TextTail } from "../../../src/util/text-tail.ts";
import type { Vm } from "../../../src/vm/process.ts";
import type { GuestMessage } from "../../../src/vm/protocol.ts";
import { runSession } from "../../../src/vm/session.ts";

/** A VM that says whatever the test makes it say, as a guest that knows the key could. */
function scriptedVm() {
  const listeners = new Set<(message: GuestMessage) => void>();
  const started = performance.now();
  let exit: (value: { code: number; signal: null; stderr: string }) => void = () => {};
  const exited = new Promise<{ code: number; signal: null; stderr: string }>((resolve) => (exit = resolve));
  let killedAt: number | undefined;
  const vm = {
    marks: { spawn: 0 },
    consoleTail: new TextTail(1024),
    anomalies: [],
    exited,
    elapsed: () => performance.now() - started,
    onMessage: (listener: (message: GuestMessage) => void) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    onConsole: () => () => {},
    kill: async () => {
      killedAt ??= performance.now() - started;
      exit({ code: 0, signal: null, stderr: "" });
      return exited;
    },
  };
  return {
    vm: vm as unknown as Vm,
    say: (message: GuestMessage) => {
      for (const listener of [...listeners]) listener(message);
    },
    killedAt: () => killedAt,
    /** QEMU exits by itself (the guest panicked, say). */
    stop: () => exit({ code: 0, signal: null, stderr: "" }),
  };
}

const limits = {
  bootTimeoutMs: 5000,
  timeoutMs: 600,
  initTimeoutMs: 600,
  maxResultBytes: 1024,
  maxLogBytes: 1024,
  memoryMB: 256,
};

describe("a session's deadlines", () => {
  it("hold against a guest that sends ready and handlerStart again and again", async () => {
    const { vm, say, killedAt } = scriptedVm();
    const session = runSession(vm, { limits });
    say({ type: "ready", marks: {} });
    say({ type: "mark", name: "handlerStart", at: 1 });
    const nagging = setInterval(() => {
      say({ type: "ready", marks: {} });
      say({ type: "mark", name: "handlerStart", at: 2 });
    }, 50);
    const report = await session;
    clearInterval(nagging);
    expect(report.failure?.name).toBe("TimeoutError");
    expect(report.outcome).toBeUndefined();
    // At the handler's own deadline (600 ms after its start), not later.
    expect(killedAt()).toBeLessThan(600 + 400);
  });

  it("give a warm VM initTimeout + timeout from its invocation in all, and take no result before a cold VM is ready", async () => {
    const warm = scriptedVm();
    const session = runSession(warm.vm, { limits, alreadyReady: true });
    // It never says its handler started, and keeps saying it is ready: the init limit ends it.
    const nagging = setInterval(() => warm.say({ type: "ready", marks: {} }), 50);
    const report = await session;
    clearInterval(nagging);
    expect(report.failure?.message).toMatch(/did not finish loading within 0.6 s/);
    expect(warm.killedAt()).toBeLessThan(600 + 400);

    const cold = scriptedVm();
    const coldSession = runSession(cold.vm, { limits });
    cold.say({ type: "result", json: '"before ready"' });
    cold.say({ type: "ready", marks: {} });
    cold.say({ type: "result", json: '"after ready"' });
    expect((await coldSession).outcome).toEqual({ kind: "result", json: '"after ready"' });
  });
});

describe("a VM that stops during its invocation", () => {
  it("is a Runtime.ExitError that quotes the console's last line, cut to a readable length", async () => {
    const { vm, say, stop } = scriptedVm();
    const session = runSession(vm, { limits });
    say({ type: "ready", marks: {} });
    say({ type: "mark", name: "handlerStart", at: 1 });
    vm.consoleTail.push(`Kernel panic - not syncing: ${"a".repeat(900)}end\n`);
    stop();
    const { failure } = await session;
    expect(failure?.name).toBe("FunctionError");
    expect(failure?.message).toMatch(
      /^Runtime\.ExitError: the function's VM stopped before the handler returned \(last console line: …a+end\)$/,
    );
    expect(failure?.message.length).toBeLessThan(400);
  });
});
