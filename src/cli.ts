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
        .option("mount", {
          type: "string",
          array: true,
          describe:
            "HOST_DIR:GUEST_DIR[:ro|rw], shared with the VM through virtio-fs (repeatable; read-only by default)",
        })
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
          "$0 invoke f.ts --mount ./data:/mnt/data --mount ./out:/mnt/out:rw",
          "Share folders with the VM",
        )
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
    .command(
      "serve [directory]",
      "Serve the functions in a directory: Lambda Invoke API, webhooks, schedules",
      (command) =>
        command
          .positional("directory", {
            type: "string",
            default: "functions",
            describe: "Where the functions are",
          })
          .option("port", {
            alias: "p",
            type: "number",
            default: 9000,
            describe: "TCP port (0: any free one)",
          })
          .option("host", { type: "string", default: "127.0.0.1", describe: "Address to listen on" })
          .option("allow-remote", {
            type: "boolean",
            describe: "Allow listening beyond loopback (needs --token)",
          })
          .option("token", {
            type: "string",
            describe: "Token every request must carry (default: $FNRUN_TOKEN)",
          })
          .option("queue", {
            type: "string",
            default: "sqlite",
            describe: "sqlite (.fnrun/state.db) or redis://HOST:PORT",
          })
          .option("pool", { type: "number", default: 1, describe: "Warm VMs kept per function (0: none)" })
          .option("memory", {
            type: "number",
            describe: `Guest RAM of pooled VMs in MB (default ${DEFAULTS.memoryMB})`,
          })
          .option("max-concurrency", {
            type: "number",
            describe: "Invocations running at once (default: 2 per core)",
          })
          .option("max-waiting", {
            type: "number",
            default: 32,
            describe: "Requests waiting for a place before 429",
          })
          .option("workers", {
            type: "number",
            describe: "Queue workers in this server (default: 1 per core)",
          })
          .option("schedules", {
            type: "boolean",
            default: true,
            describe: "Run config.schedule (--no-schedules: off)",
          })
          .option("state-dir", {
            type: "string",
            default: ".fnrun",
            describe: "Where the queue and schedule state live",
          })
          .option("accel", { choices: ["auto", "kvm", "tcg"] as const, default: "auto" })
          .example("$0 serve", "Serve functions/ on http://127.0.0.1:9000")
          .example(
            "$0 serve --queue redis://127.0.0.1:6379 --workers 0",
            "Enqueue to Redis; let `fnrun worker`s run the jobs",
          ),
    )
    .command("worker", "Run queued invocations from a Redis queue (any number of hosts)", (command) =>
      command
        .option("queue", { type: "string", demandOption: true, describe: "redis://HOST:PORT" })
        .option("concurrency", { type: "number", default: 2, describe: "Jobs at once on this host" })
        .option("functions", {
          type: "string",
          describe: "A functions directory, for jobs that carry no bundle",
        })
        .example("$0 worker --queue redis://10.0.0.5:6379", "Work for a server on another host"),
    )
    .command("queue <action> [id]", "Inspect the queue: ls, show ID, replay ID, purge", (command) =>
      command
        .positional("action", { choices: ["ls", "show", "replay", "purge"] as const })
        .positional("id", { type: "string", describe: "A job id (show, replay)" })
        .option("queue", { type: "string", default: "sqlite", describe: "sqlite or redis://HOST:PORT" })
        .option("state", {
          choices: ["pending", "running", "done", "dead"] as const,
          describe: "Only jobs in this state",
        })
        .option("all", { type: "boolean", describe: "purge: finished jobs too, not only dead ones" })
        .option("state-dir", { type: "string", default: ".fnrun", describe: "Where serve keeps its state" })
        .example("$0 queue ls --state dead", "The dead-letter list")
        .example("$0 queue replay 42", "Run job 42's event again"),
    )
    .command(
      "hook <action> <name> [file]",
      "Git hooks that run a function: install, uninstall, run",
      (command) =>
        command
          .positional("action", { choices: ["install", "uninstall", "run"] as const })
          .positional("name", {
            type: "string",
            describe: "The git hook (pre-commit, commit-msg, pre-push, ...)",
          })
          .positional("file", { type: "string", describe: "The function (install, run)" })
          .option("force", {
            type: "boolean",
            describe: "install: replace a hook fnrun did not write (kept as a backup)",
          })
          .example("$0 hook install pre-commit functions/lint-check.ts", "Check every commit in a microvm"),
    )
    .command("build <file>", "Bundle a function into a portable artifact (.tgz)", (command) =>
      command
        .positional("file", { type: "string" })
        .option("output", { alias: "o", type: "string", describe: "Where to write it (default: NAME.tgz)" })
        .example("$0 build functions/hello.ts && $0 invoke hello.tgz", "Build once, run anywhere fnrun runs"),
    )
    .parserConfiguration({ "populate--": true })
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
  mount?: string[];
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
    ...(args.mount ? { mounts: args.mount } : {}),
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

interface ServeArgs {
  directory: string;
  port: number;
  host: string;
  allowRemote?: boolean;
  token?: string;
  queue: string;
  pool: number;
  memory?: number;
  maxConcurrency?: number;
  maxWaiting: number;
  workers?: number;
  schedules: boolean;
  stateDir: string;
  accel: "auto" | "kvm" | "tcg";
}

/** Resolves when fnrun is asked to stop (SIGINT/SIGTERM), for long-running commands. */
function untilStopped(io: CliIo): Promise<void> {
  return new Promise((resolve) => {
    if (!io.signal) return;
    if (io.signal.aborted) resolve();
    io.signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

async function runServe(args: ServeArgs, io: CliIo): Promise<number> {
  const { serve } = await import("./serve.ts");
  const notice = (line: string) => io.stderr.write(`${sanitizeForTerminal(line)}\n`);
  const server = await serve({
    directory: args.directory,
    port: args.port,
    address: args.host,
    ...(args.allowRemote ? { allowRemote: true } : {}),
    ...(args.token || io.env.FNRUN_TOKEN ? { token: args.token ?? io.env.FNRUN_TOKEN } : {}),
    queue: args.queue,
    pool: args.pool,
    ...(args.memory !== undefined ? { memory: args.memory } : {}),
    ...(args.maxConcurrency !== undefined ? { maxConcurrency: args.maxConcurrency } : {}),
    maxWaiting: args.maxWaiting,
    ...(args.workers !== undefined ? { workers: args.workers } : {}),
    schedules: args.schedules,
    stateDirectory: args.stateDir,
    accel: args.accel,
    onNotice: notice,
  });
  const names = (await server.functions.list()).map((fn) => fn.name);
  io.stderr.write(
    `fnrun serve: ${names.length} function(s) from ${server.directory}: ${names.join(", ") || "none yet"}\n` +
      `fnrun serve: listening on ${server.url} (dashboard: ${server.url}/_fnrun/)\n`,
  );
  await untilStopped(io);
  io.stderr.write("fnrun serve: stopping; letting invocations in flight finish (again to force)\n");
  await server.close();
  return ExitCode.ok;
}

async function runWorkerCommand(args: { queue: string; concurrency: number; functions?: string }, io: CliIo) {
  const { startWorker } = await import("./worker.ts");
  const worker = await startWorker({
    queue: args.queue,
    concurrency: args.concurrency,
    ...(args.functions ? { directory: args.functions } : {}),
    onNotice: (line) => io.stderr.write(`${sanitizeForTerminal(line)}\n`),
  });
  io.stderr.write(`fnrun worker ${worker.name}: working for ${args.queue}\n`);
  await untilStopped(io);
  io.stderr.write(`fnrun worker ${worker.name}: stopping after the jobs in hand\n`);
  await worker.close();
  return ExitCode.ok;
}

interface QueueArgs {
  action: "ls" | "show" | "replay" | "purge";
  id?: string;
  queue: string;
  state?: "pending" | "running" | "done" | "dead";
  all?: boolean;
  stateDir: string;
}

async function runQueue(args: QueueArgs, io: CliIo): Promise<number> {
  const { openStateDatabase, SqliteQueue } = await import("./queue.ts");
  const { join, resolve } = await import("node:path");
  const { existsSync } = await import("node:fs");
  let queue: import("./queue.ts").JobQueue;
  let closeDatabase = () => {};
  if (args.queue === "sqlite") {
    const path = join(resolve(args.stateDir), "state.db");
    if (!existsSync(path))
      throw new UsageError(`no queue at ${path}: run \`fnrun serve\` here first, or pass --state-dir`);
    const database = await openStateDatabase(path);
    queue = new SqliteQueue(database);
    closeDatabase = () => database.close();
  } else {
    const { RedisQueue } = await import("./queue-redis.ts");
    queue = await RedisQueue.connect(args.queue);
  }
  try {
    if ((args.action === "show" || args.action === "replay") && !args.id) {
      throw new UsageError(`fnrun queue ${args.action} needs a job id (see fnrun queue ls)`);
    }
    switch (args.action) {
      case "ls": {
        const jobs = await queue.list(args.state ? [args.state] : undefined, 200);
        if (jobs.length === 0) io.stderr.write("the queue is empty\n");
        for (const job of jobs) {
          const when = new Date(job.updatedAt).toISOString();
          const retry =
            job.state === "pending" && job.attempts > 0
              ? ` (retry ${job.attempts + 1}/${job.maxAttempts})`
              : "";
          io.stdout.write(`${job.id}\t${job.state}${retry}\t${job.functionName}\t${job.trigger}\t${when}\n`);
        }
        return ExitCode.ok;
      }
      case "show": {
        const job = await queue.get(args.id as string);
        if (!job) throw new UsageError(`no job ${args.id} in the queue`);
        io.stdout.write(`${JSON.stringify(job, null, 2)}\n`);
        return ExitCode.ok;
      }
      case "replay": {
        const id = await queue.replay(args.id as string);
        io.stdout.write(`${id}\n`);
        io.stderr.write(`queued again as job ${id}\n`);
        return ExitCode.ok;
      }
      case "purge": {
        const count = await queue.purge(args.all ? "finished" : "dead");
        io.stderr.write(`removed ${count} ${args.all ? "finished" : "dead-lettered"} job(s)\n`);
        return ExitCode.ok;
      }
    }
  } finally {
    await queue.close();
    closeDatabase();
  }
}

interface HookArgs {
  action: "install" | "uninstall" | "run";
  name: string;
  file?: string;
  force?: boolean;
  "--"?: string[];
}

async function runHook(args: HookArgs, io: CliIo): Promise<number> {
  const hooks = await import("./hooks.ts");
  if (args.action === "uninstall") {
    io.stderr.write(`removed ${await hooks.uninstallHook(args.name)}\n`);
    return ExitCode.ok;
  }
  if (!args.file) throw new UsageError(`fnrun hook ${args.action} ${args.name} needs the function's file`);
  if (args.action === "install") {
    const path = await hooks.installHook(args.name, args.file, { ...(args.force ? { force: true } : {}) });
    io.stderr.write(`installed ${path}: each ${args.name} now runs ${args.file} in a microvm\n`);
    return ExitCode.ok;
  }
  // Git gives pre-push its refs on standard input; other hooks get none.
  const stdin = args.name === "pre-push" ? await readStdin(io.stdin, 1024 * 1024) : "";
  const event = await hooks.hookEvent(args.name, (args["--"] ?? []).map(String), stdin);
  try {
    const { result } = await invoke(args.file, {
      event,
      ...(io.signal ? { signal: io.signal } : {}),
      onLog: (entry) => io.stderr.write(sanitizeForTerminal(entry.text)),
    });
    const verdict = hooks.hookVerdict(result);
    if (verdict.message) io.stderr.write(`${sanitizeForTerminal(verdict.message)}\n`);
    return verdict.ok ? ExitCode.ok : 1;
  } catch (error) {
    if (!(error instanceof FnrunError)) throw error;
    io.stderr.write(describeFailure(error));
    io.stderr.write(`fnrun: the ${args.name} hook failed; git stops here\n`);
    return 1;
  }
}

async function runBuild(args: { file: string; output?: string }, io: CliIo): Promise<number> {
  const { bundleFunction } = await import("./bundle.ts");
  const { writeArtifact } = await import("./artifact.ts");
  const bundle = await bundleFunction(args.file, { cache: false });
  const output = args.output ?? `${bundle.name}.tgz`;
  await writeArtifact(bundle, output);
  io.stdout.write(`${output}\n`);
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
      case "serve":
        return await runServe(args as unknown as ServeArgs, io);
      case "worker":
        return await runWorkerCommand(
          args as unknown as { queue: string; concurrency: number; functions?: string },
          io,
        );
      case "queue":
        return await runQueue(args as unknown as QueueArgs, io);
      case "hook":
        return await runHook(args as unknown as HookArgs, io);
      case "build":
        return await runBuild(args as unknown as { file: string; output?: string }, io);
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
