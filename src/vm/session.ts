/**
 * One invocation on one VM: collect what the guest sends (marks, logs, the
 * result or the error), enforce the limits (boot time, module load time, the
 * handler's timeout, log and result sizes), and classify how it ended. The VM is
 * killed as soon as the outcome is known, on every path.
 */
import {
  BootError,
  type FnrunError,
  FunctionError,
  functionErrorOf,
  InterruptedError,
  OutOfMemoryError,
  ResultTooLargeError,
  TimeoutError,
} from "../util/errors.ts";
import { LogCollector, type LogEntry } from "./log-collector.ts";
import type { Vm } from "./process.ts";
import type { DecoderLimits, GuestMark, GuestMessage, LambdaError } from "./protocol.ts";
import { buildTimeline, type TimelineEntry } from "./timeline.ts";

export interface SessionLimits {
  /** From spawn (or restore) until the runtime says "ready". */
  bootTimeoutMs: number;
  /** The handler's own limit, from its start. */
  timeoutMs: number;
  /** Module load (top-level code) limit, from "ready" to the handler's start. */
  initTimeoutMs: number;
  maxResultBytes: number;
  maxLogBytes: number;
  memoryMB: number;
}

export type Outcome = { kind: "result"; json: string } | { kind: "error"; error: LambdaError };

export interface SessionReport {
  outcome?: Outcome;
  failure?: FnrunError;
  logs: LogCollector;
  timeline: TimelineEntry[];
}

const OOM_PATTERNS = [
  /JavaScript heap out of memory/,
  /Reached heap limit/,
  /Out of memory/i,
  /oom-kill/,
  /page allocation failure/,
  /Cannot allocate memory/,
  /deadlocked on memory/,
];

/** What the host's frame decoder allows for a session whose results may be `maxResultBytes`. */
export function decoderLimitsFor(maxResultBytes: number): DecoderLimits {
  return {
    maxLineBytes: 64 * 1024 + 256,
    // A result's JSON is embedded, escaped, in a message: allow for the escaping.
    maxMessageBytes: maxResultBytes * 2 + 64 * 1024,
  };
}

export interface SessionOptions {
  limits: SessionLimits;
  onLog?: (entry: LogEntry) => void;
  signal?: AbortSignal;
  /**
   * The VM's clock reading (vm.elapsed()) that becomes 0 on the timeline: a pooled
   * VM started long before its invocation, so its timeline starts at the invocation.
   */
  timeOrigin?: number;
  /** The VM is already past "ready" (pool, snapshot): only the init and handler limits apply. */
  alreadyReady?: boolean;
}

/**
 * Watches `vm` until the invocation ends. The caller has launched the VM (and,
 * for a warm VM, sends the invocation right after calling this). Always kills
 * the VM before returning.
 */
export async function runSession(vm: Vm, options: SessionOptions): Promise<SessionReport> {
  const { limits } = options;
  const logs = new LogCollector(limits.maxLogBytes, options.onLog);
  const guestMarks: Array<{ name: GuestMark; at: number; receivedAt: number }> = [];
  let outcome: Outcome | undefined;
  let failure: FnrunError | undefined;
  let done: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  // The host's clock, not the guest's word, bounds an invocation. Phases only go
  // forward: booting (a cold VM, until its first "ready"), loading (the invocation
  // is the guest's: its module is imported), running (the handler has started),
  // and nothing the guest sends can move one back or push a deadline out. From the
  // moment the invocation is the guest's, it has initTimeout + timeout in all.
  let phase = "booting" as "booting" | "loading" | "running";
  let hardDeadline = Number.POSITIVE_INFINITY;
  let timer: NodeJS.Timeout | undefined;
  const arm = (atMs: number, onExpiry: () => FnrunError) => {
    clearTimeout(timer);
    timer = setTimeout(
      () => {
        failure ??= onExpiry();
        done();
      },
      Math.max(0, Math.min(atMs, hardDeadline) - vm.elapsed()),
    );
  };
  const dispatched = () => {
    phase = "loading";
    const now = vm.elapsed();
    hardDeadline = now + limits.initTimeoutMs + limits.timeoutMs;
    arm(now + limits.initTimeoutMs, () => initTimeout(limits));
  };

  if (options.alreadyReady) {
    // The caller sends the invocation right after this: it is the guest's from now.
    dispatched();
  } else {
    arm(
      vm.elapsed() + limits.bootTimeoutMs,
      () =>
        new BootError(
          `the VM did not start within ${limits.bootTimeoutMs / 1000} s`,
          vm.consoleTail.lastLines(20),
        ),
    );
  }

  const stopMessages = vm.onMessage((message: GuestMessage) => {
    const receivedAt = vm.elapsed();
    switch (message.type) {
      case "ready":
        // One "ready" per VM, before its invocation: any later one is ignored.
        if (phase !== "booting") break;
        for (const [name, at] of Object.entries(message.marks)) {
          guestMarks.push({ name: name as GuestMark, at, receivedAt });
        }
        dispatched();
        break;
      case "mark":
        if (phase === "booting") break;
        guestMarks.push({ name: message.name, at: message.at, receivedAt });
        if (message.name === "handlerStart" && phase === "loading") {
          phase = "running";
          arm(receivedAt + limits.timeoutMs, () => {
            const seconds = (limits.timeoutMs / 1000).toFixed(2);
            return new TimeoutError(
              `Task timed out after ${seconds} seconds (raise it with --timeout or config.timeout)`,
              limits.timeoutMs,
            );
          });
        }
        break;
      case "log":
        logs.add(message.stream, message.text);
        break;
      case "result":
      case "error":
        if (phase === "booting") break; // nothing to answer yet
        vm.marks.resultReceived = receivedAt;
        outcome ??=
          message.type === "result"
            ? { kind: "result", json: message.json }
            : { kind: "error", error: message.error };
        done();
        break;
    }
  });
  const stopConsole = vm.onConsole((text) => logs.add("console", text));
  const onAbort = () => {
    failure ??= new InterruptedError("interrupted; the VM was stopped");
    done();
  };
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) onAbort();
  vm.exited.then(() => done());

  await finished;
  clearTimeout(timer);
  options.signal?.removeEventListener("abort", onAbort);
  const exit = await vm.kill();
  stopMessages();
  stopConsole();

  if (!outcome && !failure)
    failure = classifyEarlyExit(vm, exit.stderr, exit.code, phase === "running", limits);
  if (outcome?.kind === "result" && Buffer.byteLength(outcome.json) > limits.maxResultBytes) {
    failure = resultTooLarge(Buffer.byteLength(outcome.json), limits.maxResultBytes);
    outcome = undefined;
  }
  if (outcome?.kind === "error" && outcome.error.errorType === "Function.ResponseSizeTooLarge") {
    failure = new ResultTooLargeError(
      `${outcome.error.errorMessage} Return less, or raise --max-result-size.`,
    );
    outcome = undefined;
  }
  if (outcome?.kind === "error") failure = functionErrorOf(outcome.error);

  const origin = options.timeOrigin ?? 0;
  const timeline = buildTimeline(vm.marks, guestMarks)
    .map((entry) => ({ ...entry, atMs: entry.atMs - origin }))
    .filter((entry) => entry.atMs >= 0);
  return { ...(outcome ? { outcome } : {}), ...(failure ? { failure } : {}), logs, timeline };
}

function initTimeout(limits: SessionLimits): TimeoutError {
  return new TimeoutError(
    `the function's module did not finish loading within ${limits.initTimeoutMs / 1000} s (top-level code that never ends?)`,
    limits.initTimeoutMs,
  );
}

function resultTooLarge(size: number, max: number): ResultTooLargeError {
  return new ResultTooLargeError(
    `the result is ${size} bytes, over the ${max}-byte limit (Lambda's is 6 MB): return less, or raise --max-result-size`,
  );
}

/** The end of `text`, at most `chars` long, marked when cut. */
function lastPart(text: string, chars: number): string {
  return text.length > chars ? `…${text.slice(-chars)}` : text;
}

function classifyEarlyExit(
  vm: Vm,
  qemuStderr: string,
  exitCode: number | null,
  handlerStarted: boolean,
  limits: SessionLimits,
): FnrunError {
  const consoleText = vm.consoleTail.toString();
  if (vm.anomalies.includes("oversize")) {
    return new ResultTooLargeError(
      `the function sent a message over the ${limits.maxResultBytes}-byte limit: return less, or raise --max-result-size`,
    );
  }
  if (OOM_PATTERNS.some((pattern) => pattern.test(consoleText))) {
    return new OutOfMemoryError(
      `the function ran out of memory (${limits.memoryMB} MB): use less, or raise --memory / config.memory`,
      limits.memoryMB,
      vm.consoleTail.lastLines(20),
    );
  }
  if (exitCode !== 0 && qemuStderr) {
    // QEMU's words for a file that is not a kernel it can load.
    const notAKernel = /linux kernel too old|could not load|error loading|PVH ELF Note|not a valid/i.test(
      qemuStderr,
    );
    return new BootError(
      `QEMU failed: ${qemuStderr.split("\n").slice(-5).join("\n")}${
        notAKernel
          ? "\n(the guest kernel is not one QEMU can boot: an x86-64 vmlinux with a PVH note or a bzImage is needed; check FNRUN_KERNEL, or run `fnrun doctor`)"
          : ""
      }`,
      vm.consoleTail.lastLines(20),
    );
  }
  if (handlerStarted) {
    return new FunctionError({
      errorType: "Runtime.ExitError",
      errorMessage: `the function's VM stopped before the handler returned (last console line: ${
        lastPart(vm.consoleTail.lastLines(1), 240) || "none"
      })`,
      stack: [],
    });
  }
  return new BootError("the VM stopped before the function could run", vm.consoleTail.lastLines(20));
}
