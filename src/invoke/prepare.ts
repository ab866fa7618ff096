/**
 * Everything decided before a VM starts: the function's config merged with the
 * options, the invocation the guest receives, the limits the host enforces, and
 * the machine to run on.
 */
import { randomUUID } from "node:crypto";
import { resolve as resolvePath } from "node:path";
import type { Bundle } from "../build/bundle.ts";
import { commandLineMount, type MountConfig } from "../build/config.ts";
import { handlerPath } from "../build/handler.ts";
import { type HostSetup, resolveHost } from "../host/setup.ts";
import type { PreparedInvocation } from "../start/run.ts";
import { UsageError } from "../util/errors.ts";
import { newFrameKey } from "../vm/frame-keys.ts";
import { checkMounts } from "../vm/mounts.ts";
import type { Invocation } from "../vm/protocol.ts";
import type { SessionLimits } from "../vm/session.ts";
import { DEFAULTS, eventJson, type InvokeOptions } from "./options.ts";

/** Mounts as the command line (or the library) gives them, parsed: a malformed one is a usage error. */
export function commandLineMounts(mounts: ReadonlyArray<string | MountConfig>): MountConfig[] {
  return mounts.map((mount) => {
    try {
      return commandLineMount(mount);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  });
}

export function prepareInvocation(bundle: Bundle, options: InvokeOptions): PreparedInvocation {
  const config = bundle.config;
  const timeoutSeconds = options.timeout ?? config.timeout ?? DEFAULTS.timeoutSeconds;
  const memoryMB = options.memory ?? config.memory ?? DEFAULTS.memoryMB;
  const maxResultBytes = options.maxResultBytes ?? DEFAULTS.maxResultBytes;
  const baseDirectory = resolvePath(bundle.entry, "..");
  const mounts = [
    ...(config.mounts ?? []).map((mount) => ({ ...mount, source: resolvePath(baseDirectory, mount.source) })),
    ...commandLineMounts(options.mounts ?? []),
  ];
  const invocation: Invocation = {
    key: newFrameKey(),
    requestId: options.requestId ?? randomUUID(),
    functionName: bundle.name,
    functionVersion: "$LATEST",
    invokedFunctionArn: `arn:aws:lambda:local:000000000000:function:${bundle.name}`,
    memoryLimitInMB: memoryMB,
    timeoutMs: Math.round(timeoutSeconds * 1000),
    handler: handlerPath(options.handler ?? config.handler ?? "handler", bundle.name),
    env: { ...(config.env ?? {}), ...(options.env ?? {}) },
    event: eventJson(options.event),
    maxResultBytes,
    mounts: [],
  };
  const limits: SessionLimits = {
    bootTimeoutMs: 0, // set once the accelerator is known
    timeoutMs: invocation.timeoutMs,
    initTimeoutMs: Math.max(DEFAULTS.initTimeoutSeconds * 1000, invocation.timeoutMs),
    maxResultBytes,
    maxLogBytes: options.maxLogBytes ?? DEFAULTS.maxLogBytes,
    memoryMB,
  };
  const network = options.net ?? config.net ?? false;
  return { bundle, invocation, limits, network, mounts: checkMounts(mounts, network) };
}

/** The machine set-up to run on (given, or resolved now), with the accelerator's notice said. */
export async function hostFor(
  options: Pick<InvokeOptions, "host" | "accel" | "onProgress" | "onNotice">,
): Promise<HostSetup> {
  const host =
    options.host ??
    (await resolveHost({
      ...(options.accel ? { accel: options.accel } : {}),
      ...(options.onProgress ? { progress: options.onProgress } : {}),
    }));
  const notice = accelNotice(host);
  if (notice) options.onNotice?.(notice);
  return host;
}

export function accelNotice(host: HostSetup): string | undefined {
  return host.accel.fallbackReason
    ? `fnrun: using TCG (software emulation): ${host.accel.fallbackReason}`
    : undefined;
}
