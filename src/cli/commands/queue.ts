/** `fnrun queue <action> [id]`: inspect the queue: ls, show ID, replay ID, purge. */

import { ExitCode, UsageError } from "../../util/errors.ts";
import { defineCommand } from "../command.ts";
import type { CliIo } from "../io.ts";

interface QueueArgs {
  action: "ls" | "show" | "replay" | "purge";
  id?: string;
  queue: string;
  state?: "pending" | "running" | "done" | "dead";
  all?: boolean;
  stateDir: string;
}
async function runQueue(args: QueueArgs, io: CliIo): Promise<number> {
  const { openStateDatabase, SqliteQueue } = await import("../../jobs/queue-sqlite.ts");
  const { join, resolve } = await import("node:path");
  const { existsSync } = await import("node:fs");
  let queue: import("../../jobs/queue.ts").JobQueue;
  let closeDatabase = () => {};
  if (args.queue === "sqlite") {
    const path = join(resolve(args.stateDir), "state.db");
    if (!existsSync(path))
      throw new UsageError(`no queue at ${path}: run \`fnrun serve\` here first, or pass --state-dir`);
    const database = await openStateDatabase(path);
    queue = new SqliteQueue(database);
    closeDatabase = () => database.close();
  } else {
    const { RedisQueue } = await import("../../jobs/queue-redis.ts");
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

export default defineCommand<QueueArgs>({
  command: "queue <action> [id]",
  describe: "Inspect the queue: ls, show ID, replay ID, purge",
  builder: (command) =>
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
  run: runQueue,
});
