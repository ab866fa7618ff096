/** `fnrun init [name]`: create a typed function to start from, and an example event. */

import { ExitCode } from "../../util/errors.ts";
import { defineCommand } from "../command.ts";
import type { CliIo } from "../io.ts";

async function runInit(
  args: {
    name?: string;
    template: "plain" | "http" | "cron" | "webhook";
    directory: string;
    force?: boolean;
  },
  io: CliIo,
): Promise<number> {
  const { scaffold } = await import("../scaffold.ts");
  const name = args.name ?? (args.template === "plain" ? "hello" : args.template);
  const created = await scaffold(name, args.template, {
    directory: args.directory,
    ...(args.force ? { force: true } : {}),
  });
  io.stdout.write(`${created.functionFile}\n${created.eventFile}\n`);
  io.stderr.write(`next: fnrun invoke ${created.functionFile} --event-file ${created.eventFile}\n`);
  return ExitCode.ok;
}

export default defineCommand<{
  name?: string;
  template: "plain" | "http" | "cron" | "webhook";
  directory: string;
  force?: boolean;
}>({
  command: "init [name]",
  describe: "Create a typed function to start from, and an example event",
  builder: (command) =>
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
  run: runInit,
});
