import { execFile, execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { resolve } from "node:path";
import { Readable } from "node:stream";
import { main } from "../../src/cli/main.ts";
import { backgroundSnapshots } from "../../src/start/snapshot.ts";

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in-process, as `fnrun ARGS`, with its own streams. */
export async function runCli(
  args: string[],
  options: { stdin?: string; signal?: AbortSignal } = {},
): Promise<CliRun> {
  let stdout = "";
  let stderr = "";
  const code = await main(args, {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    stdin: Readable.from(options.stdin === undefined ? [] : [Buffer.from(options.stdin)]),
    env: process.env,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  return { code, stdout, stderr };
}

/** Waits until `probe` holds, checking every 100 ms; fails, naming `what`, after `timeoutMs`. */
export async function eventually(what: string, probe: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`still waiting for ${what}`);
    await new Promise((wait) => setTimeout(wait, 100));
  }
}

/** QEMU processes alive right now (none should outlive a test). */
export function qemuProcesses(): string[] {
  try {
    return execFileSync("pgrep", ["-a", "-f", "qemu-system"], { encoding: "utf8" })
      .split("\n")
      .filter((line) => line.trim() && !line.includes("pgrep"));
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

/**
 * Shared-folder daemons (virtiofsd, and the proxies in front of a clone's)
 * still alive. (In its namespace sandbox, virtiofsd forks a child that dies
 * with it; that child is reaped by PID 1, which on some hosts takes a moment: a
 * dead "<defunct>" entry is not a survivor.)
 */
export function folderDaemons(): string[] {
  try {
    return execFileSync("pgrep", ["-a", "-f", "virtiofsd|vhost-user-fs-proxy"], { encoding: "utf8" })
      .split("\n")
      .filter((line) => line.trim() && !line.includes("pgrep") && !line.includes("<defunct>"));
  } catch {
    return [];
  }
}

/** Process ids of zombies of the folder daemons (ended, never reaped: their parent is an init that does not reap). */
export function zombieFolderDaemons(): number[] {
  const table = execFileSync("ps", ["-e", "-o", "pid=,stat=,comm="], { encoding: "utf8" });
  return table
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter(([, stat, command]) => stat?.startsWith("Z") && /virtiofsd|vhost-user-fs/.test(command ?? ""))
    .map(([pid]) => Number(pid));
}

/** A clone's RAM copies left in /dev/shm (each is unlinked once its QEMU has it open). */
export function leftoverRamCopies(): string[] {
  return existsSync("/dev/shm") ? readdirSync("/dev/shm").filter((name) => name.startsWith("fnrun-")) : [];
}

/** Per-VM run directories (sockets, initramfs) still on disk: none should outlive its VM. */
export function leftoverRunDirectories(): string[] {
  return readdirSync(tmpdir()).filter((name) => /^fnrun-[A-Za-z0-9]{6}$/.test(name));
}

/** What every VM test file checks at its end (once the snapshots made in the background are saved). */
export async function expectNothingLeftBehind(
  expect: (value: unknown) => { toEqual(expected: unknown): void },
): Promise<void> {
  await backgroundSnapshots();
  expect(qemuProcesses()).toEqual([]);
  expect(leftoverRunDirectories()).toEqual([]);
}

/** Runs `fnrun ARGS` as its own process (the built CLI), in `cwd`. */
export function runCliProcess(args: string[], options: { cwd?: string } = {}): Promise<CliRun> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [resolve("bin/fnrun.js"), ...args],
      { cwd: options.cwd ?? process.cwd(), encoding: "utf8", timeout: 180_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
        done({ code, stdout, stderr });
      },
    );
  });
}

/** A host beside this one, as a --net guest would reach one: an HTTP server in a network namespace. */
export interface PeerHost {
  /** The peer's own address, where it answers on port 8080: "hello from a peer", or a POST's body length. */
  peer: string;
  /** This host's end of the link: this host, which a guest must not reach. */
  hostEnd: string;
}

/**
 * Runs `use` with a peer host on its own link and subnet (`${subnet}.2`, this
 * host `${subnet}.1`), removed after. Root only (`ip netns`). `tag` (one
 * character) and `subnet` tell apart peers that run at once.
 */
export async function withPeerHost(tag: string, subnet: string, use: (peer: PeerHost) => Promise<void>) {
  const namespace = `fnrun-peer-${process.pid}-${tag}`;
  const [hostLink, peerLink] = [`fnv${tag}${process.pid}`, `fnp${tag}${process.pid}`];
  const run = (...args: string[]) => execFileSync("ip", args, { stdio: "ignore" });
  run("netns", "add", namespace);
  let server: ReturnType<typeof spawn> | undefined;
  try {
    run("link", "add", hostLink, "type", "veth", "peer", "name", peerLink);
    run("link", "set", peerLink, "netns", namespace);
    run("addr", "add", `${subnet}.1/24`, "dev", hostLink);
    run("link", "set", hostLink, "up");
    run("netns", "exec", namespace, "ip", "addr", "add", `${subnet}.2/24`, "dev", peerLink);
    run("netns", "exec", namespace, "ip", "link", "set", peerLink, "up");
    server = spawn("ip", [
      "netns",
      "exec",
      namespace,
      process.execPath,
      "-e",
      // A GET is answered "hello from a peer"; a POST with how many bytes its body had.
      `require("http").createServer((q, r) => { let n = 0; q.on("data", (c) => (n += c.length)); q.on("end", () => r.end(q.method === "POST" ? String(n) : "hello from a peer")); }).listen(8080, "${subnet}.2", () => console.log("listening"))`,
    ]);
    // Not a fixed wait: a Node starting on a loaded machine may take seconds.
    await new Promise<void>((resolve, reject) => {
      server?.stdout?.on("data", (chunk: Buffer) => chunk.toString().includes("listening") && resolve());
      server?.once("exit", (code) => reject(new Error(`the peer exited (${code}) before listening`)));
    });
    await use({ peer: `${subnet}.2`, hostEnd: `${subnet}.1` });
  } finally {
    server?.kill();
    spawnSync("ip", ["link", "del", hostLink]);
    spawnSync("ip", ["netns", "del", namespace]);
  }
}
