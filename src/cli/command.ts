/**
 * One CLI command: its yargs arguments and its code side by side (as citty's
 * defineCommand keeps them). main.ts lists them; a command's heavy modules load
 * only when it runs.
 */
import type { Argv } from "yargs";
import type { CliIo } from "./io.ts";

export interface Command<Args> {
  /** The yargs command string: its name, then its positionals ("invoke <file>"). */
  command: string;
  describe: string;
  builder: (command: Argv) => Argv<unknown>;
  run: (args: Args, io: CliIo) => Promise<number>;
}

export function defineCommand<Args>(command: Command<Args>): Command<Args> {
  return command;
}

/** The name a command is typed by. */
export function commandName(command: Command<never>): string {
  return command.command.split(" ")[0] as string;
}
