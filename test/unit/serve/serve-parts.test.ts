import { execFileSync } from "node:child_process";
import { createHash, createHmac } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { join } from "node:path";
import { Readable } from "node:stream";
import { rootCertificates } from "node:tls";
import { SignatureV4 } from "@smithy/signature-v4";
import { describe, expect, it } from "vitest";
import { hookScript, hookVerdict } from "../../../src/jobs/git-hooks.ts";
import { retryDelayMs } from "../../../src/jobs/queue.ts";
import { redactUrl, redisConnection } from "../../../src/jobs/queue-redis.ts";
import { countOccurrences, nextOccurrence, scheduledEvent } from "../../../src/jobs/scheduler.ts";
import { Admission, TooManyRequests } from "../../../src/serve/admission.ts";
import { hostOfHeader, isLoopbackAddress, verifySigV4 } from "../../../src/serve/auth.ts";
import { functionNameFromPath } from "../../../src/serve/routes/lambda.ts";
import { checkDelivery } from "../../../src/serve/webhook-signatures.ts";
import { packageRoot } from "../../../src/util/paths.ts";
import { temporaryDirectory } from "../temporary-directory.ts";

describe("webhook signatures", () => {
  const hmac = (secret: string, text: string) => createHmac("sha256", secret).update(text).digest("hex");
  const now = Date.UTC(2026, 11, 2, 12, 0, 0);
  const t = Math.floor(now / 1000);

  it("accepts GitHub's sha256= HMAC of the raw body, and nothing else; the delivery id names it", () => {
    const body = Buffer.from('{"action":"opened"}');
    const good = `sha256=${hmac("secret", body.toString())}`;
    const github = (signature: string | undefined, delivery?: string) =>
      checkDelivery(
        "github",
        "secret",
        {
          ...(signature !== undefined ? { "x-hub-signature-256": signature } : {}),
          ...(delivery ? { "x-github-delivery": delivery } : {}),
        },
        body,
        now,
      );
    expect(github(good, "d-1")).toEqual({ ok: true, key: "delivery:d-1" });
    expect(github(good.toUpperCase().replace("SHA256", "sha256"))).toEqual({
      ok: true,
      key: `body:${createHash("sha256").update(body).digest("hex")}`,
    });
    for (const bad of [
      undefined,
      "",
      "sha1=abc",
      good.slice(0, -1),
      `${good}0`,
      `sha256=${hmac("other", body.toString())}`,
    ]) {
      expect(github(bad)).toMatchObject({ ok: false, status: 401 });
    }
  });

  it("checks Stripe's t= and Slack's timestamp: signed, and within five minutes", () => {
    const body = Buffer.from('{"id":"evt_9","type":"ping"}');
    const stripe = (time: number, signature = hmac("secret", `${time}.${body}`)) =>
      checkDelivery(
        "stripe",
        "secret",
        { "stripe-signature": `t=${time},v1=${"0".repeat(64)},v1=${signature}` },
        body,
        now,
      );
    expect(stripe(t)).toEqual({ ok: true, key: "event:evt_9", signedAt: t * 1000 });
    expect(stripe(t - 300)).toMatchObject({ ok: true });
    expect(stripe(t - 301)).toMatchObject({ ok: false, status: 409 });
    expect(stripe(t + 301)).toMatchObject({ ok: false, status: 409 });
    expect(stripe(t, hmac("secret", `${t + 1}.${body}`))).toMatchObject({ ok: false, status: 401 });
    const slackBody = Buffer.from("command=%2Fdeploy");
    const slack = (time: number, signature = `v0=${hmac("secret", `v0:${time}:${slackBody}`)}`) =>
      checkDelivery(
        "slack",
        "secret",
        { "x-slack-request-timestamp": String(time), "x-slack-signature": signature },
        slackBody,
        now,
      );
    expect(slack(t)).toMatchObject({ ok: true, key: expect.stringMatching(/^body:[0-9a-f]{64}$/) });
    expect(slack(t - 400)).toMatchObject({ ok: false, status: 409 });
    expect(slack(t, "v0=00")).toMatchObject({ ok: false, status: 401 });
  });
});

describe("loopback checks", () => {
  it("knows loopback names and reads Host headers", () => {
    expect(["127.0.0.1", "127.3.2.1", "::1", "localhost"].every(isLoopbackAddress)).toBe(true);
    expect(["0.0.0.0", "10.0.0.1", "example.com", "localhost.example.com"].some(isLoopbackAddress)).toBe(
      false,
    );
    expect(hostOfHeader("localhost:9000")).toBe("localhost");
    expect(hostOfHeader("[::1]:9000")).toBe("::1");
    expect(hostOfHeader("Example.COM")).toBe("example.com");
  });
});

function toBytes(data: string | ArrayBuffer | ArrayBufferView): string | Uint8Array {
  if (typeof data === "string") return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** The hash the AWS SDK's signer wants, on node:crypto. */
class NodeSha256 {
  readonly #hash;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.#hash = secret ? createHmac("sha256", toBytes(secret)) : createHash("sha256");
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.#hash.update(toBytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.#hash.digest());
  }
}

async function signedRequest(secret: string, body: string, date = new Date()) {
  const signer = new SignatureV4({
    credentials: { accessKeyId: "fnrun", secretAccessKey: secret },
    region: "us-east-1",
    service: "lambda",
    sha256: NodeSha256,
  });
  const request = {
    method: "POST",
    protocol: "http:",
    hostname: "127.0.0.1",
    port: 9000,
    // The wire form of "hello:live" (the SDK encodes the colon).
    path: "/2015-03-31/functions/hello%3Alive/invocations",
    query: { Qualifier: "live" },
    headers: { host: "127.0.0.1:9000", "content-type": "application/json" },
    body,
  };
  const signed = await signer.sign(request, { signingDate: date });
  const headers = Object.fromEntries(
    Object.entries(signed.headers).map(([key, value]) => [key.toLowerCase(), value]),
  );
  const incoming = Object.assign(Readable.from([]), {
    method: "POST",
    url: "/2015-03-31/functions/hello%3Alive/invocations?Qualifier=live",
    headers,
  }) as unknown as IncomingMessage;
  return incoming;
}

describe("AWS Signature V4", () => {
  it("verifies what the AWS SDK's own signer produces, and rejects changes", async () => {
    const body = '{"name":"Ada"}';
    const request = await signedRequest("token-secret", body);
    expect(verifySigV4(request, Buffer.from(body), "token-secret")).toBe(true);
    expect(verifySigV4(request, Buffer.from(body), "wrong-secret")).toBe(false);
    expect(verifySigV4(request, Buffer.from('{"name":"Eve"}'), "token-secret")).toBe(false);
    const elsewhere = Object.assign(Object.create(request), {
      url: "/2015-03-31/functions/other/invocations",
    });
    expect(verifySigV4(elsewhere, Buffer.from(body), "token-secret")).toBe(false);
  });

  it("refuses a signature more than 15 minutes old", async () => {
    const body = "{}";
    const old = await signedRequest("token-secret", body, new Date(Date.now() - 20 * 60 * 1000));
    expect(verifySigV4(old, Buffer.from(body), "token-secret")).toBe(false);
  });
});

describe("Lambda paths", () => {
  it("takes a name, a qualified name or an ARN", () => {
    expect(functionNameFromPath("hello")).toBe("hello");
    expect(functionNameFromPath("hello%3Alive")).toBe("hello");
    expect(functionNameFromPath("arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Ahello")).toBe(
      "hello",
    );
    expect(functionNameFromPath("arn:aws:lambda:us-east-1:123456789012:function:hello:prod")).toBe("hello");
  });
});

describe("Admission", () => {
  it("admits up to the limit, lets a bounded line wait, refuses the rest", async () => {
    const admission = new Admission(1, 1);
    const first = await admission.enter("f");
    const second = admission.enter("f");
    await expect(admission.enter("f")).rejects.toBeInstanceOf(TooManyRequests);
    expect(admission.waiting).toBe(1);
    first();
    const release = await second;
    expect(admission.active).toBe(1);
    release();
    expect(admission.active).toBe(0);
  });

  it("keeps each function to its own limit without blocking others", async () => {
    const admission = new Admission(4, 10);
    const a1 = await admission.enter("a", 1);
    const a2 = admission.enter("a", 1);
    const b1 = await admission.enter("b", 1);
    expect(admission.activeFor("a")).toBe(1);
    expect(admission.activeFor("b")).toBe(1);
    a1();
    (await a2)();
    b1();
    expect(admission.active).toBe(0);
  });
});

describe("queue and schedule arithmetic", () => {
  it("doubles the retry delay", () => {
    expect([1, 2, 3, 4].map((attempt) => retryDelayMs(attempt, 1000))).toEqual([1000, 2000, 4000, 8000]);
  });

  it("computes cron occurrences in UTC, with seconds when given six fields", () => {
    const base = Date.UTC(2026, 0, 1, 12, 0, 30);
    expect(new Date(nextOccurrence("*/5 * * * *", base)).toISOString()).toBe("2026-01-01T12:05:00.000Z");
    expect(new Date(nextOccurrence("*/10 * * * * *", base)).toISOString()).toBe("2026-01-01T12:00:40.000Z");
    expect(
      countOccurrences("0 * * * *", Date.UTC(2026, 0, 1, 0, 0, 0), Date.UTC(2026, 0, 1, 10, 0, 0)),
    ).toEqual({
      count: 10,
      last: Date.UTC(2026, 0, 1, 10, 0, 0),
    });
    expect(countOccurrences("0 0 1 1 *", base, base + 1000)).toEqual({ count: 0, last: null });
    expect(() => nextOccurrence("not a cron", base)).toThrow();
  });

  it("refuses a schedule without 5 or 6 fields, which cron-parser would fill in and misread", () => {
    const base = Date.UTC(2026, 0, 1, 12, 0, 0);
    // cron-parser reads "0 9 * *" as every minute of the 9th, and "" as every minute.
    expect(() => nextOccurrence("0 9 * *", base)).toThrow(
      'a cron expression has 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first; "0 9 * *" has 4',
    );
    expect(() => countOccurrences("0 9 * *", base, base + 60_000)).toThrow("has 4");
    expect(() => nextOccurrence("", base)).toThrow("a cron expression has 5 fields");
    expect(() => nextOccurrence("  ", base)).toThrow("a cron expression has 5 fields");
    expect(() => nextOccurrence("* * * * * * *", base)).toThrow("has 7");
    expect(new Date(nextOccurrence(" 0  9 * * * ", base)).toISOString()).toBe("2026-01-02T09:00:00.000Z");
    expect(new Date(nextOccurrence("@daily", base)).toISOString()).toBe("2026-01-02T00:00:00.000Z");
  });

  it("shapes scheduled events as EventBridge does", () => {
    const event = scheduledEvent({ functionName: "tick", expression: "* * * * *" }, Date.UTC(2026, 0, 1), 3);
    expect(event).toMatchObject({
      "detail-type": "Scheduled Event",
      source: "aws.events",
      time: "2026-01-01T00:00:00.000Z",
      detail: { schedule: "* * * * *", missed: 3 },
    });
  });

  it("parses redis:// URLs", () => {
    expect(redisConnection("redis://127.0.0.1:6380/2")).toEqual({ host: "127.0.0.1", port: 6380, db: 2 });
    expect(redisConnection("redis://:pw@redis.local")).toEqual({
      host: "redis.local",
      port: 6379,
      password: "pw",
    });
    expect(() => redisConnection("http://x")).toThrow(/only redis:\/\//);
    expect(redisConnection("rediss://fnrun:p%40ss@redis.example:6380", {})).toEqual({
      host: "redis.example",
      port: 6380,
      username: "fnrun",
      password: "p@ss",
      tls: { servername: "redis.example" },
    });
    expect(() => redisConnection("rediss://u:secret@h", { FNRUN_REDIS_CA: "/nonexistent.pem" })).toThrow(
      /FNRUN_REDIS_CA/,
    );
  });

  it("trusts NODE_EXTRA_CA_CERTS's certificates beside Node's, which bin/fnrun.js starts Node without", () => {
    const directory = temporaryDirectory("ca");
    const extra = join(directory, "extra.pem");
    writeFileSync(extra, "-----BEGIN CERTIFICATE-----\nextra\n-----END CERTIFICATE-----\n");
    const own = join(directory, "own.pem");
    writeFileSync(own, "own");
    const env = { NODE_EXTRA_CA_CERTS: extra };
    expect(redisConnection("rediss://h", env).tls?.ca).toEqual([
      ...rootCertificates,
      readFileSync(extra, "utf8"),
    ]);
    expect(redisConnection("rediss://h", { ...env, FNRUN_REDIS_CA: own }).tls?.ca).toBe("own");
    expect(redisConnection("redis://h", env).tls).toBeUndefined();
    expect(() => redisConnection("rediss://h", { NODE_EXTRA_CA_CERTS: join(directory, "none.pem") })).toThrow(
      /NODE_EXTRA_CA_CERTS=.*none\.pem: cannot read it/,
    );
  });

  it("never shows a password", () => {
    expect(redactUrl("rediss://fnrun:hunter2@redis.example:6380/1")).toBe(
      "rediss://fnrun:***@redis.example:6380/1",
    );
    expect(redactUrl("redis://:hunter2@h")).toBe("redis://:***@h");
    expect(redactUrl("redis://h:6379")).toBe("redis://h:6379");
    let message = "";
    try {
      redisConnection("ftp://fnrun:hunter2@h");
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain("ftp://fnrun:***@h");
    expect(message).not.toContain("hunter2");
  });
});

describe("git hook verdicts", () => {
  it("stops git on false or { ok: false }, and lets everything else through", () => {
    expect(hookVerdict(false)).toEqual({ ok: false, message: null });
    expect(hookVerdict({ ok: false, message: "no" })).toEqual({ ok: false, message: "no" });
    expect(hookVerdict({ ok: true, message: "fine" })).toEqual({ ok: true, message: "fine" });
    expect(hookVerdict(null)).toEqual({ ok: true, message: null });
    expect(hookVerdict("anything")).toEqual({ ok: true, message: null });
  });

  it("runs fnrun's Node without NODE_EXTRA_CA_CERTS, handing its value on, as bin/fnrun.js's first line does", () => {
    const directory = temporaryDirectory("hook");
    // A stand-in for node that shows what it was started with.
    const node = join(directory, "node");
    writeFileSync(node, `#!/bin/sh\necho "[\${NODE_EXTRA_CA_CERTS-unset}] [$FNRUN_EXTRA_CA_CERTS] $*"\n`, {
      mode: 0o755,
    });
    const hook = join(directory, "pre-commit");
    writeFileSync(hook, hookScript("pre-commit", "functions/it's.ts", node), { mode: 0o755 });
    const run = (env: NodeJS.ProcessEnv) =>
      execFileSync(hook, ["one", "two words"], {
        encoding: "utf8",
        env: { PATH: process.env.PATH, ...env },
      });
    const cli = join(packageRoot, "bin", "fnrun.js");
    expect(run({ NODE_EXTRA_CA_CERTS: "/certs/a b.pem" })).toBe(
      `[unset] [/certs/a b.pem] ${cli} hook run pre-commit functions/it's.ts -- one two words\n`,
    );
    expect(run({})).toBe(`[unset] [] ${cli} hook run pre-commit functions/it's.ts -- one two words\n`);
  });
});
