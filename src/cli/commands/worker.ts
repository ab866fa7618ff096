/** `fnrun worker`: run queued invocations from a Redis queue (any number of hosts). */

import { ExitCode } from "../../util/errors.ts";
import { defineCommand } from "../command.ts";
import type { CliIo } from "../io.ts";
import { untilStopped } from "../io.ts";
import { sanitizeForTerminal } from "../terminal.ts";

async function runWorkerCommand(args: { queue: string; concurrency: number; functions?: string }, io: CliIo) {
  const { startWorker } = await import("../../jobs/worker.ts");
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

export default defineCommand<{ queue: string; concurrency: number; functions?: string }>({
  command: "worker",
  describe: "Run queued invocations from a Redis queue (any number of hosts)",
  builder: (command) =>
    command
      .option("queue", { type: "string", demandOption: true, describe: "redis://HOST:PORT" })
      .option("concurrency", { type: "number", default: 2, describe: "Jobs at once on this host" })
      .option("functions", {
        type: "string",
        describe: "A functions directory, for jobs that carry no bundle",
      })
      .example("$0 worker --queue redis://10.0.0.5:6379", "Work for a server on another host"),
  run: runWorkerCommand,
});
