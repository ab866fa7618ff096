/** What an invocation's session becomes for its caller: a result, or a FnrunError with a report. */
import { createStackMapper } from "../build/sourcemap.ts";
import type { HostSetup } from "../host/setup.ts";
import type { PreparedInvocation } from "../start/run.ts";
import { FunctionError, functionErrorOf, InternalError } from "../util/errors.ts";
import type { SessionReport } from "../vm/session.ts";
import type { InvokeResult } from "./options.ts";

export function finishReport(
  prepared: PreparedInvocation,
  report: SessionReport,
  host: HostSetup,
  startMode: InvokeResult["startMode"],
  startedAt: number,
): InvokeResult {
  const { invocation, bundle } = prepared;
  const base = {
    requestId: invocation.requestId,
    functionName: invocation.functionName,
    logs: report.logs.text(),
    logsTruncated: report.logs.truncated,
    timeline: report.timeline,
    startMode,
  };
  if (report.failure) {
    let failure = report.failure;
    if (failure instanceof FunctionError) {
      const map = createStackMapper(bundle.sourceMap);
      failure = functionErrorOf({
        errorType: failure.errorType,
        errorMessage: failure.errorMessage,
        // The runtime's own frames are noise to the function's author.
        stack: failure.trace.filter((line) => !line.includes("/fnrun/guest.mjs")).map(map),
      });
    }
    failure.report = base;
    throw failure;
  }
  const outcome = report.outcome;
  if (outcome?.kind !== "result")
    throw new InternalError("an invocation ended with neither a result nor an error");
  let result: unknown;
  try {
    result = JSON.parse(outcome.json);
  } catch {
    const error = new FunctionError({
      errorType: "Runtime.InvalidResult",
      errorMessage: "the guest sent a result that is not valid JSON",
      stack: [],
    });
    error.report = base;
    throw error;
  }
  return {
    ...base,
    result,
    resultJson: outcome.json,
    logEntries: report.logs.entries,
    durationMs: performance.now() - startedAt,
    accel: host.accel.accel,
    startMode,
  };
}
