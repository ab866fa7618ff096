/** `fnrun hook <action> <name> [file]`: git hooks that run a function: install, uninstall, run. */

import { invoke } from "../../invoke/invoke.ts";
import { backgroundSnapshots } from "../../start/snapshot.ts";
import { ExitCode, FnrunError, UsageError } from "../../util/errors.ts";
import { defineCommand } from "../command.ts";
import type { CliIo } from "../io.ts";
import { readStdin } from "../io.ts";
import { describeFailure } from "../render.ts";
import { logPrinter, sanitizeForTerminal } from "../terminal.ts";

interface HookArgs {
  action: "install" | "uninstall" | "run";
  name: string;
  file?: string;
  force?: boolean;
  "--"?: string[];
}
async function runHook(args: HookArgs, io: CliIo): Promise<number> {
  const hooks = await import("../../jobs/git-hooks.ts");
  if (args.action === "uninstall") {
    io.stderr.write(`removed ${await hooks.uninstallHook(args.name)}\n`);
    return ExitCode.ok;
  }
  if (!args.file) throw new UsageError(`fnrun hook ${args.action} ${args.name} needs the function's file`);
  if (args.action === "install") {
    const path = await hooks.installHook(args.name, args.file, { ...(args.force ? { force: true } : {}) });
    io.stderr.write(`installed ${path}: each ${args.name} now runs ${args.file} in a microvm\n`);
    return ExitCode.ok;
  }
  // Git gives pre-push its refs on standard input; other hooks get none.
  const stdin = args.name === "pre-push" ? await readStdin(io.stdin, 1024 * 1024) : "";
  const event = await hooks.hookEvent(args.name, (args["--"] ?? []).map(String), stdin);
  const logs = logPrinter((text) => io.stderr.write(text));
  let code: number;
  try {
    const { result } = await invoke(args.file, {
      event,
      ...(io.signal ? { signal: io.signal } : {}),
      onLog: (entry) => logs.log(entry.text),
    });
    logs.endLine();
    const verdict = hooks.hookVerdict(result);
    if (verdict.message) io.stderr.write(`${sanitizeForTerminal(verdict.message)}\n`);
    code = verdict.ok ? ExitCode.ok : 1;
  } catch (error) {
    if (!(error instanceof FnrunError)) throw error;
    logs.endLine();
    io.stderr.write(describeFailure(error));
    io.stderr.write(`fnrun: the ${args.name} hook failed; git stops here\n`);
    code = 1;
  }
  // A snapshot being made for the next run is finished, or stopped if fnrun was.
  await backgroundSnapshots(io.signal);
  return code;
}

export default defineCommand<HookArgs>({
  command: "hook <action> <name> [file]",
  describe: "Git hooks that run a function: install, uninstall, run",
  builder: (command) =>
    command
      .positional("action", { choices: ["install", "uninstall", "run"] as const })
      .positional("name", {
        type: "string",
        describe: "The git hook (pre-commit, commit-msg, pre-push, ...)",
      })
      .positional("file", { type: "string", describe: "The function (install, run)" })
      .option("force", {
        type: "boolean",
        describe: "install: replace a hook fnrun did not write (kept as a backup)",
      })
      .example("$0 hook install pre-commit functions/lint-check.ts", "Check every commit in a microvm"),
  run: runHook,
});
