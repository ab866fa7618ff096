/** One invocation's outcome kept: the history's record of it, and a queued job's result. */

import type { InvokeResult } from "../invoke/options.ts";
import { FnrunError } from "../util/errors.ts";
import type { History, InvocationRecord, InvocationStatus } from "./history.ts";
import type { JobOutcome, Trigger } from "./queue.ts";

const STATUS: Record<string, InvocationStatus> = {
  FUNCTION: "function error",
  HANDLER_NOT_FOUND: "function error",
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

export type RunInput = Omit<RecordInput, "startedAt" | "outcome">;

/**
 * Runs one invocation and records how it went in the history, whether it
 * returned or failed (with a FnrunError: anything else is not an invocation's
 * outcome). Failures are rethrown for the caller to answer.
 */
export async function runAndRecord(
  history: History,
  input: RunInput,
  run: () => Promise<InvokeResult>,
): Promise<InvokeResult> {
  const startedAt = Date.now();
  try {
    const result = await run();
    history.add(recordOf({ ...input, startedAt, outcome: result }));
    return result;
  } catch (error) {
    if (error instanceof FnrunError) history.add(recordOf({ ...input, startedAt, outcome: error }));
    throw error;
  }
}

/** A queued job's outcome from its invocation's: the result, or the error as data (and who ran it, on a worker). */
export function jobOutcome(outcome: InvokeResult | unknown, worker?: string): JobOutcome {
  if (outcome && typeof outcome === "object" && "resultJson" in outcome) {
    const result = outcome as InvokeResult;
    return {
      ok: true,
      requestId: result.requestId,
      detail: worker ? JSON.stringify({ result: JSON.parse(result.resultJson), worker }) : result.resultJson,
    };
  }
  const detail =
    outcome instanceof FnrunError
      ? outcome.toJSON()
      : { errorMessage: (outcome as Error)?.message ?? String(outcome) };
  const requestId = outcome instanceof FnrunError ? outcome.report?.requestId : undefined;
  return {
    ok: false,
    ...(requestId ? { requestId } : {}),
    detail: JSON.stringify(worker ? { ...detail, worker } : detail),
  };
}
