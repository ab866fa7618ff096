/** `fnrun build <file>`: bundle a function into a portable artifact (.tgz). */

import { ExitCode } from "../../util/errors.ts";
import { defineCommand } from "../command.ts";
import type { CliIo } from "../io.ts";

async function runBuild(args: { file: string; output?: string }, io: CliIo): Promise<number> {
  const { build } = await import("../../build/build.ts");
  const { functionNameOf } = await import("../../build/bundle.ts");
  const built = await build(args.file, {
    cache: false,
    output: args.output ?? `${functionNameOf(args.file)}.tgz`,
  });
  io.stdout.write(`${built.artifact}\n`);
  return ExitCode.ok;
}

export default defineCommand<{ file: string; output?: string }>({
  command: "build <file>",
  describe: "Bundle a function into a portable artifact (.tgz)",
  builder: (command) =>
    command
      .positional("file", { type: "string" })
      .option("output", {
        alias: "o",
        type: "string",
        describe: "A file, or a folder to write NAME.tgz in (default: ./NAME.tgz)",
      })
      .example("$0 build functions/hello.ts && $0 invoke hello.tgz", "Build once, run anywhere fnrun runs"),
  run: runBuild,
});
