/**
 * The guest runtime: PID 1 of every fnrun VM (the stage-0 init execs Node on it).
 *
 * 1. Open the protocol channel: a virtio-serial port, or the serial console for
 *    kernels without virtio.
 * 2. Get the invocation: from the initramfs (/fnrun/invocation.json, a cold boot),
 *    or, for a VM booted ahead of demand (pool, snapshot), by saying "ready" and
 *    waiting for it on the channel.
 * 3. After a snapshot restore, reseed every random generator before user code runs.
 * 4. Import the function, call its handler as AWS Lambda's Node.js runtime does,
 *    and send back logs, timeline marks and the result (or the error), framed with
 *    the invocation's nonce. Then wait: the host kills the VM.
 *
 * Only this file and src/protocol.ts are bundled in (see GUEST_SOURCES in src/runtime.ts).
 */
import { randomFillSync } from "node:crypto";
import fs from "node:fs";
import { pathToFileURL } from "node:url";
import { format } from "node:util";
import {
  encodeMessage,
  FrameDecoder,
  type GuestMark,
  type GuestMessage,
  type HostMessage,
  type Invocation,
  type LambdaError,
} from "../src/protocol.ts";

const AGENT_REQUEST_FD = 3;
const AGENT_REPLY_FD = 4;
const FUNCTION_PATH = "/fnrun/function.mjs";
const COLD_INVOCATION_PATH = "/fnrun/invocation.json";
/** Builtins a function is likely to load: loaded before a snapshot, they cost nothing after restore. */
const PRELOADED_MODULES = [
  "node:crypto",
  "node:http",
  "node:https",
  "node:url",
  "node:zlib",
  "node:stream",
  "node:events",
  "node:path",
  "node:os",
  "node:util",
  "node:buffer",
  "node:querystring",
  "node:string_decoder",
  "node:assert",
  "node:child_process",
  "node:fs/promises",
];

/** Milliseconds of the guest's monotonic clock, which starts with the kernel. */
function now(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

const marks: Partial<Record<GuestMark, number>> = { runtimeStart: now() };
const exitProcess = process.exit.bind(process);
const initStartedNs = Number(process.env.FNRUN_INIT_STARTED_NS);
if (Number.isFinite(initStartedNs)) marks.initStart = initStartedNs / 1e6;
const bootNonce = process.env.fnrun_boot ?? "";
const snapshotBoot = process.env.fnrun_snapshot === "1";
const channelKind = process.env.fnrun_channel === "serial" ? "serial" : "virtio";

// The kernel command line and stage-0 variables are not the function's business.
for (const name of Object.keys(process.env)) {
  if (name.startsWith("fnrun_") || name.startsWith("FNRUN_")) delete process.env[name];
}

// ---------------------------------------------------------------- the channel

interface Channel {
  write(text: string): void;
  read(into: Buffer): number;
}

function writeAll(fd: number, text: string): void {
  const data = Buffer.from(text, "utf8");
  let offset = 0;
  while (offset < data.length) {
    try {
      offset += fs.writeSync(fd, data, offset);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EAGAIN") throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  }
}

function openChannel(): Channel {
  if (channelKind === "serial") {
    return { write: (text) => writeAll(1, text), read: () => 0 };
  }
  const port = fs.readdirSync("/dev").find((name) => name.startsWith("vport"));
  if (!port) throw new Error("fnrun: no virtio-serial port in /dev (kernel without VIRTIO_CONSOLE?)");
  const fd = fs.openSync(`/dev/${port}`, "r+");
  return {
    write: (text) => writeAll(fd, text),
    read: (into) => fs.readSync(fd, into, 0, into.length, null),
  };
}

const channel = openChannel();
let nonce = bootNonce;
let messageId = 0;

function send(message: GuestMessage): void {
  channel.write(encodeMessage(nonce, messageId++, message));
}

function mark(name: GuestMark): void {
  const at = now();
  marks[name] = at;
  send({ type: "mark", name, at });
}

/** Blocks until the host sends a message. Only used while nothing else runs. */
function receive(): HostMessage {
  let received: unknown;
  const decoder = new FrameDecoder(
    bootNonce,
    { message: (value) => (received ??= value), text: () => {} },
    { maxLineBytes: 1024 * 1024, maxMessageBytes: 256 * 1024 * 1024 },
  );
  const buffer = Buffer.alloc(256 * 1024);
  while (received === undefined) {
    const count = channel.read(buffer);
    // A virtio-serial port reads 0 while the host side is not connected.
    if (count === 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
    else decoder.push(buffer.subarray(0, count));
  }
  return received as HostMessage;
}

// ---------------------------------------------------------------- privileged help

/** Asks the stage-0 agent (runtime-initrd/init.c) to do what Node has no API for. */
function agent(request: string): void {
  writeAll(AGENT_REQUEST_FD, `${request}\n`);
  const reply = Buffer.alloc(64);
  let text = "";
  while (!text.includes("\n")) {
    const count = fs.readSync(AGENT_REPLY_FD, reply, 0, reply.length, null);
    if (count === 0) throw new Error("fnrun: the guest agent is gone");
    text += reply.toString("latin1", 0, count);
  }
  if (!text.startsWith("ok"))
    throw new Error(`fnrun: agent refused "${request.split(" ")[0]}": ${text.trim()}`);
}

/**
 * A VM restored from a snapshot carries the random state of the VM that was
 * saved, like every other clone of it. Before user code runs: reseed the kernel
 * with the host's fresh bytes, move the clock back to the true time (stage-0 set
 * it in the future before Node started, so OpenSSL sees time go backwards and
 * reseeds from the kernel on its next use), and replace V8's Math.random, whose
 * state cannot be reseeded, by one drawing on OpenSSL.
 */
function reseedAfterRestore(entropy: string, epochMs: number): void {
  agent(`seed ${entropy}`);
  const seconds = Math.floor(epochMs / 1000);
  agent(`time ${seconds} ${Math.round((epochMs - seconds * 1000) * 1e6)}`);
  const pool = Buffer.alloc(4096);
  let offset = pool.length;
  Object.defineProperty(Math, "random", {
    configurable: true,
    writable: true,
    enumerable: false,
    value: function random(): number {
      if (offset + 8 > pool.length) {
        randomFillSync(pool);
        offset = 0;
      }
      // 53 random bits, as V8 does: 27 high and 26 low.
      const high = pool.readUInt32LE(offset) >>> 5;
      const low = pool.readUInt32LE(offset + 4) >>> 6;
      offset += 8;
      return (high * 67108864 + low) / 9007199254740992;
    },
  });
}

// ---------------------------------------------------------------- logs

let pendingLogs: Array<{ stream: "stdout" | "stderr"; text: string }> = [];
let flushScheduled = false;

function flushLogs(): void {
  flushScheduled = false;
  const logs = pendingLogs;
  pendingLogs = [];
  let run: { stream: "stdout" | "stderr"; text: string } | undefined;
  for (const entry of logs) {
    if (run && run.stream === entry.stream && run.text.length < 64 * 1024) {
      run.text += entry.text;
      continue;
    }
    if (run) send({ type: "log", ...run });
    run = { ...entry };
  }
  if (run) send({ type: "log", ...run });
}

function log(stream: "stdout" | "stderr", text: string): void {
  pendingLogs.push({ stream, text });
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushLogs);
  }
}

function captureOutput(): void {
  const toStream =
    (stream: "stdout" | "stderr") =>
    (...args: unknown[]): void => {
      log(stream, `${format(...args)}\n`);
    };
  console.log = toStream("stdout");
  console.info = toStream("stdout");
  console.debug = toStream("stdout");
  console.warn = toStream("stderr");
  console.error = toStream("stderr");
  console.trace = function trace(...args: unknown[]): void {
    const stack = new Error().stack?.split("\n").slice(2).join("\n") ?? "";
    log("stderr", `Trace: ${format(...args)}\n${stack}\n`);
  };
  for (const stream of ["stdout", "stderr"] as const) {
    const target = process[stream];
    target.write = ((chunk: unknown, encoding?: unknown, callback?: unknown) => {
      const text =
        typeof chunk === "string"
          ? chunk
          : Buffer.from(chunk as Uint8Array).toString(
              typeof encoding === "string" ? (encoding as BufferEncoding) : "utf8",
            );
      log(stream, text);
      const done = typeof encoding === "function" ? encoding : callback;
      if (typeof done === "function") process.nextTick(done as () => void);
      return true;
    }) as typeof target.write;
  }
}

// ---------------------------------------------------------------- errors

function describeError(error: unknown): LambdaError {
  if (error instanceof Error) {
    return {
      errorType: error.name || error.constructor?.name || "Error",
      errorMessage: error.message,
      stack: (error.stack ?? "").split("\n").filter((line) => line.length > 0),
    };
  }
  let message: string;
  try {
    message = typeof error === "string" ? error : (JSON.stringify(error) ?? String(error));
  } catch {
    message = String(error);
  }
  // What Lambda reports for a thrown non-Error: its type and its value.
  return { errorType: typeof error, errorMessage: message, stack: [] };
}

let finished = false;

/** Sends the one outcome of this invocation; later ones (a callback after a throw) are ignored. */
function finish(outcome: { result: unknown } | { error: LambdaError }, maxResultBytes: number): void {
  if (finished) return;
  finished = true;
  flushLogs();
  marks.handlerEnd = now();
  send({ type: "mark", name: "handlerEnd", at: marks.handlerEnd });
  if ("error" in outcome) {
    send({ type: "error", error: outcome.error });
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
  if (size > maxResultBytes) {
    send({
      type: "error",
      error: {
        errorType: "Function.ResponseSizeTooLarge",
        errorMessage: `Response payload size (${size} bytes) exceeded maximum allowed payload size (${maxResultBytes} bytes).`,
        stack: [],
      },
    });
    return;
  }
  send({ type: "result", json });
}

// ---------------------------------------------------------------- the handler

type Callback = (error?: unknown, result?: unknown) => void;
type Handler = (event: unknown, context: unknown, callback: Callback) => unknown;

function findHandler(module: Record<string, unknown>, name: string): Handler {
  const candidates: unknown[] = [module[name]];
  const fallback = module.default;
  if (name === "handler") {
    // `export default handler`, and a CommonJS `module.exports.handler` (esbuild's default export).
    if (fallback && typeof fallback === "object")
      candidates.push((fallback as Record<string, unknown>)[name]);
    candidates.push(fallback);
  } else if (fallback && typeof fallback === "object") {
    candidates.push((fallback as Record<string, unknown>)[name]);
  }
  const found = candidates.find((candidate) => typeof candidate === "function");
  if (found) return found as Handler;
  const exported = Object.keys(module).join(", ") || "nothing";
  const error = new Error(
    `the function exports no handler named "${name}" (it exports: ${exported}). ` +
      `Export one: \`export const ${name} = async (event, context) => { ... }\`, or \`export default\`.`,
  );
  error.name = "Runtime.HandlerNotFound";
  throw error;
}

async function runInvocation(invocation: Invocation, maxResultBytes: number): Promise<void> {
  for (const mount of invocation.mounts)
    agent(`mount ${mount.tag} ${mount.guestPath} ${mount.readOnly ? "ro" : "rw"}`);

  Object.assign(process.env, {
    AWS_LAMBDA_FUNCTION_NAME: invocation.functionName,
    AWS_LAMBDA_FUNCTION_VERSION: invocation.functionVersion,
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(invocation.memoryLimitInMB),
    AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${invocation.functionName}`,
    AWS_LAMBDA_LOG_STREAM_NAME: invocation.requestId,
    LAMBDA_TASK_ROOT: "/fnrun",
    _HANDLER: `function.${invocation.handler}`,
    TZ: process.env.TZ ?? "UTC",
    ...invocation.env,
  });
  captureOutput();

  const failWith = (error: unknown, errorType?: string) => {
    const described = describeError(error);
    finish({ error: errorType ? { ...described, errorType } : described }, maxResultBytes);
  };
  process.on("uncaughtException", (error) => failWith(error));
  process.on("unhandledRejection", (reason) => failWith(reason, "Runtime.UnhandledPromiseRejection"));
  const exit = (code?: number | string | null) => {
    finish(
      {
        error: {
          errorType: "Runtime.ExitError",
          errorMessage: `RequestId: ${invocation.requestId} Error: Runtime exited with error: exit status ${code ?? process.exitCode ?? 0}`,
          stack: [],
        },
      },
      maxResultBytes,
    );
    // PID 1 must not exit (the kernel would panic); the host ends the VM.
    return new Promise<never>(() => {}) as never;
  };
  process.exit = exit as typeof process.exit;
  process.abort = exit as typeof process.abort;

  let handler: Handler;
  try {
    const module = (await import(pathToFileURL(FUNCTION_PATH).href)) as Record<string, unknown>;
    handler = findHandler(module, invocation.handler);
  } catch (error) {
    const described = describeError(error);
    const errorType = described.errorType.startsWith("Runtime.")
      ? described.errorType
      : "Runtime.ImportModuleError";
    finish(
      {
        error: { ...described, errorType, errorMessage: `${described.errorType}: ${described.errorMessage}` },
      },
      maxResultBytes,
    );
    return;
  }

  const event = JSON.parse(invocation.event) as unknown;
  mark("handlerStart");
  const deadline = performance.now() + invocation.timeoutMs;
  let settle: Callback = () => {};
  const settled = new Promise<unknown>((resolve, reject) => {
    settle = (error, result) => (error !== undefined && error !== null ? reject(error) : resolve(result));
  });
  const context = {
    awsRequestId: invocation.requestId,
    requestId: invocation.requestId,
    functionName: invocation.functionName,
    functionVersion: invocation.functionVersion,
    invokedFunctionArn: invocation.invokedFunctionArn,
    memoryLimitInMB: String(invocation.memoryLimitInMB),
    logGroupName: `/aws/lambda/${invocation.functionName}`,
    logStreamName: invocation.requestId,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, Math.round(deadline - performance.now())),
    // Lambda's legacy completion methods.
    done: (error?: unknown, result?: unknown) => settle(error, result),
    succeed: (result?: unknown) => settle(undefined, result),
    fail: (error?: unknown) => settle(error ?? new Error("failed")),
  };
  try {
    const returned = handler(event, context, settle);
    const isThenable = typeof (returned as { then?: unknown } | null)?.then === "function";
    // An async handler finishes with its promise (or the callback, if it calls it
    // first); a callback-style one, or a plain function that returns nothing, through
    // the callback or context.succeed/done/fail; any other with its return value.
    const waitsForCallback = handler.length >= 3 || returned === undefined;
    const outcome = isThenable ? Promise.race([returned, settled]) : waitsForCallback ? settled : returned;
    finish({ result: await outcome }, maxResultBytes);
  } catch (error) {
    failWith(error);
  }
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  let invocation: Invocation;
  if (fs.existsSync(COLD_INVOCATION_PATH)) {
    invocation = JSON.parse(fs.readFileSync(COLD_INVOCATION_PATH, "utf8")) as Invocation;
    fs.rmSync(COLD_INVOCATION_PATH);
    nonce = invocation.nonce;
    send({ type: "ready", marks });
  } else {
    // Booted ahead of demand: load what functions tend to need while nobody waits.
    await Promise.all(PRELOADED_MODULES.map((name) => import(name)));
    send({ type: "ready", marks });
    const message = receive();
    if (message.type !== "invoke") throw new Error(`fnrun: unexpected message ${String(message.type)}`);
    invocation = message.invocation;
    nonce = invocation.nonce;
    mark("invocationReceived");
    if (snapshotBoot && invocation.entropy && invocation.epochMs) {
      reseedAfterRestore(invocation.entropy, invocation.epochMs);
    }
    if (message.bundle !== undefined) fs.writeFileSync(FUNCTION_PATH, message.bundle);
  }
  await runInvocation(invocation, invocation.maxResultBytes);
}

main().catch((error: unknown) => {
  // The runtime itself failed before the handler could run. Say why on the
  // console and end: PID 1 exiting stops the VM, and the host reports a boot
  // failure with these lines.
  fs.writeSync(2, `fnrun runtime: ${error instanceof Error ? error.stack : String(error)}\n`);
  exitProcess(1);
});
