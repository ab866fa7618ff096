/** What the CLI's commands share: their I/O, and helpers for input and errors. */
import { readFile, stat } from "node:fs/promises";
import { type FnrunError, FunctionError, UsageError } from "../util/errors.ts";
import { sanitizeForTerminal } from "./terminal.ts";

export interface CliIo {
  stdout: { write(text: string): unknown; isTTY?: boolean };
  stderr: { write(text: string): unknown; isTTY?: boolean };
  stdin: AsyncIterable<Buffer | string>;
  env: NodeJS.ProcessEnv;
  /** Aborted when fnrun is asked to stop (SIGINT/SIGTERM). */
  signal?: AbortSignal;
}

export async function readStdin(stdin: AsyncIterable<Buffer | string>, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stdin) {
    const buffer = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    size += buffer.length;
    if (size > limit)
      throw new UsageError(`the event on standard input is over ${limit / 1024 / 1024} MB (the limit)`);
    chunks.push(buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

export async function readLimitedFile(path: string, what: string, limit: number): Promise<string> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch {
    throw new UsageError(`${what} not found: ${path}`);
  }
  if (info.isDirectory()) throw new UsageError(`${what} ${path} is a directory, not a file`);
  if (info.size > limit) {
    throw new UsageError(
      `${what} ${path} is ${(info.size / 1024 / 1024).toFixed(1)} MB; the limit is ${limit / 1024 / 1024} MB`,
    );
  }
  return readFile(path, "utf8");
}

export function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${source} is not valid JSON: ${(error as Error).message}`);
  }
}

export function describeFailure(error: FnrunError): string {
  if (error instanceof FunctionError) {
    const stack = error.trace.filter((line) => line.trimStart().startsWith("at ")).join("\n");
    return sanitizeForTerminal(
      `fnrun: function error: ${error.errorType}: ${error.errorMessage}\n${stack ? `${stack}\n` : ""}`,
    );
  }
  return sanitizeForTerminal(`fnrun: ${error.name}: ${error.message}\n`);
}

export /** Resolves when fnrun is asked to stop (SIGINT/SIGTERM), for long-running commands. */
function untilStopped(io: CliIo): Promise<void> {
  return new Promise((resolve) => {
    if (!io.signal) return;
    if (io.signal.aborted) resolve();
    io.signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

export interface ProgressReporter {
  /** Called with each slow step (kernel build, runtime image, snapshot). */
  step?: (line: string) => void;
  /** Ends the last step's line. */
  done: () => void;
}

/**
 * Progress on slow steps: on a terminal, one line per step whose elapsed time
 * keeps counting; otherwise one plain line per step; nothing in CI (CI is set),
 * with --json or --quiet.
 */
export function createProgress(io: CliIo, options: { quiet?: boolean; json?: boolean }): ProgressReporter {
  if (options.quiet || options.json) return { done: () => {} };
  if (!io.stderr.isTTY) {
    if (io.env.CI) return { done: () => {} };
    return { step: (line) => io.stderr.write(`fnrun: ${line}\n`), done: () => {} };
  }
  let current: { text: string; started: number } | undefined;
  let timer: NodeJS.Timeout | undefined;
  const seconds = () => Math.round((Date.now() - (current?.started ?? Date.now())) / 1000);
  const redraw = () => {
    if (current) io.stderr.write(`\r\u001b[2Kfnrun: ${current.text} … ${seconds()} s`);
  };
  const finish = () => {
    clearInterval(timer);
    if (current) io.stderr.write(`\r\u001b[2Kfnrun: ${current.text} (${seconds()} s)\n`);
    current = undefined;
  };
  return {
    step: (line) => {
      finish();
      current = { text: line, started: Date.now() };
      redraw();
      timer = setInterval(redraw, 1000);
      timer.unref();
    },
    done: finish,
  };
}
