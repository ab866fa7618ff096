/**
 * What the guest runtime's parts share: how this VM was booted (read once from
 * the kernel command line and stage-0's variables, which are then removed from
 * the environment: they are not the function's business), the timeline marks,
 * and the invocation being run.
 */
import type { GuestMark, Invocation } from "../../src/vm/protocol.ts";

/** Milliseconds of the guest's monotonic clock, which starts with the kernel. */
export function now(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export const marks: Partial<Record<GuestMark, number>> = { runtimeStart: now() };
const initStartedNs = Number(process.env.FNRUN_INIT_STARTED_NS);
if (Number.isFinite(initStartedNs)) marks.initStart = initStartedNs / 1e6;

export const boot = {
  /** The nonce of frames before an invocation is known (on the kernel command line). */
  nonce: process.env.fnrun_boot ?? "",
  /** Booted to be snapshotted: every clone must reseed before user code runs. */
  snapshot: process.env.fnrun_snapshot === "1",
  channel: process.env.fnrun_channel === "serial" ? ("serial" as const) : ("virtio" as const),
};

for (const name of Object.keys(process.env)) {
  if (name.startsWith("fnrun_") || name.startsWith("FNRUN_")) delete process.env[name];
}

/** process.exit as Node made it: the handler's hooks replace the public one. */
export const exitProcess = process.exit.bind(process);

let invocation: Invocation | undefined;

/** The invocation being run: only once it is known may the function's output go out, under its nonce. */
export function currentInvocation(): Invocation | undefined {
  return invocation;
}

export function setInvocation(next: Invocation | undefined): void {
  invocation = next;
}
