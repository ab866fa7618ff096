/**
 * The command line: a thin layer over the library API. `main(argv, io)` returns
 * the exit code, so tests run it in-process with their own streams.
 */
import yargs, { type Argv } from "yargs";
import { invoke } from "../invoke/invoke.ts";
import { DEFAULTS, type InvokeOptions, type InvokeResult } from "../invoke/options.ts";
import { backgroundSnapshots } from "../start/snapshot.ts";
import { ExitCode, FnrunError, toFnrunError, UsageError } from "../util/errors.ts";
import type { LogEntry, TimelineEntry } from "../vm/session.ts";
import { type CliIo, createProgress, describeFailure, parseJson, readLimitedFile, readStdin } from "./io.ts";
import { sanitizeForTerminal } from "./terminal.ts";

const VERSION = "0.1.0";

function defineCommands(parser: Argv, helpWidth: number | null): Argv {
  return (
    parser
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
          .option("env-file", {
            type: "string",
            describe: "Read KEY=VALUE lines from this file (.env format)",
          })
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
        (command) =>
          command
            .option("accel", { choices: ["auto", "kvm", "tcg"] as const, default: "auto" })
            .example("$0 setup", "Prepare everything once, e.g. in a CI image, so the first invoke is fast"),
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
          .example(
            "$0 build functions/hello.ts && $0 invoke hello.tgz",
            "Build once, run anywhere fnrun runs",
          ),
      )
      .command(
        "dev <file>",
        "Run a function on every save, with the last event (r: run again, q: quit)",
        (command) =>
          command
            .positional("file", { type: "string" })
            .option("event", { alias: "e", type: "string", describe: "The event as JSON (default {})" })
            .option("event-file", { type: "string", describe: "Read the event from this JSON file" })
            .example(
              "$0 dev functions/hello.ts --event-file events/hello.json",
              "Edit, save, see the new result",
            ),
      )
      .command("init [name]", "Create a typed function to start from, and an example event", (command) =>
        command
          .positional("name", {
            type: "string",
            describe: "The function's name (default: after the template)",
          })
          .option("template", {
            alias: "t",
            choices: ["plain", "http", "cron", "webhook"] as const,
            default: "plain",
            describe: "What kind of function",
          })
          .option("directory", { type: "string", default: "functions", describe: "Where functions live" })
          .option("force", { type: "boolean", describe: "Replace existing files" })
          .example("$0 init orders --template http", "functions/orders.ts and events/orders.json"),
      )
      .command(
        "doctor",
        "Check what fnrun needs on this machine, and how to fix what is missing",
        (command) => command.example("$0 doctor", "QEMU, qboot, kernel, accelerator (and why), cache"),
      )
      .command(
        "history [id]",
        "Recent invocations (from the CLI and serve), or one of them in full",
        (command) =>
          command
            .positional("id", { type: "string", describe: "A request id, or its first characters" })
            .option("limit", { type: "number", default: 20 })
            .option("function", { type: "string", describe: "Only this function's" })
            .option("json", { type: "boolean" })
            .example("$0 history", "The last 20 invocations")
            .example("$0 history 3f2a", "One invocation: event, result or error, logs, timeline"),
      )
      .command("replay <id>", "Run an invocation from the history again, with the same event", (command) =>
        command
          .positional("id", { type: "string" })
          .option("start", { choices: ["auto", "boot", "snapshot"] as const, default: "auto" })
          .option("accel", { choices: ["auto", "kvm", "tcg"] as const, default: "auto" })
          .option("json", { type: "boolean" })
          .option("trace", { type: "boolean" })
          .option("quiet", { alias: "q", type: "boolean" })
          .example("$0 replay 3f2a", "The same function with the same event, in a new VM"),
      )
      .completion("completion", "Print a shell completion script (bash, zsh): fnrun completion >> ~/.bashrc")
      .parserConfiguration({ "populate--": true })
      .demandCommand(1, "Say which command to run: fnrun invoke FILE (see fnrun --help)")
      .strict()
      .recommendCommands()
      .help()
      .alias("h", "help")
      .version(VERSION)
      // yargs lays out the help text on every parse; only lay it out to a width when it may be shown.
      .wrap(helpWidth)
      .exitProcess(false)
      .fail((message, error) => {
        throw new UsageError(message ?? error?.message ?? "invalid command line");
      })
  );
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

async function runInvoke(args: InvokeArgs, io: CliIo, trigger: "cli" | "replay" = "cli"): Promise<number> {
  const event = await readEvent(args, io);
  const env = {
    ...(args.envFile
      ? parseDotenv(await readLimitedFile(args.envFile, "env file", 1024 * 1024), args.envFile)
      : {}),
    ...parseEnvPairs(args.env ?? []),
  };
  const showLogs = !args.json && !args.quiet;
  const progress = createProgress(io, { quiet: Boolean(args.quiet), json: Boolean(args.json) });
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
    ...(progress.step ? { onProgress: progress.step } : {}),
    onLog: (entry: LogEntry) => {
      progress.done();
      if (showLogs) io.stderr.write(sanitizeForTerminal(entry.text));
    },
    onNotice: (message) => {
      if (!args.json && !args.quiet) io.stderr.write(`${message}\n`);
    },
  };

  const startedAt = Date.now();
  // Opened while the VM runs (loading SQLite takes a while), written after the output.
  const history = openHistory(io.env);
  let outcome: InvokeResult | FnrunError;
  try {
    outcome = await invoke(args.file, options);
  } catch (error) {
    outcome = toFnrunError(error);
  } finally {
    progress.done();
  }
  if (outcome instanceof FnrunError) {
    if (args.json) {
      io.stdout.write(
        `${JSON.stringify({ ok: false, error: errorJson(outcome), ...(outcome.report ?? {}) })}\n`,
      );
    } else {
      if (args.trace && outcome.report) io.stderr.write(formatTimeline(outcome.report.timeline));
      io.stderr.write(describeFailure(outcome));
    }
  } else if (args.json) {
    const { logEntries: _entries, resultJson: _json, ...rest } = outcome;
    io.stdout.write(`${JSON.stringify({ ok: true, ...rest })}\n`);
  } else {
    if (args.trace) io.stderr.write(formatTimeline(outcome.timeline));
    io.stdout.write(`${outcome.resultJson}\n`);
  }
  // After the output: the history is a convenience and must never cost the answer.
  if (!(outcome instanceof FnrunError) || outcome.report) {
    await recordInHistory(history, args.file, JSON.stringify(event ?? {}), trigger, startedAt, outcome);
  }
  // With no snapshot yet, this invocation booted and one is being made alongside
  // for the next: fnrun ends once it is saved, leaving no VM behind.
  await backgroundSnapshots();
  return outcome instanceof FnrunError ? outcome.exitCode : ExitCode.ok;
}

type HistoryHandle = Promise<import("../jobs/history.ts").History | undefined>;

function openHistory(env: NodeJS.ProcessEnv): HistoryHandle {
  if (env.FNRUN_HISTORY === "off") return Promise.resolve(undefined);
  return import("../jobs/history.ts").then(({ History }) => History.open(env)).catch(() => undefined); // no SQLite here, or a read-only state directory: no history, no fuss
}

async function recordInHistory(
  handle: HistoryHandle,
  file: string,
  event: string,
  trigger: "cli" | "replay",
  startedAt: number,
  outcome: InvokeResult | FnrunError,
): Promise<void> {
  const history = await handle;
  if (!history) return;
  try {
    const [{ recordOf }, { resolve }] = await Promise.all([import("../jobs/record.ts"), import("node:path")]);
    const functionName =
      "functionName" in outcome ? outcome.functionName : (outcome.report?.functionName ?? file);
    history.add(recordOf({ file: resolve(file), functionName, trigger, event, startedAt, outcome }));
  } catch {
    // A full disk, say: the answer was given, the history goes without this one.
  } finally {
    history.close();
  }
}

interface ReplayArgs extends Omit<InvokeArgs, "file" | "event"> {
  id: string;
}

/** Runs a function from the history again, with the same event. */
async function runReplay(args: ReplayArgs, io: CliIo): Promise<number> {
  const { History } = await import("../jobs/history.ts");
  const history = await History.open(io.env);
  const record = history.get(args.id);
  history.close();
  if (!record) throw new UsageError(`no invocation ${args.id} in the history (see fnrun history)`);
  if (record.eventTruncated)
    throw new UsageError(`invocation ${args.id}'s event was too large to keep; it cannot be replayed`);
  if (!io.env.FNRUN_QUIET_REPLAY && !args.json) {
    io.stderr.write(
      `fnrun: replaying ${record.requestId} (${record.functionName}, ${new Date(record.startedAt).toLocaleString()})\n`,
    );
  }
  return runInvoke({ ...args, file: record.file, event: record.event }, io, "replay");
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

export type { CliIo };

export async function main(rawArgv: string[], io: CliIo): Promise<number> {
  const argv = joinDashValues(rawArgv);
  try {
    let helpOutput = "";
    const mayShowHelp = argv.length === 0 || argv.some((arg) => arg === "--help" || arg === "-h");
    const parser = defineCommands(yargs(), mayShowHelp ? Math.min(100, process.stdout.columns || 100) : null);
    const args = (await parser.parseAsync(argv, {}, (_error, _argv, output) => {
      helpOutput = output;
    })) as Record<string, unknown> & { _: Array<string | number> };
    if (helpOutput) {
      io.stdout.write(`${helpOutput}\n`);
      return ExitCode.ok;
    }
    if (args._[0] === "invoke") return await runInvoke(args as unknown as InvokeArgs, io);
    if (args._[0] === "replay") return await runReplay(args as unknown as ReplayArgs, io);
    // The other commands load only when used: invoke's start-up stays small.
    const commands = await import("./commands.ts");
    const given = args as never;
    switch (args._[0]) {
      case "setup":
        return await commands.runSetup(given, io);
      case "snapshot":
        return await commands.runSnapshot(given, io);
      case "serve":
        return await commands.runServe(given, io);
      case "worker":
        return await commands.runWorkerCommand(given, io);
      case "queue":
        return await commands.runQueue(given, io);
      case "hook":
        return await commands.runHook(given, io);
      case "build":
        return await commands.runBuild(given, io);
      case "dev":
        return await commands.runDevCommand(given, io);
      case "init":
        return await commands.runInit(given, io);
      case "doctor":
        return await commands.runDoctor(io);
      case "history":
        return await commands.runHistory(given, io);
      default:
        throw new UsageError(`unknown command: ${String(args._[0])}`);
    }
  } catch (error) {
    const failure = toFnrunError(error);
    io.stderr.write(describeFailure(failure));
    if (failure instanceof UsageError) io.stderr.write("Run `fnrun --help` for usage.\n");
    return failure.exitCode;
  }
}
