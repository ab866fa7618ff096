/**
 * Who may call `fnrun serve`, and how webhook deliveries prove who sent them.
 *
 * - On loopback (the default), requests from local programs are accepted, but a
 *   browser cannot be tricked into calling fnrun: the Host header must name a
 *   loopback address (DNS rebinding) and a cross-site Origin is refused (CSRF).
 * - Bound elsewhere (only with --allow-remote), every request needs the token:
 *   `Authorization: Bearer TOKEN`, or an AWS Signature V4 made with TOKEN as the
 *   secret key (so AWS SDK clients work with credentials { accessKeyId: "fnrun",
 *   secretAccessKey: TOKEN }), or the dashboard's cookie (a value derived from
 *   the token, set once in exchange for the dashboard's ?token=). All of it is
 *   decided from the headers, before any of the body is read.
 * - Webhooks carry their sender's signature (webhook-signatures.ts), compared in
 *   constant time.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";

export function isLoopbackAddress(host: string): boolean {
  return host === "127.0.0.1" || host === "::1" || host === "localhost" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The host part of a Host header ("localhost:9000", "[::1]:9000"). */
export function hostOfHeader(header: string): string {
  const trimmed = header.trim().toLowerCase();
  if (trimmed.startsWith("[")) return trimmed.slice(1, trimmed.indexOf("]"));
  return trimmed.split(":")[0] ?? "";
}

/** Compares secrets without leaking where they differ or how long they are. */
export function sameSecret(given: string, expected: string): boolean {
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}

function hmac(key: Buffer | string, data: string): Buffer {
  return createHmac("sha256", key).update(data).digest();
}

/** RFC 3986 encoding as SigV4 wants it (encodeURIComponent leaves !'()* alone). */
function strictEncode(text: string): string {
  return encodeURIComponent(text).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function canonicalQuery(search: string): string {
  const pairs = [...new URLSearchParams(search)].map(([key, value]) => [
    strictEncode(key),
    strictEncode(value),
  ]);
  pairs.sort(([a = "", b = ""], [c = "", d = ""]) => (a === c ? (b < d ? -1 : 1) : a < c ? -1 : 1));
  return pairs.map(([key, value]) => `${key}=${value}`).join("&");
}

const SIGV4 =
  /^AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/([^/,\s]+)\/aws4_request,\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$/;

/**
 * Verifies an AWS Signature Version 4 made with `secret` over the request's
 * signed headers, path and query, and the payload hash it claims
 * (X-Amz-Content-Sha256, which AWS SDKs send), within 15 minutes of its date:
 * without reading the body. Returns the claimed hash ("UNSIGNED-PAYLOAD" when
 * the body is not signed), or undefined when the signature does not hold.
 */
export function verifySigV4Signature(
  request: IncomingMessage,
  secret: string,
  now = Date.now(),
): string | undefined {
  const authorization = request.headers.authorization ?? "";
  const match = authorization.match(SIGV4);
  if (!match) return undefined;
  const [, , date, region, service, signedHeaderList, signature] = match as unknown as string[];
  const amzDate = String(request.headers["x-amz-date"] ?? "");
  const parsed = amzDate.match(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/);
  if (!parsed || amzDate.slice(0, 8) !== date) return undefined;
  const [year, month, day, hour, minute, second] = parsed.slice(1).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const signedAt = Date.UTC(year, month - 1, day, hour, minute, second);
  if (Math.abs(now - signedAt) > 15 * 60 * 1000) return undefined;

  const signedHeaders = (signedHeaderList as string).split(";");
  const claimed = request.headers["x-amz-content-sha256"];
  if (!signedHeaders.includes("host") || !signedHeaders.includes("x-amz-content-sha256")) return undefined;
  if (typeof claimed !== "string" || !/^(?:[0-9a-f]{64}|UNSIGNED-PAYLOAD)$/.test(claimed)) return undefined;
  const canonicalHeaders = signedHeaders
    .map((name) => {
      const value = request.headers[name];
      const text = Array.isArray(value) ? value.join(",") : (value ?? "");
      return `${name}:${text.trim().replace(/\s+/g, " ")}\n`;
    })
    .join("");
  const url = new URL(request.url ?? "/", "http://fnrun.invalid");
  const rawPath = (request.url ?? "/").split("?")[0] ?? "/";
  // Services other than S3 sign the path encoded twice: the wire form, encoded again.
  const canonicalPath = encodeURIComponent(rawPath).replace(/%2F/g, "/");
  const canonicalRequest = [
    request.method ?? "GET",
    canonicalPath,
    canonicalQuery(url.search),
    canonicalHeaders,
    signedHeaderList,
    claimed,
  ].join("\n");
  const scope = `${date}/${region}/${service}/aws4_request`;
  const stringToSign = [
    "AWS4-HMAC-SHA256",
    amzDate,
    scope,
    createHash("sha256").update(canonicalRequest).digest("hex"),
  ].join("\n");
  const key = hmac(
    hmac(hmac(hmac(`AWS4${secret}`, date as string), region as string), service as string),
    "aws4_request",
  );
  return sameSecret(createHmac("sha256", key).update(stringToSign).digest("hex"), signature as string)
    ? claimed
    : undefined;
}

/** Whether `body` is the payload a verified signature claimed. */
export function payloadMatches(claimed: string, body: Buffer): boolean {
  return claimed === "UNSIGNED-PAYLOAD" || claimed === createHash("sha256").update(body).digest("hex");
}

/** verifySigV4Signature and payloadMatches together, for a request whose body is read. */
export function verifySigV4(
  request: IncomingMessage,
  body: Buffer,
  secret: string,
  now = Date.now(),
): boolean {
  const claimed = verifySigV4Signature(request, secret, now);
  return claimed !== undefined && payloadMatches(claimed, body);
}

export function cookieValue(request: IncomingMessage, name: string): string | undefined {
  for (const part of (request.headers.cookie ?? "").split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return undefined;
}

export const TOKEN_COOKIE = "fnrun_token";

/** What the dashboard's cookie holds: a value derived from the token, good for the cookie only. */
export function cookieFor(token: string): string {
  return createHmac("sha256", token).update("fnrun dashboard cookie").digest("hex");
}

/**
 * Whether a request carries the token, from its headers alone (the body is not
 * read for a caller who has not proven who they are): Bearer, X-Fnrun-Token, the
 * dashboard's cookie, or a SigV4 signature, whose claimed payload hash must then
 * match the body once read (`payload`).
 */
export function authenticate(
  request: IncomingMessage,
  token: string,
  now = Date.now(),
): { ok: false } | { ok: true; payload?: string } {
  const authorization = request.headers.authorization ?? "";
  if (authorization.startsWith("Bearer ")) return { ok: sameSecret(authorization.slice(7).trim(), token) };
  if (authorization.startsWith("AWS4-HMAC-SHA256")) {
    const claimed = verifySigV4Signature(request, token, now);
    return claimed === undefined ? { ok: false } : { ok: true, payload: claimed };
  }
  const header = request.headers["x-fnrun-token"];
  if (typeof header === "string") return { ok: sameSecret(header, token) };
  const cookie = cookieValue(request, TOKEN_COOKIE);
  return { ok: cookie !== undefined && sameSecret(cookie, cookieFor(token)) };
}
