/**
 * The function's output: console.* and process.stdout/stderr, buffered and sent
 * as log frames, merged per stream; held back until the invocation (and its
 * key) is known.
 */
import { format } from "node:util";
import { send } from "./channel.ts";
import { currentInvocation } from "./state.ts";

type Stream = "stdout" | "stderr";
let pendingLogs: Array<{ stream: Stream; text: string }> = [];
let pendingLogChars = 0;
let flushScheduled = false;
/** Logs held back past this are sent at once: a function that never yields still shows its output. */
const FLUSH_AT_CHARS = 64 * 1024;

/** Sends buffered logs, merged per stream; held back until the invocation is known. */
export function flushLogs(): void {
  flushScheduled = false;
  if (!currentInvocation()) return;
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
  if (pendingLogChars >= FLUSH_AT_CHARS && currentInvocation()) {
    flushLogs();
    return;
  }
  if (!flushScheduled && currentInvocation()) {
    flushScheduled = true;
    setImmediate(flushLogs);
  }
}

export function captureOutput(): void {
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

/** Forgets what was logged and not sent (the rehearsal's output). */
export function dropPendingLogs(): void {
  pendingLogs = [];
  pendingLogChars = 0;
}
