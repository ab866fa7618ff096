/** `fnrun snapshot`: make (or show) the snapshot VMs are restored from, or list them all. */

import { DEFAULTS, INVOKE_RANGES } from "../../invoke/options.ts";
import { ExitCode, UsageError } from "../../util/errors.ts";
import { defineCommand, numberFlag } from "../command.ts";
import type { CliIo } from "../io.ts";
import { type Column, formatTable, utcTime } from "../render.ts";

interface SnapshotArgs {
  function?: string;
  memory?: number;
  mount?: string[];
  rebuild?: boolean;
  list?: boolean;
  prune?: boolean;
  json?: boolean;
  accel: "auto" | "kvm" | "tcg";
}

function megabytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(0)} MB`;
}

function shortTime(iso: string | null): string {
  return iso ? utcTime(Date.parse(iso), false) : "?";
}

async function listProfiles(args: SnapshotArgs, io: CliIo) {
  const { resolveHost } = await import("../../host/setup.ts");
  const { listSnapshots } = await import("../../start/snapshot.ts");
  // Without a host (no QEMU, say), the list still shows what is there.
  const host = await resolveHost({ accel: args.accel }).catch(() => undefined);
  const profiles = await listSnapshots(host, io.env);
  if (args.json) {
    io.stdout.write(`${JSON.stringify(profiles)}\n`);
    return ExitCode.ok;
  }
  if (profiles.length === 0) {
    io.stderr.write("no snapshots yet: the first snapshot start of each memory size makes one\n");
    return ExitCode.ok;
  }
  const columns: Column[] = [
    { heading: "memory" },
    { heading: "folders", align: "right" },
    { heading: "function" },
    { heading: "accel" },
    { heading: "on disk", align: "right" },
    { heading: "last used (UTC)" },
    { heading: "made (UTC)" },
    { heading: "key" },
    {},
  ];
  const rows = profiles.map((profile) => [
    profile.memoryMB === null ? "?" : `${profile.memoryMB} MB`,
    String(profile.folders),
    profile.function ?? "-",
    profile.accel ?? "?",
    megabytes(profile.bytes),
    shortTime(profile.lastUsed),
    shortTime(profile.createdAt),
    profile.key.slice(0, 12),
    profile.current ? "" : "(stale: another kernel, runtime or QEMU)",
  ]);
  io.stdout.write(formatTable(columns, rows));
  return ExitCode.ok;
}

/** `fnrun snapshot --prune`: the snapshots this host cannot restore, removed. */
async function pruneProfiles(args: SnapshotArgs, io: CliIo) {
  const { resolveHost } = await import("../../host/setup.ts");
  const { pruneStaleSnapshots } = await import("../../start/snapshot.ts");
  // Which are stale is known only against this host's kernel, runtime and QEMU.
  const host = await resolveHost({ accel: args.accel });
  const { removed, kept } = await pruneStaleSnapshots(host, io.env);
  const total = (profiles: Array<{ bytes: number }>) =>
    megabytes(profiles.reduce((sum, profile) => sum + profile.bytes, 0));
  if (args.json) {
    io.stdout.write(`${JSON.stringify({ removed, kept })}\n`);
  } else {
    io.stdout.write(
      `removed ${removed.length} stale snapshot(s), ${total(removed)}; kept ${kept.length}, ${total(kept)}\n`,
    );
  }
  return ExitCode.ok;
}

async function runSnapshot(args: SnapshotArgs, io: CliIo) {
  if (args.list && args.prune) throw new UsageError("--list or --prune, not both");
  if ((args.list || args.prune) && (args.function !== undefined || args.memory !== undefined || args.mount))
    throw new UsageError(`--${args.list ? "list" : "prune"} takes no function, --memory or --mount`);
  if (args.list) return listProfiles(args, io);
  if (args.prune) return pruneProfiles(args, io);
  const { resolveHost } = await import("../../host/setup.ts");
  const { discardSnapshot, ensureSnapshot, findSnapshot, memoryOnly } = await import(
    "../../start/snapshot.ts"
  );
  const progress = (line: string) => io.stderr.write(`fnrun: ${line}\n`);
  if (args.function !== undefined) return functionSnapshot(args.function, args, io, progress);
  const memoryMB = args.memory ?? DEFAULTS.memoryMB;
  // The profile of invocations with these folders: only how many there are shapes the VM.
  const { commandLineMounts } = await import("../../invoke/prepare.ts");
  const shape = { ...memoryOnly(memoryMB), folders: commandLineMounts(args.mount ?? []).length };
  const host = await resolveHost({ accel: args.accel, progress });
  if (args.rebuild) {
    const existing = await findSnapshot(host, shape);
    if (existing) await discardSnapshot(existing);
  }
  const snapshot = await ensureSnapshot(host, shape, { progress });
  io.stdout.write(`${snapshot.directory}\n`);
  return ExitCode.ok;
}

/** `fnrun snapshot FUNCTION`: the function's own snapshot, taken after its init phase. */
async function functionSnapshot(
  path: string,
  args: SnapshotArgs,
  io: CliIo,
  progress: (line: string) => void,
) {
  const { bundleFunction } = await import("../../build/bundle.ts");
  const { hostFor, prepareInvocation } = await import("../../invoke/prepare.ts");
  const { bootTimeoutMs } = await import("../../vm/launch.ts");
  const { functionToSave } = await import("../../start/run.ts");
  const { discardSnapshot, ensureFunctionSnapshot, findFunctionSnapshot, functionSnapshotKey } = await import(
    "../../start/snapshot.ts"
  );
  const bundle = await bundleFunction(path, { env: io.env });
  const prepared = prepareInvocation(bundle, {
    ...(args.memory !== undefined ? { memory: args.memory } : {}),
    ...(args.mount ? { mounts: args.mount } : {}),
  });
  const host = await hostFor({ accel: args.accel, onProgress: progress });
  // Of the profile its invocations have: its memory, and its config's folders.
  const fn = functionToSave(prepared);
  if (args.rebuild) {
    const key = await functionSnapshotKey(host, fn);
    const existing = await findFunctionSnapshot(host, fn.shape, key, io.env);
    if (existing) await discardSnapshot(existing, io.env);
  }
  const snapshot = await ensureFunctionSnapshot(host, fn, {
    progress,
    env: io.env,
    bootTimeoutMs: bootTimeoutMs(host),
  });
  io.stdout.write(`${snapshot.directory}\n`);
  return ExitCode.ok;
}

export default defineCommand<SnapshotArgs>({
  command: "snapshot [function]",
  describe: "Make (or show) the snapshot VMs are restored from, or list every one",
  builder: (command) =>
    command
      .positional("function", {
        type: "string",
        describe:
          "A function to make its own snapshot of, after its init phase: its invocations then skip importing it",
      })
      .option(
        "memory",
        numberFlag(
          "memory",
          INVOKE_RANGES.memory,
          `Guest RAM in MB of the snapshot (default: the function's config.memory, else ${DEFAULTS.memoryMB})`,
        ),
      )
      .option("mount", {
        type: "string",
        array: true,
        describe:
          "HOST_DIR:GUEST_DIR[:ro|rw], as `fnrun invoke --mount` takes it: the snapshot invocations with these folders restore (repeatable)",
      })
      .option("rebuild", { type: "boolean", describe: "Make it anew even if a valid one exists" })
      .option("list", {
        type: "boolean",
        describe: "List the snapshots in the cache: memory size, size on disk, when last used",
      })
      .option("prune", {
        type: "boolean",
        describe: "Remove the snapshots this host cannot restore (another kernel, runtime, QEMU or accel)",
      })
      .option("json", { type: "boolean", describe: "With --list or --prune: as JSON" })
      .option("accel", { choices: ["auto", "kvm", "tcg"] as const, default: "auto" })
      .example("$0 snapshot --memory 512", "Prepare snapshot starts for functions with 512 MB")
      .example("$0 snapshot functions/hello.ts", "Invocations of this version of hello restore it imported")
      .example(
        "$0 snapshot functions/report.ts --mount ./data:/mnt/data",
        "The function's own snapshot, for its invocations with that folder",
      )
      .example("$0 snapshot --list", "Which snapshots exist, their sizes and when each was last used")
      .example("$0 snapshot --prune", "Free the space of the ones marked stale"),
  run: runSnapshot,
});
