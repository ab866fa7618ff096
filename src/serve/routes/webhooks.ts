/**
 * Webhooks: POST /webhooks/{name} for functions with `config.webhook`. A
 * delivery must carry a valid signature of its sender's scheme
 * (webhook-signatures.ts), signed within five minutes where the scheme signs a
 * time, and must not have been accepted before (deliveries.ts); it is queued as
 * a function URL-shaped event. A bad signature or a replay costs nothing: no VM,
 * no queue entry.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ServerContext } from "../context.ts";
import { HttpError, sendJson } from "../http.ts";
import { checkDelivery } from "../webhook-signatures.ts";

/** The event a webhook delivery becomes: the shape of a Lambda function URL request (payload 2.0). */
export function httpEvent(
  request: IncomingMessage,
  body: Buffer,
  requestId: string,
): Record<string, unknown> {
  const url = new URL(request.url ?? "/", "http://fnrun.invalid");
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(",") : value;
  }
  const text = body.toString("utf8");
  const isText = Buffer.from(text, "utf8").equals(body);
  return {
    version: "2.0",
    routeKey: "$default",
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    headers,
    queryStringParameters: Object.fromEntries(url.searchParams),
    requestContext: {
      http: {
        method: request.method,
        path: url.pathname,
        protocol: `HTTP/${request.httpVersion}`,
        sourceIp: request.socket.remoteAddress,
        userAgent: request.headers["user-agent"] ?? "",
      },
      requestId,
      timeEpoch: Date.now(),
    },
    body: isText ? text : body.toString("base64"),
    isBase64Encoded: !isText,
  };
}

/** POST /webhooks/{name}: a signed delivery, queued once. */
export async function webhookDelivery(
  server: ServerContext,
  request: IncomingMessage,
  response: ServerResponse,
  name: string,
  body: Buffer,
) {
  const fn = await server.functions.get(name);
  const webhook = fn?.config.webhook;
  if (!fn || !webhook) throw new HttpError(404, "ResourceNotFoundException", `no webhook named ${name}`);
  const secret = process.env[webhook.secretEnv];
  if (!secret)
    throw new HttpError(
      503,
      "ServiceException",
      `the webhook's secret is not set: export ${webhook.secretEnv}`,
    );
  // A bad signature or a replay costs nothing: no VM, no queue entry.
  const check = checkDelivery(webhook.scheme ?? "github", secret, request.headers, body);
  if (!check.ok) {
    throw new HttpError(
      check.status,
      check.status === 401 ? "InvalidSignatureException" : "ResourceConflictException",
      check.message,
    );
  }
  if (!server.deliveries.remember(fn.name, check.key)) {
    throw new HttpError(409, "ResourceConflictException", "this delivery was accepted already (a replay)");
  }
  let id: string;
  try {
    id = await server.queue.enqueue({
      functionName: fn.name,
      event: JSON.stringify(httpEvent(request, body, randomUUID())),
      trigger: "webhook",
    });
  } catch (error) {
    server.deliveries.forget(fn.name, check.key);
    throw error;
  }
  sendJson(response, 202, { accepted: true, job: id });
}
