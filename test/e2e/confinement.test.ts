// Host-side confinement: QEMU under seccomp with the fewest devices, no network
// device unless asked, no host path visible in the guest but declared mounts, and
// private, removed temporary files.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { invoke } from "../../src/index.ts";
import { cacheRoot } from "../../src/util/cache.ts";
import { expectNothingLeftBehind, leftoverRunDirectories, qemuProcesses } from "./helpers.ts";

const LOOK = "test/fixtures/hostile/looks-around.ts";

afterAll(() => expectNothingLeftBehind(expect));

async function whileRunning<T>(
  options: Parameters<typeof invoke>[1],
  inspect: () => T,
): Promise<{ seen: T; result: unknown }> {
  const running = invoke(LOOK, { ...options, event: { waitMs: 1500 } });
  const deadline = Date.now() + 60_000;
  while (qemuProcesses().length === 0 && Date.now() < deadline) {
    await new Promise((wait) => setTimeout(wait, 50));
  }
  await new Promise((wait) => setTimeout(wait, 300));
  const seen = inspect();
  return { seen, result: (await running).result };
}

const mode = (path: string) => (statSync(path).mode & 0o777).toString(8);

describe("confinement", () => {
  it("runs QEMU under seccomp, with no network device, in a private run directory that goes with it", async () => {
    const { seen, result } = await whileRunning({}, () => {
      const [line] = qemuProcesses();
      const pid = Number(line?.split(" ")[0]);
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      const directories = leftoverRunDirectories().map((name) => join(tmpdir(), name));
      return {
        commandLine: line ?? "",
        seccomp: status.match(/^Seccomp:\s+(\d)/m)?.[1],
        directories: directories.map((directory) => ({
          mode: mode(directory),
          files: readdirSync(directory).map((name) => ({ name, mode: mode(join(directory, name)) })),
        })),
      };
    });
    // A VM that runs a function may not even start a process.
    expect(seen.commandLine).toContain(
      "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
    );
    expect(seen.commandLine).toContain("-nodefaults");
    expect(seen.commandLine).not.toMatch(/-netdev|-nic |virtio-net/);
    expect(seen.seccomp).toBe("2"); // a seccomp filter is in force
    expect(seen.directories.length).toBeGreaterThan(0);
    for (const directory of seen.directories) {
      expect(directory.mode).toBe("700");
      for (const file of directory.files) expect(file.mode, file.name).toMatch(/^[67]00$|^755$/);
    }
    expect(result).toMatchObject({ interfaces: ["lo"] });
    expect(leftoverRunDirectories()).toEqual([]);
  });

  it("shows the guest its own file systems only, and a declared mount", async () => {
    const bare = await invoke(LOOK);
    expect((bare.result as { mounts: string[] }).mounts).toEqual([
      "rootfs / rootfs",
      "devtmpfs /dev devtmpfs",
      "proc /proc proc",
      "tmpfs /tmp tmpfs",
      "/dev/vda /runtime erofs",
    ]);
    const mounted = await invoke(LOOK, { mounts: ["test/fixtures/mounts:/mnt/data"] });
    expect(
      (mounted.result as { mounts: string[] }).mounts.filter((line) => line.includes("virtiofs")),
    ).toEqual(["fnrun0 /mnt/data virtiofs"]);
  });

  it("keeps the cache private to its owner", () => {
    for (const kind of readdirSync(cacheRoot())) {
      const directory = join(cacheRoot(), kind);
      if (!statSync(directory).isDirectory()) continue;
      for (const entry of readdirSync(directory).filter((name) => !name.endsWith(".lock"))) {
        const path = join(directory, entry);
        if (statSync(path).isDirectory()) expect(mode(path), path).toBe("700");
      }
    }
  });
});
