/** `fnrun snapshot`: make (or show) the snapshot VMs are restored from. */

import { DEFAULTS } from "../../invoke/options.ts";
import { ExitCode, UsageError } from "../../util/errors.ts";
import { defineCommand } from "../command.ts";
import type { CliIo } from "../io.ts";

async function runSnapshot(
  args: { memory: number; rebuild?: boolean; accel: "auto" | "kvm" | "tcg" },
  io: CliIo,
) {
  const { resolveHost } = await import("../../host/setup.ts");
  const { discardSnapshot, ensureSnapshot, findSnapshot } = await import("../../start/snapshot.ts");
  const { LIMITS } = await import("../../build/config.ts");
  if (
    !Number.isFinite(args.memory) ||
    args.memory < LIMITS.memoryMB.min ||
    args.memory > LIMITS.memoryMB.max
  ) {
    throw new UsageError(`--memory must be from ${LIMITS.memoryMB.min} to ${LIMITS.memoryMB.max}`);
  }
  const progress = (line: string) => io.stderr.write(`fnrun: ${line}\n`);
  const host = await resolveHost({ accel: args.accel, progress });
  if (args.rebuild) {
    const existing = await findSnapshot(host, args.memory);
    if (existing) await discardSnapshot(existing);
  }
  const snapshot = await ensureSnapshot(host, args.memory, { progress });
  io.stdout.write(`${snapshot.directory}\n`);
  return ExitCode.ok;
}

export default defineCommand<{ memory: number; rebuild?: boolean; accel: "auto" | "kvm" | "tcg" }>({
  command: "snapshot",
  describe: "Make (or show) the snapshot VMs are restored from",
  builder: (command) =>
    command
      .option("memory", {
        type: "number",
        default: DEFAULTS.memoryMB,
        describe: "Guest RAM in MB of the snapshot",
      })
      .option("rebuild", { type: "boolean", describe: "Make it anew even if a valid one exists" })
      .option("accel", { choices: ["auto", "kvm", "tcg"] as const, default: "auto" })
      .example("$0 snapshot --memory 512", "Prepare snapshot starts for functions with 512 MB"),
  run: runSnapshot,
});
