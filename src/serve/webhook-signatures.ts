/**
 * Who sent a webhook delivery, and which delivery it is, in the schemes of the
 * senders fnrun knows:
 *
 *   github  X-Hub-Signature-256: sha256=HMAC(secret, body); X-GitHub-Delivery
 *           names the delivery (no timestamp: the body identifies one without it)
 *   stripe  Stripe-Signature: t=TIME,v1=HMAC(secret, "TIME.body"); the event's id
 *           (or the body) names it
 *   slack   X-Slack-Request-Timestamp: TIME, X-Slack-Signature:
 *           v0=HMAC(secret, "v0:TIME:body"); the body names it
 *
 * A signed timestamp outside five minutes of now is a replay (a captured
 * delivery sent again later), as the senders themselves recommend.
 */
import { createHash, createHmac } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import type { WebhookScheme } from "../build/config.ts";
import { sameSecret } from "./auth.ts";

export const REPLAY_WINDOW_MS = 5 * 60 * 1000;

export type DeliveryCheck =
  /** Signed by the secret's holder; `key` identifies the delivery, `signedAt` when the sender signed it. */
  { ok: true; key: string; signedAt?: number } | { ok: false; status: 401 | 409; message: string };

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return typeof value === "string" ? value.trim() : undefined;
}

function hmacHex(secret: string, text: string | Buffer): string {
  return createHmac("sha256", secret).update(text).digest("hex");
}

function bodyKey(body: Buffer): string {
  return `body:${createHash("sha256").update(body).digest("hex")}`;
}

function refused(scheme: string, what: string): DeliveryCheck {
  return { ok: false, status: 401, message: `the ${scheme} signature does not match (${what})` };
}

/** A signed time (seconds since the epoch) within the window of `now`, or why not. */
function withinWindow(seconds: string | undefined, now: number): { signedAt: number } | DeliveryCheck {
  if (!seconds || !/^\d{1,12}$/.test(seconds))
    return { ok: false, status: 401, message: "no signed timestamp" };
  const signedAt = Number(seconds) * 1000;
  if (Math.abs(now - signedAt) > REPLAY_WINDOW_MS) {
    return {
      ok: false,
      status: 409,
      message: "the delivery was signed more than 5 minutes from now: a replay, or a clock far off",
    };
  }
  return { signedAt };
}

export function checkDelivery(
  scheme: WebhookScheme,
  secret: string,
  headers: IncomingHttpHeaders,
  body: Buffer,
  now = Date.now(),
): DeliveryCheck {
  switch (scheme) {
    case "github": {
      const signature = header(headers, "x-hub-signature-256")?.toLowerCase();
      if (!signature || !/^sha256=[0-9a-f]{64}$/.test(signature))
        return refused("X-Hub-Signature-256", "missing");
      if (!sameSecret(signature, `sha256=${hmacHex(secret, body)}`))
        return refused("X-Hub-Signature-256", "wrong");
      const delivery = header(headers, "x-github-delivery");
      return { ok: true, key: delivery ? `delivery:${delivery}` : bodyKey(body) };
    }
    case "stripe": {
      const fields = new Map<string, string[]>();
      for (const part of (header(headers, "stripe-signature") ?? "").split(",")) {
        const [name = "", value = ""] = part.split("=", 2).map((text) => text.trim());
        fields.set(name, [...(fields.get(name) ?? []), value]);
      }
      const t = fields.get("t")?.[0];
      const expected = hmacHex(secret, Buffer.concat([Buffer.from(`${t}.`), body]));
      if (!t || !(fields.get("v1") ?? []).some((candidate) => sameSecret(candidate.toLowerCase(), expected)))
        return refused("Stripe-Signature", t ? "wrong" : "missing");
      const window = withinWindow(t, now);
      if ("ok" in window) return window;
      let id: unknown;
      try {
        id = (JSON.parse(body.toString("utf8")) as { id?: unknown }).id;
      } catch {}
      return {
        ok: true,
        key: typeof id === "string" && id ? `event:${id}` : bodyKey(body),
        signedAt: window.signedAt,
      };
    }
    case "slack": {
      const t = header(headers, "x-slack-request-timestamp");
      const signature = header(headers, "x-slack-signature")?.toLowerCase();
      const expected = `v0=${hmacHex(secret, Buffer.concat([Buffer.from(`v0:${t}:`), body]))}`;
      if (!t || !signature || !sameSecret(signature, expected))
        return refused("X-Slack-Signature", signature ? "wrong" : "missing");
      const window = withinWindow(t, now);
      if ("ok" in window) return window;
      return { ok: true, key: bodyKey(body), signedAt: window.signedAt };
    }
  }
}
