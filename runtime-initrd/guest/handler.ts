/**
 * The function and its outcome, the way Lambda's Node.js runtime does it: its
 * settings and environment, its import (the init phase), finding and calling
 * the handler (promise, callback or context.succeed/fail), and exactly one
 * outcome sent for the invocation, whatever the function does to the process.
 */
import fs from "node:fs";
import { pathToFileURL } from "node:url";
import type {
  FunctionSettings,
  HostMessage,
  Invocation,
  LambdaError,
  MountRequest,
} from "../../src/vm/protocol.ts";
import { mark, send, useKey } from "./channel.ts";
import { flushLogs } from "./logs.ts";
import { agent } from "./reseed.ts";
import { resolveHandler } from "./resolve-handler.ts";
import { currentInvocation, marks, now, setInvocation } from "./state.ts";

const FUNCTION_PATH = "/fnrun/function.mjs";

/** What `read` gives, or `fallback` when it throws (a getter of the function's, say). */
function safely<T>(read: () => T, fallback: T): T {
  try {
    return read();
  } catch {
    return fallback;
  }
}

/**
 * An error's stack as text. The function may have left an `Error.prepareStackTrace`
 * that throws (the `bindings` package does when `__filename` is missing): then
 * V8's own format is used, as if it had none.
 */
export function stackText(error: Error): string {
  try {
    return String(error.stack ?? "");
  } catch {
    const errors = Error as { prepareStackTrace?: unknown };
    const formatter = errors.prepareStackTrace;
    errors.prepareStackTrace = undefined;
    try {
      return String(error.stack ?? "");
    } catch {
      return "";
    } finally {
      errors.prepareStackTrace = formatter;
    }
  }
}

/** The function's error as Lambda reports it; never throws, whatever the error's getters do. */
function describeError(error: unknown): LambdaError {
  if (safely(() => error instanceof Error, false)) {
    const failed = error as Error;
    return {
      errorType: safely(() => String(failed.name || failed.constructor?.name || "Error"), "Error"),
      errorMessage: safely(() => String(failed.message), "(its message could not be read)"),
      stack: stackText(failed)
        .split("\n")
        .filter((line) => line.length > 0),
    };
  }
  // String(error) only when JSON cannot show it: it may run the function's own toString.
  const message =
    safely(() => (typeof error === "string" ? error : (JSON.stringify(error) ?? String(error))), undefined) ??
    safely(() => String(error), "(a value that cannot be shown)");
  // What Lambda reports for a thrown non-Error: its type and its value.
  return { errorType: typeof error, errorMessage: message, stack: [] };
}

type Outcome = { result: unknown } | { error: LambdaError };
let outcome: Outcome | undefined;

/** Forgets the outcome (after the rehearsal). */
export function clearOutcome(): void {
  outcome = undefined;
}

/** Records the one outcome (later ones, e.g. a callback after a throw, are ignored) and sends it. */
function finish(value: Outcome): void {
  if (outcome) return;
  outcome = value;
  const invocation = currentInvocation();
  if (invocation) sendOutcome(invocation);
}

export function sendOutcome(current: Invocation): void {
  flushLogs();
  marks.handlerEnd = now();
  send({ type: "mark", name: "handlerEnd", at: marks.handlerEnd });
  if (!outcome || "error" in outcome) {
    send({ type: "error", error: outcome?.error ?? describeError(new Error("no outcome")) });
    return;
  }
  let json: string;
  try {
    json = JSON.stringify(outcome.result === undefined ? null : outcome.result) ?? "null";
  } catch (error) {
    send({
      type: "error",
      error: {
        errorType: "Runtime.SerializationError",
        errorMessage: `the handler's result cannot be turned into JSON: ${(error as Error).message}`,
        stack: [],
      },
    });
    return;
  }
  const size = Buffer.byteLength(json);
  if (size > current.maxResultBytes) {
    send({
      type: "error",
      error: {
        errorType: "Function.ResponseSizeTooLarge",
        errorMessage: `Response payload size (${size} bytes) exceeded maximum allowed payload size (${current.maxResultBytes} bytes).`,
        stack: [],
      },
    });
    return;
  }
  send({ type: "result", json });
}

function failWith(error: unknown, errorType?: string): void {
  const described = describeError(error);
  finish({ error: errorType ? { ...described, errorType } : described });
}

/** A function's failures outside the handler's own promise are its failures too. */
export function installProcessHooks(): void {
  process.on("uncaughtException", (error) => failWith(error));
  process.on("unhandledRejection", (reason) => failWith(reason, "Runtime.UnhandledPromiseRejection"));
  const exit = (code?: number | string | null) => {
    finish({
      error: {
        errorType: "Runtime.ExitError",
        errorMessage: `RequestId: ${currentInvocation()?.requestId ?? "none"} Error: Runtime exited with error: exit status ${code ?? process.exitCode ?? 0}`,
        stack: [],
      },
    });
    // PID 1 must not exit (the kernel would panic); the host ends the VM.
    return new Promise<never>(() => {}) as never;
  };
  process.exit = exit as typeof process.exit;
  process.abort = (() => {
    finish({
      error: {
        errorType: "Runtime.ExitError",
        errorMessage: `RequestId: ${currentInvocation()?.requestId ?? "none"} Error: Runtime exited with error: signal: aborted (SIGABRT)`,
        stack: [],
      },
    });
    return new Promise<never>(() => {}) as never;
  }) as typeof process.abort;
}

type Callback = (error?: unknown, result?: unknown) => void;
type Handler = (event: unknown, context: unknown, callback: Callback) => unknown;

const mounted = new Set<string>();

/** Mounts the shared folders not mounted yet (a function snapshot's clone mounts its own when its invocation comes). */
function mountFolders(mounts: readonly MountRequest[]): void {
  for (const mount of mounts) {
    if (mounted.has(mount.guestPath)) continue;
    agent(`mount ${mount.tag} ${mount.guestPath} ${mount.readOnly ? "ro" : "rw"}`);
    mounted.add(mount.guestPath);
  }
}

/** Lambda's variables, then the function's own; mounts its shared folders. */
export function applySettings(settings: FunctionSettings, requestId: string): void {
  mountFolders(settings.mounts);
  Object.assign(process.env, {
    AWS_LAMBDA_FUNCTION_NAME: settings.functionName,
    AWS_LAMBDA_FUNCTION_VERSION: settings.functionVersion,
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(settings.memoryLimitInMB),
    AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${settings.functionName}`,
    AWS_LAMBDA_LOG_STREAM_NAME: requestId,
    LAMBDA_TASK_ROOT: "/fnrun",
    _HANDLER: `function.${settings.handler}`,
    // TZ (UTC, as Lambda's) is set by the stage-0 init: assigning it makes V8
    // reload its time zone data.
    ...settings.env,
  });
}

export type Loaded = { module: Record<string, unknown> } | { error: LambdaError };

/** The function's init phase: importing it runs its top-level code. */
export async function importFunction(path = FUNCTION_PATH): Promise<Loaded> {
  try {
    return { module: (await import(pathToFileURL(path).href)) as Record<string, unknown> };
  } catch (error) {
    const described = describeError(error);
    return {
      error: {
        ...described,
        errorType: "Runtime.ImportModuleError",
        errorMessage: `${described.errorType}: ${described.errorMessage}`,
      },
    };
  }
}

/** How often a handler that waits for its callback is checked for having nothing left to do. */
const IDLE_CHECK_MS = 10;

function countByType(resources: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const type of resources) counts.set(type, (counts.get(type) ?? 0) + 1);
  return counts;
}

/**
 * Resolves with null once the function holds nothing that would keep Node's
 * event loop alive (timers, sockets, file operations) beyond what was held
 * when its handler was called: how Lambda's runtime ends a handler that never
 * calls back, once its event loop is empty. (This runtime's own handles keep
 * the loop from ever emptying, hence the count.) Stops checking once `done.value`.
 */
function whenNothingLeft(held: Map<string, number>, done: { value: boolean }): Promise<null> {
  return new Promise((resolve) => {
    // Checked from an immediate after the timer, whose own Timeout is gone by then.
    const later = () => setTimeout(() => setImmediate(check), IDLE_CHECK_MS);
    const check = () => {
      if (done.value) return;
      const now = countByType(process.getActiveResourcesInfo());
      if ([...now].every(([type, count]) => count <= (held.get(type) ?? 0))) resolve(null);
      else later();
    };
    later();
  });
}

export async function runHandler(current: Invocation, loaded: Loaded): Promise<void> {
  if ("error" in loaded) return finish({ error: loaded.error });
  if (outcome) return; // the init phase already failed (an error thrown from a timer, say)
  const resolved = resolveHandler(
    loaded.module,
    current.handler,
    `${current.functionName}.${current.handler}`,
  );
  if ("error" in resolved) return finish({ error: { ...resolved.error, stack: [] } });
  const handler = resolved.handler as Handler;
  const event = JSON.parse(current.event) as unknown;
  mark("handlerStart");
  const deadline = now() + current.timeoutMs;
  let settle: Callback = () => {};
  const settled = new Promise<unknown>((resolve, reject) => {
    settle = (error, result) => (error !== undefined && error !== null ? reject(error) : resolve(result));
  });
  const context = {
    awsRequestId: current.requestId,
    requestId: current.requestId,
    functionName: current.functionName,
    functionVersion: current.functionVersion,
    invokedFunctionArn: current.invokedFunctionArn,
    memoryLimitInMB: String(current.memoryLimitInMB),
    logGroupName: `/aws/lambda/${current.functionName}`,
    logStreamName: current.requestId,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, Math.round(deadline - now())),
    // Lambda's legacy completion methods.
    done: (error?: unknown, result?: unknown) => settle(error, result),
    succeed: (result?: unknown) => settle(undefined, result),
    fail: (error?: unknown) => settle(error ?? new Error("failed")),
  };
  const held = countByType(process.getActiveResourcesInfo());
  const done = { value: false };
  try {
    const returned = handler(event, context, settle);
    const isThenable = typeof (returned as { then?: unknown } | null)?.then === "function";
    // An async handler finishes with its promise (or the callback, if it calls it
    // first); a callback-style one, or a plain function that returns nothing, through
    // the callback or context.succeed/done/fail, else with null once it has nothing
    // left to do; any other with its return value.
    const waitsForCallback = handler.length >= 3 || returned === undefined;
    const value = isThenable
      ? Promise.race([returned, settled])
      : waitsForCallback
        ? Promise.race([settled, whenNothingLeft(held, done)])
        : returned;
    finish({ result: await value });
  } catch (error) {
    failWith(error);
  } finally {
    done.value = true;
  }
}

/** The invocation is known: from now on the function's output may go out, signed with its key. */
export function begin(invocation: Invocation): void {
  setInvocation(invocation);
  useKey(invocation.key);
}

export type InvokeMessage = Extract<HostMessage, { type: "invoke" }>;

/** One invocation, from the moment its message is in: shared by the real thing and the rehearsal. */
export async function runInvocation(
  message: InvokeMessage,
  loaded: Loaded | undefined,
  path: string,
): Promise<void> {
  const current = message.invocation;
  begin(current);
  if (marks.awake !== undefined) send({ type: "mark", name: "awake", at: marks.awake });
  mark("invocationReceived");
  process.env.AWS_LAMBDA_LOG_STREAM_NAME = current.requestId;
  if (outcome) {
    // The init phase failed before the invocation came (a pooled VM).
    sendOutcome(current);
    return;
  }
  flushLogs();
  let ready = loaded;
  if (!ready) {
    if (message.bundle !== undefined) fs.writeFileSync(path, message.bundle);
    applySettings(current, current.requestId);
    ready = await importFunction(path);
  } else {
    // Imported ahead (a pooled VM, a function snapshot's clone): its folders may come now.
    mountFolders(current.mounts);
  }
  await runHandler(current, ready);
}
