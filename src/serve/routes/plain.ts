/** The plain invocation route: POST /invoke/{name}, the event as the body, the result (or the error) back. */
import type { ServerResponse } from "node:http";
import { FnrunError } from "../../util/errors.ts";
import type { ServerContext } from "../context.ts";
import { parseEvent, sendJson } from "../http.ts";
import { functionErrorBody, isFunctionFault } from "./lambda.ts";

/** POST /invoke/{name}: the event as the body, the result back. */
export async function plainInvoke(
  server: ServerContext,
  response: ServerResponse,
  name: string,
  body: Buffer,
) {
  const fn = await server.requireFunction(name);
  try {
    const result = await server.run(fn.name, parseEvent(body), "http");
    sendJson(response, 200, result.resultJson, { "x-fnrun-request-id": result.requestId });
  } catch (error) {
    if (!(error instanceof FnrunError)) throw error;
    const status = error.code === "TIMEOUT" ? 504 : isFunctionFault(error) ? 500 : 502;
    sendJson(response, status, { ...functionErrorBody(error), requestId: error.report?.requestId });
  }
}
