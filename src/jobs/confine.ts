/**
 * What a queued job's function may have on a worker: what the worker's operator
 * allows, never what the job asks for. A job names the guest paths it wants
 * folders at and whether it wants a network; the host folders come from the
 * worker's own allow-list (`fnrun worker --allow-mount HOST:GUEST[:ro|rw]`,
 * `--allow-net`), and a job asking for anything else is refused.
 */
import { posix } from "node:path";
import type { FunctionConfig, MountConfig } from "../build/config.ts";
import { UsageError } from "../util/errors.ts";

/** A job this worker will not run as it is: dead-lettered at once, with the reason. */
export class JobRefusedError extends UsageError {}

export interface WorkerAllowance {
  /** Host folders this worker gives, by guest path (sources absolute). */
  mounts: MountConfig[];
  net: boolean;
}

function guestPath(path: string): string {
  const normal = posix.normalize(path);
  return normal.length > 1 ? normal.replace(/\/+$/, "") : normal;
}

/** The config to run with, or why the job is refused. */
export function confineToWorker(
  config: FunctionConfig,
  allowance: WorkerAllowance,
): { config: FunctionConfig } | { refused: string } {
  const mounts: MountConfig[] = [];
  for (const wanted of config.mounts ?? []) {
    const target = guestPath(wanted.target);
    const grant = allowance.mounts.find((mount) => guestPath(mount.target) === target);
    if (!grant) {
      return {
        refused: `the job asks for a shared folder at ${target}, which this worker does not allow (fnrun worker --allow-mount HOST_DIR:${target}[:ro|rw])`,
      };
    }
    // The worker's folder, at most as writable as the job asked for.
    mounts.push({ source: grant.source, target: grant.target, readOnly: grant.readOnly || wanted.readOnly });
  }
  if (config.net && !allowance.net) {
    return {
      refused: "the job asks for a network, which this worker does not allow (fnrun worker --allow-net)",
    };
  }
  const { mounts: _asked, ...rest } = config;
  return { config: { ...rest, ...(mounts.length > 0 ? { mounts } : {}) } };
}
