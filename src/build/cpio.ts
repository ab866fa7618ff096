/**
 * A writer for cpio archives in the "newc" format, the one the Linux kernel
 * unpacks as an initramfs. Pure: entries in, bytes out.
 *
 * Each entry is a 110-byte ASCII header (magic 070701 and thirteen 8-digit hex
 * fields), the NUL-terminated name padded to a multiple of four bytes, then the
 * data padded the same way. The archive ends with an entry named TRAILER!!!.
 * Several archives concatenated form one initramfs, which is how fnrun appends a
 * small per-invocation archive to a cached base.
 */

export type CpioEntry =
  | { type: "directory"; path: string; mode?: number }
  | { type: "file"; path: string; data: Uint8Array; mode?: number }
  | { type: "symlink"; path: string; target: string }
  | { type: "characterDevice"; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const TRAILER = "TRAILER!!!";
const MAX_FIELD = 0xffffffff;

function hex8(value: number): string {
  if (!Number.isInteger(value) || value < 0 || value > MAX_FIELD) {
    throw new RangeError(`cpio field out of range: ${value}`);
  }
  return value.toString(16).padStart(8, "0");
}

function padding(length: number): Uint8Array {
  return new Uint8Array((4 - (length % 4)) % 4);
}

interface Header {
  inode: number;
  mode: number;
  fileSize: number;
  nameSize: number;
  rdevMajor: number;
  rdevMinor: number;
}

function header(fields: Header): string {
  return [
    "070701",
    hex8(fields.inode),
    hex8(fields.mode),
    hex8(0), // uid: root
    hex8(0), // gid: root
    hex8(1), // nlink
    hex8(0), // mtime: fixed, so equal inputs give equal archives (and cache keys)
    hex8(fields.fileSize),
    hex8(0), // devmajor
    hex8(0), // devminor
    hex8(fields.rdevMajor),
    hex8(fields.rdevMinor),
    hex8(fields.nameSize),
    hex8(0), // check
  ].join("");
}

/** Archive paths are relative ("init", "dev/console"), as the kernel expects. */
function normalizePath(path: string): string {
  const normalized = path.replace(/^\/+/, "").replace(/\/+$/, "");
  if (normalized === "" || normalized.split("/").some((part) => part === ".." || part === "")) {
    throw new RangeError(`invalid cpio path: ${JSON.stringify(path)}`);
  }
  return normalized;
}

function entryParts(entry: CpioEntry | { type: "trailer" }, inode: number): Uint8Array[] {
  const encoder = new TextEncoder();
  let name: string;
  let mode: number;
  let data: Uint8Array = new Uint8Array(0);
  let rdevMajor = 0;
  let rdevMinor = 0;
  switch (entry.type) {
    case "trailer":
      name = TRAILER;
      mode = 0;
      break;
    case "directory":
      name = normalizePath(entry.path);
      mode = S_IFDIR | (entry.mode ?? 0o755);
      break;
    case "file":
      name = normalizePath(entry.path);
      mode = S_IFREG | (entry.mode ?? 0o644);
      data = entry.data;
      break;
    case "symlink":
      name = normalizePath(entry.path);
      mode = S_IFLNK | 0o777;
      data = encoder.encode(entry.target);
      break;
    case "characterDevice":
      name = normalizePath(entry.path);
      mode = S_IFCHR | (entry.mode ?? 0o600);
      rdevMajor = entry.major;
      rdevMinor = entry.minor;
      break;
  }
  const nameBytes = encoder.encode(`${name}\0`);
  const head = encoder.encode(
    header({ inode, mode, fileSize: data.length, nameSize: nameBytes.length, rdevMajor, rdevMinor }),
  );
  return [head, nameBytes, padding(head.length + nameBytes.length), data, padding(data.length)];
}

/**
 * Yields the archive piece by piece, so a large file need not be copied into one
 * buffer with the rest. `firstInode` lets concatenated archives keep inodes apart.
 */
export function* cpioChunks(entries: Iterable<CpioEntry>, firstInode = 1): Generator<Uint8Array> {
  let inode = firstInode;
  for (const entry of entries) yield* entryParts(entry, inode++);
  yield* entryParts({ type: "trailer" }, 0);
}

export function encodeCpio(entries: Iterable<CpioEntry>, firstInode = 1): Buffer {
  return Buffer.concat([...cpioChunks(entries, firstInode)]);
}
