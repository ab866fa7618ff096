/**
 * `fnrun worker --queue redis://HOST:PORT`: runs queued invocations on this
 * host, from the function bundles the jobs carry (no source tree needed; a
 * functions directory, if given, serves jobs that carry none). Any number of
 * workers on any number of hosts share one queue.
 */
import { hostname } from "node:os";
import { fromPortable } from "../build/artifact.ts";
import { bundleFunction } from "../build/bundle.ts";
import { FunctionDirectory } from "../build/functions-dir.ts";
import { type HostSetup, resolveHost } from "../host/setup.ts";
import { invokeBundle } from "../invoke/invoke.ts";
import { History } from "./history.ts";
import type { JobOutcome, JobQueue } from "./queue.ts";
import { jobOutcome, runAndRecord } from "./record.ts";

export interface WorkerOptions {
  queue: string;
  concurrency?: number;
  /** A functions directory for jobs that carry no bundle. */
  directory?: string;
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
  const { RedisQueue } = await import("./queue-redis.ts");
  const queue = await RedisQueue.connect(options.queue);
  const machine = options.machine ?? (await resolveHost({ progress: notice }));
  const history = await History.open();
  const functions = options.directory ? new FunctionDirectory(options.directory) : undefined;
  const name = `${hostname()}/${process.pid}`;
  queue.work(async (job, signal): Promise<JobOutcome> => {
    const startedAt = Date.now();
    let file = `${job.functionName} (artifact)`;
    try {
      let bundle = job.artifact ? fromPortable(job.artifact) : undefined;
      if (!bundle) {
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
      const outcome = jobOutcome(error, name);
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
