// Snapshot starts: one saved VM, many clones, fresh randomness in every one.
import { spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type HostSetup, resolveHost } from "../../src/host/setup.ts";
import { createPool, invoke } from "../../src/index.ts";
import { ensureSnapshot, findSnapshot, memoryOnly, snapshotKey } from "../../src/start/snapshot.ts";
import { cacheRoot } from "../../src/util/cache.ts";
import {
  eventually,
  expectNothingLeftBehind,
  folderDaemons,
  leftoverRamCopies,
  leftoverRunDirectories,
  qemuProcesses,
  runCli,
  runCliProcess,
  withPeerHost,
} from "./helpers.ts";

let host: HostSetup;
const MEMORY = 256;

beforeAll(async () => {
  host = await resolveHost();
  await ensureSnapshot(host, memoryOnly(MEMORY));
});

afterAll(() => expectNothingLeftBehind(expect));

/** Every random source differs between the clones, and each read the host's time, not the snapshot's. */
function expectFreshRandomness(runs: Array<{ result: unknown }>, before: number): void {
  const results = runs.map((run) => run.result as Record<string, string | number>);
  for (const source of [
    "mathRandom",
    "randomBytes",
    "randomUUID",
    "getRandomValues",
    "webcrypto",
    "urandom",
  ]) {
    const values = new Set(results.map((result) => result[source]));
    expect(values.size, `${source} repeated across clones`).toBe(results.length);
  }
  for (const result of results) {
    expect(result.now as number).toBeGreaterThanOrEqual(before - 1000);
    expect(result.now as number).toBeLessThanOrEqual(Date.now() + 1000);
  }
}

describe("snapshot starts", () => {
  it("gives 20 clones of one snapshot 20 different values from every random source, and the true time", async () => {
    const snapshot = await findSnapshot(host, memoryOnly(MEMORY));
    expect(snapshot).toBeDefined();
    const before = Date.now();
    const runs = await Promise.all(
      Array.from({ length: 20 }, () => invoke("test/fixtures/randomness.ts", { start: "snapshot", host })),
    );
    expect(runs.every((run) => run.startMode === "snapshot")).toBe(true);
    // All from the same snapshot: nothing was rebuilt meanwhile.
    expect((await findSnapshot(host, memoryOnly(MEMORY)))?.directory).toBe(snapshot?.directory);
    expectFreshRandomness(runs, before);
  });

  it("gives clones of every other profile (network, shared folder, memory size) fresh randomness too", async () => {
    const folder = mkdtempSync(join(tmpdir(), "fnrun-test-random-folder-"));
    try {
      for (const profile of [{ net: true }, { mounts: [`${folder}:/mnt/data`] }, { memory: 512 }]) {
        const before = Date.now();
        const runs = await Promise.all(
          Array.from({ length: 3 }, () =>
            invoke("test/fixtures/randomness.ts", { ...profile, start: "snapshot", host }),
          ),
        );
        expect(
          runs.map((run) => run.startMode),
          JSON.stringify(profile),
        ).toEqual(["snapshot", "snapshot", "snapshot"]);
        expectFreshRandomness(runs, before);
      }
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  it("starts every clone from the pristine snapshot: no state from one invocation reaches the next", async () => {
    const first = await invoke("test/fixtures/leaves-traces.ts", {
      start: "snapshot",
      host,
      event: { secret: "one" },
    });
    const second = await invoke("test/fixtures/leaves-traces.ts", {
      start: "snapshot",
      host,
      event: { secret: "two" },
    });
    expect(first.result).toEqual({ file: null, global: 0, env: null });
    expect(second.result).toEqual({ file: null, global: 0, env: null });
  });

  it("is the CLI's default, with the restore in the timeline", async () => {
    const run = await runCli(["invoke", "functions/hello.ts", "--event", '{"name":"Clone"}', "--json"]);
    const output = JSON.parse(run.stdout);
    expect(output.result.message).toBe("Hello, Clone!");
    expect(output.startMode).toBe("snapshot");
    const names = output.timeline.map((entry: { name: string }) => entry.name);
    expect(names).toEqual(
      expect.arrayContaining(["qemuSpawn", "restoreStarted", "invocationReceived", "handlerStart", "vmGone"]),
    );
    expect(names).not.toContain("kernelStart");
  });

  it("restores clones with a network, shared folders and another memory size, and lists each profile", async () => {
    const withNet = await invoke("test/fixtures/contract/network.ts", {
      host,
      net: true,
      event: { url: "http://10.0.2.2:9/" },
    });
    expect(withNet.startMode).toBe("snapshot");
    expect(withNet.result).toEqual({
      interfaces: ["eth0", "lo"],
      fetched: expect.stringMatching(/^failed: /),
    });
    const folder = mkdtempSync(join(tmpdir(), "fnrun-test-clone-folder-"));
    try {
      writeFileSync(join(folder, "greeting.txt"), "from the host's folder\n");
      const mounts = [`${folder}:/mnt/data`];
      /** `fnrun invoke FILE --mount FOLDER --start snapshot ...FLAGS --json`, which must succeed. */
      const onClone = async (file: string, ...flags: string[]) => {
        const run = await runCli([
          "invoke",
          file,
          "--mount",
          `${folder}:/mnt/data`,
          "--start",
          "snapshot",
          ...flags,
          "--json",
        ]);
        expect(run.code, run.stderr).toBe(0);
        return JSON.parse(run.stdout);
      };
      // A profile of its own (one folder device), made once and then restored.
      expect(await onClone("test/fixtures/mounts/reads-greeting.ts")).toMatchObject({
        startMode: "snapshot",
        result: "from the host's folder\n",
      });
      // With a network too: the card goes on the transport after the folder's.
      expect(
        await onClone(
          "test/fixtures/contract/network.ts",
          "--net",
          "--event",
          '{"url":"http://10.0.2.2:9/"}',
        ),
      ).toMatchObject({ startMode: "snapshot", result: { interfaces: ["eth0", "lo"] } });
      // Without the QEMU that can restore folders, such invocations boot; --start snapshot says why.
      const { folderQemuPath: _, ...withoutFolderQemu } = host;
      const booted = await invoke("test/fixtures/mounts/reads-greeting.ts", {
        host: withoutFolderQemu,
        mounts,
      });
      expect(booted).toMatchObject({ startMode: "boot", result: "from the host's folder\n" });
      await expect(
        invoke("functions/hello.ts", { host: withoutFolderQemu, mounts, start: "snapshot" }),
      ).rejects.toThrow(
        "--start snapshot: shared folders on clones need a QEMU that can restore vhost-user-fs",
      );
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
    // Another memory size: its own snapshot, made once (here waited for), then restored.
    const bigger = await invoke("functions/hello.ts", { host, memory: 512, start: "snapshot" });
    expect(bigger.startMode).toBe("snapshot");
    const listed = await runCli(["snapshot", "--list", "--json"]);
    expect(listed.code).toBe(0);
    const profiles = JSON.parse(listed.stdout) as Array<{
      memoryMB: number;
      folders: number;
      current: boolean;
      bytes: number;
    }>;
    const current = profiles
      .filter((profile) => profile.current)
      .map((profile) => `${profile.memoryMB}+${profile.folders}`);
    expect(current).toEqual(expect.arrayContaining(["256+0", "512+0", "256+1"]));
    for (const profile of profiles) expect(profile.bytes).toBeGreaterThan(0);
    const table = await runCli(["snapshot", "--list"]);
    expect(table.stdout).toMatch(/^memory +folders +function +accel +on disk +last used/);
    expect(table.stdout).toMatch(/\n512 MB +0 +- +tcg /);
    expect(table.stdout).toMatch(/\n256 MB +1 +- +tcg /);
  });
});

describe("fnrun snapshot --prune", () => {
  it("removes the snapshots this host cannot restore, and keeps the others", async () => {
    expect((await invoke("functions/hello.ts", { start: "snapshot" })).startMode).toBe("snapshot");
    // A snapshot of a kernel, runtime or QEMU this host no longer has: its key is no key of now.
    const stale = join(cacheRoot(process.env), "snapshot", "5".repeat(64));
    mkdirSync(stale, { recursive: true });
    writeFileSync(join(stale, "snapshot.json"), JSON.stringify({ memoryMB: 256, folders: 0, accel: "tcg" }));
    writeFileSync(join(stale, "ram"), Buffer.alloc(4096, 1));
    const before = JSON.parse((await runCli(["snapshot", "--list", "--json"])).stdout) as Array<{
      key: string;
      current: boolean;
    }>;
    expect(before.find((profile) => profile.key === "5".repeat(64))?.current).toBe(false);

    const pruned = await runCli(["snapshot", "--prune", "--json"]);
    expect(pruned.code).toBe(0);
    const { removed, kept } = JSON.parse(pruned.stdout) as Record<
      "removed" | "kept",
      Array<{ key: string; current: boolean }>
    >;
    expect(removed.map((profile) => profile.key)).toContain("5".repeat(64));
    expect(removed.every((profile) => !profile.current)).toBe(true);
    expect(kept.map((profile) => profile.key).sort()).toEqual(
      before
        .filter((profile) => profile.current)
        .map((profile) => profile.key)
        .sort(),
    );
    expect(existsSync(stale)).toBe(false);
    // What was kept still restores.
    expect((await invoke("functions/hello.ts", { start: "snapshot" })).startMode).toBe("snapshot");
    const text = await runCli(["snapshot", "--prune"]);
    expect(text.stdout).toMatch(/^removed 0 stale snapshot\(s\), 0 MB; kept \d+, \d+ MB\n$/);
    expect((await runCli(["snapshot", "--prune", "--list"])).code).toBe(2);
  });
});

describe("prestart", () => {
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, ["bin/fnrun.js", ...args], { encoding: "utf8", timeout: 120_000 });
  const timelineOf = (stdout: string): string[] =>
    JSON.parse(stdout).timeline.map((entry: { name: string }) => entry.name);

  it("starts `fnrun invoke` on a clone restored before the CLI loaded, and kills one the invocation cannot use", async () => {
    // A snapshot start leaves the note the next one prestarts from.
    expect(cli("invoke", "functions/hello.ts", "--quiet").status).toBe(0);
    const adopted = cli("invoke", "functions/hello.ts", "--event", '{"name":"Early"}', "--json");
    expect(adopted.status, adopted.stderr).toBe(0);
    expect(JSON.parse(adopted.stdout).result.message).toBe("Hello, Early!");
    expect(timelineOf(adopted.stdout)).toEqual(
      expect.arrayContaining(["qemuSpawn", "restoreStarted", "cloneAdopted", "awake", "invocationReceived"]),
    );
    expect(JSON.parse(adopted.stdout).startMode).toBe("snapshot");

    // Its own config asks for a network: the prestarted clone has none, so it is
    // killed and another restored with one, its result unharmed.
    const other = cli("invoke", "test/fixtures/wants-network.ts", "--json");
    expect(other.status, other.stderr).toBe(0);
    expect(JSON.parse(other.stdout).startMode).toBe("snapshot");
    expect(timelineOf(other.stdout)).not.toContain("cloneAdopted");
    expect(JSON.parse(other.stdout).result.interfaces).toContain("eth0");

    // --net: a clone with a card prestarted from the last --net start's note,
    // with its own MAC address, bound when it woke.
    const withNetwork = (name: string) =>
      cli(
        "invoke",
        "test/fixtures/contract/network.ts",
        "--net",
        "--event",
        `{"url":"http://10.0.2.2:9/${name}"}`,
        "--json",
      );
    expect(withNetwork("note").status).toBe(0);
    const adoptedWithNetwork = withNetwork("adopted");
    expect(adoptedWithNetwork.status, adoptedWithNetwork.stderr).toBe(0);
    expect(timelineOf(adoptedWithNetwork.stdout)).toContain("cloneAdopted");
    expect(JSON.parse(adoptedWithNetwork.stdout).result).toEqual({
      interfaces: ["eth0", "lo"],
      fetched: expect.stringMatching(/^failed: /),
    });
    // Spawned from one noted command, each such clone still has a card of its own.
    const identities = ["first", "second"].map(() => {
      const run = cli("invoke", "test/fixtures/contract/network-identity.ts", "--net", "--json");
      expect(run.status, run.stderr).toBe(0);
      expect(timelineOf(run.stdout)).toContain("cloneAdopted");
      return JSON.parse(run.stdout).result as { mac: string; before: { tcp: string[]; arp: string[] } };
    });
    for (const identity of identities) expect(identity.before).toEqual({ tcp: [], arp: [] });
    expect(new Set(identities.map((identity) => identity.mac)).size).toBe(2);
    // `--net false` prestarts a clone with a card, but the invocation has no
    // network: that clone is killed, and a plain one restored.
    const plainAfter = cli(
      "invoke",
      "test/fixtures/contract/network.ts",
      "--net",
      "false",
      "--event",
      '{"url":"http://10.0.2.2:9/"}',
      "--json",
    );
    expect(plainAfter.status, plainAfter.stderr).toBe(0);
    expect(timelineOf(plainAfter.stdout)).not.toContain("cloneAdopted");
    expect(JSON.parse(plainAfter.stdout).result.interfaces).toEqual(["lo"]);

    // --mount: a clone prestarted with the folders the command line names,
    // adopted only by an invocation with the very same ones.
    const folders = mkdtempSync(join(tmpdir(), "fnrun-test-prestart-"));
    try {
      for (const name of ["first", "second"]) {
        mkdirSync(join(folders, name));
        writeFileSync(join(folders, name, "greeting.txt"), `from the ${name} folder\n`);
      }
      const reading = (name: string) =>
        cli(
          "invoke",
          "test/fixtures/mounts/reads-greeting.ts",
          "--mount",
          `${join(folders, name)}:/mnt/data`,
          "--json",
        );
      expect(reading("first").status).toBe(0);
      const adoptedWithFolder = reading("first");
      expect(adoptedWithFolder.status, adoptedWithFolder.stderr).toBe(0);
      expect(timelineOf(adoptedWithFolder.stdout)).toContain("cloneAdopted");
      expect(JSON.parse(adoptedWithFolder.stdout).result).toBe("from the first folder\n");
      // Another folder: the clone prestarted for it serves that one.
      const otherFolder = reading("second");
      expect(otherFolder.status, otherFolder.stderr).toBe(0);
      expect(timelineOf(otherFolder.stdout)).toContain("cloneAdopted");
      expect(JSON.parse(otherFolder.stdout).result).toBe("from the second folder\n");
      // A function whose config adds a folder: the clone prestarted with the
      // command line's one is not its VM; it is killed, and one with both restored.
      const withConfig = cli(
        "invoke",
        "test/fixtures/mounts/configured.ts",
        "--mount",
        `${join(folders, "first")}:/mnt/extra`,
        "--json",
      );
      expect(withConfig.status, withConfig.stderr).toBe(0);
      expect(timelineOf(withConfig.stdout)).not.toContain("cloneAdopted");
      expect(JSON.parse(withConfig.stdout).result).toBe("from the config's folder");
    } finally {
      rmSync(folders, { recursive: true, force: true });
    }
    expect(folderDaemons()).toEqual([]);
    expect(leftoverRamCopies()).toEqual([]);

    // --memory: a clone of that size's snapshot, from a note of its own, so that
    // invocations of two sizes in turn each adopt theirs.
    const sized = (...flags: string[]) => cli("invoke", "functions/hello.ts", ...flags, "--json");
    // The first may boot while that size's snapshot is made; the second leaves the note.
    for (let round = 0; round < 2; round++) expect(sized("--memory", "512").status).toBe(0);
    for (const flags of [[], ["--memory", "512"], [], ["--memory=512"]]) {
      const run = sized(...flags);
      expect(run.status, run.stderr).toBe(0);
      expect(timelineOf(run.stdout), flags.join(" ") || "default size").toContain("cloneAdopted");
    }

    // A command line fnrun refuses never gets far: the prestarted clone goes with it.
    const refused = cli("invoke", "functions/hello.ts", "--event", "{not json");
    expect(refused.status).toBe(2);
    expect(qemuProcesses()).toEqual([]);
    expect(leftoverRunDirectories()).toEqual([]);
  });
});

describe("prestart with a network", () => {
  // Outward, a prestarted --net clone's network works (its guard is wired to the
  // QEMU spawned before the CLI loaded), and its guard holds: this host stays out.
  it.runIf(process.getuid?.() === 0)(
    "reaches other hosts, and not this host, from a clone prestarted with a card",
    async () => {
      await withPeerHost("p", "10.213.9", async ({ peer, hostEnd }) => {
        const urls = [`http://${peer}:8080/`, `http://${hostEnd}:8080/`];
        const probe = () =>
          runCliProcess([
            "invoke",
            "test/fixtures/contract/network-probe.ts",
            "--net",
            "--event",
            JSON.stringify({ urls }),
            "--json",
          ]);
        expect((await probe()).code).toBe(0); // leaves the note
        const run = await probe();
        expect(run.code, run.stderr).toBe(0);
        const output = JSON.parse(run.stdout);
        expect(output.timeline.map((entry: { name: string }) => entry.name)).toContain("cloneAdopted");
        expect(output.result.results).toEqual({
          [urls[0] as string]: "status 200: hello from a peer",
          [urls[1] as string]: expect.stringMatching(/^failed: /),
        });
      });
    },
  );
});

describe("function snapshots", () => {
  const cliWith = (env: NodeJS.ProcessEnv, ...args: string[]) =>
    spawnSync(process.execPath, ["bin/fnrun.js", ...args], { encoding: "utf8", timeout: 120_000, env });
  const cli = (...args: string[]) => cliWith(process.env, ...args);
  type InitOnce = { importedAtNs: string; invocations: number; uuid: string; random: number; now: number };
  const parseInvocation = <Result = InitOnce>(run: ReturnType<typeof cli>) => {
    expect(run.status, run.stderr).toBe(0);
    return JSON.parse(run.stdout) as {
      result: Result;
      logs: string;
      startMode: string;
      timeline: Array<{ name: string }>;
    };
  };
  const invokeJson = (...args: string[]) => parseInvocation(cli("invoke", ...args, "--json"));
  // The e2e suite turns automatic function snapshots off (vitest.config.ts); these tests turn them on.
  const automatic = { ...process.env, FNRUN_FUNCTION_SNAPSHOTS: "on" };
  const functionSnapshots = () => {
    const parent = join(cacheRoot(process.env), "function-snapshot");
    return existsSync(parent) ? readdirSync(parent).filter((name) => /^[0-9a-f]{64}$/.test(name)) : [];
  };
  /** Settings no earlier run has used: a version of the function with no marker and no snapshot. */
  const freshVersion = () => ["--env", `TEST_RUN=${randomUUID()}`];

  it("makes a function's own snapshot on its second invocation, in the background; the next ones restore it", async () => {
    const version = freshVersion();
    const invokeAuto = () =>
      parseInvocation(cliWith(automatic, "invoke", "test/fixtures/init-once.ts", ...version, "--json"));
    const before = new Set(functionSnapshots());
    const made = () => functionSnapshots().filter((name) => !before.has(name));
    const first = invokeAuto();
    // Run once: nothing made (a function tried out once costs no extra boot).
    expect(made()).toEqual([]);
    const second = invokeAuto();
    // Made once the second had its result; its process ended once it was saved.
    expect(made()).toHaveLength(1);
    expect(qemuProcesses()).toEqual([]);
    const third = invokeAuto();
    const fourth = invokeAuto();
    for (const run of [first, second, third, fourth]) {
      expect(run.startMode).toBe("snapshot");
      expect(run.result.invocations).toBe(1);
      expect(run.logs).toBe("initializing\n");
    }
    // The first two imported the function in their own clones, the next two restored it imported.
    expect(second.result.importedAtNs).not.toBe(first.result.importedAtNs);
    expect(third.result.importedAtNs).not.toBe(second.result.importedAtNs);
    expect(fourth.result.importedAtNs).toBe(third.result.importedAtNs);
    expect(fourth.result.uuid).not.toBe(third.result.uuid);
    expect(fourth.timeline.map((entry) => entry.name)).toContain("cloneAdopted");
  });

  it("stops making it when fnrun is interrupted after the result, leaving nothing half-made; a later run makes it", async () => {
    const version = freshVersion();
    const args = ["bin/fnrun.js", "invoke", "test/fixtures/init-once.ts", ...version];
    expect(cliWith(automatic, ...args.slice(1)).status).toBe(0);
    const before = new Set(functionSnapshots());
    const made = () => functionSnapshots().filter((name) => !before.has(name));
    const halfMade = () =>
      readdirSync(join(cacheRoot(process.env), "function-snapshot")).filter((name) =>
        name.startsWith(".building-"),
      );
    const child = spawn(process.execPath, args, { env: automatic, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text));
    child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text));
    const closed = new Promise<number | null>((done) => child.on("close", (code) => done(code)));
    // The result first, then the function snapshot made in the background:
    // interrupted while its VM runs. (Seen by that VM's RAM file, in a
    // half-made entry, not by the progress line, which CI=… turns off.)
    const savingVm = () => qemuProcesses().some((line) => /\/function-snapshot\/\.building-/.test(line));
    await eventually("the background snapshot's VM", () => stdout !== "" && savingVm(), 60_000);
    child.kill("SIGINT");
    expect(await closed).toBe(130);
    expect(JSON.parse(stdout)).toMatchObject({ invocations: 1 });
    // Its VM stopped and its half-written files removed before fnrun exited, not by a later run.
    expect(halfMade()).toEqual([]);
    expect(made()).toEqual([]);
    expect(stderr).not.toContain("no function snapshot");
    await eventually("no QEMU", () => qemuProcesses().length === 0, 5000);
    expect(cliWith(automatic, ...args.slice(1)).status).toBe(0);
    expect(made()).toHaveLength(1);
  });

  it("tries a function whose init phase draws randomness once, says why it has no function snapshot, and never again", async () => {
    const version = freshVersion();
    const before = functionSnapshots();
    const invokeAuto = () => cliWith(automatic, "invoke", "test/fixtures/random-at-init.ts", ...version);
    expect(invokeAuto().status).toBe(0);
    const second = invokeAuto();
    expect(second.status, second.stderr).toBe(0);
    expect(second.stderr).toContain(
      "fnrun: no function snapshot of random-at-init (Runtime.SnapshotError: random-at-init draws randomness in its init phase (crypto.randomUUID)",
    );
    const third = invokeAuto();
    expect(third.status, third.stderr).toBe(0);
    expect(third.stderr).not.toContain("no function snapshot");
    expect(functionSnapshots()).toEqual(before);
    expect(qemuProcesses()).toEqual([]);
  });

  it("makes none with FNRUN_FUNCTION_SNAPSHOTS=off", async () => {
    const version = freshVersion();
    const before = functionSnapshots();
    const off = { ...process.env, FNRUN_FUNCTION_SNAPSHOTS: "off" };
    const runs = [1, 2, 3].map(() =>
      parseInvocation(cliWith(off, "invoke", "test/fixtures/init-once.ts", ...version, "--json")),
    );
    expect(new Set(runs.map((run) => run.result.importedAtNs)).size).toBe(3);
    expect(functionSnapshots()).toEqual(before);
  });

  it("restores clones with the function imported: its init phase ran once, before, and each clone has fresh randomness", async () => {
    const made = cli("snapshot", "test/fixtures/init-once.ts");
    expect(made.status, made.stderr).toBe(0);
    const madeAt = Date.now();
    const list = JSON.parse(cli("snapshot", "--list", "--json").stdout) as Array<{
      function: string | null;
      directory: string;
      current: boolean;
    }>;
    const own = list.find((profile) => profile.directory === made.stdout.trim());
    expect(own?.function).toBe("init-once");
    expect(own?.current).toBe(true);

    const first = invokeJson("test/fixtures/init-once.ts");
    const second = invokeJson("test/fixtures/init-once.ts");
    for (const run of [first, second]) {
      expect(run.startMode).toBe("snapshot");
      // Each clone its first invocation, its init-phase log its own.
      expect(run.result.invocations).toBe(1);
      expect(run.logs).toBe("initializing\n");
      expect(run.result.now).toBeGreaterThanOrEqual(madeAt);
    }
    // Imported once, in the saved VM: at the same moment of its clock for both.
    expect(second.result.importedAtNs).toBe(first.result.importedAtNs);
    expect(second.result.uuid).not.toBe(first.result.uuid);
    expect(second.result.random).not.toBe(first.result.random);
    // The first left the note the second prestarted its clone from.
    expect(second.timeline.map((entry) => entry.name)).toContain("cloneAdopted");

    // Other settings (an environment variable): not what was saved, so the
    // function is imported afresh in a clone of the shared snapshot.
    const other = invokeJson("test/fixtures/init-once.ts", "--env", "SOME_SETTING=1");
    expect(other.startMode).toBe("snapshot");
    expect(other.result.importedAtNs).not.toBe(first.result.importedAtNs);
    expect(other.logs).toBe("initializing\n");
  });

  it("refuses a function whose init phase draws randomness or fails, and saves nothing", async () => {
    const before = functionSnapshots();
    for (const [fixture, reason] of [
      ["random-at-init", "draws randomness in its init phase (crypto.randomUUID)"],
      ["math-random-at-init", "draws randomness in its init phase (Math.random)"],
      ["clock-at-init", "reads the clock in its init phase (new Date())"],
    ] as const) {
      const refused = cli("snapshot", `test/fixtures/${fixture}.ts`);
      expect(refused.status, refused.stderr).toBe(4);
      expect(refused.stderr).toContain(`${fixture} ${reason}`);
      expect(refused.stderr).toContain("Do it in the handler instead");
      // Invoked as usual, it still works, its init phase in its own clone.
      expect(cli("invoke", `test/fixtures/${fixture}.ts`, "--quiet").status).toBe(0);
    }
    const failed = cli("snapshot", "test/fixtures/init-fails.ts");
    expect(failed.status).toBe(4);
    expect(failed.stderr).toContain(
      "init phase failed, so it has no function snapshot: Error: cannot start: missing configuration",
    );
    expect(functionSnapshots()).toEqual(before);
    expect(qemuProcesses()).toEqual([]);
  });

  it("makes one with shared folders: the saved VM mounts none, each clone mounts its own when its invocation arrives", async () => {
    const root = mkdtempSync(join(tmpdir(), "fnrun-test-function-folders-"));
    try {
      const [data, other] = [join(root, "data"), join(root, "other")];
      for (const [folder, text] of [
        [data, "first\n"],
        [other, "from another folder\n"],
      ] as const) {
        mkdirSync(folder);
        writeFileSync(join(folder, "greeting.txt"), text);
      }
      const version = freshVersion();
      const before = new Set(functionSnapshots());
      const invokeAuto = (folder: string) =>
        parseInvocation<{ importedAtNs: string; read: string; writeReadOnly: string }>(
          cliWith(
            automatic,
            "invoke",
            "test/fixtures/mounts/reads-in-handler.ts",
            "--mount",
            `${folder}:/mnt/data`,
            ...version,
            "--json",
          ),
        );
      const first = invokeAuto(data);
      const second = invokeAuto(data);
      expect(functionSnapshots().filter((name) => !before.has(name))).toHaveLength(1);
      const third = invokeAuto(data);
      writeFileSync(join(data, "greeting.txt"), "changed on the host\n");
      const fourth = invokeAuto(data);
      // Another host folder at the same place in the guest: the same function snapshot.
      const fifth = invokeAuto(other);
      for (const run of [first, second, third, fourth, fifth]) {
        expect(run.startMode).toBe("snapshot");
        expect(run.result.writeReadOnly).toBe("error EROFS");
      }
      expect(third.result.importedAtNs).not.toBe(second.result.importedAtNs);
      expect(fourth.result.importedAtNs).toBe(third.result.importedAtNs);
      expect(fifth.result.importedAtNs).toBe(third.result.importedAtNs);
      // Each clone mounted the folder as it is now: nothing of it was in the saved VM.
      expect(third.result.read).toBe("first\n");
      expect(fourth.result.read).toBe("changed on the host\n");
      expect(fifth.result.read).toBe("from another folder\n");
      expect(fourth.timeline.map((entry) => entry.name)).toContain("cloneAdopted");
      expect(existsSync(join(data, "from-guest.txt"))).toBe(false);
      expect(folderDaemons()).toEqual([]);
      expect(leftoverRamCopies()).toEqual([]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("makes one by hand with --mount, as invocations with that folder restore it, and a profile's for --mount", async () => {
    const root = mkdtempSync(join(tmpdir(), "fnrun-test-snapshot-mount-"));
    try {
      const data = join(root, "data");
      mkdirSync(data);
      writeFileSync(join(data, "greeting.txt"), "by hand\n");
      const mount = `${data}:/mnt/data`;
      const fixture = "test/fixtures/mounts/reads-in-handler.ts";
      const made = cli("snapshot", fixture, "--mount", mount, "--rebuild");
      expect(made.status, made.stderr).toBe(0);
      type Listed = { directory: string; function: string | null; folders: number };
      const listed = () => JSON.parse(cli("snapshot", "--list", "--json").stdout) as Listed[];
      expect(listed().find((profile) => profile.directory === made.stdout.trim())).toMatchObject({
        function: "reads-in-handler",
        folders: 1,
      });
      const runs = [1, 2].map(() =>
        parseInvocation<{ importedAtNs: string; read: string }>(
          cli("invoke", fixture, "--mount", mount, "--json"),
        ),
      );
      for (const run of runs) {
        expect(run.startMode).toBe("snapshot");
        expect(run.result.read).toBe("by hand\n");
      }
      // Both clones of the VM saved by hand, with the function imported there.
      expect(runs[1]?.result.importedAtNs).toBe(runs[0]?.result.importedAtNs);

      // Without a function: the profile every function with one folder starts from.
      const profile = cli("snapshot", "--mount", mount);
      expect(profile.status, profile.stderr).toBe(0);
      expect(listed().find((entry) => entry.directory === profile.stdout.trim())).toMatchObject({
        function: null,
        folders: 1,
      });
      const bad = cli("snapshot", "--mount", "no-guest-path");
      expect(bad.status).toBe(2);
      expect(bad.stderr).toContain('mount "no-guest-path" must look like HOST_DIR:GUEST_DIR[:ro|rw]');
      expect(folderDaemons()).toEqual([]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("refuses a function that reads its shared folder in its init phase, where the saved VM has none", async () => {
    const before = functionSnapshots();
    const refused = cli("snapshot", "test/fixtures/mounts/reads-config-at-init.ts");
    expect(refused.status, refused.stderr).toBe(4);
    expect(refused.stderr).toContain(
      "reads-config-at-init reads its shared folders in its init phase (/mnt/config/value.txt)",
    );
    expect(functionSnapshots()).toEqual(before);
    // Invoked as usual, its init phase reads the folder, mounted in its clone first.
    const run = invokeJson("test/fixtures/mounts/reads-config-at-init.ts");
    expect(run.startMode).toBe("snapshot");
    expect(run.result).toBe("from the config's folder");
    expect(folderDaemons()).toEqual([]);
  });

  it("never restores a damaged function snapshot: the function is imported in a clone of the shared one", async () => {
    const made = cli("snapshot", "functions/hello.ts");
    expect(made.status, made.stderr).toBe(0);
    truncateSync(join(made.stdout.trim(), "state"), 100);
    const run = cli("invoke", "functions/hello.ts", "--event", '{"name":"Again"}', "--json");
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout).result.message).toBe("Hello, Again!");
    expect(JSON.parse(run.stdout).startMode).toBe("snapshot");
    // Made again on request.
    const again = cli("snapshot", "functions/hello.ts");
    expect(again.status, again.stderr).toBe(0);
    expect(JSON.parse(cli("invoke", "functions/hello.ts", "--json").stdout).result.message).toBe(
      "Hello, world!",
    );
  });
});

describe("snapshot integrity", () => {
  it("keys a snapshot by everything that shapes it", async () => {
    const shape = memoryOnly(MEMORY);
    const base = await snapshotKey(host, shape);
    expect(await snapshotKey(host, shape)).toBe(base);
    expect(await snapshotKey(host, memoryOnly(512))).not.toBe(base);
    expect(await snapshotKey({ ...host, runtime: { ...host.runtime, key: "other" } }, shape)).not.toBe(base);
    expect(await snapshotKey({ ...host, accel: { accel: "kvm", fallbackReason: null } }, shape)).not.toBe(
      base,
    );
    expect(await snapshotKey({ ...host, qemuPath: "/bin/true" }, shape)).not.toBe(base);
    expect(
      await snapshotKey(
        { ...host, kernel: { ...host.kernel, path: host.kernel.path.replace("vmlinux", "bzImage") } },
        shape,
      ),
    ).not.toBe(base);
    // Shared folders: their number, and the QEMU that can save them.
    const folderHost = { ...host, folderQemuPath: "/bin/true" };
    const oneFolder = await snapshotKey(folderHost, { memoryMB: MEMORY, folders: 1 });
    expect(await snapshotKey(folderHost, shape)).toBe(base);
    expect(oneFolder).not.toBe(base);
    expect(await snapshotKey(folderHost, { memoryMB: MEMORY, folders: 2 })).not.toBe(oneFolder);
    expect(
      await snapshotKey({ ...host, folderQemuPath: "/bin/false" }, { memoryMB: MEMORY, folders: 1 }),
    ).not.toBe(oneFolder);
  });

  /**
   * A QEMU (`real`) that runs as usual, except that once `directory/refuse`
   * exists it exits at once when its command line matches every one of
   * `patterns` (sh).
   */
  function refusingQemu(directory: string, patterns: string[], real = host.qemuPath): string {
    const qemu = join(directory, "qemu");
    const checks = patterns.map((pattern) => `case " $* " in ${pattern}) ;; *) exec "${real}" "$@";; esac`);
    const script = [
      "#!/bin/sh",
      `[ -e "${join(directory, "refuse")}" ] || exec "${real}" "$@"`,
      ...checks,
      'echo "qemu: refused by this test" >&2',
      "exit 1",
      "",
    ];
    writeFileSync(qemu, script.join("\n"), { mode: 0o755 });
    return qemu;
  }

  it("keeps a good snapshot when only a clone with a network card fails to restore, and boots that one", async () => {
    // Plain clones restore; any clone with a network card is refused: the
    // snapshot is sound, the extra device is what failed.
    const directory = mkdtempSync(join(tmpdir(), "fnrun-qemu-"));
    try {
      const wrapped: HostSetup = {
        ...host,
        qemuPath: refusingQemu(directory, ['*" -incoming "*', "*virtio-net-device*"]),
      };
      const memory = 224; // a snapshot of its own, so the other tests' one is left alone
      const snapshot = await ensureSnapshot(wrapped, memoryOnly(memory));
      writeFileSync(join(directory, "refuse"), "");
      const notices: string[] = [];
      const withNetwork = await invoke("functions/hello.ts", {
        host: wrapped,
        memory,
        net: true,
        onNotice: (message) => notices.push(message),
      });
      expect(withNetwork.result).toMatchObject({ message: "Hello, world!" });
      expect(withNetwork.startMode).toBe("boot");
      expect(notices.join("\n")).toMatch(/with a network could not be restored.*refused by this test.*kept/);
      expect((await findSnapshot(wrapped, memoryOnly(memory)))?.directory).toBe(snapshot.directory);
      const plain = await invoke("functions/hello.ts", { host: wrapped, memory, start: "snapshot" });
      expect(plain.startMode).toBe("snapshot");
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it("discards a snapshot QEMU refuses to restore and boots the invocation instead", async () => {
    const directory = mkdtempSync(join(tmpdir(), "fnrun-qemu-"));
    try {
      const memory = 208;
      const saver: HostSetup = { ...host, qemuPath: refusingQemu(directory, ['*" -incoming "*']) };
      await ensureSnapshot(saver, memoryOnly(memory));
      // The same binary, so the same snapshot, now refusing every restore (as a QEMU changed in place might).
      writeFileSync(join(directory, "refuse"), "");
      const notices: string[] = [];
      const run = await invoke("functions/hello.ts", {
        host: saver,
        memory,
        onNotice: (message) => notices.push(message),
      });
      expect(run.result).toMatchObject({ message: "Hello, world!" });
      expect(run.startMode).toBe("boot");
      expect(notices.join("\n")).toContain("the snapshot could not be restored; it was removed");
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it("discards a snapshot a pooled clone cannot be restored from, so the next start makes it again", async () => {
    const directory = mkdtempSync(join(tmpdir(), "fnrun-qemu-"));
    try {
      const memory = 200; // a snapshot of its own
      const saver: HostSetup = { ...host, qemuPath: refusingQemu(directory, ['*" -incoming "*']) };
      const notices: string[] = [];
      const pool = await createPool({
        size: 1,
        memory,
        host: saver,
        start: "snapshot",
        onNotice: (message) => notices.push(message),
      });
      try {
        expect(await findSnapshot(saver, memoryOnly(memory))).toBeDefined();
        writeFileSync(join(directory, "refuse"), "");
        await pool.warm("functions/hello.ts");
        const deadline = Date.now() + 60_000;
        const failed = () => notices.some((notice) => notice.includes("could not start a pooled VM"));
        while (!failed() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
        expect(notices.join("\n")).toMatch(/could not start a pooled VM.*refused by this test/);
        expect(await findSnapshot(saver, memoryOnly(memory))).toBeUndefined();
      } finally {
        await pool.close();
      }
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it("discards a shared-folder snapshot QEMU refuses to restore, boots the invocation, and leaves no daemon or RAM copy", async () => {
    const directory = mkdtempSync(join(tmpdir(), "fnrun-qemu-"));
    try {
      const shape = { memoryMB: 208, folders: 1 };
      const folderQemu = host.folderQemuPath;
      expect(folderQemu, "make setup builds the folder QEMU").toBeDefined();
      const saver: HostSetup = {
        ...host,
        folderQemuPath: refusingQemu(directory, ['*" -incoming "*'], folderQemu),
      };
      await ensureSnapshot(saver, shape);
      writeFileSync(join(directory, "refuse"), "");
      const notices: string[] = [];
      const run = await invoke("functions/hello.ts", {
        host: saver,
        memory: shape.memoryMB,
        mounts: ["test/fixtures/mounts:/mnt/data"],
        onNotice: (message) => notices.push(message),
      });
      expect(run.result).toMatchObject({ message: "Hello, world!" });
      expect(run.startMode).toBe("boot");
      expect(notices.join("\n")).toContain("the snapshot could not be restored; it was removed");
      expect(await findSnapshot(saver, shape)).toBeUndefined();
      expect(folderDaemons()).toEqual([]);
      expect(leftoverRamCopies()).toEqual([]);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it("detects a corrupted device state and a truncated RAM file, and rebuilds instead of restoring", async () => {
    const memory = 192; // a snapshot of its own, so the other tests' one is left alone
    const original = await ensureSnapshot(host, memoryOnly(memory));
    const createdAt = JSON.parse(await readFile(`${original.directory}/snapshot.json`, "utf8")).createdAt;

    const state = await readFile(original.state);
    const middle = Math.floor(state.length / 2);
    state[middle] = (state[middle] ?? 0) ^ 0xff; // same size, other content
    writeFileSync(original.state, state);
    expect(await findSnapshot(host, memoryOnly(memory))).toBeUndefined();

    const rebuilt = await ensureSnapshot(host, memoryOnly(memory));
    expect(JSON.parse(await readFile(`${rebuilt.directory}/snapshot.json`, "utf8")).createdAt).not.toBe(
      createdAt,
    );
    truncateSync(rebuilt.ram, 4096);
    expect(await findSnapshot(host, memoryOnly(memory))).toBeUndefined();

    const run = await invoke("functions/hello.ts", { host, memory, start: "snapshot" });
    expect(run.result).toMatchObject({ message: "Hello, world!" });
    expect(run.startMode).toBe("snapshot");
  });
});
