/** `fnrun replay ID`: an invocation from the history again, with the same event, in a new VM. */
import { UsageError } from "../../util/errors.ts";
import { defineCommand } from "../command.ts";
import type { CliIo } from "../io.ts";
import { utcTime } from "../render.ts";
import { sanitizeForTerminal } from "../terminal.ts";
import { type InvokeArgs, runInvoke } from "./invoke.ts";

interface ReplayArgs extends Omit<InvokeArgs, "file" | "event"> {
  id: string;
}

/** Runs a function from the history again, with the same event. */
async function runReplay(args: ReplayArgs, io: CliIo): Promise<number> {
  const { History } = await import("../../jobs/history.ts");
  const history = await History.open(io.env);
  const record = history.get(args.id);
  history.close();
  if (!record) throw new UsageError(`no invocation ${args.id} in the history (see fnrun history)`);
  if (record.eventTruncated)
    throw new UsageError(`invocation ${args.id}'s event was too large to keep; it cannot be replayed`);
  if (!io.env.FNRUN_QUIET_REPLAY && !args.json) {
    io.stderr.write(
      `fnrun: replaying ${record.requestId} (${sanitizeForTerminal(record.functionName)}, ${utcTime(record.startedAt)} UTC)\n`,
    );
  }
  return runInvoke({ ...args, file: record.file, event: record.event }, io, "replay");
}

export default defineCommand<ReplayArgs>({
  command: "replay <id>",
  describe: "Run an invocation from the history again, with the same event",
  builder: (command) =>
    command
      .positional("id", { type: "string" })
      .option("start", { choices: ["auto", "boot", "snapshot"] as const, default: "auto" })
      .option("accel", { choices: ["auto", "kvm", "tcg"] as const, default: "auto" })
      .option("json", { type: "boolean" })
      .option("trace", { type: "boolean" })
      .option("quiet", { alias: "q", type: "boolean" })
      .example("$0 replay 3f2a", "The same function with the same event, in a new VM"),
  run: runReplay,
});
