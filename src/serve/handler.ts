/**
 * One request to `fnrun serve`: who may make it (loopback callers, or callers
 * with the token), then its route. Errors become Lambda-shaped responses.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { TooManyRequests } from "./admission.ts";
import {
  authenticate,
  cookieFor,
  hostOfHeader,
  isLoopbackAddress,
  payloadMatches,
  sameSecret,
  TOKEN_COOKIE,
} from "./auth.ts";
import type { ClientLimits } from "./client-limits.ts";
import type { ServerContext } from "./context.ts";
import { type BodyBudget, HttpError, readBody, sendAwsError, sendJson } from "./http.ts";
import { functionNameFromPath, lambdaInvoke } from "./routes/lambda.ts";
import { plainInvoke } from "./routes/plain.ts";
import { webhookDelivery } from "./routes/webhooks.ts";

export async function handleRequest(
  server: ServerContext,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  const url = new URL(request.url ?? "/", "http://fnrun.invalid");
  if (server.loopback) {
    // A web page must not be able to drive fnrun through the user's browser.
    const host = hostOfHeader(request.headers.host ?? "");
    if (!isLoopbackAddress(host))
      throw new HttpError(403, "AccessDeniedException", "Host must be a loopback address");
    const origin = request.headers.origin;
    if (origin && !isLoopbackAddress(hostOfHeader(new URL(origin).host))) {
      throw new HttpError(403, "AccessDeniedException", "cross-origin requests are refused");
    }
  }
  const webhook = url.pathname.match(/^\/webhooks\/([^/]+)$/);
  const token = server.token;
  // Who may call is decided from the headers alone: a caller who has not proven
  // who they are gets no byte of their body read. (Webhooks prove it with a
  // signature over the body.)
  let signedPayload: string | undefined;
  if (token && !webhook) {
    const queryToken = url.pathname.startsWith("/_fnrun") ? url.searchParams.get("token") : null;
    if (queryToken !== null) return exchangeToken(request, response, url, queryToken, token);
    const credential = authenticate(request, token);
    if (!credential.ok) {
      throw new HttpError(
        401,
        "UnrecognizedClientException",
        "a token is required (Authorization: Bearer TOKEN)",
      );
    }
    signedPayload = credential.payload;
  }
  const body = await readBody(
    request,
    server.clientLimits && budgetFor(server.clientLimits, request, response),
  );
  if (signedPayload !== undefined && !payloadMatches(signedPayload, body)) {
    throw new HttpError(401, "UnrecognizedClientException", "the body is not the one the signature covers");
  }
  if (server.shutdown.aborted) throw new HttpError(503, "ServiceException", "fnrun is shutting down");

  const invoke = url.pathname.match(/^\/2015-03-31\/functions\/([^/]+)\/invocations$/);
  if (invoke && request.method === "POST")
    return lambdaInvoke(server, request, response, functionNameFromPath(invoke[1] as string), body);
  const plain = url.pathname.match(/^\/invoke\/([^/]+)$/);
  if (plain && request.method === "POST")
    return plainInvoke(server, response, decodeURIComponent(plain[1] as string), body);
  if (webhook && request.method === "POST")
    return webhookDelivery(server, request, response, decodeURIComponent(webhook[1] as string), body);
  if (invoke || plain || webhook) {
    throw new HttpError(
      405,
      "MethodNotAllowedException",
      `${url.pathname} takes POST, not ${request.method}`,
      { allow: "POST" },
    );
  }
  if (url.pathname === "/healthz") return sendJson(response, 200, { ok: true });
  if (url.pathname === "/_fnrun" || url.pathname.startsWith("/_fnrun/")) {
    const { handleDashboard } = await import("./dashboard/api.ts");
    return handleDashboard(server, request, response, url, body);
  }
  throw new HttpError(404, "ResourceNotFoundException", `no route for ${request.method} ${url.pathname}`);
}

/** A request's share of its client's bytes in flight: held until its response is done. */
function budgetFor(limits: ClientLimits, request: IncomingMessage, response: ServerResponse): BodyBudget {
  const client = request.socket.remoteAddress ?? "?";
  let held = 0;
  response.once("close", () => limits.release(client, held));
  return (bytes) => {
    if (!limits.reserve(client, bytes)) return false;
    held += bytes;
    return true;
  };
}

/**
 * The dashboard's first page may bring the token in its URL (a link to share with
 * yourself): it is compared in constant time and exchanged, once, for an HttpOnly
 * cookie, and the browser is sent on to the same page without it, so that the
 * token stays out of its history, its bookmarks and any Referer.
 */
function exchangeToken(
  request: IncomingMessage,
  response: ServerResponse,
  url: URL,
  given: string,
  token: string,
): void {
  if (!sameSecret(given, token) || (request.method !== "GET" && request.method !== "HEAD")) {
    throw new HttpError(
      401,
      "UnrecognizedClientException",
      "the dashboard's ?token= is wrong (or not on a GET)",
    );
  }
  url.searchParams.delete("token");
  const rest = url.searchParams.toString();
  response.writeHead(303, {
    location: `${url.pathname}${rest ? `?${rest}` : ""}`,
    "set-cookie": `${TOKEN_COOKIE}=${encodeURIComponent(cookieFor(token))}; HttpOnly; SameSite=Strict; Path=/`,
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
  });
  response.end();
}

/** The response to a request that failed: its HTTP error, 429, or 500 (said in a notice). */
export function answerFailure(server: ServerContext, response: ServerResponse, error: unknown): void {
  if (response.headersSent) {
    response.destroy();
    return;
  }
  // A request refused before its body was read takes its connection with it.
  if (!response.req.complete) response.shouldKeepAlive = false;
  if (error instanceof HttpError) {
    sendAwsError(response, error);
  } else if (error instanceof TooManyRequests) {
    sendAwsError(response, new HttpError(429, "TooManyRequestsException", error.message));
  } else {
    server.notice(`fnrun: internal error: ${(error as Error).stack ?? error}`);
    sendAwsError(response, new HttpError(500, "ServiceException", (error as Error).message));
  }
}
