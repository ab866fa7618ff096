/**
 * One CLI command: its yargs arguments and its code side by side (as citty's
 * defineCommand keeps them). main.ts lists them; a command's heavy modules load
 * only when it runs.
 */
import type { Argv } from "yargs";
import { type NumberRange, parseNumberText } from "../util/validate.ts";
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

/**
 * A numeric flag's yargs options. yargs's own `type: "number"` turns "1s" into
 * NaN, which a later check could only show as null; this reads the text typed
 * and refuses it as typed, under the flag's name (`--timeout must be a number
 * from 0.1 to 900, not 1s`). No `type`, so that help does not call it a string.
 */
export function numberFlag(flag: string, range: NumberRange, describe: string) {
  return {
    requiresArg: true,
    describe,
    coerce: (text: unknown): number => parseNumberText(text, `--${flag}`, range),
  } as const;
}
