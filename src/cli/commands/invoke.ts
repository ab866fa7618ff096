/**
 * `fnrun invoke FILE`: one function, one event, one VM; the result on stdout,
 * logs and fnrun's own messages on stderr (or one JSON object with --json).
 * The hot path of the CLI: what it loads at start-up is kept small.
 */
import { resolve } from "node:path";
import { findHandlerModule } from "../../build/handler.ts";
import { invoke } from "../../invoke/invoke.ts";
import { DEFAULTS, INVOKE_RANGES, type InvokeOptions, type InvokeResult } from "../../invoke/options.ts";
import { backgroundSnapshots } from "../../start/snapshot.ts";
import { ExitCode, FnrunError, toFnrunError, UsageError } from "../../util/errors.ts";
import type { LogEntry } from "../../vm/log-collector.ts";
import { defineCommand, numberFlag } from "../command.ts";
import { parseDotenv, parseEnvPairs } from "../dotenv.ts";
import { type CliIo, parseJson, readLimitedFile, readStdin } from "../io.ts";
import { createProgress } from "../progress.ts";
import { describeFailure, formatTimeline } from "../render.ts";
import { logPrinter } from "../terminal.ts";

export interface InvokeArgs {
  /** Optional when the handler names its module (Lambda's MODULE.PATH). */
  file?: string;
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
  const dashFlag = args.event === "-" ? "--event" : args.eventFile === "-" ? "--event-file" : undefined;
  if (dashFlag) {
    const text = await readStdin(io.stdin, DEFAULTS.maxEventBytes);
    if (!text.trim())
      throw new UsageError(`${dashFlag} -: standard input is empty; pipe a JSON event into fnrun`);
    return parseJson(text, "the event on standard input");
  }
  if (args.eventFile !== undefined) {
    return parseJson(
      await readLimitedFile(args.eventFile, "event file", DEFAULTS.maxEventBytes),
      args.eventFile,
    );
  }
  if (args.event !== undefined) {
    if (Buffer.byteLength(args.event) > DEFAULTS.maxEventBytes)
      throw new UsageError("--event is over the 6 MB limit");
    return parseJson(args.event, "--event");
  }
  return {};
}

function errorJson(error: FnrunError): Record<string, unknown> {
  return error.toJSON();
}

export async function runInvoke(
  args: InvokeArgs,
  io: CliIo,
  trigger: "cli" | "replay" = "cli",
): Promise<number> {
  const file =
    args.file ??
    (args.handler !== undefined
      ? await findHandlerModule(args.handler, [process.cwd(), resolve("functions")])
      : undefined);
  if (file === undefined) {
    throw new UsageError(
      "say which function to run: fnrun invoke FILE, or --handler MODULE.EXPORT as Lambda's handler setting reads (index.handler)",
    );
  }
  const event = await readEvent(args, io);
  const env = {
    ...(args.envFile
      ? parseDotenv(await readLimitedFile(args.envFile, "env file", 1024 * 1024), args.envFile)
      : {}),
    ...parseEnvPairs(args.env ?? []),
  };
  const showLogs = !args.json && !args.quiet;
  const logs = logPrinter((text) => io.stderr.write(text));
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
      if (showLogs) logs.log(entry.text);
    },
    onNotice: (message) => {
      if (args.json || args.quiet) return;
      logs.endLine();
      io.stderr.write(`${message}\n`);
    },
  };

  const startedAt = Date.now();
  let outcome: InvokeResult | FnrunError;
  try {
    outcome = await invoke(file, options);
  } catch (error) {
    outcome = toFnrunError(error);
  } finally {
    progress.done();
  }
  logs.endLine();
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
    await recordInHistory(io.env, file, JSON.stringify(event ?? {}), trigger, startedAt, outcome);
  }
  // With no snapshot yet, this invocation booted and one is being made alongside
  // for the next: fnrun ends once it is saved, leaving no VM behind. Asked to
  // stop meanwhile, it stops that VM and removes what it had written.
  await backgroundSnapshots(io.signal);
  if (io.signal?.aborted && !(outcome instanceof FnrunError)) return ExitCode.interrupted;
  return outcome instanceof FnrunError ? outcome.exitCode : ExitCode.ok;
}

/** Spooled for the history to take in (jobs/history.ts): SQLite is not loaded for it. */
async function recordInHistory(
  env: NodeJS.ProcessEnv,
  file: string,
  event: string,
  trigger: "cli" | "replay",
  startedAt: number,
  outcome: InvokeResult | FnrunError,
): Promise<void> {
  if (env.FNRUN_HISTORY === "off") return;
  try {
    const [{ recordOf }, { spoolRecord }, { resolve }] = await Promise.all([
      import("../../jobs/record.ts"),
      import("../../jobs/history.ts"),
      import("node:path"),
    ]);
    const functionName =
      "functionName" in outcome ? outcome.functionName : (outcome.report?.functionName ?? file);
    await spoolRecord(
      recordOf({ file: resolve(file), functionName, trigger, event, startedAt, outcome }),
      env,
    );
  } catch {
    // A full disk, or no SQLite to take a full spool in: the answer was given,
    // the history goes without this one.
  }
}

export default defineCommand<InvokeArgs>({
  command: "invoke [file]",
  describe: "Run a function once in a fresh VM and print its result",
  builder: (command) =>
    command
      .positional("file", {
        type: "string",
        describe: "The function's file (.ts, .js, .mjs, .cjs); optional when --handler names its module",
      })
      .option("event", {
        alias: "e",
        type: "string",
        describe: "The event as JSON, or - to read it from standard input (default {})",
      })
      .option("event-file", {
        type: "string",
        describe: "Read the event from this JSON file (- for standard input)",
      })
      .option("handler", {
        type: "string",
        describe:
          "What to call: an export, a path in the exports (nested.handler), or Lambda's MODULE.PATH (default: handler, else default)",
      })
      .option(
        "timeout",
        numberFlag(
          "timeout",
          INVOKE_RANGES.timeout,
          `Seconds the handler may run (default ${DEFAULTS.timeoutSeconds})`,
        ),
      )
      .option(
        "memory",
        numberFlag("memory", INVOKE_RANGES.memory, `Guest RAM in MB (default ${DEFAULTS.memoryMB})`),
      )
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
      .option(
        "max-result-size",
        numberFlag("max-result-size", INVOKE_RANGES.maxResultBytes, "Largest result in bytes (default 6 MB)"),
      )
      .option(
        "max-log-size",
        numberFlag(
          "max-log-size",
          INVOKE_RANGES.maxLogBytes,
          "Log bytes kept before truncating (default 1 MB)",
        ),
      )
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
  run: (args, io) => runInvoke(args, io),
});
