/** HTTP helpers for fnrun serve's routes: errors in Lambda's shape, bounded bodies, JSON replies. */
import type { IncomingMessage, ServerResponse } from "node:http";
import { DEFAULTS } from "../invoke/options.ts";

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    /** Headers the answer carries besides its error type (a 405's Allow). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const MAX_BODY = DEFAULTS.maxEventBytes;

/** The sender's share of request bytes in flight: false when it is spent. */
export type BodyBudget = (bytes: number) => boolean;

export function readBody(request: IncomingMessage, budget?: BodyBudget): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    // Stop reading: the refusal is answered, and the connection closed behind it (server.ts).
    const fail = (error: HttpError) => {
      request.removeAllListeners("data");
      request.pause();
      reject(error);
    };
    request.on("data", (chunk: Buffer) => {
      if (size + chunk.length > MAX_BODY) {
        return fail(
          new HttpError(413, "RequestTooLargeException", `Request must be smaller than ${MAX_BODY} bytes`),
        );
      }
      if (budget && !budget(chunk.length)) {
        return fail(
          new HttpError(429, "TooManyRequestsException", "too many request bytes in flight from this client"),
        );
      }
      size += chunk.length;
      chunks.push(chunk);
    });
    request.on("end", () => resolve(Buffer.concat(chunks)));
    request.on("error", reject);
  });
}

export function sendJson(
  response: ServerResponse,
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
): void {
  const body = typeof value === "string" ? value : JSON.stringify(value);
  response.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    ...headers,
  });
  response.end(body);
}

/** Lambda's error responses: x-amzn-ErrorType names the exception, the body says why. */
export function sendAwsError(response: ServerResponse, error: HttpError): void {
  sendJson(
    response,
    error.status,
    { Type: "User", message: error.message },
    { ...error.headers, "x-amzn-errortype": error.type },
  );
}

/** A request body as the event: JSON text, `{}` when empty. */
export function parseEvent(body: Buffer): string {
  if (body.length === 0) return "{}";
  const text = body.toString("utf8");
  try {
    JSON.parse(text);
  } catch {
    throw new HttpError(400, "InvalidRequestContentException", "Could not parse request body into json");
  }
  return text;
}
