/**
 * The initramfs a VM boots with: the cached base archive of the runtime image,
 * plus, when the VM carries something of its own, a small archive appended to
 * a copy of it in the VM's directory. The kernel unpacks concatenated archives
 * as one.
 */
import { appendFile, copyFile } from "node:fs/promises";
import { join } from "node:path";
import { encodeCpio } from "../build/cpio.ts";
import type { BoundFunction, Invocation } from "./protocol.ts";

/** What a booted VM carries beyond the runtime image. */
export type BootPayload =
  /** A cold invocation and its function: the runtime runs it at once. */
  | {
      kind: "invocation";
      invocation: Invocation;
      bundleCode: string;
      /** One more archive to append (the benchmark's files placed in the initramfs). */
      extraArchive?: Buffer;
    }
  /** A function and its settings: the runtime imports it, then waits for events (a pooled VM). */
  | { kind: "function"; settings: BoundFunction; bundleCode: string }
  /** Nothing: the runtime waits for a function and an event (the VM a snapshot is saved from). */
  | { kind: "none" };

/** Inodes of the appended archive start here, clear of the base archive's. */
const PAYLOAD_FIRST_INODE = 1_000_000;

/** The archive appended for `payload`, or undefined when there is nothing to append. */
export function payloadArchive(payload: BootPayload): Buffer | undefined {
  if (payload.kind === "none") return undefined;
  // A cold invocation runs at once; a function's settings make the runtime import it and wait.
  const [path, described] =
    payload.kind === "invocation"
      ? ["fnrun/invocation.json", payload.invocation]
      : ["fnrun/function.json", payload.settings];
  return encodeCpio(
    [
      { type: "file", path, data: Buffer.from(JSON.stringify(described)), mode: 0o600 },
      { type: "file", path: "fnrun/function.mjs", data: Buffer.from(payload.bundleCode), mode: 0o644 },
    ],
    PAYLOAD_FIRST_INODE,
  );
}

/** The initramfs for one VM: the base archive itself, or a copy in `runDirectory` with the payload appended. */
export async function writeInitrd(
  runDirectory: string,
  baseArchive: string,
  payload: BootPayload,
): Promise<string> {
  const archive = payloadArchive(payload);
  if (!archive) return baseArchive;
  const path = join(runDirectory, "initrd.cpio");
  await copyFile(baseArchive, path);
  await appendFile(path, archive, { mode: 0o600 });
  if (payload.kind === "invocation" && payload.extraArchive) await appendFile(path, payload.extraArchive);
  return path;
}
