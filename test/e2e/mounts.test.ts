// Shared folders with virtio-fs, in real VMs: reading, writing, read-only
// enforced in the guest and on the host, no way out of the folder, no daemon left.
import { execFileSync, spawnSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseMount } from "../../src/build/config.ts";
import { microvmQemuPath } from "../../src/host/qemu-binary.ts";
import { resolveHost } from "../../src/host/setup.ts";
import { createPool, invoke } from "../../src/index.ts";
import { ensureSnapshot } from "../../src/start/snapshot.ts";
import { cacheRoot } from "../../src/util/cache.ts";
import { RamCopyError, restoreClone } from "../../src/vm/launch.ts";
import { checkMounts, folderTools, ramCopier, virtiofsdWrapper } from "../../src/vm/mounts.ts";
import { makeRunDirectory } from "../../src/vm/run-directory.ts";
import {
  expectNothingLeftBehind,
  folderDaemons,
  leftoverRamCopies,
  runCli,
  zombieFolderDaemons,
} from "./helpers.ts";

let root: string;
let data: string;
let out: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "fnrun-test-mounts-"));
  data = join(root, "data");
  out = join(root, "out");
  mkdirSync(data);
  mkdirSync(out);
  writeFileSync(join(data, "greeting.txt"), "hello from the host\n");
  mkdirSync(join(data, "nested"));
  // A file next to the shared folder, which the guest must never reach.
  writeFileSync(join(root, "outside-secret.txt"), "host secret\n");
  symlinkSync(join(root, "outside-secret.txt"), join(data, "absolute-link"));
  symlinkSync("../outside-secret.txt", join(data, "relative-link"));
});

afterAll(async () => {
  rmSync(root, { recursive: true, force: true });
  await expectNothingLeftBehind(expect);
  expect(folderDaemons()).toEqual([]);
  expect(leftoverRamCopies()).toEqual([]);
});

describe("shared folders", () => {
  // virtiofsd's sandbox forks a child that outlives it for a moment when it is
  // stopped: orphaned, it would go to PID 1, and a container's PID 1 often
  // never reaps (its zombies pile up with every invocation).
  it.each(["boot", "snapshot"])("leaves no zombie daemon behind (--start %s)", async (start) => {
    const before = new Set(zombieFolderDaemons());
    const run = await runCli([
      "invoke",
      "test/fixtures/mounts/reads-in-handler.ts",
      "--mount",
      `${data}:/mnt/data`,
      "--start",
      start,
      "--quiet",
    ]);
    expect(run.code, run.stderr).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(zombieFolderDaemons().filter((pid) => !before.has(pid))).toEqual([]);
    expect(folderDaemons()).toEqual([]);
  });

  // A clone's folders are served by new daemons behind the proxy, in a VM
  // restored with the folder QEMU (its first run here makes the snapshot).
  it.each(["boot", "snapshot"])(
    "reads, lists and writes through virtio-fs; read-only holds in the guest and on the host; nothing outside is reachable (--start %s)",
    async (start) => {
      rmSync(join(out, "from-guest.txt"), { force: true });
      const run = await runCli([
        "invoke",
        "test/fixtures/mounts/shared-folders.ts",
        "--mount",
        `${data}:/mnt/data`,
        "--mount",
        `${out}:/mnt/out:rw`,
        "--start",
        start,
        "--json",
      ]);
      expect(run.code, run.stderr).toBe(0);
      const output = JSON.parse(run.stdout);
      expect(output.startMode).toBe(start);
      const result = output.result;
      expect(result.read).toBe("hello from the host\n");
      expect(result.listing).toEqual(["absolute-link", "greeting.txt", "nested", "relative-link"]);
      expect(result.writeReadWrite).toBe("ok");
      expect(readFileSync(join(out, "from-guest.txt"), "utf8")).toBe("written in the VM\n");
      expect(result.writeReadOnly).toBe("error EROFS");
      expect(result.dotDot).toBe("error ENOENT");
      // The guest sees the link's text, but resolving it happens in the guest: the host file stays out of reach.
      expect(result.absoluteLinkTarget).toBe(join(root, "outside-secret.txt"));
      expect(result.absoluteLink).toBe("error ENOENT");
      expect(result.relativeLink).toBe("error ENOENT");
      expect(JSON.stringify(result)).not.toContain("host secret");
      // Even root in the guest, mounting the read-only folder read-write, cannot write to it.
      expect(result.remountReadWrite.write).toMatch(/^error (EROFS|EACCES|EPERM)$/);
      expect(existsSync(join(data, "should-not-exist.txt"))).toBe(false);
      expect(folderDaemons()).toEqual([]);
    },
  );

  // As root (CI): root in the guest remounts the folder read-write; the host's
  // read-only bind held at the folder's top, but a tmpfs mounted inside the folder
  // stayed writable.
  it.runIf(process.getuid?.() === 0)(
    "keeps a read-only folder read-only on the host, file systems mounted inside it too, whatever root in the guest does",
    async () => {
      const shared = join(root, "with-inner");
      const inner = join(shared, "inner");
      mkdirSync(inner, { recursive: true });
      execFileSync("gcc", [
        "-static",
        "-O2",
        "-o",
        join(shared, "remount-rw"),
        "test/fixtures/mounts/remount-rw.c",
      ]);
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", inner]);
      try {
        const { result, startMode } = await invoke("test/fixtures/mounts/writes-nested.ts", {
          mounts: [`${shared}:/mnt/data`],
          start: "snapshot",
        });
        expect(startMode).toBe("snapshot");
        expect(result).toEqual({
          unmounted: 1,
          mountedReadWrite: true,
          top: expect.stringMatching(/^error (EROFS|EACCES|EPERM)$/),
          nested: expect.stringMatching(/^error (EROFS|EACCES|EPERM)$/),
        });
        expect(existsSync(join(shared, "top.txt"))).toBe(false);
        expect(existsSync(join(inner, "from-guest.txt"))).toBe(false);
      } finally {
        execFileSync("umount", [inner]);
      }
    },
  );

  // The wrapper's promise, checked as a non-root user on a source whose mount has
  // locked flags (nosuid, nodev: as /tmp and /dev/shm often are): remounting it
  // read-only without them failed with EPERM, so ":ro" did not work there at all.
  it.runIf(process.getuid?.() === 0)(
    "makes a folder on a nosuid,nodev file system read-only for a non-root user, recursively",
    async () => {
      const locked = mkdtempSync(join(tmpdir(), "fnrun-test-locked-"));
      execFileSync("mount", ["-t", "tmpfs", "-o", "nosuid,nodev,size=4m,mode=0755", "tmpfs", locked]);
      try {
        const folder = join(locked, "folder");
        mkdirSync(join(folder, "inner"), { recursive: true });
        execFileSync("mount", ["-t", "tmpfs", "-o", "nosuid,nodev,size=1m", "tmpfs", join(folder, "inner")]);
        execFileSync("chown", ["-R", "65534:65534", folder]);
        const wrapper = join(locked, "fnrun-virtiofsd");
        execFileSync("cp", [await virtiofsdWrapper(), wrapper]);
        const asNobody = (...command: string[]) =>
          spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", ...command], {
            encoding: "utf8",
          });
        // Without the wrapper, the folder is nobody's to write.
        expect(asNobody("/bin/sh", "-c", `echo x > ${folder}/plain`).status).toBe(0);
        const shell = (target: string) =>
          `if { echo x > ${target}; } 2>/dev/null; then echo written; else echo refused; fi`;
        const run = asNobody(
          wrapper,
          folder,
          "ro",
          "/bin/sh",
          "-c",
          `${shell(`${folder}/top`)}; ${shell(`${folder}/inner/nested`)}`,
        );
        expect({ status: run.status, stderr: run.stderr, stdout: run.stdout }).toEqual({
          status: 0,
          stderr: "",
          stdout: "refused\nrefused\n",
        });
        expect(existsSync(join(folder, "top"))).toBe(false);
        expect(existsSync(join(folder, "inner", "nested"))).toBe(false);
      } finally {
        spawnSync("umount", ["-R", locked]);
        rmSync(locked, { recursive: true, force: true });
      }
    },
  );

  // fnrun's QEMU is 7.2, patched to save and restore vhost-user-fs
  // (scripts/qemu-patches/); QEMU 10 restores it as it is, through the proxy's
  // empty state transfer, and is what a host without fnrun's build falls back to.
  it("restores folder clones on fnrun's own QEMU, and on QEMU 10 where make folder-qemu fetched it", async () => {
    const host = await resolveHost();
    expect(host.folderQemuPath).toBe(microvmQemuPath());
    const mounts = [`${data}:/mnt/data`];
    const own = await invoke("test/fixtures/mounts/reads-greeting.ts", { host, mounts, start: "snapshot" });
    expect(own).toMatchObject({ startMode: "snapshot", result: "hello from the host\n" });
    const qemu10 = join(cacheRoot(), "folder-qemu", "qemu-system-x86_64");
    if (!existsSync(qemu10)) return; // make setup fetches it; only a host without it skips this half
    const fallback = await invoke("test/fixtures/mounts/reads-greeting.ts", {
      host: { ...host, folderQemuPath: qemu10 },
      mounts,
      start: "snapshot",
    });
    expect(fallback).toMatchObject({ startMode: "snapshot", result: "hello from the host\n" });
    expect(folderDaemons()).toEqual([]);
  });

  // A clone's RAM copy that cannot be made is this host's failure, not the
  // snapshot's: a RamCopyError (for which start/snapshot.ts's snapshotBlameless
  // keeps the snapshot, and the invocation boots), with nothing left behind,
  // whether the copier fails or cannot start.
  it("fails a clone whose RAM copy cannot be made with a RamCopyError, leaving no daemon or copy", async () => {
    const host = await resolveHost();
    const snapshot = await ensureSnapshot(host, { memoryMB: 256, folders: 1 });
    const tools = await folderTools(true);
    const failing = join(root, "failing-ram-copy");
    writeFileSync(failing, "#!/bin/sh\necho 'refused by this test' >&2\nexit 3\n", { mode: 0o755 });
    for (const [ramCopy, said] of [
      [failing, /copying the snapshot's RAM failed \(3\): refused by this test/],
      [join(root, "no-such-copier"), /no-such-copier did not start: .*ENOENT/],
    ] as const) {
      const runDirectory = await makeRunDirectory();
      try {
        const clone = restoreClone(snapshot.host, snapshot, runDirectory, {
          network: false,
          mounts: checkMounts([parseMount(`${data}:/mnt/data`)]),
          folderTools: { ...tools, ramCopy },
        });
        await expect(clone).rejects.toBeInstanceOf(RamCopyError);
        await expect(clone).rejects.toThrow(said);
      } finally {
        await rm(runDirectory, { recursive: true, force: true });
      }
      expect(folderDaemons()).toEqual([]);
      expect(leftoverRamCopies()).toEqual([]);
    }
  });

  // A folder clone's QEMU maps its RAM copy while fnrun-ram-copy fills it: the
  // copy must come out the same as the snapshot's RAM, and the copier must never
  // truncate or resize it (QEMU refuses a file smaller than the RAM at its start).
  it("fills a clone's RAM copy in place: the same bytes, holes and zero pages left holes", async () => {
    const copier = await ramCopier();
    const page = 4096;
    const source = join(root, "ram");
    const bytes = Buffer.alloc(64 * page); // holes, zero pages and data
    bytes.fill(7, 3 * page, 5 * page);
    bytes.fill(9, 40 * page + 100, 41 * page);
    writeFileSync(source, Buffer.alloc(0));
    truncateSync(source, bytes.length);
    const file = openSync(source, "r+");
    writeSync(file, bytes.subarray(3 * page, 5 * page), 0, 2 * page, 3 * page);
    writeSync(file, Buffer.alloc(4 * page), 0, 4 * page, 20 * page); // written zeros
    writeSync(file, bytes.subarray(40 * page, 41 * page), 0, page, 40 * page);
    closeSync(file);
    const copy = join(root, "ram-copy");
    writeFileSync(copy, Buffer.alloc(0));
    truncateSync(copy, bytes.length);
    const out = openSync(copy, "r+");
    try {
      const run = spawnSync(copier, [source], { stdio: ["ignore", out, "pipe"], encoding: "utf8" });
      expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: "" });
    } finally {
      closeSync(out);
    }
    expect(readFileSync(copy).equals(bytes)).toBe(true);
    // Only the three data pages were written: 12 KB allocated, where the source has 28.
    expect(statSync(copy).blocks * 512).toBe(3 * page);
    // A copy of another size is refused, not resized.
    truncateSync(copy, page);
    const small = openSync(copy, "r+");
    try {
      const run = spawnSync(copier, [source], { stdio: ["ignore", small, "pipe"], encoding: "utf8" });
      expect(run.status).toBe(1);
      expect(run.stderr).toContain("must be a regular file as large as the source");
    } finally {
      closeSync(small);
    }
    expect(statSync(copy).size).toBe(page);
  });

  it("refuses mounts that cannot work, before any VM starts", async () => {
    const cases: Array<[string, RegExp]> = [
      [`${join(root, "missing")}:/mnt/x`, /the host folder does not exist/],
      [`${join(data, "greeting.txt")}:/mnt/x`, /not a folder/],
      [`${data}:relative/path`, /must be absolute/],
      [`${data}:/proc/x`, /\/proc belongs to the runtime/],
      [`${data}:/mnt/x:rx`, /HOST_DIR:GUEST_DIR\[:ro\|rw\]/],
    ];
    // microvm has 8 virtio transports: the runtime disk, the channel, and 6 more.
    const folders = (count: number) =>
      Array.from({ length: count }, (_, index) => ["--mount", `${data}:/mnt/m${index}`]).flat();
    const seven = await runCli(["invoke", "functions/hello.ts", ...folders(7)]);
    expect(seven.code).toBe(2);
    expect(seven.stderr).toContain("at most 6 shared folders per invocation");
    const sixAndNet = await runCli(["invoke", "functions/hello.ts", "--net", ...folders(6)]);
    expect(sixAndNet.code).toBe(2);
    expect(sixAndNet.stderr).toContain("at most 5 shared folders per invocation with a network");
    for (const [mount, message] of cases) {
      const run = await runCli(["invoke", "functions/hello.ts", "--mount", mount]);
      expect(run.code, mount).toBe(2);
      expect(run.stderr).toMatch(message);
    }
  });

  it("uses a function's configured folders, also from a warm pool with its daemons ready", async () => {
    const direct = await invoke("test/fixtures/mounts/configured.ts");
    expect(direct.result).toBe("from the config's folder");
    const pool = await createPool({
      size: 1,
      host: await resolveHost(),
      functions: ["test/fixtures/mounts/configured.ts"],
    });
    try {
      const deadline = Date.now() + 120_000;
      while (pool.stats().idleVms < 1 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 200));
      // The idle pooled VM has its virtiofsd running already.
      expect(folderDaemons().length).toBeGreaterThanOrEqual(1);
      const pooled = await pool.invoke("test/fixtures/mounts/configured.ts");
      expect(pooled).toMatchObject({ startMode: "pool", result: "from the config's folder" });
    } finally {
      await pool.close();
    }
    expect(folderDaemons()).toEqual([]);
  });
});
