/**
 * The CLI's commands other than invoke (which is on the hot path and lives in
 * cli.ts): loaded only when one of them runs.
 */

import { invoke } from "../invoke/invoke.ts";
import { DEFAULTS } from "../invoke/options.ts";
import { ExitCode, FnrunError, UsageError } from "../util/errors.ts";
import { type CliIo, describeFailure, readStdin, untilStopped } from "./io.ts";
import { sanitizeForTerminal } from "./terminal.ts";

export async function runSetup(args: { accel: "auto" | "kvm" | "tcg" }, io: CliIo): Promise<number> {
  const { resolveHost } = await import("../host/setup.ts");
  const { ensureSnapshot, snapshotProblem } = await import("../start/snapshot.ts");
  const progress = (line: string) => io.stderr.write(`fnrun: ${line}\n`);
  const host = await resolveHost({ accel: args.accel, progress });
  const snapshot = snapshotProblem(host)
    ? undefined
    : await ensureSnapshot(host, DEFAULTS.memoryMB, { progress });
  io.stdout.write(
    `kernel:   ${host.kernel.path} (${host.kernel.origin}, ${host.kernel.entry})\n` +
      `runtime:  ${host.runtime.bootArchive}${host.runtime.disk ? ` + ${host.runtime.disk}` : ""} (${host.runtime.layout})\n` +
      `qemu:     ${host.qemuPath} (${host.accel.accel}${host.accel.fallbackReason ? `: ${host.accel.fallbackReason}` : ""})\n` +
      `snapshot: ${snapshot ? snapshot.directory : `none (${snapshotProblem(host)})`}\n`,
  );
  return ExitCode.ok;
}

export async function runSnapshot(
  args: { memory: number; rebuild?: boolean; accel: "auto" | "kvm" | "tcg" },
  io: CliIo,
) {
  const { resolveHost } = await import("../host/setup.ts");
  const { discardSnapshot, ensureSnapshot, findSnapshot } = await import("../start/snapshot.ts");
  const { LIMITS } = await import("../build/config.ts");
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

export interface ServeArgs {
  directory: string;
  port: number;
  host: string;
  allowRemote?: boolean;
  token?: string;
  queue: string;
  pool: number;
  memory?: number;
  maxConcurrency?: number;
  maxWaiting: number;
  workers?: number;
  schedules: boolean;
  stateDir: string;
  accel: "auto" | "kvm" | "tcg";
}

export async function runServe(args: ServeArgs, io: CliIo): Promise<number> {
  const { serve } = await import("../serve/server.ts");
  const notice = (line: string) => io.stderr.write(`${sanitizeForTerminal(line)}\n`);
  const server = await serve({
    directory: args.directory,
    port: args.port,
    address: args.host,
    ...(args.allowRemote ? { allowRemote: true } : {}),
    ...(args.token || io.env.FNRUN_TOKEN ? { token: args.token ?? io.env.FNRUN_TOKEN } : {}),
    queue: args.queue,
    pool: args.pool,
    ...(args.memory !== undefined ? { memory: args.memory } : {}),
    ...(args.maxConcurrency !== undefined ? { maxConcurrency: args.maxConcurrency } : {}),
    maxWaiting: args.maxWaiting,
    ...(args.workers !== undefined ? { workers: args.workers } : {}),
    schedules: args.schedules,
    stateDirectory: args.stateDir,
    accel: args.accel,
    onNotice: notice,
  });
  const names = (await server.functions.list()).map((fn) => fn.name);
  io.stderr.write(
    `fnrun serve: ${names.length} function(s) from ${server.directory}: ${names.join(", ") || "none yet"}\n` +
      `fnrun serve: listening on ${server.url} (dashboard: ${server.url}/_fnrun/)\n`,
  );
  await untilStopped(io);
  io.stderr.write("fnrun serve: stopping; letting invocations in flight finish (again to force)\n");
  await server.close();
  return ExitCode.ok;
}

export async function runWorkerCommand(
  args: { queue: string; concurrency: number; functions?: string },
  io: CliIo,
) {
  const { startWorker } = await import("../jobs/worker.ts");
  const worker = await startWorker({
    queue: args.queue,
    concurrency: args.concurrency,
    ...(args.functions ? { directory: args.functions } : {}),
    onNotice: (line) => io.stderr.write(`${sanitizeForTerminal(line)}\n`),
  });
  io.stderr.write(`fnrun worker ${worker.name}: working for ${args.queue}\n`);
  await untilStopped(io);
  io.stderr.write(`fnrun worker ${worker.name}: stopping after the jobs in hand\n`);
  await worker.close();
  return ExitCode.ok;
}

export interface QueueArgs {
  action: "ls" | "show" | "replay" | "purge";
  id?: string;
  queue: string;
  state?: "pending" | "running" | "done" | "dead";
  all?: boolean;
  stateDir: string;
}

export async function runQueue(args: QueueArgs, io: CliIo): Promise<number> {
  const { openStateDatabase, SqliteQueue } = await import("../jobs/queue.ts");
  const { join, resolve } = await import("node:path");
  const { existsSync } = await import("node:fs");
  let queue: import("../jobs/queue.ts").JobQueue;
  let closeDatabase = () => {};
  if (args.queue === "sqlite") {
    const path = join(resolve(args.stateDir), "state.db");
    if (!existsSync(path))
      throw new UsageError(`no queue at ${path}: run \`fnrun serve\` here first, or pass --state-dir`);
    const database = await openStateDatabase(path);
    queue = new SqliteQueue(database);
    closeDatabase = () => database.close();
  } else {
    const { RedisQueue } = await import("../jobs/queue-redis.ts");
    queue = await RedisQueue.connect(args.queue);
  }
  try {
    if ((args.action === "show" || args.action === "replay") && !args.id) {
      throw new UsageError(`fnrun queue ${args.action} needs a job id (see fnrun queue ls)`);
    }
    switch (args.action) {
      case "ls": {
        const jobs = await queue.list(args.state ? [args.state] : undefined, 200);
        if (jobs.length === 0) io.stderr.write("the queue is empty\n");
        for (const job of jobs) {
          const when = new Date(job.updatedAt).toISOString();
          const retry =
            job.state === "pending" && job.attempts > 0
              ? ` (retry ${job.attempts + 1}/${job.maxAttempts})`
              : "";
          io.stdout.write(`${job.id}\t${job.state}${retry}\t${job.functionName}\t${job.trigger}\t${when}\n`);
        }
        return ExitCode.ok;
      }
      case "show": {
        const job = await queue.get(args.id as string);
        if (!job) throw new UsageError(`no job ${args.id} in the queue`);
        io.stdout.write(`${JSON.stringify(job, null, 2)}\n`);
        return ExitCode.ok;
      }
      case "replay": {
        const id = await queue.replay(args.id as string);
        io.stdout.write(`${id}\n`);
        io.stderr.write(`queued again as job ${id}\n`);
        return ExitCode.ok;
      }
      case "purge": {
        const count = await queue.purge(args.all ? "finished" : "dead");
        io.stderr.write(`removed ${count} ${args.all ? "finished" : "dead-lettered"} job(s)\n`);
        return ExitCode.ok;
      }
    }
  } finally {
    await queue.close();
    closeDatabase();
  }
}

export interface HookArgs {
  action: "install" | "uninstall" | "run";
  name: string;
  file?: string;
  force?: boolean;
  "--"?: string[];
}

export async function runHook(args: HookArgs, io: CliIo): Promise<number> {
  const hooks = await import("../jobs/git-hooks.ts");
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
  try {
    const { result } = await invoke(args.file, {
      event,
      ...(io.signal ? { signal: io.signal } : {}),
      onLog: (entry) => io.stderr.write(sanitizeForTerminal(entry.text)),
    });
    const verdict = hooks.hookVerdict(result);
    if (verdict.message) io.stderr.write(`${sanitizeForTerminal(verdict.message)}\n`);
    return verdict.ok ? ExitCode.ok : 1;
  } catch (error) {
    if (!(error instanceof FnrunError)) throw error;
    io.stderr.write(describeFailure(error));
    io.stderr.write(`fnrun: the ${args.name} hook failed; git stops here\n`);
    return 1;
  }
}

export async function runBuild(args: { file: string; output?: string }, io: CliIo): Promise<number> {
  const { build } = await import("../build/build.ts");
  const { functionNameOf } = await import("../build/bundle.ts");
  const built = await build(args.file, {
    cache: false,
    output: args.output ?? `${functionNameOf(args.file)}.tgz`,
  });
  io.stdout.write(`${built.artifact}\n`);
  return ExitCode.ok;
}

export async function runDevCommand(
  args: { file: string; event?: string; eventFile?: string },
  io: CliIo,
): Promise<number> {
  const { runDev } = await import("./dev-loop.ts");
  const { resolve } = await import("node:path");
  const { readLimitedFile, parseJson } = await import("./io.ts");
  if (args.event !== undefined && args.eventFile !== undefined) {
    throw new UsageError("give the event once: --event or --event-file, not both");
  }
  // A file that is not there is a mistake in the command, not something to wait for.
  const { stat } = await import("node:fs/promises");
  const found = await stat(args.file).catch(() => undefined);
  if (!found?.isFile()) {
    throw new UsageError(`function file not found: ${args.file}${found ? " (it is a directory)" : ""}`);
  }
  const event =
    args.eventFile !== undefined
      ? parseJson(await readLimitedFile(args.eventFile, "event file", DEFAULTS.maxEventBytes), args.eventFile)
      : args.event !== undefined
        ? parseJson(args.event, "--event")
        : {};
  const stdin = process.stdin;
  const interactive = io.stdin === stdin && stdin.isTTY;
  if (interactive) stdin.setRawMode(true);
  const keys = interactive
    ? (async function* () {
        for await (const chunk of stdin) yield* String(chunk);
      })()
    : undefined;
  try {
    await runDev({
      file: resolve(args.file),
      event,
      color: Boolean(io.stdout.isTTY) && !io.env.NO_COLOR,
      write: (text) => io.stdout.write(text),
      ...(keys ? { keys } : {}),
      ...(io.signal ? { signal: io.signal } : {}),
    });
  } finally {
    if (interactive) {
      stdin.setRawMode(false);
      stdin.pause();
    }
  }
  return ExitCode.ok;
}

export async function runInit(
  args: {
    name?: string;
    template: "plain" | "http" | "cron" | "webhook";
    directory: string;
    force?: boolean;
  },
  io: CliIo,
): Promise<number> {
  const { scaffold } = await import("./scaffold.ts");
  const name = args.name ?? (args.template === "plain" ? "hello" : args.template);
  const created = await scaffold(name, args.template, {
    directory: args.directory,
    ...(args.force ? { force: true } : {}),
  });
  io.stdout.write(`${created.functionFile}\n${created.eventFile}\n`);
  io.stderr.write(`next: fnrun invoke ${created.functionFile} --event-file ${created.eventFile}\n`);
  return ExitCode.ok;
}

export async function runDoctor(io: CliIo): Promise<number> {
  const { runChecks } = await import("./doctor.ts");
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

export async function runHistory(
  args: { id?: string; limit: number; function?: string; json?: boolean },
  io: CliIo,
) {
  const { History, LIMITS: HISTORY_LIMITS } = await import("../jobs/history.ts");
  const { checkRange } = await import("../util/validate.ts");
  checkRange(args.limit, "--limit", { min: 1, max: HISTORY_LIMITS.records }, true);
  const history = await History.open(io.env);
  try {
    if (args.id) {
      const record = history.get(args.id);
      if (!record) throw new UsageError(`no invocation ${args.id} in the history`);
      io.stdout.write(`${JSON.stringify(record, null, 2)}\n`);
      return ExitCode.ok;
    }
    const records = history.list(args.limit, args.function);
    if (args.json) {
      io.stdout.write(`${JSON.stringify(records)}\n`);
      return ExitCode.ok;
    }
    if (records.length === 0) io.stderr.write("no invocations yet\n");
    for (const record of records) {
      const when = new Date(record.startedAt).toISOString().replace("T", " ").slice(0, 19);
      io.stdout.write(
        `${record.requestId.slice(0, 8)}  ${when}  ${record.functionName.padEnd(16)} ${record.status.padEnd(14)} ${`${Math.round(record.durationMs)} ms`.padStart(8)}  ${record.startMode.padEnd(8)} ${record.trigger}\n`,
      );
    }
    return ExitCode.ok;
  } finally {
    history.close();
  }
}
