/**
 * The command line: a thin layer over the library API. `main(argv, io)` returns
 * the exit code, so tests run it in-process with their own streams.
 */
import { readFile, stat } from "node:fs/promises";
import yargs, { type Argv } from "yargs";
import { ExitCode, FnrunError, FunctionError, InternalError, UsageError } from "./errors.ts";
import { DEFAULTS, type InvokeOptions, type InvokeResult, invoke } from "./invoke.ts";
import type { LogEntry, TimelineEntry } from "./session.ts";
import { sanitizeForTerminal } from "./terminal.ts";

export interface CliIo {
  stdout: { write(text: string): unknown; isTTY?: boolean };
  stderr: { write(text: string): unknown; isTTY?: boolean };
  stdin: AsyncIterable<Buffer | string>;
  env: NodeJS.ProcessEnv;
  /** Aborted when fnrun is asked to stop (SIGINT/SIGTERM). */
  signal?: AbortSignal;
}

const VERSION = "0.1.0";

function defineCommands(parser: Argv): Argv {
  return parser
    .scriptName("fnrun")
    .usage(
      "$0 <command> [options]\n\nRun serverless functions locally, each invocation in its own QEMU microvm.",
    )
    .command("invoke <file>", "Run a function once in a fresh VM and print its result", (command) =>
      command
        .positional("file", { type: "string", describe: "The function's file (.ts, .js, .mjs, .cjs)" })
        .option("event", {
          alias: "e",
          type: "string",
          describe: "The event as JSON, or - to read it from standard input (default {})",
        })
        .option("event-file", { type: "string", describe: "Read the event from this JSON file" })
        .option("handler", {
          type: "string",
          describe: "The export to call (default: handler, else default)",
        })
        .option("timeout", {
          type: "number",
          describe: `Seconds the handler may run (default ${DEFAULTS.timeoutSeconds})`,
        })
        .option("memory", { type: "number", describe: `Guest RAM in MB (default ${DEFAULTS.memoryMB})` })
        .option("env", {
          type: "string",
          array: true,
          describe: "KEY=VALUE for the function's environment (repeatable)",
        })
        .option("env-file", { type: "string", describe: "Read KEY=VALUE lines from this file (.env format)" })
        .option("net", { type: "boolean", describe: "Give the VM a network device (off by default)" })
        .option("accel", {
          choices: ["auto", "kvm", "tcg"] as const,
          default: "auto",
          describe: "Accelerator",
        })
        .option("start", {
          choices: ["auto", "boot", "snapshot"] as const,
          default: "auto",
          describe: "Restore a clone of a snapshot (auto: when possible), or boot a fresh VM",
        })
        .option("max-result-size", { type: "number", describe: "Largest result in bytes (default 6 MB)" })
        .option("max-log-size", {
          type: "number",
          describe: "Log bytes kept before truncating (default 1 MB)",
        })
        .option("json", {
          type: "boolean",
          describe: "Print one JSON object: result or error, logs, timeline",
        })
        .option("trace", { type: "boolean", describe: "Print the boot timeline on stderr" })
        .option("quiet", { alias: "q", type: "boolean", describe: "Do not print the function's logs" })
        .option("verbose", { alias: "v", type: "boolean", describe: "Show kernel messages and progress" })
        .example('$0 invoke functions/hello.ts --event \'{"name":"Ada"}\'', "Run hello with an event")
        .example("echo '{}' | $0 invoke functions/hello.ts --event -", "Read the event from standard input")
        .example(
          "$0 invoke functions/hello.ts --json --trace",
          "Machine-readable output with the boot timeline",
        ),
    )
    .command(
      "setup",
      "Build the guest kernel, the runtime image and the default snapshot now (otherwise done on first use)",
      (command) => command.option("accel", { choices: ["auto", "kvm", "tcg"] as const, default: "auto" }),
    )
    .command("snapshot", "Make (or show) the snapshot VMs are restored from", (command) =>
      command
        .option("memory", {
          type: "number",
          default: DEFAULTS.memoryMB,
          describe: "Guest RAM in MB of the snapshot",
        })
        .option("rebuild", { type: "boolean", describe: "Make it anew even if a valid one exists" })
        .option("accel", { choices: ["auto", "kvm", "tcg"] as const, default: "auto" })
        .example("$0 snapshot --memory 512", "Prepare snapshot starts for functions with 512 MB"),
    )
    .demandCommand(1, "Say which command to run: fnrun invoke FILE (see fnrun --help)")
    .strict()
    .recommendCommands()
    .help()
    .alias("h", "help")
    .version(VERSION)
    .wrap(Math.min(100, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((message, error) => {
      throw new UsageError(message ?? error?.message ?? "invalid command line");
    });
}

async function readStdin(stdin: AsyncIterable<Buffer | string>, limit: number): Promise<string> {
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

async function readLimitedFile(path: string, what: string, limit: number): Promise<string> {
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

function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${source} is not valid JSON: ${(error as Error).message}`);
  }
}

/** Parses .env text: KEY=VALUE lines, `export ` prefixes, # comments, quoted values. */
export function parseDotenv(text: string, source: string): Record<string, string> {
  const env: Record<string, string> = {};
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (!line || line.startsWith("#")) return;
    const match = line.match(/^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/);
    if (!match)
      throw new UsageError(`${source}:${index + 1}: expected KEY=VALUE, got ${JSON.stringify(raw)}`);
    let value = match[2] ?? "";
    const quote = value[0];
    if ((quote === '"' || quote === "'") && value.endsWith(quote) && value.length >= 2) {
      value = value.slice(1, -1);
      if (quote === '"') value = value.replace(/\\n/g, "\n").replace(/\\"/g, '"');
    } else {
      value = value.replace(/\s+#.*$/, "");
    }
    env[match[1] as string] = value;
  });
  return env;
}

export function parseEnvPairs(pairs: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const at = pair.indexOf("=");
    const key = at > 0 ? pair.slice(0, at) : "";
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new UsageError(`--env ${pair}: expected KEY=VALUE`);
    env[key] = pair.slice(at + 1);
  }
  return env;
}

interface InvokeArgs {
  file: string;
  event?: string;
  eventFile?: string;
  handler?: string;
  timeout?: number;
  memory?: number;
  env?: string[];
  envFile?: string;
  net?: boolean;
  accel: "auto" | "kvm" | "tcg";
  start: "auto" | "boot" | "snapshot";
  maxResultSize?: number;
  maxLogSize?: number;
  json?: boolean;
  trace?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

async function readEvent(args: InvokeArgs, io: CliIo): Promise<unknown> {
  if (args.event !== undefined && args.eventFile !== undefined) {
    throw new UsageError("give the event once: --event or --event-file, not both");
  }
  if (args.eventFile !== undefined) {
    return parseJson(
      await readLimitedFile(args.eventFile, "event file", DEFAULTS.maxEventBytes),
      args.eventFile,
    );
  }
  if (args.event === "-") {
    const text = await readStdin(io.stdin, DEFAULTS.maxEventBytes);
    if (!text.trim())
      throw new UsageError("--event -: standard input is empty; pipe a JSON event into fnrun");
    return parseJson(text, "the event on standard input");
  }
  if (args.event !== undefined) {
    if (Buffer.byteLength(args.event) > DEFAULTS.maxEventBytes)
      throw new UsageError("--event is over the 6 MB limit");
    return parseJson(args.event, "--event");
  }
  return {};
}

export function formatTimeline(timeline: TimelineEntry[]): string {
  const lines = ["boot timeline (ms since QEMU was spawned; guest points mapped from the guest clock):"];
  let previous = 0;
  for (const entry of timeline) {
    const delta = entry.atMs - previous;
    previous = entry.atMs;
    lines.push(
      `  ${entry.atMs.toFixed(1).padStart(9)}  (+${delta.toFixed(1).padStart(8)})  ${entry.name.padEnd(20)} ${entry.source}`,
    );
  }
  return `${lines.join("\n")}\n`;
}

function errorJson(error: FnrunError): Record<string, unknown> {
  return error.toJSON();
}

async function runInvoke(args: InvokeArgs, io: CliIo): Promise<number> {
  const event = await readEvent(args, io);
  const env = {
    ...(args.envFile
      ? parseDotenv(await readLimitedFile(args.envFile, "env file", 1024 * 1024), args.envFile)
      : {}),
    ...parseEnvPairs(args.env ?? []),
  };
  const interactive = Boolean(io.stderr.isTTY) && !args.json;
  const showLogs = !args.json && !args.quiet;
  const options: InvokeOptions = {
    event,
    env,
    accel: args.accel,
    start: args.start,
    ...(args.handler !== undefined ? { handler: args.handler } : {}),
    ...(args.timeout !== undefined ? { timeout: args.timeout } : {}),
    ...(args.memory !== undefined ? { memory: args.memory } : {}),
    ...(args.net !== undefined ? { net: args.net } : {}),
    ...(args.maxResultSize !== undefined ? { maxResultBytes: args.maxResultSize } : {}),
    ...(args.maxLogSize !== undefined ? { maxLogBytes: args.maxLogSize } : {}),
    ...(args.verbose ? { verbose: true } : {}),
    ...(io.signal ? { signal: io.signal } : {}),
    onLog: (entry: LogEntry) => {
      if (showLogs) io.stderr.write(sanitizeForTerminal(entry.text));
    },
    onNotice: (message) => {
      if (!args.json && !args.quiet) io.stderr.write(`${message}\n`);
    },
  };
  // Progress: one line per slow step on a terminal (or with --verbose), nothing in --json.
  if ((interactive || args.verbose) && !args.json)
    options.onProgress = (line) => io.stderr.write(`fnrun: ${line}\n`);

  let result: InvokeResult;
  try {
    result = await invoke(args.file, options);
  } catch (error) {
    const failure =
      error instanceof FnrunError ? error : new InternalError(String((error as Error)?.stack ?? error));
    if (args.json) {
      io.stdout.write(
        `${JSON.stringify({ ok: false, error: errorJson(failure), ...(failure.report ?? {}) })}\n`,
      );
    } else {
      if (args.trace && failure.report) io.stderr.write(formatTimeline(failure.report.timeline));
      io.stderr.write(describeFailure(failure));
    }
    return failure.exitCode;
  }
  if (args.json) {
    const { logEntries: _entries, resultJson: _json, ...rest } = result;
    io.stdout.write(`${JSON.stringify({ ok: true, ...rest })}\n`);
  } else {
    if (args.trace) io.stderr.write(formatTimeline(result.timeline));
    io.stdout.write(`${result.resultJson}\n`);
  }
  return ExitCode.ok;
}

function describeFailure(error: FnrunError): string {
  if (error instanceof FunctionError) {
    const stack = error.trace.filter((line) => line.trimStart().startsWith("at ")).join("\n");
    return sanitizeForTerminal(
      `fnrun: function error: ${error.errorType}: ${error.errorMessage}\n${stack ? `${stack}\n` : ""}`,
    );
  }
  return sanitizeForTerminal(`fnrun: ${error.name}: ${error.message}\n`);
}

async function runSetup(args: { accel: "auto" | "kvm" | "tcg" }, io: CliIo): Promise<number> {
  const { resolveHost } = await import("./host.ts");
  const { ensureSnapshot, snapshotProblem } = await import("./snapshot.ts");
  const progress = (line: string) => io.stderr.write(`fnrun: ${line}\n`);
  const host = await resolveHost({ accel: args.accel, progress });
  const snapshot = snapshotProblem(host)
    ? undefined
    : await ensureSnapshot(host, DEFAULTS.memoryMB, { progress });
  io.stdout.write(
    `kernel:   ${host.kernel.path} (${host.kernel.origin}, ${host.kernel.entry})\n` +
      `runtime:  ${host.runtime.bootArchive}${host.runtime.disk ? ` + ${host.runtime.disk}` : ""} (${host.runtime.layout})\n` +
      `qemu:     ${host.qemuPath} (${host.accel.accel}${host.accel.fallbackReason ? `: ${host.accel.fallbackReason}` : ""})\n` +
      `snapshot: ${snapshot ? snapshot.directory : `none (${snapshotProblem(host)})`}\n`,
  );
  return ExitCode.ok;
}

async function runSnapshot(
  args: { memory: number; rebuild?: boolean; accel: "auto" | "kvm" | "tcg" },
  io: CliIo,
) {
  const { resolveHost } = await import("./host.ts");
  const { discardSnapshot, ensureSnapshot, findSnapshot } = await import("./snapshot.ts");
  const { LIMITS } = await import("./config.ts");
  if (
    !Number.isFinite(args.memory) ||
    args.memory < LIMITS.memoryMB.min ||
    args.memory > LIMITS.memoryMB.max
  ) {
    throw new UsageError(`--memory must be from ${LIMITS.memoryMB.min} to ${LIMITS.memoryMB.max}`);
  }
  const progress = (line: string) => io.stderr.write(`fnrun: ${line}\n`);
  const host = await resolveHost({ accel: args.accel, progress });
  if (args.rebuild) {
    const existing = await findSnapshot(host, args.memory);
    if (existing) await discardSnapshot(existing);
  }
  const snapshot = await ensureSnapshot(host, args.memory, { progress });
  io.stdout.write(`${snapshot.directory}\n`);
  return ExitCode.ok;
}

/** yargs reads a lone "-" as a stray argument: keep `--event -` together. */
function joinDashValues(argv: string[]): string[] {
  const joined: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if ((arg === "--event" || arg === "-e") && argv[i + 1] === "-") {
      joined.push("--event=-");
      i++;
    } else {
      joined.push(arg);
    }
  }
  return joined;
}

export async function main(rawArgv: string[], io: CliIo): Promise<number> {
  const argv = joinDashValues(rawArgv);
  try {
    let helpOutput = "";
    const parser = defineCommands(yargs());
    const args = (await parser.parseAsync(argv, {}, (_error, _argv, output) => {
      helpOutput = output;
    })) as Record<string, unknown> & { _: Array<string | number> };
    if (helpOutput) {
      io.stdout.write(`${helpOutput}\n`);
      return ExitCode.ok;
    }
    switch (args._[0]) {
      case "invoke":
        return await runInvoke(args as unknown as InvokeArgs, io);
      case "setup":
        return await runSetup(args as unknown as { accel: "auto" | "kvm" | "tcg" }, io);
      case "snapshot":
        return await runSnapshot(
          args as unknown as { memory: number; rebuild?: boolean; accel: "auto" | "kvm" | "tcg" },
          io,
        );
      default:
        throw new UsageError(`unknown command: ${String(args._[0])}`);
    }
  } catch (error) {
    const failure =
      error instanceof FnrunError ? error : new InternalError(String((error as Error)?.stack ?? error));
    io.stderr.write(describeFailure(failure));
    if (failure instanceof UsageError) io.stderr.write("Run `fnrun --help` for usage.\n");
    return failure.exitCode;
  }
}
