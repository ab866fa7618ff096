/** `fnrun worker`: run queued invocations from a Redis queue (any number of hosts). */

import { WORKER_RANGES } from "../../jobs/limits.ts";
import { ExitCode } from "../../util/errors.ts";
import { defineCommand, numberFlag } from "../command.ts";
import type { CliIo } from "../io.ts";
import { signingKey, untilStopped } from "../io.ts";
import { sanitizeForTerminal } from "../terminal.ts";

interface WorkerArgs {
  queue: string;
  concurrency: number;
  functions?: string;
  signingKeyFile?: string;
  allowMount?: string[];
  allowNet?: boolean;
}

async function runWorkerCommand(args: WorkerArgs, io: CliIo) {
  const { startWorker } = await import("../../jobs/worker.ts");
  const { redactUrl } = await import("../../jobs/queue-redis.ts");
  const key = await signingKey(args.signingKeyFile, io);
  const worker = await startWorker({
    queue: args.queue,
    concurrency: args.concurrency,
    ...(args.functions ? { directory: args.functions } : {}),
    ...(key ? { signingKey: key } : {}),
    ...(args.allowMount ? { allowMounts: args.allowMount } : {}),
    ...(args.allowNet ? { allowNet: true } : {}),
    onNotice: (line) => io.stderr.write(`${sanitizeForTerminal(line)}\n`),
  });
  io.stderr.write(`fnrun worker ${worker.name}: working for ${redactUrl(args.queue)}\n`);
  await untilStopped(io);
  io.stderr.write(`fnrun worker ${worker.name}: stopping after the jobs in hand\n`);
  await worker.close();
  return ExitCode.ok;
}

export default defineCommand<WorkerArgs>({
  command: "worker",
  describe: "Run queued invocations from a Redis queue (any number of hosts)",
  builder: (command) =>
    command
      .option("queue", {
        type: "string",
        demandOption: true,
        describe: "redis://[USER:PASSWORD@]HOST:PORT, or rediss:// for TLS (FNRUN_REDIS_CA: a CA's PEM)",
      })
      .option("concurrency", {
        ...numberFlag("concurrency", WORKER_RANGES.concurrency, "Jobs at once on this host"),
        default: 2,
      })
      .option("functions", {
        type: "string",
        describe: "A functions directory, for jobs that carry no bundle",
      })
      .option("signing-key-file", {
        type: "string",
        describe:
          "The key the server signs jobs with (default: $FNRUN_SIGNING_KEY); unsigned jobs are refused",
      })
      .option("allow-mount", {
        type: "string",
        array: true,
        describe:
          "HOST_DIR:GUEST_DIR[:ro|rw] a job may have at GUEST_DIR (repeatable; jobs get no other folder)",
      })
      .option("allow-net", {
        type: "boolean",
        describe: "Let jobs whose function asks for a network have one",
      })
      .example(
        "FNRUN_SIGNING_KEY=... $0 worker --queue rediss://fnrun:PASSWORD@10.0.0.5:6380",
        "Work for a server on another host, over TLS, as a Redis ACL user",
      ),
  run: runWorkerCommand,
});
