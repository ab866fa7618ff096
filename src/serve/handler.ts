/**
 * One request to `fnrun serve`: who may make it (loopback callers, or callers
 * with the token), then its route. Errors become Lambda-shaped responses.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { TooManyRequests } from "./admission.ts";
import { hasToken, hostOfHeader, isLoopbackAddress, TOKEN_COOKIE } from "./auth.ts";
import type { ServerContext } from "./context.ts";
import { HttpError, readBody, sendAwsError, sendJson } from "./http.ts";
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
  const body = await readBody(request);
  const token = server.token;
  // The dashboard's first page may bring the token in its URL; a cookie keeps it.
  const queryToken = url.pathname.startsWith("/_fnrun") ? url.searchParams.get("token") : null;
  if (token && !webhook) {
    const viaQuery = queryToken !== null && queryToken === token;
    if (!viaQuery && !hasToken(request, body, token)) {
      throw new HttpError(
        401,
        "UnrecognizedClientException",
        "a token is required (Authorization: Bearer TOKEN)",
      );
    }
    if (viaQuery) {
      response.setHeader(
        "set-cookie",
        `${TOKEN_COOKIE}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/`,
      );
    }
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
  if (url.pathname === "/healthz") return sendJson(response, 200, { ok: true });
  if (url.pathname === "/_fnrun" || url.pathname.startsWith("/_fnrun/")) {
    const { handleDashboard } = await import("./dashboard/api.ts");
    return handleDashboard(server, request, response, url, body);
  }
  throw new HttpError(404, "ResourceNotFoundException", `no route for ${request.method} ${url.pathname}`);
}

/** The response to a request that failed: its HTTP error, 429, or 500 (said in a notice). */
export function answerFailure(server: ServerContext, response: ServerResponse, error: unknown): void {
  if (response.headersSent) {
    response.destroy();
    return;
  }
  if (error instanceof HttpError) {
    sendAwsError(response, error);
  } else if (error instanceof TooManyRequests) {
    sendAwsError(response, new HttpError(429, "TooManyRequestsException", error.message));
  } else {
    server.notice(`fnrun: internal error: ${(error as Error).stack ?? error}`);
    sendAwsError(response, new HttpError(500, "ServiceException", (error as Error).message));
  }
}
