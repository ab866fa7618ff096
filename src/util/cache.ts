/**
 * The fnrun cache: $FNRUN_CACHE_DIR, else $XDG_CACHE_HOME/fnrun, else ~/.cache/fnrun.
 *
 * Entries are directories named by a content hash of everything that went into
 * them. An entry is built in a private temporary directory beside it and renamed
 * into place in one step, so a reader sees a whole entry or none, whatever was
 * killed when; two processes building the same entry both succeed (the second
 * rename finds the first one's entry and keeps it). Each entry holds a manifest
 * with the hash of every file, checked when the entry is opened, so a corrupted
 * or truncated entry is detected and rebuilt rather than used.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, type Stats, statSync } from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { basename, join } from "node:path";
import { processAlive } from "./process.ts";

export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.FNRUN_CACHE_DIR) return env.FNRUN_CACHE_DIR;
  const base = env.XDG_CACHE_HOME || join(env.HOME || homedir(), ".cache");
  return join(base, "fnrun");
}

export function sha256(...parts: Array<string | Uint8Array>): string {
  const hash = createHash("sha256");
  for (const part of parts) {
    hash.update(part);
    hash.update("\0");
  }
  return hash.digest("hex");
}

/** A plain SHA-256 of a file: how manifests written before CONTENT_SCHEME recorded their files. */
async function hashFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** How a manifest's `sha256` of a file was taken, when by hashContent. */
const CONTENT_SCHEME = "nonzero-pages";
const PAGE = 4096;
const READ_BYTES = 1 << 20;
const ZERO_PAGE = Buffer.alloc(PAGE);

/**
 * A SHA-256 of a file's content that skips its pages of zeros: the size, then
 * each 4 KB page that is not all zero with its offset. A snapshot's RAM file is
 * the guest's whole memory, mostly never touched (a 12 GB one held ~250 MB):
 * hashing every zero of it took 16 s; reading past them ~4 s. The same content
 * hashes the same whatever its holes, and any byte changed, added or moved
 * changes it.
 */
export async function hashContent(path: string): Promise<string> {
  const hash = createHash("sha256");
  const handle = await open(path, "r");
  try {
    const { size } = await handle.stat();
    const header = Buffer.alloc(8);
    header.writeBigUInt64LE(BigInt(size));
    hash.update(header);
    const buffer = Buffer.allocUnsafe(READ_BYTES);
    for (let position = 0; position < size; ) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(READ_BYTES, size - position), position);
      if (bytesRead === 0) throw new Error(`${path} is shorter than it was`);
      for (let at = 0; at < bytesRead; at += PAGE) {
        const end = Math.min(at + PAGE, bytesRead);
        if (buffer.compare(ZERO_PAGE, 0, end - at, at, end) === 0) continue;
        const offset = Buffer.alloc(8);
        offset.writeBigUInt64LE(BigInt(position + at));
        hash.update(offset);
        hash.update(buffer.subarray(at, end));
      }
      position += bytesRead;
    }
  } finally {
    await handle.close();
  }
  return hash.digest("hex");
}

function identityOf(path: string, info: Stats): string {
  return `${path}:${info.size}:${info.mtimeMs}:${info.ino}`;
}

/** A cheap identity for a large file we do not want to hash on every run. */
export async function fileIdentity(path: string): Promise<string> {
  return identityOf(path, await stat(path));
}

/** fileIdentity() without waiting for I/O (a prestart). */
export function fileIdentitySync(path: string): string {
  return identityOf(path, statSync(path));
}

/** Writes a file so that readers see the old content or the new, never a part. */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  try {
    const handle = await open(temporary, "w", mode);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

const MANIFEST = "manifest.json";

interface FileRecord {
  size: number;
  /** hashContent's, or (no `scheme`: an older fnrun's) a plain SHA-256 of the file. */
  sha256: string;
  scheme?: typeof CONTENT_SCHEME;
  /** When these change, the file was written after the entry was made: hash it again. */
  mtimeMs: number;
  ino: number;
}

interface Manifest {
  key: string;
  files: Record<string, FileRecord>;
}

export interface CacheEntry {
  directory: string;
  path(name: string): string;
}

/** Removes an entry (for one found broken in use, e.g. a snapshot QEMU cannot restore). */
export async function removeEntry(kind: string, key: string, root = cacheRoot()): Promise<void> {
  await rm(join(root, kind, key), { recursive: true, force: true });
}

function entry(directory: string): CacheEntry {
  return { directory, path: (name) => join(directory, name) };
}

/**
 * Checks an entry against its manifest: every file must have its recorded size,
 * and a file that was written since (other mtime or inode) must still have its
 * recorded hash. `deep` hashes every file regardless.
 */
async function verifyEntry(directory: string, key: string, deep: boolean): Promise<boolean> {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(await readFile(join(directory, MANIFEST), "utf8")) as Manifest;
  } catch {
    return false;
  }
  if (manifest.key !== key) return false;
  let refreshed = false;
  for (const [name, expected] of Object.entries(manifest.files)) {
    try {
      const info = await stat(join(directory, name));
      if (info.size !== expected.size) return false;
      const touched = info.mtimeMs !== expected.mtimeMs || info.ino !== expected.ino;
      if (!deep && !touched) continue;
      const hashOf = expected.scheme === CONTENT_SCHEME ? hashContent : hashFile;
      if ((await hashOf(join(directory, name))) !== expected.sha256) return false;
      if (touched) {
        // Same content after all (copied, touched): remember, so the next check is cheap again.
        manifest.files[name] = { ...expected, mtimeMs: info.mtimeMs, ino: info.ino };
        refreshed = true;
      }
    } catch {
      return false;
    }
  }
  if (refreshed)
    await writeFileAtomic(join(directory, MANIFEST), JSON.stringify(manifest, null, 2)).catch(() => {});
  return true;
}

export interface EntryOptions {
  /** Hash every file when opening (for small entries, or after a crash was suspected). */
  deepVerify?: boolean;
}

/** Returns the entry if it exists and is intact. A broken one is removed. */
export async function findEntry(
  kind: string,
  key: string,
  options: EntryOptions = {},
  root = cacheRoot(),
): Promise<CacheEntry | undefined> {
  const directory = join(root, kind, key);
  if (await verifyEntry(directory, key, options.deepVerify ?? false)) {
    await markUsed(directory);
    return entry(directory);
  }
  await rm(directory, { recursive: true, force: true }).catch(() => {});
  return undefined;
}

/**
 * Returns the entry for `key`, building it when missing or broken. `build`
 * writes its files into the directory it is given; the files it names are
 * recorded in the manifest with their hashes.
 */
export async function ensureEntry(
  kind: string,
  key: string,
  build: (directory: string) => Promise<string[]>,
  options: EntryOptions = {},
  root = cacheRoot(),
): Promise<CacheEntry> {
  const found = await findEntry(kind, key, options, root);
  if (found) return found;
  const parent = join(root, kind);
  await mkdir(parent, { recursive: true, mode: 0o700 });
  await sweepAbandonedBuilds(parent);
  const building = join(
    parent,
    `.building-${key.slice(0, 16)}-${process.pid}-${randomBytes(4).toString("hex")}`,
  );
  await mkdir(building, { mode: 0o700 });
  try {
    const names = await build(building);
    const manifest: Manifest = { key, files: {} };
    for (const name of names) {
      const sha = await hashContent(join(building, name));
      const info = await stat(join(building, name));
      manifest.files[name] = {
        size: info.size,
        sha256: sha,
        scheme: CONTENT_SCHEME,
        mtimeMs: info.mtimeMs,
        ino: info.ino,
      };
    }
    await writeFile(join(building, MANIFEST), JSON.stringify(manifest, null, 2));
    const directory = join(parent, key);
    try {
      await rename(building, directory);
    } catch (error) {
      // Another process got there first: keep its entry if it is intact.
      const code = (error as NodeJS.ErrnoException).code;
      if ((code === "ENOTEMPTY" || code === "EEXIST") && (await verifyEntry(directory, key, false))) {
        await rm(building, { recursive: true, force: true });
        return entry(directory);
      }
      throw error;
    }
    await pruneOldEntries(parent, key);
    return entry(directory);
  } catch (error) {
    await rm(building, { recursive: true, force: true });
    throw error;
  }
}

/** Removes what builders that died (SIGKILL, power loss) left half-written. Never used: it was never renamed. */
async function sweepAbandonedBuilds(parent: string): Promise<void> {
  for (const name of await readdir(parent).catch(() => [] as string[])) {
    const owner = name.match(/^\.building-.+-(\d+)-[0-9a-f]{8}$/)?.[1];
    if (owner && !processAlive(Number(owner))) {
      await rm(join(parent, name), { recursive: true, force: true }).catch(() => {});
    }
  }
}

/** How far off an entry's last use may be: it is written at most this often. */
const USE_RECORDED_EVERY_MS = 60_000;

/**
 * An entry's directory mtime says when it was last used (at most a minute off,
 * to spare a write per invocation), so pruning removes the least recently used.
 * (An hour was too coarse: a snapshot in use for the last hour but made before
 * it went before ones made since and never used again.)
 */
async function markUsed(directory: string): Promise<void> {
  try {
    const info = await stat(directory);
    if (Date.now() - info.mtimeMs < USE_RECORDED_EVERY_MS) return;
    const now = new Date();
    await utimes(directory, now, now);
  } catch {
    // Only pruning order depends on it.
  }
}

/** Bytes on disk under `path` (allocated blocks: a sparse file counts what it holds). */
export async function directorySize(path: string): Promise<number> {
  let total = 0;
  const entries = await readdir(path, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    const full = join(path, entry.name);
    if (entry.isDirectory()) total += await directorySize(full);
    else
      total += await stat(full).then(
        (info) => info.blocks * 512,
        () => 0,
      );
  }
  return total;
}

/**
 * How many entries of each kind to keep. Older ones (a kernel from a previous
 * fragment, snapshots of a runtime image since rebuilt) are dead weight: a
 * snapshot is ~95 MB. Function snapshots have a kind of their own, so that
 * new versions of functions never evict a profile's snapshot; `function-seen`
 * holds one small marker per function version (start/function-snapshots.ts).
 */
/** Function snapshots kept: one per function a server keeps warm, and those a developer invokes. */
export const FUNCTION_SNAPSHOTS_KEPT = 16;

const KEEP: Record<string, number> = {
  kernel: 2,
  "kernel-debian-cloud": 2,
  snapshot: 8,
  "function-snapshot": FUNCTION_SNAPSHOTS_KEPT,
  "function-seen": 256,
  // Every helper fnrun compiles (src/host/tools.ts) is an entry of this kind, a
  // few KB each; an old version goes only when 16 newer entries are there.
  "host-tools": 16,
};
const KEEP_DEFAULT = 3;

/**
 * Whether a new entry of `parent`'s kind would push out one used within the
 * last `withinMs` (pruning keeps the kind's most recently used): the entries
 * in use do not all fit, and making more would only trade one for another.
 */
export async function wouldPushOutRecentlyUsed(parent: string, withinMs: number): Promise<boolean> {
  const keep = keptOf(parent);
  const entries = await entriesByLastUse(parent);
  if (entries.length < keep) return false;
  // The one that would go: the least recently used of those kept with the new one.
  const pushedOut = entries[keep - 1]?.usedAt ?? 0;
  return Date.now() - pushedOut < withinMs;
}

function keptOf(parent: string): number {
  return KEEP[basename(parent)] ?? KEEP_DEFAULT;
}

/** A kind's entries (not locks, notes or builds), most recently used first. */
async function entriesByLastUse(parent: string): Promise<Array<{ name: string; usedAt: number }>> {
  const names = (await readdir(parent).catch(() => [] as string[])).filter(
    (name) =>
      !name.startsWith(".") && !name.endsWith(".lock") && !name.endsWith(".json") && !name.endsWith(".tmp"),
  );
  const dated = await Promise.all(
    names.map(async (name) => ({
      name,
      usedAt: await stat(join(parent, name)).then(
        (info) => info.mtimeMs,
        () => 0,
      ),
    })),
  );
  return dated.sort((a, b) => b.usedAt - a.usedAt);
}

/** Removes all but the most recently used entries of a kind (never `justBuilt`). */
export async function pruneOldEntries(parent: string, justBuilt: string): Promise<void> {
  const others = (await entriesByLastUse(parent)).filter((entry) => entry.name !== justBuilt);
  // The one just built counts as one of the kept.
  for (const old of others.slice(Math.max(0, keptOf(parent) - 1))) {
    // A process may still use an old entry: its open files stay readable after removal.
    await rm(join(parent, old.name), { recursive: true, force: true }).catch(() => {});
  }
}
