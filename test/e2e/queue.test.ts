// The durable queue: nothing accepted is lost when the server is SIGKILLed;
// retries and the dead-letter list; and the same on Redis with two workers.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signPortable, toPortable } from "../../src/build/artifact.ts";
import { bundleFunction } from "../../src/build/bundle.ts";
import { resolveHost } from "../../src/host/setup.ts";
import { openStateDatabase, SqliteQueue } from "../../src/jobs/queue-sqlite.ts";
import { serve } from "../../src/serve/server.ts";
import { expectNothingLeftBehind, qemuProcesses, runCli } from "./helpers.ts";

const DIRECTORY = resolve("test/fixtures/served");
const CLI = resolve("bin/fnrun.js");
let state: string;

beforeAll(() => {
  state = mkdtempSync(join(tmpdir(), "fnrun-test-queue-"));
  process.env.FNRUN_STATE_DIR = join(state, "history");
});

afterAll(async () => {
  rmSync(state, { recursive: true, force: true });
  await expectNothingLeftBehind(expect);
});

function freePort(): Promise<number> {
  return new Promise((resolvePort) => {
    const probe = createServer();
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolvePort(port));
    });
  });
}

function invokeEvent(port: number, name: string, event: unknown): Promise<number> {
  return new Promise((resolveStatus, reject) => {
    const request = httpRequest(
      `http://127.0.0.1:${port}/2015-03-31/functions/${name}/invocations`,
      { method: "POST", headers: { "x-amz-invocation-type": "Event" } },
      (response) => {
        response.resume();
        response.on("end", () => resolveStatus(response.statusCode ?? 0));
      },
    );
    request.on("error", reject);
    request.end(JSON.stringify(event));
  });
}

/** `fnrun ARGS`, started as users start it (bin/fnrun.js itself); `env` adds to this process's (undefined: removes). */
function startProcess(args: string[], cwd = process.cwd(), env: NodeJS.ProcessEnv = {}): ChildProcess {
  return spawn(CLI, args, {
    cwd,
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, ...env },
  });
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolveWait) => setTimeout(resolveWait, 200));
  }
}

async function waitForListening(port: number): Promise<void> {
  await until("the server to listen", async () => {
    try {
      const status = await invokeEvent(port, "no-such-function", {});
      return status === 404 ? true : undefined;
    } catch {
      return undefined;
    }
  });
}

describe("the embedded SQLite queue", () => {
  it("loses no accepted event when the server is SIGKILLed mid-work: they all run after a restart", async () => {
    const stateDirectory = join(state, "killed");
    const port = await freePort();
    const args = [
      "serve",
      DIRECTORY,
      "--port",
      String(port),
      "--state-dir",
      stateDirectory,
      "--pool",
      "0",
      "--no-schedules",
    ];
    const first = startProcess(args);
    await waitForListening(port);
    const tags = ["one", "two", "three", "four", "five", "six"];
    for (const tag of tags) expect(await invokeEvent(port, "slow", { ms: 1500, tag })).toBe(202);
    // Some jobs are running now (their VMs too): kill everything without warning.
    await new Promise((resolveWait) => setTimeout(resolveWait, 1500));
    first.kill("SIGKILL");
    await new Promise((resolveExit) => first.once("exit", resolveExit));
    // QEMU dies with the process that started it (parent-death signal).
    await until(
      "the killed server's VMs to go",
      async () => (qemuProcesses().length === 0 ? true : undefined),
      10_000,
    );

    const second = startProcess(args);
    try {
      const database = await openStateDatabase(join(stateDirectory, "state.db"));
      const queue = new SqliteQueue(database);
      const done = await until("every accepted event to run", async () => {
        const finished = await queue.list(["done"], 100);
        const seen = new Set(finished.map((job) => JSON.parse(job.result ?? "{}").tag));
        return tags.every((tag) => seen.has(tag)) ? finished : undefined;
      });
      expect(done.length).toBeGreaterThanOrEqual(tags.length);
      expect(await queue.list(["dead"])).toEqual([]);
      database.close();
    } finally {
      second.kill("SIGTERM");
      await new Promise((resolveExit) => second.once("exit", resolveExit));
    }
  });

  it("retries a failing event with backoff, then dead-letters it; the CLI lists, replays and purges", async () => {
    const stateDirectory = join(state, "retries");
    const server = await serve({
      directory: DIRECTORY,
      port: 0,
      pool: 0,
      retryBaseMs: 200,
      stateDirectory,
      machine: await resolveHost(),
      schedules: false,
    });
    try {
      expect(await invokeEvent(server.port, "fails", { reason: "retries" })).toBe(202);
      const dead = await until(
        "the job to be dead-lettered",
        async () => (await server.queue.list(["dead"]))[0],
      );
      expect(dead).toMatchObject({ functionName: "fails", attempts: 3, maxAttempts: 3, trigger: "http" });
      expect(JSON.parse(dead.lastError ?? "{}").errorMessage).toBe("failing on purpose: retries");
      const failures = server.history.list(20, "fails").filter((record) => record.event.includes("retries"));
      expect(failures.length).toBe(3);

      const listed = await runCli(["queue", "ls", "--state", "dead", "--state-dir", stateDirectory]);
      expect(listed.code).toBe(0);
      expect(listed.stdout).toMatch(new RegExp(`^${dead.id}\\tdead\\tfails\\thttp\\t`, "m"));
      const shown = await runCli(["queue", "show", dead.id, "--state-dir", stateDirectory]);
      expect(JSON.parse(shown.stdout)).toMatchObject({ id: dead.id, state: "dead" });
      const replayed = await runCli(["queue", "replay", dead.id, "--state-dir", stateDirectory]);
      const newId = replayed.stdout.trim();
      expect(newId).not.toBe(dead.id);
      expect((await server.queue.get(newId))?.trigger).toBe("replay");
      await until("the replay to die too", async () =>
        (await server.queue.get(newId))?.state === "dead" ? true : undefined,
      );
      const purged = await runCli(["queue", "purge", "--state-dir", stateDirectory]);
      expect(purged.stderr).toContain("removed 2 dead-lettered job(s)");
      expect(await server.queue.list(["dead"])).toEqual([]);
    } finally {
      await server.close();
    }
  });
});

describe("a claim on a job is fenced", () => {
  it("refuses the settle of a worker that was stopped past its lease while another ran the job", async () => {
    const path = join(state, "fenced.db");
    const database = await openStateDatabase(path);
    const queue = new SqliteQueue(database, { leaseMs: 1200, pollMs: 20 });
    const id = await queue.enqueue({ functionName: "any", event: "{}", trigger: "queue" });
    const stalled = spawn(process.execPath, ["test/fixtures/queue/slow-worker.mjs", path, "1200"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let output = "";
    stalled.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    try {
      await until("the first worker to take the job", async () =>
        output.includes("started") ? true : undefined,
      );
      // Suspended past its lease (as a laptop lid closing, or a long GC pause), its claim runs out.
      stalled.kill("SIGSTOP");
      await new Promise((resolveWait) => setTimeout(resolveWait, 2000));
      let ranHere = 0;
      queue.work(async () => {
        ranHere++;
        return { ok: true, detail: '"from the second worker"' };
      }, 1);
      await until("the second worker to finish the job", async () =>
        (await queue.get(id))?.state === "done" ? true : undefined,
      );
      stalled.kill("SIGCONT");
      await until("the stalled worker to finish its run", async () =>
        output.includes("finished") ? true : undefined,
      );
      await new Promise((resolveWait) => setTimeout(resolveWait, 300));
      expect(ranHere).toBe(1);
      expect(await queue.get(id)).toMatchObject({
        state: "done",
        result: '"from the second worker"',
        attempts: 2,
      });
      expect(output).toContain("finished, claim lost");
      expect(output).toMatch(/notice: .*job .* settle refused/);
    } finally {
      stalled.kill("SIGCONT");
      stalled.kill("SIGTERM");
      await new Promise((resolveExit) => stalled.once("exit", resolveExit));
      await queue.close();
      database.close();
    }
  });
});

function startRedis(extra: string[] = []): { port: Promise<number>; stop: () => void } {
  let stop = () => {};
  const port = freePort().then(async (chosen) => {
    const redis = spawn(
      "redis-server",
      ["--port", String(chosen), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", ...extra],
      { stdio: "ignore" },
    );
    stop = () => redis.kill("SIGTERM");
    await new Promise((resolveWait) => setTimeout(resolveWait, 500));
    return chosen;
  });
  return { port, stop: () => stop() };
}

describe("a worker runs only what its operator allowed", () => {
  const key = "signing-key-for-tests-0123456789";

  it("refuses a job written straight into Redis that shares a host folder, and a signed one asking for more than its allow-list", async () => {
    const redis = startRedis();
    const url = `redis://127.0.0.1:${await redis.port}`;
    const victim = mkdtempSync(join(tmpdir(), "fnrun-test-victim-"));
    const allowed = mkdtempSync(join(tmpdir(), "fnrun-test-allowed-"));
    const { Queue } = await import("bullmq");
    const queue = new Queue("fnrun", { connection: { host: "127.0.0.1", port: await redis.port } });
    const workers: ChildProcess[] = [];
    try {
      const bundle = await bundleFunction("test/fixtures/queue/writes-host.ts");
      // What anyone who can write to Redis can queue: the bundle, with a config asking for any host folder.
      const forged = { ...toPortable(bundle), config: { mounts: [`${victim}:/mnt/h:rw`] } };
      const job = await queue.add(
        "writes-host",
        {
          functionName: "writes-host",
          event: "{}",
          trigger: "queue",
          artifact: forged,
        },
        { attempts: 3 },
      );
      workers.push(
        spawn(process.execPath, [CLI, "worker", "--queue", url], {
          cwd: tmpdir(),
          stdio: ["ignore", "ignore", "pipe"],
          env: { ...process.env, FNRUN_SIGNING_KEY: key },
        }),
      );
      const settled = async (id: string) =>
        until("the job to settle", async () => {
          const state = await queue.getJobState(id);
          return state === "completed" || state === "failed" ? await queue.getJob(id) : undefined;
        });
      const refused = await settled(job.id as string);
      expect(existsSync(join(victim, "pwned.txt"))).toBe(false);
      expect(refused?.failedReason).toMatch(/not signed|signature/);
      expect(refused?.attemptsMade).toBe(1);

      // Signed by the operator's key, but asking for a folder this worker does not give: refused too.
      const signed = signPortable(
        toPortable({
          ...bundle,
          config: { mounts: [{ source: victim, target: "/mnt/h", readOnly: false }] },
        }),
        key,
      );
      const asking = await queue.add("writes-host", {
        functionName: "writes-host",
        event: "{}",
        trigger: "queue",
        artifact: signed,
      });
      expect((await settled(asking.id as string))?.failedReason).toMatch(/\/mnt\/h.*not allowed|allow-mount/);
      expect(existsSync(join(victim, "pwned.txt"))).toBe(false);

      // A worker whose operator gives /mnt/h: the job gets the worker's folder, never the one it named.
      const first = workers.shift() as ChildProcess;
      first.kill("SIGTERM");
      await new Promise((done) => (first.exitCode !== null ? done(null) : first.once("exit", done)));
      workers.push(
        spawn(process.execPath, [CLI, "worker", "--queue", url, "--allow-mount", `${allowed}:/mnt/h:rw`], {
          cwd: tmpdir(),
          stdio: ["ignore", "ignore", "pipe"],
          env: { ...process.env, FNRUN_SIGNING_KEY: key },
        }),
      );
      const given = await queue.add("writes-host", {
        functionName: "writes-host",
        event: "{}",
        trigger: "queue",
        artifact: signed,
      });
      expect(await queue.getJobState((await settled(given.id as string))?.id as string)).toBe("completed");
      expect(existsSync(join(allowed, "pwned.txt"))).toBe(true);
      expect(existsSync(join(victim, "pwned.txt"))).toBe(false);
    } finally {
      for (const worker of workers) worker.kill("SIGTERM");
      await Promise.all(
        workers.map(
          (worker) =>
            new Promise((done) => (worker.exitCode !== null ? done(null) : worker.once("exit", done))),
        ),
      );
      await queue.close();
      redis.stop();
      rmSync(victim, { recursive: true, force: true });
      rmSync(allowed, { recursive: true, force: true });
    }
  });
});

describe("Redis over TLS, as an ACL user", () => {
  it("works through rediss:// with a user and password, never shows the password, and says when Redis goes", async () => {
    const certs = mkdtempSync(join(tmpdir(), "fnrun-test-tls-"));
    const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: certs, stdio: "ignore" });
    openssl(
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "2",
      "-subj",
      "/CN=fnrun test CA",
    );
    openssl(
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "server.key",
      "-out",
      "server.csr",
      "-subj",
      "/CN=localhost",
    );
    writeFileSync(join(certs, "ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
    openssl(
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "server.pem",
      "-days",
      "2",
      "-extfile",
      "ext",
    );
    const tlsPort = await freePort();
    const password = "acl-pass-7c1e9a";
    const redis = startRedis([
      "--port",
      "0",
      "--tls-port",
      String(tlsPort),
      "--tls-cert-file",
      join(certs, "server.pem"),
      "--tls-key-file",
      join(certs, "server.key"),
      "--tls-ca-cert-file",
      join(certs, "ca.pem"),
      "--tls-auth-clients",
      "no",
      "--user",
      "default",
      "off",
      "--user",
      "fnrun",
      "on",
      `>${password}`,
      "~*",
      "&*",
      "+@all",
    ]);
    await redis.port;
    const url = `rediss://fnrun:${password}@localhost:${tlsPort}`;
    const previousCa = process.env.FNRUN_REDIS_CA;
    const { RedisQueue } = await import("../../src/jobs/queue-redis.ts");
    let worker: ChildProcess | undefined;
    try {
      // Without trusting the server's CA: refused, and the message says what to check.
      delete process.env.FNRUN_REDIS_CA;
      const untrusted = await RedisQueue.connect(url).then(
        () => "connected",
        (error: Error) => error.message,
      );
      expect(untrusted).toMatch(/certificate|FNRUN_REDIS_CA/);
      expect(untrusted).not.toContain(password);
      process.env.FNRUN_REDIS_CA = join(certs, "ca.pem");
      const wrong = await RedisQueue.connect(url.replace(password, "not-the-password")).then(
        () => "connected",
        (error: Error) => error.message,
      );
      expect(wrong).toMatch(/WRONGPASS|invalid username-password/i);
      expect(wrong).not.toContain("not-the-password");
      expect(wrong).toContain("fnrun:***@");

      const queue = await RedisQueue.connect(url);
      const bundle = await bundleFunction("test/fixtures/served/echo.ts");
      const id = await queue.enqueue({
        functionName: "echo",
        event: JSON.stringify({ over: "tls" }),
        trigger: "queue",
        artifact: signPortable(toPortable(bundle), "signing-key-for-tests-0123456789"),
      });
      let stderr = "";
      // The worker, started as a command (Node without NODE_EXTRA_CA_CERTS: bin/fnrun.js),
      // trusts the CA through that variable alone.
      worker = startProcess(["worker", "--queue", url], tmpdir(), {
        FNRUN_REDIS_CA: undefined,
        NODE_EXTRA_CA_CERTS: join(certs, "ca.pem"),
        FNRUN_SIGNING_KEY: "signing-key-for-tests-0123456789",
      });
      worker.stderr?.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      const done = await until("the job to be done over TLS", async () => {
        const job = await queue.get(id);
        return job?.state === "done" ? job : undefined;
      });
      expect(JSON.parse(done.result ?? "{}").result).toMatchObject({ event: { over: "tls" } });
      await queue.close();
      // Redis goes away: the worker says so (without the password), instead of keeping quiet.
      redis.stop();
      await until(
        "the worker to report Redis's absence",
        async () => (/fnrun: Redis \(localhost:\d+\): /.test(stderr) ? true : undefined),
        30_000,
      );
      expect(stderr).not.toContain(password);
    } finally {
      if (previousCa === undefined) delete process.env.FNRUN_REDIS_CA;
      else process.env.FNRUN_REDIS_CA = previousCa;
      worker?.kill("SIGTERM");
      if (worker)
        await new Promise((done) => (worker?.exitCode !== null ? done(null) : worker?.once("exit", done)));
      redis.stop();
      rmSync(certs, { recursive: true, force: true });
    }
  });
});

describe("BullMQ on Redis", () => {
  it("shares the jobs of one server between two workers", async () => {
    const redisPort = await freePort();
    const redis = spawn(
      "redis-server",
      ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      {
        stdio: "ignore",
      },
    );
    const url = `redis://127.0.0.1:${redisPort}`;
    const workers: ChildProcess[] = [];
    try {
      await new Promise((resolveWait) => setTimeout(resolveWait, 500));
      const server = await serve({
        directory: DIRECTORY,
        port: 0,
        pool: 0,
        queue: url,
        signingKey: "signing-key-for-tests-0123456789",
        workers: 0,
        stateDirectory: join(state, "redis"),
        machine: await resolveHost(),
        schedules: false,
      });
      try {
        // The workers get no functions directory: they run the bundles the jobs carry.
        for (let i = 0; i < 2; i++)
          workers.push(
            startProcess(["worker", "--queue", url, "--concurrency", "1"], tmpdir(), {
              FNRUN_SIGNING_KEY: "signing-key-for-tests-0123456789",
            }),
          );
        const tags = ["a", "b", "c", "d", "e", "f"];
        for (const tag of tags) expect(await invokeEvent(server.port, "slow", { ms: 800, tag })).toBe(202);
        const done = await until("all jobs to be done", async () => {
          const finished = await server.queue.list(["done"], 100);
          return finished.length >= tags.length ? finished : undefined;
        });
        const details = done.map(
          (job) => JSON.parse(job.result ?? "{}") as { result: { tag: string }; worker: string },
        );
        expect(new Set(details.map((detail) => detail.result.tag))).toEqual(new Set(tags));
        expect(new Set(details.map((detail) => detail.worker)).size).toBe(2);

        // A failing job is retried by the workers and lands in BullMQ's failed set.
        expect(await invokeEvent(server.port, "fails", { reason: "redis" })).toBe(202);
        const dead = await until(
          "the failing job to be dead-lettered",
          async () => (await server.queue.list(["dead"]))[0],
        );
        expect(dead).toMatchObject({ functionName: "fails", attempts: 3 });
        const listed = await runCli(["queue", "ls", "--state", "dead", "--queue", url]);
        expect(listed.stdout).toContain(`${dead.id}\tdead\tfails`);
      } finally {
        await server.close();
      }
    } finally {
      for (const worker of workers) worker.kill("SIGTERM");
      await Promise.all(
        workers.map((worker) => new Promise((resolveExit) => worker.once("exit", resolveExit))),
      );
      redis.kill("SIGTERM");
    }
  });
});
