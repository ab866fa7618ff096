/**
 * AWS Lambda's Invoke API (X-Amz-Invocation-Type RequestResponse | Event |
 * DryRun, X-Amz-Log-Type Tail, X-Amz-Function-Error), so AWS SDK clients work
 * against fnrun serve.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { FnrunError, FunctionError } from "../../util/errors.ts";
import type { ServerContext } from "../context.ts";
import { HttpError, parseEvent, sendJson } from "../http.ts";

/** The function name in an Invoke path: a name, a name with a qualifier, or a full ARN. */
export function functionNameFromPath(segment: string): string {
  const decoded = decodeURIComponent(segment);
  const arn = decoded.match(/^arn:aws[^:]*:lambda:[^:]*:[^:]*:function:([^:]+)/);
  return arn?.[1] ?? decoded.split(":")[0] ?? decoded;
}

/** The error body Lambda returns with X-Amz-Function-Error. */
export function functionErrorBody(error: FnrunError): Record<string, unknown> {
  if (error instanceof FunctionError) {
    return {
      errorType: error.errorType,
      errorMessage: error.errorMessage,
      trace: error.trace,
      stackTrace: error.trace,
    };
  }
  return { errorType: error.name, errorMessage: error.message };
}

/** Errors that are the function's doing, returned by Lambda as 200 + X-Amz-Function-Error. */
export function isFunctionFault(error: FnrunError): boolean {
  return ["FUNCTION", "HANDLER_NOT_FOUND", "TIMEOUT", "OUT_OF_MEMORY", "RESULT_TOO_LARGE", "BUNDLE"].includes(
    error.code,
  );
}

function logTail(logs: string): string {
  return Buffer.from(Buffer.from(logs).subarray(-4096)).toString("base64");
}

/** POST /2015-03-31/functions/{name}/invocations: AWS Lambda's Invoke API. */
export async function lambdaInvoke(
  server: ServerContext,
  request: IncomingMessage,
  response: ServerResponse,
  name: string,
  body: Buffer,
) {
  const type = String(request.headers["x-amz-invocation-type"] ?? "RequestResponse");
  const fn = await server.requireFunction(name);
  const event = parseEvent(body);
  const common = { "x-amz-executed-version": "$LATEST" };
  if (type === "DryRun") {
    response.writeHead(204, common);
    response.end();
    return;
  }
  if (type === "Event") {
    const id = await server.queue.enqueue({ functionName: fn.name, event, trigger: "http" });
    response.writeHead(202, { ...common, "x-amzn-requestid": `job-${id}` });
    response.end();
    return;
  }
  if (type !== "RequestResponse") {
    throw new HttpError(
      400,
      "InvalidParameterValueException",
      `X-Amz-Invocation-Type must be RequestResponse, Event or DryRun`,
    );
  }
  const tail = request.headers["x-amz-log-type"] === "Tail";
  try {
    const result = await server.run(fn.name, event, "http");
    sendJson(response, 200, result.resultJson, {
      ...common,
      "x-amzn-requestid": result.requestId,
      ...(tail ? { "x-amz-log-result": logTail(result.logs) } : {}),
    });
  } catch (error) {
    if (!(error instanceof FnrunError) || !isFunctionFault(error)) throw error;
    sendJson(response, 200, functionErrorBody(error), {
      ...common,
      "x-amz-function-error": "Unhandled",
      ...(error.report ? { "x-amzn-requestid": error.report.requestId } : {}),
      ...(tail && error.report ? { "x-amz-log-result": logTail(error.report.logs) } : {}),
    });
  }
}
