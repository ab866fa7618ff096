/**
 * The guest runtime: PID 1 of every fnrun VM (the stage-0 init execs Node on it).
 *
 * Three ways a VM is started, one code path:
 *   cold   - the invocation and the function are in the initramfs
 *            (/fnrun/invocation.json, /fnrun/function.mjs): run at once.
 *   warm   - nothing is in the initramfs: load what functions tend to need,
 *            say "ready", and wait for the invocation and the function on the
 *            channel. A VM snapshotted in this state serves every function.
 *   bound  - the function is imported ahead (its init phase, as Lambda's), then
 *            the VM says "ready" again and waits for the event. The function
 *            comes in the initramfs (/fnrun/function.mjs and function.json), or
 *            in a "load" message to a warm VM (a pooled snapshot clone).
 *
 * After a snapshot restore, every random generator is reseeded before user code
 * runs. Logs, timeline marks and the outcome go to the host framed with the
 * invocation's nonce; nothing is sent for the function before the nonce is known.
 * The runtime never exits (PID 1 exiting panics the kernel): the host kills the VM.
 *
 * Only this file and src/protocol.ts are bundled in (GUEST_SOURCES in src/runtime.ts).
 */
import { randomFillSync } from "node:crypto";
import fs from "node:fs";
import { pathToFileURL } from "node:url";
import { format } from "node:util";
import {
  encodeMessage,
  FrameDecoder,
  type FunctionSettings,
  type GuestMark,
  type GuestMessage,
  type HostMessage,
  type Invocation,
  type LambdaError,
} from "../../src/vm/protocol.ts";

const AGENT_REQUEST_FD = 3;
const AGENT_REPLY_FD = 4;
const FUNCTION_PATH = "/fnrun/function.mjs";
const FUNCTION_SETTINGS_PATH = "/fnrun/function.json";
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

function sleepMs(milliseconds: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, milliseconds);
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
      sleepMs(1);
    }
  }
}

function openChannel(): Channel {
  if (channelKind === "serial") {
    // Kernels without virtio: frames share the console. Cold starts only (no input).
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
/** Where frames go: the channel, or nowhere during the rehearsal. */
let output: Pick<Channel, "write"> = channel;
let nonce = bootNonce;
let messageId = 0;
/** Set once the invocation (and its nonce) is known: only then may the function's output go out. */
let invocation: Invocation | undefined;

function send(message: GuestMessage): void {
  output.write(encodeMessage(nonce, messageId++, message));
}

function mark(name: GuestMark): void {
  const at = now();
  marks[name] = at;
  send({ type: "mark", name, at });
}

/** A decoder of the host's frames that queues each message it completes. */
function hostDecoder(inbox: unknown[]): FrameDecoder {
  return new FrameDecoder(
    bootNonce,
    { message: (value) => inbox.push(value), text: () => {} },
    { maxLineBytes: 1024 * 1024, maxMessageBytes: 256 * 1024 * 1024 },
  );
}

/** Messages from the host, in order: one read may hold more than one. */
const inbox: unknown[] = [];
const inboxDecoder = hostDecoder(inbox);
const readBuffer = Buffer.alloc(256 * 1024);

/** Blocks until the host sends a message. Only used while nothing else runs. */
function receive(): HostMessage {
  while (inbox.length === 0) {
    const count = channel.read(readBuffer);
    // A virtio-serial port reads 0 while the host side is not connected.
    if (count === 0) sleepMs(2);
    else inboxDecoder.push(readBuffer.subarray(0, count));
  }
  return inbox.shift() as HostMessage;
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
function reseedAfterRestore(entropy: string, epochMs: number, ask: (request: string) => void = agent): void {
  const seconds = Math.floor(epochMs / 1000);
  // One round trip to the agent: every one costs two context switches.
  ask(`reseed ${seconds} ${Math.round((epochMs - seconds * 1000) * 1e6)} ${entropy}`);
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

type WakeMessage = Extract<HostMessage, { type: "wake" }>;
let reseeded = false;

/** A clone's first message: reseed before any function code runs (once, in a VM restored from a snapshot). */
function wakeUp(message: WakeMessage, rehearsal = false): void {
  if (!snapshotBoot || reseeded) return;
  // The rehearsal runs the same code, with the agent asked nothing that matters.
  reseedAfterRestore(message.entropy, message.epochMs, rehearsal ? () => agent("ping") : agent);
  reseeded = !rehearsal;
}

// ---------------------------------------------------------------- logs

type Stream = "stdout" | "stderr";
let pendingLogs: Array<{ stream: Stream; text: string }> = [];
let pendingLogChars = 0;
let flushScheduled = false;
/** Logs held back past this are sent at once: a function that never yields still shows its output. */
const FLUSH_AT_CHARS = 64 * 1024;

/** Sends buffered logs, merged per stream; held back until the invocation is known. */
function flushLogs(): void {
  flushScheduled = false;
  if (!invocation) return;
  const logs = pendingLogs;
  pendingLogs = [];
  pendingLogChars = 0;
  let run: { stream: Stream; text: string } | undefined;
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

function log(stream: Stream, text: string): void {
  pendingLogs.push({ stream, text });
  pendingLogChars += text.length;
  if (pendingLogChars >= FLUSH_AT_CHARS && invocation) {
    flushLogs();
    return;
  }
  if (!flushScheduled && invocation) {
    flushScheduled = true;
    setImmediate(flushLogs);
  }
}

function captureOutput(): void {
  const toStream =
    (stream: Stream) =>
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

// ---------------------------------------------------------------- the outcome

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

type Outcome = { result: unknown } | { error: LambdaError };
let outcome: Outcome | undefined;

/** Records the one outcome (later ones, e.g. a callback after a throw, are ignored) and sends it. */
function finish(value: Outcome): void {
  if (outcome) return;
  outcome = value;
  if (invocation) sendOutcome(invocation);
}

function sendOutcome(current: Invocation): void {
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
function installProcessHooks(): void {
  process.on("uncaughtException", (error) => failWith(error));
  process.on("unhandledRejection", (reason) => failWith(reason, "Runtime.UnhandledPromiseRejection"));
  const exit = (code?: number | string | null) => {
    finish({
      error: {
        errorType: "Runtime.ExitError",
        errorMessage: `RequestId: ${invocation?.requestId ?? "none"} Error: Runtime exited with error: exit status ${code ?? process.exitCode ?? 0}`,
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
        errorMessage: `RequestId: ${invocation?.requestId ?? "none"} Error: Runtime exited with error: signal: aborted (SIGABRT)`,
        stack: [],
      },
    });
    return new Promise<never>(() => {}) as never;
  }) as typeof process.abort;
}

// ---------------------------------------------------------------- the function

type Callback = (error?: unknown, result?: unknown) => void;
type Handler = (event: unknown, context: unknown, callback: Callback) => unknown;

/** Lambda's variables, then the function's own; mounts its shared folders. */
function applySettings(settings: FunctionSettings, requestId: string): void {
  for (const mount of settings.mounts) {
    agent(`mount ${mount.tag} ${mount.guestPath} ${mount.readOnly ? "ro" : "rw"}`);
  }
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

type Loaded = { module: Record<string, unknown> } | { error: LambdaError };

/** The function's init phase: importing it runs its top-level code. */
async function importFunction(path = FUNCTION_PATH): Promise<Loaded> {
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

function findHandler(module: Record<string, unknown>, name: string): Handler {
  const candidates: unknown[] = [module[name]];
  const fallback = module.default;
  if (fallback && typeof fallback === "object") {
    // A CommonJS `module.exports.handler` is esbuild's default export's property.
    candidates.push((fallback as Record<string, unknown>)[name]);
  }
  if (name === "handler") candidates.push(fallback);
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

async function runHandler(current: Invocation, loaded: Loaded): Promise<void> {
  if ("error" in loaded) return finish({ error: loaded.error });
  if (outcome) return; // the init phase already failed (an error thrown from a timer, say)
  let handler: Handler;
  try {
    handler = findHandler(loaded.module, current.handler);
  } catch (error) {
    return failWith(error);
  }
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
  try {
    const returned = handler(event, context, settle);
    const isThenable = typeof (returned as { then?: unknown } | null)?.then === "function";
    // An async handler finishes with its promise (or the callback, if it calls it
    // first); a callback-style one, or a plain function that returns nothing, through
    // the callback or context.succeed/done/fail; any other with its return value.
    const waitsForCallback = handler.length >= 3 || returned === undefined;
    const value = isThenable ? Promise.race([returned, settled]) : waitsForCallback ? settled : returned;
    finish({ result: await value });
  } catch (error) {
    failWith(error);
  }
}

/** The invocation is known: from now on the function's output may go out, under its nonce. */
function begin(current: Invocation): void {
  invocation = current;
  nonce = current.nonce;
}

type InvokeMessage = Extract<HostMessage, { type: "invoke" }>;

/** One invocation, from the moment its message is in: shared by the real thing and the rehearsal. */
async function runInvocation(
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
  }
  await runHandler(current, ready);
}

/** What the rehearsal runs: shaped like what esbuild makes of a typical function. */
const STAND_IN_FUNCTION = `import { createRequire as __fnrunCreateRequire } from "node:module";
const require = __fnrunCreateRequire(import.meta.url);

// rehearsal.ts
import { release } from "node:os";
var handler = async (event, context) => {
  const name = typeof event?.name === "string" && event.name.trim() ? event.name.trim() : "world";
  console.log(\`rehearsing for \${name}\`);
  return {
    message: \`Hello, \${name}!\`,
    requestId: context.awsRequestId,
    ranIn: \`Linux \${release()}, pid \${process.pid}, Node \${process.version}\`
  };
};
export {
  handler
};
`;
const REHEARSALS = 3;

/**
 * Before a snapshot is taken: whole invocations of a stand-in function, from
 * their frames to their result, with what they send thrown away. Under TCG the
 * first run of any code in a VM is slow, and after a restore it is slower still
 * if V8 must first compile the runtime's functions, build object shapes, miss
 * its inline caches and tier up regular expressions: the rehearsal leaves all of
 * that done in the snapshot, so that a clone only has machine code to translate.
 * Nothing of it reaches a function: state is reset, the environment restored.
 */
async function rehearse(): Promise<void> {
  const environment = { ...process.env };
  const random = Object.getOwnPropertyDescriptor(Math, "random") as PropertyDescriptor;
  const devNull = fs.openSync("/dev/null", "w");
  output = { write: (text) => writeAll(devNull, text) };
  try {
    for (let round = 0; round < REHEARSALS; round++) {
      const stand: Invocation = {
        // Frames nobody reads: no randomness is drawn before the snapshot for them.
        nonce: "0".repeat(32),
        requestId: `rehearsal-${round}`,
        functionName: "rehearsal",
        functionVersion: "$LATEST",
        invokedFunctionArn: "arn:aws:lambda:local:000000000000:function:rehearsal",
        memoryLimitInMB: 256,
        timeoutMs: 30_000,
        handler: "handler",
        env: { REHEARSAL: "1" },
        event: JSON.stringify({ name: "rehearsal" }),
        maxResultBytes: 6 * 1024 * 1024,
        mounts: [],
      };
      const frames =
        encodeMessage(bootNonce, 0, { type: "wake", entropy: "00".repeat(64), epochMs: Date.now() }) +
        encodeMessage(bootNonce, 1, { type: "invoke", invocation: stand, bundle: STAND_IN_FUNCTION });
      const received: unknown[] = [];
      hostDecoder(received).push(Buffer.from(frames, "latin1"));
      const [wake, message] = received as [WakeMessage, InvokeMessage];
      wakeUp(wake, true);
      Math.random();
      const path = `/fnrun/rehearsal-${round}.mjs`;
      await runInvocation(message, undefined, path);
      fs.rmSync(path);
      invocation = undefined;
      outcome = undefined;
      nonce = bootNonce;
    }
  } finally {
    Object.defineProperty(Math, "random", random);
    output = channel;
    fs.closeSync(devNull);
    pendingLogs = [];
    pendingLogChars = 0;
    for (const name of ["invocationReceived", "handlerStart", "handlerEnd"] as const) delete marks[name];
    for (const name of Object.keys(process.env)) if (!(name in environment)) delete process.env[name];
    Object.assign(process.env, environment);
  }
  // Globals Node sets up on first use (performance loads perf_hooks, for one).
  void [structuredClone({}), new TextEncoder(), new TextDecoder(), AbortSignal.timeout];
}

/**
 * In a VM that waits with its function loaded (a pooled one), runs the runtime's
 * own per-invocation code once with nothing sent: under TCG, the first run of
 * any code in a VM is slow (it is translated), and this VM's first run should
 * not be the invocation's.
 */
function warmInvocationPath(): void {
  const line = `${format("%s %d %j", "warm", 1, { up: true })}\n`;
  const frames = encodeMessage(bootNonce, 0, { type: "log", stream: "stdout", text: line });
  const mark = encodeMessage(bootNonce, 0, { type: "mark", name: "handlerStart", at: now() });
  fs.writeFileSync("/dev/null", frames + mark + JSON.stringify({ result: [line] }));
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  captureOutput();
  installProcessHooks();

  if (fs.existsSync(COLD_INVOCATION_PATH)) {
    const current = JSON.parse(fs.readFileSync(COLD_INVOCATION_PATH, "utf8")) as Invocation;
    fs.rmSync(COLD_INVOCATION_PATH);
    begin(current);
    send({ type: "ready", marks });
    applySettings(current, current.requestId);
    await runHandler(current, await importFunction());
    return;
  }

  // Booted ahead of demand: do what can be done while nobody waits.
  await Promise.all(PRELOADED_MODULES.map((name) => import(name)));
  await rehearse();
  let loaded: Loaded | undefined;
  if (fs.existsSync(FUNCTION_SETTINGS_PATH)) {
    applySettings(JSON.parse(fs.readFileSync(FUNCTION_SETTINGS_PATH, "utf8")) as FunctionSettings, "");
    loaded = await importFunction();
  }
  send({ type: "ready", marks });

  for (;;) {
    const message = receive();
    if (message.type === "wake") {
      wakeUp(message);
      // Sent with the invocation's first frames: before, the host may not take it.
      marks.awake = now();
      continue;
    }
    if (message.type === "load" && !loaded) {
      // A pooled clone (already reseeded: the function's top-level code may draw
      // randomness): import the function now, then wait for the event.
      fs.writeFileSync(FUNCTION_PATH, message.bundle);
      applySettings(message.settings, "");
      loaded = await importFunction();
      warmInvocationPath();
      send({ type: "ready", marks });
      continue;
    }
    if (message.type !== "invoke") throw new Error(`fnrun: unexpected message ${String(message.type)}`);
    await runInvocation(message, loaded, FUNCTION_PATH);
    return;
  }
}

main().catch((error: unknown) => {
  // The runtime itself failed before the handler could run. Say why on the
  // console and end: PID 1 exiting stops the VM, and the host reports a boot
  // failure with these lines.
  fs.writeSync(2, `fnrun runtime: ${error instanceof Error ? error.stack : String(error)}\n`);
  exitProcess(1);
});
