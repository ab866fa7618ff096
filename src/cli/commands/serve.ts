/** `fnrun serve [directory]`: serve the functions in a directory: Lambda Invoke API, webhooks, schedules. */

import { DEFAULTS } from "../../invoke/options.ts";
import { SERVE_RANGES } from "../../serve/limits.ts";
import { ExitCode } from "../../util/errors.ts";
import { defineCommand, numberFlag } from "../command.ts";
import type { CliIo } from "../io.ts";
import { signingKey, untilStopped } from "../io.ts";
import { sanitizeForTerminal } from "../terminal.ts";

/** With a Redis queue, the signing key the jobs are signed with. */
async function signingKeyOption(queue: string, file: string | undefined, io: CliIo) {
  if (queue === "sqlite") return {};
  const key = await signingKey(file, io);
  return key ? { signingKey: key } : {};
}

interface ServeArgs {
  directory: string;
  port: number;
  host: string;
  allowRemote?: boolean;
  token?: string;
  queue: string;
  signingKeyFile?: string;
  pool: number;
  memory?: number;
  maxConcurrency?: number;
  maxWaiting: number;
  workers?: number;
  schedules: boolean;
  stateDir: string;
  accel: "auto" | "kvm" | "tcg";
}
async function runServe(args: ServeArgs, io: CliIo): Promise<number> {
  const { serve } = await import("../../serve/server.ts");
  const notice = (line: string) => io.stderr.write(`${sanitizeForTerminal(line)}\n`);
  const server = await serve({
    directory: args.directory,
    port: args.port,
    address: args.host,
    ...(args.allowRemote ? { allowRemote: true } : {}),
    ...(args.token || io.env.FNRUN_TOKEN ? { token: args.token ?? io.env.FNRUN_TOKEN } : {}),
    queue: args.queue,
    ...(await signingKeyOption(args.queue, args.signingKeyFile, io)),
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

export default defineCommand<ServeArgs>({
  command: "serve [directory]",
  describe: "Serve the functions in a directory: Lambda Invoke API, webhooks, schedules",
  builder: (command) =>
    command
      .positional("directory", {
        type: "string",
        default: "functions",
        describe: "Where the functions are",
      })
      .option("port", {
        ...numberFlag("port", SERVE_RANGES.port, "TCP port (0: any free one)"),
        alias: "p",
        default: 9000,
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
        describe: "sqlite (.fnrun/state.db), or redis[s]://[USER:PASSWORD@]HOST:PORT for workers elsewhere",
      })
      .option("signing-key-file", {
        type: "string",
        describe:
          "With Redis: the key jobs are signed with, shared with the workers (default: $FNRUN_SIGNING_KEY)",
      })
      .option("pool", {
        ...numberFlag("pool", SERVE_RANGES.pool, "Warm VMs kept per function (0: none)"),
        default: 1,
      })
      .option(
        "memory",
        numberFlag(
          "memory",
          SERVE_RANGES.memory,
          `Guest RAM of pooled VMs in MB (default ${DEFAULTS.memoryMB})`,
        ),
      )
      .option(
        "max-concurrency",
        numberFlag(
          "max-concurrency",
          SERVE_RANGES.maxConcurrency,
          "Invocations running at once (default: 2 per core)",
        ),
      )
      .option("max-waiting", {
        ...numberFlag("max-waiting", SERVE_RANGES.maxWaiting, "Requests waiting for a place before 429"),
        default: 32,
      })
      .option(
        "workers",
        numberFlag("workers", SERVE_RANGES.workers, "Queue workers in this server (default: 1 per core)"),
      )
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
  run: runServe,
});
