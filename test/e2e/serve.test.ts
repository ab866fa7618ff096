// fnrun serve: the Lambda Invoke API (with the real AWS SDK), the plain API,
// webhooks, access control, concurrency limits and a draining shutdown.
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InvokeCommand, LambdaClient } from "@aws-sdk/client-lambda";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveHost } from "../../src/host/setup.ts";
import { type FnrunServer, serve } from "../../src/serve/server.ts";
import { expectNothingLeftBehind } from "./helpers.ts";

const DIRECTORY = "test/fixtures/served";
let state: string;
let server: FnrunServer;

function lambdaClient(endpoint: string, secretAccessKey = "anything") {
  return new LambdaClient({
    endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "fnrun", secretAccessKey },
    maxAttempts: 1,
  });
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function post(url: string, body: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { method: "POST", headers }, (response) => {
      let text = "";
      response.on("data", (chunk) => (text += chunk));
      response.on("end", () =>
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: text }),
      );
    });
    request.on("error", reject);
    request.end(body);
  });
}

async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

beforeAll(async () => {
  state = mkdtempSync(join(tmpdir(), "fnrun-test-serve-"));
  process.env.FNRUN_STATE_DIR = join(state, "history");
  process.env.TEST_WEBHOOK_SECRET = "webhook-secret-for-tests";
  server = await serve({
    directory: DIRECTORY,
    port: 0,
    stateDirectory: join(state, "server"),
    pool: 1,
    machine: await resolveHost(),
    schedules: false,
  });
});

afterAll(async () => {
  await server?.close();
  rmSync(state, { recursive: true, force: true });
  await expectNothingLeftBehind(expect);
});

describe("the Lambda Invoke API, through the AWS SDK", () => {
  it("returns hello's result to InvokeCommand, with the log tail", async () => {
    const client = lambdaClient(server.url);
    const output = await client.send(
      new InvokeCommand({ FunctionName: "echo", Payload: JSON.stringify({ hi: "sdk" }), LogType: "Tail" }),
    );
    expect(output.StatusCode).toBe(200);
    expect(output.FunctionError).toBeUndefined();
    expect(output.ExecutedVersion).toBe("$LATEST");
    const result = JSON.parse(Buffer.from(output.Payload ?? []).toString());
    expect(result.event).toEqual({ hi: "sdk" });
    expect(Buffer.from(output.LogResult ?? "", "base64").toString()).toContain("echo got an event");
  });

  it("marks function errors, runs Event invocations from the queue, answers DryRun, and names unknown functions", async () => {
    const client = lambdaClient(server.url);
    const failed = await client.send(
      new InvokeCommand({ FunctionName: "fails", Payload: '{"reason":"sdk"}' }),
    );
    expect(failed.FunctionError).toBe("Unhandled");
    const error = JSON.parse(Buffer.from(failed.Payload ?? []).toString());
    expect(error).toMatchObject({ errorType: "Error", errorMessage: "failing on purpose: sdk" });

    const queued = await client.send(
      new InvokeCommand({ FunctionName: "echo", InvocationType: "Event", Payload: '{"async":true}' }),
    );
    expect(queued.StatusCode).toBe(202);
    await waitFor("the Event invocation to run", () =>
      server.history
        .list(50)
        .find((record) => record.trigger === "http" && record.event === '{"async":true}'),
    );

    const dry = await client.send(new InvokeCommand({ FunctionName: "echo", InvocationType: "DryRun" }));
    expect(dry.StatusCode).toBe(204);

    // A full ARN names the function too.
    const byArn = await client.send(
      new InvokeCommand({
        FunctionName: "arn:aws:lambda:us-east-1:123456789012:function:echo",
        Payload: "{}",
      }),
    );
    expect(byArn.StatusCode).toBe(200);

    await expect(client.send(new InvokeCommand({ FunctionName: "missing" }))).rejects.toMatchObject({
      name: "ResourceNotFoundException",
    });
  });
});

describe("function files it cannot serve", () => {
  it("says so as it starts, and a request for one is told why", async () => {
    const directory = mkdtempSync(join(tmpdir(), "fnrun-test-serve-names-"));
    writeFileSync(join(directory, "send.email.ts"), 'export const handler = () => "sent";\n');
    const notices: string[] = [];
    const other = await serve({
      directory,
      port: 0,
      stateDirectory: join(directory, ".fnrun"),
      pool: 0,
      machine: await resolveHost(),
      schedules: false,
      onNotice: (line) => notices.push(line),
    });
    try {
      expect(notices).toContainEqual(
        expect.stringMatching(
          /send\.email\.ts is not served: "send\.email" is not a function name \(.*\): rename it$/,
        ),
      );
      const reply = await post(`${other.url}/invoke/send.email`, "{}");
      expect(reply.status).toBe(404);
      expect(reply.body).toContain('function:send.email (\\"send.email\\" is not a function name');
    } finally {
      await other.close();
      rmSync(directory, { recursive: true, force: true });
    }
  });
});

describe("the plain API", () => {
  it("answers another method on an invocation route with 405 and Allow: POST", async () => {
    for (const path of ["/invoke/echo", "/2015-03-31/functions/echo/invocations", "/webhooks/github"]) {
      const response = await fetch(`${server.url}${path}`);
      expect(response.status, path).toBe(405);
      expect(response.headers.get("allow"), path).toBe("POST");
      expect(await response.json(), path).toEqual({ Type: "User", message: `${path} takes POST, not GET` });
    }
  });

  it("takes the event as the body and gives the result back", async () => {
    const reply = await post(`${server.url}/invoke/echo`, '{"plain":1}');
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.body).event).toEqual({ plain: 1 });
    const bad = await post(`${server.url}/invoke/echo`, "{not json");
    expect(bad.status).toBe(400);
    expect(bad.headers["x-amzn-errortype"]).toBe("InvalidRequestContentException");
    const failed = await post(`${server.url}/invoke/fails`, "{}");
    expect(failed.status).toBe(500);
    expect(JSON.parse(failed.body).errorMessage).toBe("failing on purpose: no reason");
  });
});

describe("webhooks", () => {
  it("runs a function for a correctly signed delivery and refuses others without booting anything", async () => {
    const body = JSON.stringify({ action: "opened" });
    const signature = `sha256=${createHmac("sha256", "webhook-secret-for-tests").update(body).digest("hex")}`;
    const before = server.history.list(1000).length;
    const jobsBefore = (await server.queue.list(undefined, 1000)).length;

    const wrong: Array<Record<string, string>> = [
      {},
      { "x-hub-signature-256": "sha256=00" },
      { "x-hub-signature-256": `${signature.slice(0, -2)}00` },
    ];
    for (const headers of wrong) {
      const refused = await post(`${server.url}/webhooks/github`, body, headers);
      expect(refused.status).toBe(401);
    }
    expect((await server.queue.list(undefined, 1000)).length).toBe(jobsBefore);
    expect(server.history.list(1000).length).toBe(before);

    const accepted = await post(`${server.url}/webhooks/github`, body, {
      "x-hub-signature-256": signature,
      "x-github-delivery": "delivery-1",
      "content-type": "application/json",
    });
    expect(accepted.status).toBe(202);
    const record = await waitFor("the webhook's invocation", () =>
      server.history.list(50).find((entry) => entry.trigger === "webhook"),
    );
    expect(JSON.parse(record.result ?? "null")).toEqual({ action: "opened", delivery: "delivery-1" });
    expect(
      (await post(`${server.url}/webhooks/echo`, body, { "x-hub-signature-256": signature })).status,
    ).toBe(404);
  });
});

describe("webhook replays", () => {
  const secret = "webhook-secret-for-tests";
  const hmac = (text: string) => createHmac("sha256", secret).update(text).digest("hex");
  const seconds = () => Math.floor(Date.now() / 1000);

  it("refuses a captured delivery sent again (409), and one signed outside the 5-minute window, starting nothing", async () => {
    // Jobs only queue here (no workers): a refused delivery adds none.
    const hooks = await serve({
      directory: "test/fixtures/webhooks",
      port: 0,
      stateDirectory: join(state, "webhooks"),
      pool: 0,
      workers: 0,
      machine: await resolveHost(),
      schedules: false,
    });
    try {
      const jobs = async () => (await hooks.queue.list(undefined, 1000)).length;
      const send = (name: string, body: string, headers: Record<string, string>) =>
        post(`${hooks.url}/webhooks/${name}`, body, headers).then((reply) => reply.status);

      // GitHub: the delivery id, or (without one) the body, identifies a delivery.
      const github = JSON.stringify({ action: "opened", n: 1 });
      const githubHeaders = { "x-hub-signature-256": `sha256=${hmac(github)}`, "x-github-delivery": "d-1" };
      expect(await send("github", github, githubHeaders)).toBe(202);
      expect(await send("github", github, githubHeaders)).toBe(409);
      const anonymous = JSON.stringify({ action: "closed" });
      expect(await send("github", anonymous, { "x-hub-signature-256": `sha256=${hmac(anonymous)}` })).toBe(
        202,
      );
      expect(await send("github", anonymous, { "x-hub-signature-256": `sha256=${hmac(anonymous)}` })).toBe(
        409,
      );
      expect(await jobs()).toBe(2);

      // Stripe: t= is signed with the body; the event's id identifies it.
      const stripe = JSON.stringify({ id: "evt_1", type: "charge.succeeded" });
      const stripeSigned = (t: number, body = stripe) => ({
        "stripe-signature": `t=${t},v1=${hmac(`${t}.${body}`)}`,
      });
      const now = seconds();
      expect(await send("stripe", stripe, stripeSigned(now))).toBe(202);
      expect(await send("stripe", stripe, stripeSigned(now))).toBe(409);
      expect(await send("stripe", stripe, stripeSigned(now + 1))).toBe(409);
      const old = JSON.stringify({ id: "evt_2", type: "charge.succeeded" });
      expect(await send("stripe", old, stripeSigned(now - 600, old))).toBe(409);
      expect(await send("stripe", stripe, { "stripe-signature": `t=${now},v1=${"0".repeat(64)}` })).toBe(401);
      expect(await jobs()).toBe(3);

      // Slack: v0:TIMESTAMP:BODY is signed; the body identifies a delivery within the window.
      const slack = "token=x&command=%2Fdeploy";
      const slackSigned = (t: number) => ({
        "x-slack-request-timestamp": String(t),
        "x-slack-signature": `v0=${hmac(`v0:${t}:${slack}`)}`,
      });
      expect(await send("slack", slack, slackSigned(now))).toBe(202);
      expect(await send("slack", slack, slackSigned(now))).toBe(409);
      expect(await send("slack", slack, slackSigned(now - 301))).toBe(409);
      expect(await send("slack", slack, { ...slackSigned(now), "x-slack-signature": "v0=00" })).toBe(401);
      expect(await jobs()).toBe(4);
    } finally {
      await hooks.close();
    }
  });
});

describe("access", () => {
  it("refuses requests a web page could make through the browser", async () => {
    const rebinding = await post(`${server.url}/invoke/echo`, "{}", { host: "attacker.example:9000" });
    expect(rebinding.status).toBe(403);
    const crossSite = await post(`${server.url}/invoke/echo`, "{}", { origin: "https://attacker.example" });
    expect(crossSite.status).toBe(403);
  });

  it("needs --allow-remote and a token beyond loopback, and then checks the token, SigV4 included", async () => {
    const machine = await resolveHost();
    await expect(serve({ directory: DIRECTORY, address: "0.0.0.0", port: 0, machine })).rejects.toThrow(
      /--allow-remote/,
    );
    await expect(
      serve({ directory: DIRECTORY, address: "0.0.0.0", allowRemote: true, port: 0, machine }),
    ).rejects.toThrow(/needs a token/);
    const remote = await serve({
      directory: DIRECTORY,
      address: "0.0.0.0",
      allowRemote: true,
      token: "s3cret-token",
      port: 0,
      pool: 0,
      stateDirectory: join(state, "remote"),
      machine,
      schedules: false,
    });
    try {
      const url = `http://127.0.0.1:${remote.port}`;
      expect((await post(`${url}/invoke/echo`, "{}")).status).toBe(401);
      expect((await post(`${url}/invoke/echo`, "{}", { authorization: "Bearer wrong" })).status).toBe(401);
      expect((await post(`${url}/invoke/echo`, "{}", { authorization: "Bearer s3cret-token" })).status).toBe(
        200,
      );
      const signed = await lambdaClient(url, "s3cret-token").send(
        new InvokeCommand({ FunctionName: "echo", Payload: "{}" }),
      );
      expect(signed.StatusCode).toBe(200);
      await expect(
        lambdaClient(url, "wrong-secret").send(new InvokeCommand({ FunctionName: "echo", Payload: "{}" })),
      ).rejects.toMatchObject({ $metadata: { httpStatusCode: 401 } });
    } finally {
      await remote.close();
    }
  });
});

describe("tokens", () => {
  const token = "s3cret-token";
  let remote: FnrunServer;
  let url: string;

  beforeAll(async () => {
    remote = await serve({
      directory: DIRECTORY,
      address: "0.0.0.0",
      allowRemote: true,
      token,
      port: 0,
      pool: 0,
      maxConnectionsPerClient: 8,
      maxBodyBytesPerClient: 8 * 1024 * 1024,
      stateDirectory: join(state, "tokens"),
      machine: await resolveHost(),
      schedules: false,
    });
    url = `http://127.0.0.1:${remote.port}`;
  });
  afterAll(() => remote.close());

  function get(path: string, headers: Record<string, string> = {}): Promise<Reply> {
    return new Promise((resolve, reject) => {
      httpRequest(`${url}${path}`, { headers }, (response) => {
        let text = "";
        response.on("data", (chunk) => (text += chunk));
        response.on("end", () =>
          resolve({ status: response.statusCode ?? 0, headers: response.headers, body: text }),
        );
      })
        .on("error", reject)
        .end();
    });
  }

  it("takes the dashboard's ?token= once, for an HttpOnly cookie, and sends the browser on without it", async () => {
    expect((await get("/_fnrun/?token=wrong")).status).toBe(401);
    expect((await get(`/_fnrun/?token=${token.slice(0, -1)}`)).status).toBe(401);
    const exchanged = await get(`/_fnrun/?token=${token}&view=queue`);
    expect(exchanged.status).toBe(303);
    expect(exchanged.headers.location).toBe("/_fnrun/?view=queue");
    const cookie = String(exchanged.headers["set-cookie"]);
    expect(cookie).toMatch(/^fnrun_token=[^;]+; HttpOnly; SameSite=Strict; Path=\//);
    expect(cookie).not.toContain(token);
    const page = await get("/_fnrun/", { cookie: cookie.split(";")[0] as string });
    expect(page.status).toBe(200);
    expect(page.body).not.toContain(token);
  });

  it("refuses a request without the token before reading its body", async () => {
    const started = Date.now();
    const reply = await new Promise<Reply>((resolve, reject) => {
      const request = httpRequest(
        `${url}/invoke/echo`,
        {
          method: "POST",
          headers: { "content-length": String(100 * 1024 * 1024), authorization: "Bearer wrong" },
        },
        (response) => {
          response.resume();
          response.on("end", () =>
            resolve({ status: response.statusCode ?? 0, headers: response.headers, body: "" }),
          );
        },
      );
      request.on("error", reject);
      // A few bytes of the 100 MB it announced, and then nothing.
      request.write("x".repeat(1024));
    });
    expect(reply.status).toBe(401);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("bounds one client's connections and the request bytes it has in flight", async () => {
    const { connect } = await import("node:net");
    const sockets = await Promise.all(
      Array.from(
        { length: 12 },
        () =>
          new Promise<import("node:net").Socket>((resolve) => {
            const socket = connect(remote.port, "127.0.0.1", () => resolve(socket));
            socket.on("error", () => {});
          }),
      ),
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    const open = sockets.filter((socket) => !socket.destroyed && socket.readyState === "open").length;
    for (const socket of sockets) socket.destroy();
    expect(open).toBeLessThanOrEqual(8);
    await new Promise((resolve) => setTimeout(resolve, 300));

    // Three 5 MB uploads at once, authenticated: the third would pass 8 MB in flight.
    const body = JSON.stringify({ blob: "b".repeat(5 * 1024 * 1024) });
    const statuses = await Promise.all(
      [0, 1, 2].map(() =>
        post(`${url}/invoke/echo`, body, { authorization: `Bearer ${token}` }).then((reply) => reply.status),
      ),
    );
    expect(statuses.filter((status) => status === 429).length).toBeGreaterThanOrEqual(1);
  });
});

describe("concurrency", () => {
  it("lets a bounded number wait and answers 429 beyond, and keeps a function to its own limit", async () => {
    const machine = await resolveHost();
    /** A server that runs one invocation at a time and lets `maxWaiting` wait. */
    const oneAtATime = (name: string, maxWaiting: number) =>
      serve({
        directory: DIRECTORY,
        port: 0,
        pool: 0,
        maxConcurrency: 1,
        maxWaiting,
        stateDirectory: join(state, name),
        machine,
        schedules: false,
      });
    const tight = await oneAtATime("tight", 1);
    try {
      const replies = await Promise.all(
        ["a", "b", "c"].map((tag, index) =>
          new Promise((resolve) => setTimeout(resolve, index * 150)).then(() =>
            post(`${tight.url}/invoke/slow`, JSON.stringify({ ms: 2500, tag })),
          ),
        ),
      );
      expect(replies.map((reply) => reply.status).sort()).toEqual([200, 200, 429]);
      const refused = replies.find((reply) => reply.status === 429);
      expect(refused?.headers["x-amzn-errortype"]).toBe("TooManyRequestsException");
    } finally {
      await tight.close();
    }

    // A long line of waiters is normal load, not a listener leak: no warning for it.
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on("warning", onWarning);
    const queued = await oneAtATime("queued", 16);
    try {
      const replies = await Promise.all(
        Array.from({ length: 12 }, () => post(`${queued.url}/invoke/echo`, "{}")),
      );
      expect(replies.map((reply) => reply.status)).toEqual(Array.from({ length: 12 }, () => 200));
      expect(warnings).not.toContain("MaxListenersExceededWarning");
    } finally {
      process.off("warning", onWarning);
      await queued.close();
    }

    // config.concurrency = 1: two at once run one after the other.
    const started = Date.now();
    const both = await Promise.all([
      post(`${server.url}/invoke/limited`, "{}"),
      post(`${server.url}/invoke/limited`, "{}"),
    ]);
    expect(both.map((reply) => reply.status)).toEqual([200, 200]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(3000);
  });

  it("drains on close: an invocation in flight still gets its result", async () => {
    const machine = await resolveHost();
    const draining = await serve({
      directory: DIRECTORY,
      port: 0,
      pool: 0,
      stateDirectory: join(state, "draining"),
      machine,
      schedules: false,
    });
    const pending = post(`${draining.url}/invoke/slow`, JSON.stringify({ ms: 3000, tag: "in flight" }));
    // Close while the handler runs (a snapshot start takes ~0.5 s, the handler 3 s).
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await draining.close();
    const reply = await pending;
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.body)).toEqual({ done: true, tag: "in flight" });
  });
});
