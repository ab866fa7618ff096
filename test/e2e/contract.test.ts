// The function contract (docs/functions.md), each part in a real VM.

import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { resolveHost } from "../../src/host/setup.ts";
import { ExitCode, invoke, serve } from "../../src/index.ts";
import { TRUNCATION_MARKER } from "../../src/vm/log-collector.ts";
import { expectNothingLeftBehind, runCli, runCliProcess, withPeerHost } from "./helpers.ts";

const FORMS = "test/fixtures/contract/forms.ts";
/** A project laid out as Lambda's: the function under functions/, fnrun run from its root. */
const functionsTree = mkdtempSync(join(tmpdir(), "fnrun-handler-"));
mkdirSync(join(functionsTree, "functions"));
copyFileSync("test/fixtures/lambda/nestedHandler.js", join(functionsTree, "functions", "nestedHandler.cjs"));
const FAILURES = "test/fixtures/contract/failures.ts";

afterAll(async () => {
  rmSync(functionsTree, { recursive: true, force: true });
  await expectNothingLeftBehind(expect);
});

function failure(promise: Promise<unknown>) {
  return promise.then(
    () => {
      throw new Error("expected the invocation to fail");
    },
    (error: unknown) => error as Record<string, unknown>,
  );
}

describe.concurrent("handler forms", () => {
  it("async, callback, callback error, context.succeed and a plain return, selected with --handler", async () => {
    const results = await Promise.all([
      invoke(FORMS, { event: { value: 1 } }),
      invoke(FORMS, { event: { value: 2 }, handler: "withCallback" }),
      invoke(FORMS, { handler: "legacySucceed" }),
      invoke(FORMS, { handler: "forms.synchronous" }),
    ]);
    expect(results.map((run) => run.result)).toEqual([
      { form: "async", value: 1 },
      { form: "callback", value: 2 },
      { form: "context.succeed" },
      { form: "sync" },
    ]);
    const error = await failure(invoke(FORMS, { handler: "callbackError" }));
    expect(error).toMatchObject({
      name: "FunctionError",
      errorType: "RangeError",
      errorMessage: "out of range",
    });
  });

  it("a handler that never calls back ends with null once it has nothing left to do; one that keeps a timer, at its timeout", async () => {
    const [nothing, never] = await Promise.all([
      invoke(FORMS, { handler: "returnsNothing", timeout: 60 }),
      invoke(FORMS, { handler: "neverCallsBack", timeout: 60 }),
    ]);
    expect(nothing.result).toBeNull();
    expect(nothing.logs).toContain("the last timer ran");
    expect(never.result).toBeNull();
    const error = await failure(invoke(FORMS, { handler: "keepsAnInterval", timeout: 1 }));
    expect(error).toMatchObject({ name: "TimeoutError" });
  });

  it("export default, CommonJS, and a clear error for a missing export", async () => {
    const [fromDefault, fromCommonJs] = await Promise.all([
      invoke("test/fixtures/contract/default-export.ts", { event: { who: "Ada" } }),
      invoke("test/fixtures/contract/commonjs.cjs", { event: { n: 1 } }),
    ]);
    expect(fromDefault.result).toBe("default export greets Ada");
    expect(fromCommonJs.result).toEqual({ form: "commonjs", echo: { n: 1 } });
    const run = await runCli(["invoke", FORMS, "--handler", "nope"]);
    expect(run.code).toBe(ExitCode.handlerNotFound);
    expect(run.stderr).toContain("Runtime.HandlerNotFound: forms.nope is undefined or not exported");
    expect((await runCli(["invoke", FORMS, "--handler", "src/other.handler"])).stderr).toContain(
      "names the module src/other, but the function is forms",
    );
  });
});

describe.concurrent("handler strings, as Lambda reads them", () => {
  const NESTED = "test/fixtures/lambda/nestedHandler.js";

  it("calls a nested PATH in FILE's exports, and MODULE.PATH with no FILE, found here or under functions/", async () => {
    const [withFile, asLambda, fromFunctions] = await Promise.all([
      runCli(["invoke", NESTED, "--handler", "nested.somethingComplex.handler"]),
      runCliProcess(["invoke", "--handler", "nestedHandler.nested.somethingComplex.handler"], {
        cwd: "test/fixtures/lambda",
      }),
      runCliProcess(
        ["invoke", "--handler", "nestedHandler.nested.somethingComplex.handler", "--start", "boot"],
        {
          cwd: functionsTree,
        },
      ),
    ]);
    for (const run of [withFile, asLambda, fromFunctions]) {
      expect({ code: run.code, stdout: run.stdout }).toEqual({
        code: 0,
        stdout: '"something interesting"\n',
      });
    }
  });

  it("answers a path that names nothing, or no function, with Runtime.HandlerNotFound and its own exit code", async () => {
    const [missing, notAFunction, noModule] = await Promise.all([
      runCli(["invoke", NESTED, "--handler", "nested.somethingSimple.handler"]),
      runCli(["invoke", NESTED, "--handler", "nested.somethingComplex", "--json"]),
      runCliProcess(["invoke", "--handler", "elsewhere.handler"], { cwd: "test/fixtures/lambda" }),
    ]);
    expect(missing.code).toBe(ExitCode.handlerNotFound);
    expect(missing.stderr).toContain(
      "Runtime.HandlerNotFound: nestedHandler.nested.somethingSimple.handler is undefined or not exported",
    );
    expect(notAFunction.code).toBe(ExitCode.handlerNotFound);
    expect(JSON.parse(notAFunction.stdout).error).toMatchObject({
      errorType: "Runtime.HandlerNotFound",
      errorMessage: "nestedHandler.nested.somethingComplex is not a function (it is an object)",
    });
    expect(noModule.code).toBe(ExitCode.usage);
    expect(noModule.stderr).toContain("no module elsewhere");
  });
});

describe.concurrent("context and environment", () => {
  it("fills the context, counts down to the deadline, and layers env from config, --env-file and --env", async () => {
    const envFile = join(tmpdir(), `fnrun-test-${process.pid}.env`);
    writeFileSync(envFile, "# comment\nFROM_FILE=file\nexport OVERRIDDEN='file'\n");
    const run = await runCli([
      "invoke",
      "test/fixtures/contract/context.ts",
      "--env-file",
      envFile,
      "--env",
      "FROM_FLAG=flag",
      "--env",
      "OVERRIDDEN=flag",
      "--json",
    ]).finally(() => rmSync(envFile, { force: true }));
    expect(run.code).toBe(ExitCode.ok);
    const { result, requestId } = JSON.parse(run.stdout);
    expect(result.awsRequestId).toBe(requestId);
    expect(result.requestId).toBe(requestId);
    expect(result).toMatchObject({
      functionName: "context",
      functionVersion: "$LATEST",
      invokedFunctionArn: "arn:aws:lambda:local:000000000000:function:context",
      // config.memory sets the guest's RAM, and Lambda's string form of it.
      memoryLimitInMB: "192",
      internalVariables: [],
    });
    expect(result.totalMemoryMB).toBeGreaterThan(150);
    expect(result.totalMemoryMB).toBeLessThanOrEqual(192);
    // config.timeout is 7 s: the countdown starts there and really runs.
    expect(result.first).toBeLessThanOrEqual(7000);
    expect(result.first).toBeGreaterThan(5000);
    expect(result.first - result.second).toBeGreaterThanOrEqual(450);
    expect(result.env).toEqual({
      FROM_CONFIG: "config",
      FROM_FILE: "file",
      FROM_FLAG: "flag",
      OVERRIDDEN: "flag",
      AWS_LAMBDA_FUNCTION_NAME: "context",
      AWS_LAMBDA_FUNCTION_VERSION: "$LATEST",
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: "192",
      AWS_LAMBDA_LOG_GROUP_NAME: "/aws/lambda/context",
      AWS_LAMBDA_LOG_STREAM_NAME: requestId,
    });
  });
});

describe.concurrent("errors", () => {
  it("reports non-Error throws, rejections, unhandled rejections, uncaught exceptions and process.exit as function errors", async () => {
    const errors = await Promise.all(
      ["throwsString", "throwsObject", "rejects", "unhandledRejection", "exits", "uncaught"].map((handler) =>
        failure(invoke(FAILURES, { handler })),
      ),
    );
    expect(errors.map((error) => [error.name, error.errorType, error.errorMessage])).toEqual([
      ["FunctionError", "string", "plain string"],
      ["FunctionError", "object", '{"code":42,"reason":"object"}'],
      ["FunctionError", "TypeError", "rejected promise"],
      ["FunctionError", "Runtime.UnhandledPromiseRejection", "nobody awaited me"],
      [
        "FunctionError",
        "Runtime.ExitError",
        expect.stringMatching(/Runtime exited with error: exit status 3$/),
      ],
      ["FunctionError", "SyntaxError", "thrown from a timer"],
    ]);
    expect((errors[2]?.trace as string[] | undefined)?.some((line) => line.includes("failures.ts:"))).toBe(
      true,
    );
    const serialization = await failure(invoke(FAILURES, { handler: "notSerializable" }));
    expect(serialization).toMatchObject({ errorType: "Runtime.SerializationError" });
  });
});

describe.concurrent("limits", () => {
  it("refuses a result over the limit with its own error and exit code", async () => {
    const run = await runCli([
      "invoke",
      FAILURES,
      "--handler",
      "hugeResult",
      "--event",
      '{"bytes":2000000}',
      "--max-result-size",
      "1000000",
    ]);
    expect(run.code).toBe(ExitCode.resultTooLarge);
    expect(run.stderr).toMatch(
      /ResultTooLargeError: Response payload size \(2000002 bytes\) exceeded maximum allowed payload size \(1000000 bytes\)/,
    );
    // Under the default 6 MB limit the same result comes back whole.
    const { resultJson } = await invoke(FAILURES, { handler: "hugeResult", event: { bytes: 2_000_000 } });
    expect(resultJson.length).toBe(2_000_002);
  });

  it("truncates logs at the limit with a marker, and keeps the result", async () => {
    const { logs, logsTruncated, result } = await invoke(FAILURES, {
      handler: "floodsLogs",
      event: { lines: 20_000 },
      maxLogBytes: 100_000,
    });
    expect(result).toBe("done");
    expect(logsTruncated).toBe(true);
    expect(logs.endsWith(TRUNCATION_MARKER)).toBe(true);
    expect(Buffer.byteLength(logs)).toBeLessThanOrEqual(100_000 + TRUNCATION_MARKER.length);
  });

  it("accepts a 6 MB event", async () => {
    const blob = "z".repeat(6 * 1024 * 1024 - 20);
    const { result } = await invoke(FAILURES, { handler: "echoSize", event: { blob } });
    expect(result).toEqual({ length: blob.length });
    await expect(
      invoke(FAILURES, { handler: "echoSize", event: { blob: `${blob}${"z".repeat(100)}` } }),
    ).rejects.toMatchObject({
      name: "UsageError",
      message: expect.stringMatching(/the limit is 6 MB/),
    });
  });
});

describe.concurrent("network", () => {
  it("has no network device by default", async () => {
    const { result } = await invoke("test/fixtures/contract/network.ts", {
      event: { url: "http://10.0.2.2:9/" },
    });
    expect(result).toEqual({
      interfaces: ["lo"],
      fetched: expect.stringMatching(/^failed: (ENETUNREACH|fetch failed)/),
    });
  });

  // slirp hands the guest's connections to its gateway (10.0.2.2) to the host's
  // loopback, where fnrun serve and Redis trust who connects; and the host's own
  // addresses reach it as surely.
  it("keeps a --net function from this host: its loopback (fnrun serve too) and its own addresses", async () => {
    const loopbackOnly = createServer((_request, response) => response.end("a loopback service"));
    const anywhere = createServer((_request, response) => response.end("a service on every address"));
    await new Promise<void>((resolve) => loopbackOnly.listen(0, "127.0.0.1", resolve));
    await new Promise<void>((resolve) => anywhere.listen(0, "0.0.0.0", resolve));
    const served = await serve({
      directory: "test/fixtures/served",
      port: 0,
      pool: 0,
      workers: 0,
      stateDirectory: join(functionsTree, "serve-state"),
      machine: await resolveHost(),
      schedules: false,
    });
    try {
      const loopbackPort = (loopbackOnly.address() as AddressInfo).port;
      const anyPort = (anywhere.address() as AddressInfo).port;
      const hostAddresses = Object.values(networkInterfaces())
        .flat()
        .filter((entry) => entry?.family === "IPv4" && !entry.internal)
        .map((entry) => entry?.address as string);
      const urls = [
        `http://10.0.2.2:${loopbackPort}/`,
        `http://10.0.2.9:${loopbackPort}/`,
        `http://10.0.2.2:${served.port}/_fnrun/api/invocations`,
        ...hostAddresses.map((address) => `http://${address}:${anyPort}/`),
      ];
      const { result, startMode } = await invoke("test/fixtures/contract/network-probe.ts", {
        net: true,
        start: "snapshot",
        // As a page on the host would: fnrun serve takes loopback callers' requests.
        event: { urls, headers: { host: `127.0.0.1:${served.port}` } },
      });
      // A clone, its network plugged in after the restore: the guard holds there too.
      expect(startMode).toBe("snapshot");
      const { interfaces, results } = result as { interfaces: string[]; results: Record<string, string> };
      expect(interfaces).toEqual(["eth0", "lo"]);
      // The dashboard's API (loopback callers are trusted) answered nothing either.
      for (const url of urls) expect(results[url], url).toMatch(/^failed: /);
    } finally {
      await served.close();
      loopbackOnly.close();
      anywhere.close();
    }
  });

  // Outward, the network still works: a peer host (a network namespace, as root) answers.
  it.runIf(process.getuid?.() === 0).each(["boot", "snapshot"] as const)(
    "still reaches other hosts with --net (%s start)",
    async (start) => {
      // Run at once: each its own link and subnet.
      const subnet = start === "boot" ? "10.213.7" : "10.213.8";
      await withPeerHost(start[0] as string, subnet, async ({ peer, hostEnd }) => {
        const { result, startMode } = await invoke("test/fixtures/contract/network-probe.ts", {
          net: true,
          start,
          event: { urls: [`http://${peer}:8080/`, `http://${hostEnd}:8080/`] },
        });
        expect(startMode).toBe(start);
        expect((result as { results: Record<string, string> }).results).toEqual({
          [`http://${peer}:8080/`]: "status 200: hello from a peer",
          // This host's own end of the link is this host.
          [`http://${hostEnd}:8080/`]: expect.stringMatching(/^failed: /),
        });
      });
    },
  );

  // The guard drops frames only beyond what may wait for slirp (net-guard.ts):
  // a bulk transfer still arrives whole.
  it.runIf(process.getuid?.() === 0)("sends 32 MB to another host whole through the guard", async () => {
    await withPeerHost("u", "10.213.10", async ({ peer }) => {
      const { result } = await invoke("test/fixtures/contract/network-upload.ts", {
        net: true,
        event: { url: `http://${peer}:8080/`, megabytes: 32 },
      });
      expect(result).toEqual({ status: 200, received: 32 * 1024 * 1024 });
    });
  });
});

describe("network on clones", () => {
  // The saved VM never had a network card: each clone gets its own, with its own
  // MAC address, no connections or neighbours from the snapshot, and ports drawn
  // from a secret made after its fresh entropy.
  it("gives every --net clone a fresh network identity", async () => {
    const runs = await Promise.all(
      Array.from({ length: 3 }, () =>
        invoke("test/fixtures/contract/network-identity.ts", { net: true, start: "snapshot" }),
      ),
    );
    expect(runs.map((run) => run.startMode)).toEqual(["snapshot", "snapshot", "snapshot"]);
    const identities = runs.map(
      (run) =>
        run.result as {
          mac: string;
          address: string;
          before: { tcp: string[]; arp: string[] };
          sourcePort: number;
        },
    );
    for (const identity of identities) {
      expect(identity.address).toBe("10.0.2.15");
      expect(identity.mac).toMatch(/^02(:[0-9a-f]{2}){5}$/);
      expect(identity.before).toEqual({ tcp: [], arp: [] });
    }
    expect(new Set(identities.map((identity) => identity.mac)).size).toBe(3);
    expect(new Set(identities.map((identity) => identity.sourcePort)).size).toBe(3);
  });
});

describe.concurrent("real-world Lambda handlers, unchanged", () => {
  it("an API Gateway proxy handler", async () => {
    const { result, logs } = await invoke("test/fixtures/lambda/api-gateway.mjs", {
      event: { httpMethod: "POST", path: "/hello", queryStringParameters: null, body: '{"name":"Lin"}' },
    });
    expect(result).toEqual({
      statusCode: 200,
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ message: "Hello, Lin", method: "POST", path: "/hello" }),
    });
    expect(logs).toContain("EVENT:");
  });

  it("an S3-event handler (CommonJS)", async () => {
    const { result, requestId } = await invoke("test/fixtures/lambda/s3-thumbnail.js", {
      event: { Records: [{ s3: { bucket: { name: "photos" }, object: { key: "holiday/beach+day.jpg" } } }] },
    });
    expect(result).toEqual({
      source: "photos/holiday/beach day.jpg",
      destination: "photos-resized/resized-beach day.jpg",
      requestId,
    });
  });

  it("a callback-style handler", async () => {
    const { result } = await invoke("test/fixtures/lambda/callback-style.js", {
      event: {
        items: [
          { price: 2.5, quantity: 4 },
          { price: 1, quantity: 3 },
        ],
      },
    });
    expect(result).toEqual({ total: 13, count: 2, hadTime: true });
  });
});
