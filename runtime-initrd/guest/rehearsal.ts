/**
 * Warming up before anyone waits: the rehearsal, before a snapshot is taken,
 * and the per-invocation path of a pooled VM, run once with nothing sent.
 */
import fs from "node:fs";
import { format } from "node:util";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { encodeMessage, type HostMessage, type Invocation, type WakeMessage } from "../../src/vm/protocol.ts";
import { hostDecoder, redirectOutput, restoreOutput, useKey, writeAll } from "./channel.ts";
import { frameSigner, signedFrames } from "./frames.ts";
import { clearOutcome, type InvokeMessage, runInvocation } from "./handler.ts";
import { dropPendingLogs } from "./logs.ts";
import { wakeUp } from "./reseed.ts";
import { boot, marks, now, setInvocation } from "./state.ts";

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
/** Frames of each kind signed before a snapshot: enough for V8 to optimize the encoder (frames.ts). */
const SIGNING_ROUNDS = 300;

/**
 * The frame encoder's loops, run until V8 has optimized them. Three rehearsals
 * leave them interpreted, and a clone would then spend its first frames
 * compiling them (measured: ~0.2 s of a 0.95 s snapshot start under TCG).
 */
function signManyFrames(): void {
  const signer = frameSigner("0".repeat(64));
  for (let id = 0; id < SIGNING_ROUNDS; id++) {
    signedFrames(signer, id, { type: "log", stream: "stdout", text: `rehearsing ${id} \u00fc\n` });
    signedFrames(signer, id, { type: "mark", name: "handlerStart", at: now() });
    signedFrames(signer, id, { type: "result", json: JSON.stringify({ message: `Hello, ${id}!` }) });
  }
}

/**
 * A full garbage collection just before the snapshot, so that a clone starts
 * with an empty young generation rather than one that fills during the
 * function's import (measured: a ~50 ms scavenge there). \`gc\` is exposed to a
 * throw-away context only: the function's globals do not gain it.
 */
export function settleHeap(): void {
  setFlagsFromString("--expose-gc");
  (runInNewContext("gc") as () => void)();
}

/**
 * Before a snapshot is taken: whole invocations of a stand-in function, from
 * their frames to their result, with what they send thrown away. Under TCG the
 * first run of any code in a VM is slow, and after a restore it is slower still
 * if V8 must first compile the runtime's functions, build object shapes, miss
 * its inline caches and tier up regular expressions: the rehearsal leaves all of
 * that done in the snapshot, so that a clone only has machine code to translate.
 * Nothing of it reaches a function: state is reset, the environment restored.
 */
export async function rehearse(): Promise<void> {
  const environment = { ...process.env };
  const random = Object.getOwnPropertyDescriptor(Math, "random") as PropertyDescriptor;
  const devNull = fs.openSync("/dev/null", "w");
  redirectOutput((bytes, length) => writeAll(devNull, bytes, length));
  try {
    for (let round = 0; round < REHEARSALS; round++) {
      const stand: Invocation = {
        // Frames nobody reads: no randomness is drawn before the snapshot for them.
        key: "0".repeat(64),
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
        encodeMessage(boot.nonce, 0, { type: "wake", entropy: "00".repeat(64), epochMs: Date.now() }) +
        encodeMessage(boot.nonce, 1, { type: "invoke", invocation: stand, bundle: STAND_IN_FUNCTION });
      const received: unknown[] = [];
      hostDecoder(received).push(Buffer.from(frames, "latin1"));
      const [wake, message] = received as [WakeMessage, InvokeMessage];
      wakeUp(wake, now(), true);
      Math.random();
      const path = `/fnrun/rehearsal-${round}.mjs`;
      await runInvocation(message, undefined, path);
      fs.rmSync(path);
      setInvocation(undefined);
      clearOutcome();
      useKey(boot.nonce);
    }
  } finally {
    Object.defineProperty(Math, "random", random);
    restoreOutput();
    fs.closeSync(devNull);
    dropPendingLogs();
    for (const name of ["invocationReceived", "handlerStart", "handlerEnd"] as const) delete marks[name];
    for (const name of Object.keys(process.env)) if (!(name in environment)) delete process.env[name];
    Object.assign(process.env, environment);
  }
  signManyFrames();
  // Globals Node sets up on first use (performance loads perf_hooks, for one).
  void [structuredClone({}), new TextEncoder(), new TextDecoder(), AbortSignal.timeout];
}

/**
 * In a VM that waits with its function loaded (a pooled one), runs the runtime's
 * own per-invocation code once with nothing sent: under TCG, the first run of
 * any code in a VM is slow (it is translated), and this VM's first run should
 * not be the invocation's. (A clone of a function snapshot has run none of it:
 * reading an invocation's frames included.)
 */
export function warmInvocationPath(): void {
  const received: unknown[] = [];
  const stand = { type: "invoke", invocation: { event: JSON.stringify({ warm: [1, "up"] }) } };
  hostDecoder(received).push(Buffer.from(encodeMessage(boot.nonce, 0, stand as HostMessage), "latin1"));
  JSON.parse((received[0] as InvokeMessage).invocation.event);
  const line = `${format("%s %d %j", "warm", 1, { up: true })}\n`;
  const signer = frameSigner("0".repeat(64));
  const devNull = fs.openSync("/dev/null", "w");
  try {
    for (const message of [
      { type: "log", stream: "stdout", text: line },
      { type: "mark", name: "handlerStart", at: now() },
    ] as const) {
      const frames = signedFrames(signer, 0, message);
      writeAll(devNull, frames.bytes, frames.length);
    }
    fs.writeSync(devNull, JSON.stringify({ result: [line] }));
  } finally {
    fs.closeSync(devNull);
  }
}
