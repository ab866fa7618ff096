/**
 * The command line: a thin layer over the library API. `main(argv, io)` returns
 * the exit code, so tests run it in-process with their own streams. Each
 * command is one module in commands/ (its arguments and its code); this file
 * lists them, in the order help shows them, and runs the one asked for.
 */
import yargs, { type Argv } from "yargs";
import { ExitCode, toFnrunError, UsageError } from "../util/errors.ts";
import { type Command, commandName } from "./command.ts";
import build from "./commands/build.ts";
import dev from "./commands/dev.ts";
import doctor from "./commands/doctor.ts";
import history from "./commands/history.ts";
import hook from "./commands/hook.ts";
import init from "./commands/init.ts";
import invoke from "./commands/invoke.ts";
import queue from "./commands/queue.ts";
import replay from "./commands/replay.ts";
import serve from "./commands/serve.ts";
import setup from "./commands/setup.ts";
import snapshot from "./commands/snapshot.ts";
import worker from "./commands/worker.ts";
import type { CliIo } from "./io.ts";
import { describeFailure } from "./render.ts";

const VERSION = "0.1.0";

const COMMANDS: Array<Command<never>> = [
  invoke,
  setup,
  snapshot,
  serve,
  worker,
  queue,
  hook,
  build,
  dev,
  init,
  doctor,
  history,
  replay,
] as Array<Command<never>>;

/** What of yargs's internals fnrun reaches into (see defineParser). */
interface YargsInternals {
  getInternalMethods(): { getUsageInstance(): { cacheHelpMessage(): void } };
}

function defineParser(parser: Argv, helpWidth: number | null): Argv {
  // yargs lays out its whole help text before it runs a command (~8 ms of every
  // run), in case the command shows help later; fnrun's commands never do: help
  // is for --help, which the parse itself shows (the cache is only a shortcut:
  // without it, help is laid out when asked for).
  (parser as unknown as YargsInternals).getInternalMethods().getUsageInstance().cacheHelpMessage = () => {};
  let defined = parser
    .scriptName("fnrun")
    .usage(
      "$0 <command> [options]\n\nRun serverless functions locally, each invocation in its own QEMU microvm.",
    );
  for (const command of COMMANDS)
    defined = defined.command(command.command, command.describe, command.builder);
  return (
    defined
      .completion("completion", "Print a shell completion script (bash, zsh): fnrun completion >> ~/.bashrc")
      .parserConfiguration({ "populate--": true })
      .demandCommand(1, "Say which command to run: fnrun invoke FILE (see fnrun --help)")
      .strict()
      .recommendCommands()
      .help()
      .alias("h", "help")
      .version(VERSION)
      // yargs lays out the help text on every parse; only lay it out to a width when it may be shown.
      .wrap(helpWidth)
      .exitProcess(false)
      .fail((message, error) => {
        throw new UsageError(message ?? error?.message ?? "invalid command line");
      })
  );
}

/** The flags whose value may be "-" (standard input). */
const DASH_VALUE_FLAGS = new Map([
  ["--event", "--event"],
  ["-e", "--event"],
  ["--event-file", "--event-file"],
]);

/** yargs reads a lone "-" as a stray argument: keep `--event -` and `--event-file -` together. */
function joinDashValues(argv: string[]): string[] {
  const joined: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const flag = DASH_VALUE_FLAGS.get(arg);
    if (flag && argv[i + 1] === "-") {
      joined.push(`${flag}=-`);
      i++;
    } else {
      joined.push(arg);
    }
  }
  return joined;
}

export type { CliIo };

export async function main(rawArgv: string[], io: CliIo): Promise<number> {
  const argv = joinDashValues(rawArgv);
  try {
    let helpOutput = "";
    const mayShowHelp = argv.length === 0 || argv.some((arg) => arg === "--help" || arg === "-h");
    const parser = defineParser(yargs(), mayShowHelp ? Math.min(100, process.stdout.columns || 100) : null);
    const args = (await parser.parseAsync(argv, {}, (_error, _argv, output) => {
      helpOutput = output;
    })) as Record<string, unknown> & { _: Array<string | number> };
    if (helpOutput) {
      io.stdout.write(`${helpOutput}\n`);
      return ExitCode.ok;
    }
    const command = COMMANDS.find((candidate) => commandName(candidate) === args._[0]);
    if (!command) throw new UsageError(`unknown command: ${String(args._[0])}`);
    return await command.run(args as never, io);
  } catch (error) {
    const failure = toFnrunError(error);
    io.stderr.write(describeFailure(failure));
    if (failure instanceof UsageError) io.stderr.write("Run `fnrun --help` for usage.\n");
    return failure.exitCode;
  }
}
