/** `fnrun setup`: build the guest kernel, the runtime image and the default snapshot now (otherwise done on first use). */

import { DEFAULTS } from "../../invoke/options.ts";
import { ExitCode } from "../../util/errors.ts";
import { defineCommand } from "../command.ts";
import type { CliIo } from "../io.ts";

async function runSetup(args: { accel: "auto" | "kvm" | "tcg" }, io: CliIo): Promise<number> {
  const { resolveHost } = await import("../../host/setup.ts");
  const { ensureSnapshot, memoryOnly, snapshotProblem } = await import("../../start/snapshot.ts");
  const progress = (line: string) => io.stderr.write(`fnrun: ${line}\n`);
  const host = await resolveHost({ accel: args.accel, progress });
  const snapshot = snapshotProblem(host)
    ? undefined
    : await ensureSnapshot(host, memoryOnly(DEFAULTS.memoryMB), { progress });
  io.stdout.write(
    `kernel:   ${host.kernel.path} (${host.kernel.origin}, ${host.kernel.entry})\n` +
      `runtime:  ${host.runtime.bootArchive}${host.runtime.disk ? ` + ${host.runtime.disk}` : ""} (${host.runtime.layout})\n` +
      `qemu:     ${host.qemuPath} (${host.accel.accel}${host.accel.fallbackReason ? `: ${host.accel.fallbackReason}` : ""})\n` +
      `snapshot: ${snapshot ? snapshot.directory : `none (${snapshotProblem(host)})`}\n`,
  );
  return ExitCode.ok;
}

export default defineCommand<{ accel: "auto" | "kvm" | "tcg" }>({
  command: "setup",
  describe:
    "Build the guest kernel, the runtime image and the default snapshot now (otherwise done on first use)",
  builder: (command) =>
    command
      .option("accel", { choices: ["auto", "kvm", "tcg"] as const, default: "auto" })
      .example("$0 setup", "Prepare everything once, e.g. in a CI image, so the first invoke is fast"),
  run: runSetup,
});
