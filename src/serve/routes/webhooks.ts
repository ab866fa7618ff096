/**
 * Webhooks: POST /webhooks/{name} for functions with `config.webhook`. A
 * delivery must carry a valid signature (a bad one costs nothing: no VM, no
 * queue entry); it is queued as a function URL-shaped event.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { verifyWebhookSignature } from "../auth.ts";
import type { ServerContext } from "../context.ts";
import { HttpError, sendJson } from "../http.ts";

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

/** POST /webhooks/{name}: a signed delivery, queued. */
export async function webhookDelivery(
  server: ServerContext,
  request: IncomingMessage,
  response: ServerResponse,
  name: string,
  body: Buffer,
) {
  const fn = await server.functions.get(name);
  const secretEnv = fn?.config.webhook?.secretEnv;
  if (!fn || !secretEnv) throw new HttpError(404, "ResourceNotFoundException", `no webhook named ${name}`);
  const secret = process.env[secretEnv];
  if (!secret)
    throw new HttpError(503, "ServiceException", `the webhook's secret is not set: export ${secretEnv}`);
  const signature = request.headers["x-hub-signature-256"];
  // A bad signature costs nothing: no VM, no queue entry.
  if (!verifyWebhookSignature(secret, body, typeof signature === "string" ? signature : undefined)) {
    throw new HttpError(401, "InvalidSignatureException", "the X-Hub-Signature-256 signature does not match");
  }
  const requestId = randomUUID();
  const id = await server.queue.enqueue({
    functionName: fn.name,
    event: JSON.stringify(httpEvent(request, body, requestId)),
    trigger: "webhook",
  });
  sendJson(response, 202, { accepted: true, job: id });
}
