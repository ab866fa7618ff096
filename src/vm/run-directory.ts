/**
 * Each VM has a private directory (0700) for its sockets and its per-invocation
 * initramfs, holding its owner's pid; removed with the VM, and swept by a later
 * run when its fnrun process died without cleaning up.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { processAlive } from "../util/process.ts";

let swept = false;

/**
 * Removes run directories whose fnrun process died without cleaning up (it was
 * SIGKILLed, say): each holds the pid of its owner. Once per process.
 */
async function sweepStaleRunDirectories(parent: string): Promise<void> {
  if (swept) return;
  swept = true;
  const names = await readdir(parent).catch(() => [] as string[]);
  await Promise.all(
    names
      .filter((name) => /^fnrun-[A-Za-z0-9]{6}$/.test(name))
      .map(async (name) => {
        const directory = join(parent, name);
        const owner = Number.parseInt(await readFile(join(directory, "owner"), "utf8").catch(() => ""), 10);
        if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && !processAlive(owner)) {
          await rm(directory, { recursive: true, force: true });
        }
      }),
  );
}

function runDirectoryParent(): string {
  const base =
    process.env.XDG_RUNTIME_DIR && process.env.XDG_RUNTIME_DIR.length < 60
      ? process.env.XDG_RUNTIME_DIR
      : tmpdir();
  // Unix socket paths are limited to 107 bytes: keep the directory short.
  return base.length < 60 ? base : "/tmp";
}

/** A private directory (0700) for one VM's sockets and files. */
export async function makeRunDirectory(): Promise<string> {
  const parent = runDirectoryParent();
  await sweepStaleRunDirectories(parent);
  const directory = await mkdtemp(join(parent, "fnrun-"));
  await writeFile(join(directory, "owner"), String(process.pid), { mode: 0o600 });
  return directory;
}

/** makeRunDirectory() without waiting for I/O (a prestart); the sweep goes on in the background. */
export function makeRunDirectorySync(): string {
  const parent = runDirectoryParent();
  void sweepStaleRunDirectories(parent).catch(() => {});
  const directory = mkdtempSync(join(parent, "fnrun-"));
  writeFileSync(join(directory, "owner"), String(process.pid), { mode: 0o600 });
  return directory;
}
