/** `fnrun history [id]`: recent invocations (from the CLI and serve), or one of them in full. */

import { HISTORY_LIMITS } from "../../jobs/limits.ts";
import { ExitCode, UsageError } from "../../util/errors.ts";
import { defineCommand, numberFlag } from "../command.ts";
import type { CliIo } from "../io.ts";
import { type Column, formatTable, utcTime } from "../render.ts";
import { sanitizeForTerminal } from "../terminal.ts";

/** One line per invocation, no headings: id, start (UTC), function, status, duration, start mode, trigger. */
const HISTORY_COLUMNS: Column[] = [{}, {}, {}, {}, { align: "right" }, {}, {}];

async function runHistory(
  args: { id?: string; limit: number; function?: string; json?: boolean },
  io: CliIo,
) {
  const { History } = await import("../../jobs/history.ts");
  const history = await History.open(io.env);
  try {
    if (args.id) {
      const record = history.get(args.id);
      if (!record) throw new UsageError(`no invocation ${args.id} in the history`);
      io.stdout.write(`${JSON.stringify(record, null, 2)}\n`);
      return ExitCode.ok;
    }
    const records = history.list(args.limit, args.function);
    if (args.json) {
      io.stdout.write(`${JSON.stringify(records)}\n`);
      return ExitCode.ok;
    }
    if (records.length === 0)
      io.stderr.write(
        args.function
          ? `no invocations of ${sanitizeForTerminal(args.function)} yet\n`
          : "no invocations yet\n",
      );
    const rows = records.map((record) => [
      record.requestId.slice(0, 8),
      utcTime(record.startedAt),
      record.functionName,
      record.status,
      `${Math.round(record.durationMs)} ms`,
      record.startMode,
      record.trigger,
    ]);
    io.stdout.write(formatTable(HISTORY_COLUMNS, rows));
    return ExitCode.ok;
  } finally {
    history.close();
  }
}

export default defineCommand<{ id?: string; limit: number; function?: string; json?: boolean }>({
  command: "history [id]",
  describe: "Recent invocations (from the CLI and serve), or one of them in full",
  builder: (command) =>
    command
      .positional("id", { type: "string", describe: "A request id, or its first characters" })
      .option("limit", {
        ...numberFlag(
          "limit",
          { min: 1, max: HISTORY_LIMITS.records, integer: true },
          "How many (default 20)",
        ),
        default: 20,
      })
      .option("function", { type: "string", describe: "Only this function's" })
      .option("json", { type: "boolean" })
      .example("$0 history", "The last 20 invocations")
      .example("$0 history 3f2a", "One invocation: event, result or error, logs, timeline"),
  run: runHistory,
});
