/**
 * The initramfs a VM boots with: the cached base archive of the runtime image,
 * plus, for a cold start, a small archive appended with this invocation and the
 * function's bundle. The kernel unpacks concatenated archives as one.
 */
import { appendFile, copyFile } from "node:fs/promises";
import { join } from "node:path";
import { encodeCpio } from "../build/cpio.ts";
import type { FunctionSettings, Invocation } from "./protocol.ts";

/** Inodes of the appended archive start here, clear of the base archive's. */
const INVOCATION_FIRST_INODE = 1_000_000;

export function invocationArchive(invocation: Invocation, bundleCode: string): Buffer {
  return encodeCpio(
    [
      {
        type: "file",
        path: "fnrun/invocation.json",
        data: Buffer.from(JSON.stringify(invocation)),
        mode: 0o600,
      },
      { type: "file", path: "fnrun/function.mjs", data: Buffer.from(bundleCode), mode: 0o644 },
    ],
    INVOCATION_FIRST_INODE,
  );
}

/** Writes base + invocation archive into the VM's private directory; returns its path. */
export async function writeInvocationInitrd(
  runDirectory: string,
  baseArchive: string,
  invocation: Invocation,
  bundleCode: string,
  /** One more archive to append (the benchmark's files placed in the initramfs). */
  extraArchive?: Buffer,
): Promise<string> {
  const path = join(runDirectory, "initrd.cpio");
  await copyFile(baseArchive, path);
  await appendFile(path, invocationArchive(invocation, bundleCode), { mode: 0o600 });
  if (extraArchive) await appendFile(path, extraArchive);
  return path;
}

/**
 * For a pooled VM booted with its function: base + the function and its
 * settings, no invocation. The runtime imports the function and waits for events.
 */
export async function boundArchive(
  runDirectory: string,
  baseArchive: string,
  settings: FunctionSettings,
  bundleCode: string,
): Promise<string> {
  const path = join(runDirectory, "initrd.cpio");
  await copyFile(baseArchive, path);
  const archive = encodeCpio(
    [
      { type: "file", path: "fnrun/function.json", data: Buffer.from(JSON.stringify(settings)), mode: 0o600 },
      { type: "file", path: "fnrun/function.mjs", data: Buffer.from(bundleCode), mode: 0o644 },
    ],
    INVOCATION_FIRST_INODE,
  );
  await appendFile(path, archive, { mode: 0o600 });
  return path;
}
