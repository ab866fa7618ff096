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
 *            in a "load" message to a warm VM (a pooled snapshot clone). A VM
 *            booted so to be saved (a function snapshot) has its init phase
 *            watched (init-watch.ts), and its "ready" says what it used; a
 *            pooled clone of it is sent "warm" and says "ready" once more.
 *
 * After a snapshot restore, every random generator is reseeded before user code
 * runs. Logs, timeline marks and the outcome go to the host in frames signed
 * with the invocation's key (frames.ts), which the runtime learns before any of
 * the function's code runs; nothing is sent for the function before it is known.
 * The runtime never exits (PID 1 exiting panics the kernel): the host kills the VM.
 *
 * The parts: state.ts (how the VM was booted, marks, the invocation),
 * channel.ts (frames to and from the host), frames.ts (signing them, out of the
 * function's reach), reseed.ts (fresh randomness after
 * a restore), init-watch.ts (what an init phase to be saved draws on), logs.ts
 * (the function's output), handler.ts (the function, its
 * handler and its one outcome), rehearsal.ts (warming up), and this file, the
 * main loop. They and src/vm/protocol.ts are bundled into one file for the
 * guest (host/runtime.ts).
 */
import fs from "node:fs";
import { setFlagsFromString } from "node:v8";
import type { BoundFunction, InitPhase, Invocation } from "../../src/vm/protocol.ts";
import { receive, receivedAt, send, useKey } from "./channel.ts";
import {
  applySettings,
  begin,
  importFunction,
  installProcessHooks,
  type Loaded,
  runHandler,
  runInvocation,
  stackText,
} from "./handler.ts";
import { watchInitPhase } from "./init-watch.ts";
import { captureOutput } from "./logs.ts";
import { rehearse, settleHeap, warmInvocationPath } from "./rehearsal.ts";
import { setClockFromHost, wakeUp } from "./reseed.ts";
import { boot, exitProcess, marks, now } from "./state.ts";

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

/**
 * A VM saved for a snapshot compiled every function as its script loaded
 * (--no-lazy, host/runtime.ts), so that its clones compile nothing they were
 * saved with. A function a clone imports is compiled as usual, each function
 * when first called. (A function snapshot's clone never asks: the flag costs
 * V8 a pass over all its flags, ~250 blocks for TCG to translate.)
 */
function compileLazily(): void {
  if (boot.snapshot) setFlagsFromString("--lazy");
}

/**
 * PID 1 never ends by itself, not even with nothing left to do after its
 * outcome: its end would panic the kernel and stop QEMU at once, dropping what
 * the channel still holds (the end of a large result, while the host is slow
 * to read it). The host stops the VM once it has the outcome. Set before a
 * snapshot is saved: the first timer costs a clone ~75 ms under TCG.
 */
function stayUntilStopped(): void {
  setInterval(() => {}, 2 ** 31 - 1);
}

async function main(): Promise<void> {
  stayUntilStopped();
  captureOutput();
  installProcessHooks();

  if (fs.existsSync(COLD_INVOCATION_PATH)) {
    const current = JSON.parse(fs.readFileSync(COLD_INVOCATION_PATH, "utf8")) as Invocation;
    fs.rmSync(COLD_INVOCATION_PATH);
    begin(current);
    setClockFromHost();
    send({ type: "ready", marks });
    applySettings(current, current.requestId);
    await runHandler(current, await importFunction());
    return;
  }

  // Booted ahead of demand: do what can be done while nobody waits.
  await Promise.all(PRELOADED_MODULES.map((name) => import(name)));
  await rehearse();
  // A VM booted with its function (pooled, or to be saved as a function
  // snapshot): its frames are signed with the key it came with.
  let bound: BoundFunction | undefined;
  if (fs.existsSync(FUNCTION_SETTINGS_PATH)) {
    bound = JSON.parse(fs.readFileSync(FUNCTION_SETTINGS_PATH, "utf8")) as BoundFunction;
    fs.rmSync(FUNCTION_SETTINGS_PATH);
    useKey(bound.key);
  }
  // Before any function code runs: its init phase below, or one a "load" brings.
  setClockFromHost();
  let loaded: Loaded | undefined;
  let initPhase: InitPhase | undefined;
  if (bound) {
    applySettings(bound, "");
    // Where the clones mount their folders: there, empty, as in a VM with them mounted.
    const foldersToCome = bound.foldersToCome ?? [];
    for (const path of foldersToCome) fs.mkdirSync(path, { recursive: true });
    // To be saved: the host refuses a function whose clones would all share its
    // randomness, or miss what it read of their folders.
    const watched = boot.snapshot ? watchInitPhase(foldersToCome) : undefined;
    loaded = await importFunction();
    if (watched) {
      const { randomness, folders } = watched();
      initPhase = { randomness, ...(folders.length > 0 ? { folders } : {}) };
      if ("error" in loaded) initPhase.error = loaded.error.errorMessage;
    }
  }
  if (boot.snapshot) settleHeap();
  send({ type: "ready", marks, ...(initPhase ? { initPhase } : {}) });

  for (;;) {
    const message = receive();
    if (message.type === "wake") {
      wakeUp(message, receivedAt());
      // Sent with the invocation's first frames: before, the host may not take it.
      marks.awake = now();
      continue;
    }
    if (message.type === "warm" && loaded) {
      // A pooled clone of a function snapshot: its function is here already.
      useKey(message.key);
      warmInvocationPath();
      send({ type: "ready", marks });
      continue;
    }
    if (message.type === "load" && !loaded) {
      // A pooled clone (already reseeded: the function's top-level code may draw
      // randomness): import the function now, then wait for the event.
      compileLazily();
      fs.writeFileSync(FUNCTION_PATH, message.bundle);
      useKey(message.key);
      applySettings(message.settings, "");
      loaded = await importFunction();
      warmInvocationPath();
      send({ type: "ready", marks });
      continue;
    }
    if (message.type !== "invoke") throw new Error(`fnrun: unexpected message ${String(message.type)}`);
    if (!loaded) compileLazily(); // the invocation brings its function
    await runInvocation(message, loaded, FUNCTION_PATH);
    return;
  }
}

main().catch((error: unknown) => {
  // The runtime itself failed before the handler could run. Say why on the
  // console and end: PID 1 exiting stops the VM, and the host reports a boot
  // failure with these lines.
  fs.writeSync(2, `fnrun runtime: ${error instanceof Error ? stackText(error) : String(error)}\n`);
  exitProcess(1);
});
