/** `fnrun doctor`: check what fnrun needs on this machine, and how to fix what is missing. */

import { ExitCode } from "../../util/errors.ts";
import { defineCommand } from "../command.ts";
import type { CliIo } from "../io.ts";

async function runDoctor(io: CliIo): Promise<number> {
  const { runChecks } = await import("../doctor.ts");
  const checks = await runChecks(io.env);
  const marks = { ok: "✔", warn: "!", fail: "✘" } as const;
  for (const check of checks) {
    io.stdout.write(`${marks[check.level]} ${check.name}: ${check.detail}\n`);
    if (check.fix && check.level !== "ok") io.stdout.write(`    fix: ${check.fix}\n`);
  }
  const failed = checks.filter((check) => check.level === "fail").length;
  io.stdout.write(
    failed ? `\n${failed} problem(s) to fix before fnrun can run functions.\n` : "\nfnrun is ready.\n",
  );
  return failed ? ExitCode.setup : ExitCode.ok;
}

export default defineCommand<Record<string, never>>({
  command: "doctor",
  describe: "Check what fnrun needs on this machine, and how to fix what is missing",
  builder: (command) => command.example("$0 doctor", "QEMU, qboot, kernel, accelerator (and why), cache"),
  run: (_args, io) => runDoctor(io),
});
