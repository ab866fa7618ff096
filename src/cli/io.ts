/** What the CLI's commands share: their I/O, and reading their input within limits. */
import { readFile, stat } from "node:fs/promises";
import { UsageError } from "../util/errors.ts";

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

/** JSON text, past a UTF-8 byte order mark (which Windows editors write, and JSON.parse refuses). */
export function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text.startsWith("\uFEFF") ? text.slice(1) : text);
  } catch (error) {
    throw new UsageError(`${source} is not valid JSON: ${(error as Error).message}`);
  }
}

/** Resolves when fnrun is asked to stop (SIGINT/SIGTERM), for long-running commands. */
export function untilStopped(io: CliIo): Promise<void> {
  return new Promise((resolve) => {
    if (!io.signal) return;
    if (io.signal.aborted) resolve();
    io.signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

/**
 * The signing key for Redis jobs: --signing-key-file's first line, else
 * $FNRUN_SIGNING_KEY; at least 16 characters, however given (a guessable key
 * lets anyone who can write to Redis queue code for the workers).
 */
export async function signingKey(file: string | undefined, io: CliIo): Promise<string | undefined> {
  const key =
    file === undefined
      ? io.env.FNRUN_SIGNING_KEY || undefined
      : ((await readLimitedFile(file, "signing key file", 64 * 1024)).split("\n")[0]?.trim() ?? "");
  if (key !== undefined && key.length < 16) {
    throw new UsageError(
      `${file ?? "FNRUN_SIGNING_KEY"}: a signing key is at least 16 characters (say, \`openssl rand -hex 32\`)`,
    );
  }
  return key;
}
