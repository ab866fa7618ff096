/** Turns an invocation's outcome into the record the history keeps. */

import type { InvokeResult } from "../invoke/options.ts";
import type { FnrunError } from "../util/errors.ts";
import type { InvocationRecord, InvocationStatus } from "./history.ts";
import type { Trigger } from "./queue.ts";

const STATUS: Record<string, InvocationStatus> = {
  FUNCTION: "function error",
  TIMEOUT: "timeout",
  OUT_OF_MEMORY: "out of memory",
  BOOT: "boot failure",
  RESULT_TOO_LARGE: "result too large",
  BUNDLE: "bundle error",
  INTERRUPTED: "interrupted",
};

export function statusOf(error: FnrunError): InvocationStatus {
  return STATUS[error.code] ?? "error";
}

export interface RecordInput {
  file: string;
  functionName: string;
  trigger: Trigger;
  /** The event as JSON text. */
  event: string;
  startedAt: number;
  outcome: InvokeResult | FnrunError;
}

export function recordOf(input: RecordInput): InvocationRecord {
  const { outcome } = input;
  const base = {
    functionName: input.functionName,
    file: input.file,
    trigger: input.trigger,
    startedAt: input.startedAt,
    durationMs: Date.now() - input.startedAt,
    event: input.event,
    eventTruncated: false,
  };
  if ("resultJson" in outcome) {
    return {
      ...base,
      requestId: outcome.requestId,
      status: "ok",
      startMode: outcome.startMode,
      result: outcome.resultJson,
      error: null,
      logs: outcome.logs,
      timeline: outcome.timeline,
    };
  }
  return {
    ...base,
    requestId:
      outcome.report?.requestId ?? `failed-${input.startedAt}-${Math.random().toString(16).slice(2, 10)}`,
    status: statusOf(outcome),
    startMode: outcome.report?.startMode ?? "none",
    result: null,
    error: outcome.toJSON(),
    logs: outcome.report?.logs ?? "",
    timeline: outcome.report?.timeline ?? [],
  };
}
