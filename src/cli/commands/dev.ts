/** `fnrun dev <file>`: run a function on every save, with the last event (r: run again, q: quit). */

import { DEFAULTS } from "../../invoke/options.ts";
import { backgroundSnapshots } from "../../start/snapshot.ts";
import { ExitCode, UsageError } from "../../util/errors.ts";
import { defineCommand } from "../command.ts";
import type { CliIo } from "../io.ts";

async function runDevCommand(
  args: { file: string; event?: string; eventFile?: string },
  io: CliIo,
): Promise<number> {
  const { runDev } = await import("../dev-loop.ts");
  const { resolve } = await import("node:path");
  const { readLimitedFile, parseJson } = await import("../io.ts");
  if (args.event !== undefined && args.eventFile !== undefined) {
    throw new UsageError("give the event once: --event or --event-file, not both");
  }
  if (args.event === "-" || args.eventFile === "-") {
    throw new UsageError(
      "fnrun dev reads its keys (r, q) from standard input, not an event: give --event JSON or --event-file PATH",
    );
  }
  // A file that is not there is a mistake in the command, not something to wait for.
  const { stat } = await import("node:fs/promises");
  const found = await stat(args.file).catch(() => undefined);
  if (!found?.isFile()) {
    throw new UsageError(`function file not found: ${args.file}${found ? " (it is a directory)" : ""}`);
  }
  const event =
    args.eventFile !== undefined
      ? parseJson(await readLimitedFile(args.eventFile, "event file", DEFAULTS.maxEventBytes), args.eventFile)
      : args.event !== undefined
        ? parseJson(args.event, "--event")
        : {};
  const stdin = process.stdin;
  const interactive = io.stdin === stdin && stdin.isTTY;
  if (interactive) stdin.setRawMode(true);
  const keys = interactive
    ? (async function* () {
        for await (const chunk of stdin) yield* String(chunk);
      })()
    : undefined;
  try {
    await runDev({
      file: resolve(args.file),
      event,
      color: Boolean(io.stdout.isTTY) && !io.env.NO_COLOR,
      write: (text) => io.stdout.write(text),
      ...(keys ? { keys } : {}),
      ...(io.signal ? { signal: io.signal } : {}),
    });
  } finally {
    if (interactive) {
      stdin.setRawMode(false);
      stdin.pause();
    }
  }
  // A snapshot being made for the next run is finished, or stopped if fnrun was.
  await backgroundSnapshots(io.signal);
  return ExitCode.ok;
}

export default defineCommand<{ file: string; event?: string; eventFile?: string }>({
  command: "dev <file>",
  describe: "Run a function on every save, with the last event (r: run again, q: quit)",
  builder: (command) =>
    command
      .positional("file", { type: "string" })
      .option("event", { alias: "e", type: "string", describe: "The event as JSON (default {})" })
      .option("event-file", { type: "string", describe: "Read the event from this JSON file" })
      .example("$0 dev functions/hello.ts --event-file events/hello.json", "Edit, save, see the new result"),
  run: runDevCommand,
});
