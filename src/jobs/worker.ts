/**
 * `fnrun worker --queue redis://HOST:PORT`: runs queued invocations on this
 * host, from the function bundles the jobs carry (no source tree needed; a
 * functions directory, if given, serves jobs that carry none). Any number of
 * workers on any number of hosts share one queue.
 *
 * Whoever can write to Redis can queue a job, so a worker runs only what its
 * operator allowed: bundles signed with the key it is given (the server's), with
 * shared folders and a network only from its own allow-list (confine.ts). A job
 * refused is dead-lettered at once, with the reason in its result.
 */
import { hostname } from "node:os";
import { resolve } from "node:path";
import { fromSignedPortable, UnsignedArtifactError } from "../build/artifact.ts";
import { type Bundle, bundleFunction } from "../build/bundle.ts";
import { parseMount } from "../build/config.ts";
import { FunctionDirectory } from "../build/functions-dir.ts";
import { type HostSetup, resolveHost } from "../host/setup.ts";
import { invokeBundle } from "../invoke/invoke.ts";
import { UsageError } from "../util/errors.ts";
import { checkRange } from "../util/validate.ts";
import { checkMounts } from "../vm/mounts.ts";
import { confineToWorker, JobRefusedError, type WorkerAllowance } from "./confine.ts";
import { History } from "./history.ts";
import { WORKER_RANGES } from "./limits.ts";
import type { JobOutcome, JobQueue } from "./queue.ts";
import { jobOutcome, runAndRecord } from "./record.ts";

export interface WorkerOptions {
  queue: string;
  concurrency?: number;
  /** A functions directory for jobs that carry no bundle. */
  directory?: string;
  /** The key the server signs the bundles it queues with; without it, no job's bundle runs. */
  signingKey?: string;
  /** Host folders this worker gives jobs, "HOST:GUEST[:ro|rw]", by guest path. */
  allowMounts?: string[];
  /** Let jobs whose function asks for a network have one. */
  allowNet?: boolean;
  machine?: HostSetup;
  onNotice?: (line: string) => void;
}

export interface RunningWorker {
  name: string;
  queue: JobQueue;
  close(): Promise<void>;
}

export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const notice = options.onNotice ?? (() => {});
  checkRange(options.concurrency, "concurrency", WORKER_RANGES.concurrency);
  if (!options.signingKey && !options.directory) {
    throw new UsageError(
      "a worker with no signing key runs no job's bundle, and with no --functions it has nothing else to run: " +
        "give it the server's key (FNRUN_SIGNING_KEY or --signing-key-file), or a functions directory",
    );
  }
  const allowance: WorkerAllowance = {
    mounts: checkMounts(
      (options.allowMounts ?? []).map((mount) => {
        const parsed = parseMount(mount);
        return { ...parsed, source: resolve(parsed.source) };
      }),
    ),
    net: options.allowNet ?? false,
  };
  const { RedisQueue } = await import("./queue-redis.ts");
  const queue = await RedisQueue.connect(options.queue, { onNotice: notice });
  const machine = options.machine ?? (await resolveHost({ progress: notice }));
  const history = await History.open();
  const functions = options.directory ? new FunctionDirectory(options.directory, notice) : undefined;
  const name = `${hostname()}/${process.pid}`;
  queue.work(async (job, signal): Promise<JobOutcome> => {
    const startedAt = Date.now();
    let file = `${job.functionName} (artifact)`;
    try {
      let bundle: Bundle | undefined;
      if (job.artifact) {
        if (!options.signingKey)
          throw new UnsignedArtifactError("this worker has no signing key: it runs no job's bundle");
        const signed = fromSignedPortable(job.artifact, options.signingKey);
        const confined = confineToWorker(signed.config, allowance);
        if ("refused" in confined) throw new JobRefusedError(confined.refused);
        bundle = { ...signed, config: confined.config };
      } else {
        const fn = await functions?.get(job.functionName);
        if (!fn)
          throw new Error(`job ${job.id}: no bundle in the job and no function ${job.functionName} here`);
        file = fn.file;
        bundle = await bundleFunction(fn.file);
      }
      const ready = bundle;
      const result = await runAndRecord(
        history,
        { file, functionName: job.functionName, trigger: job.trigger, event: job.event },
        () => invokeBundle(ready, { event: JSON.parse(job.event), host: machine, signal }),
      );
      notice(
        `fnrun worker ${name}: job ${job.id} (${job.functionName}) done in ${Date.now() - startedAt} ms`,
      );
      return jobOutcome(result, name);
    } catch (error) {
      const refused = error instanceof UnsignedArtifactError || error instanceof JobRefusedError;
      const outcome = { ...jobOutcome(error, name), ...(refused ? { final: true } : {}) };
      notice(
        `fnrun worker ${name}: job ${job.id} (${job.functionName}) failed: ${outcome.detail.slice(0, 300)}`,
      );
      return outcome;
    }
  }, options.concurrency ?? 2);
  return {
    name,
    queue,
    close: async () => {
      await queue.close();
      history.close();
    },
  };
}
