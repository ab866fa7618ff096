/**
 * Watching a function's init phase before it is saved in a function snapshot:
 * every clone of that snapshot starts with what the init phase made, so
 * randomness drawn there would be the same in all of them (a token, a UUID, a
 * key), and so would the time it read. While the function is imported, the
 * usual sources of randomness and the clock are replaced by wrappers that note
 * their use; the host then refuses to save it.
 *
 * The saved VM mounts none of the shared folders its clones mount (each clone
 * mounts its own when its invocation arrives), so an init phase that reads one
 * would see it empty there and keep what it saw in every clone: the paths in
 * those folders that the init phase touches through `fs` are noted too.
 *
 * A wrapper the function keeps (`const { randomUUID } = crypto` at top level)
 * goes on working after the watch: it calls what the source is then, so a
 * clone's reseeded Math.random, not the saved one. What the watch cannot see
 * (randomness drawn by a timer after the import, a file read without `fs`, by
 * `import()` say, or in a child process) is the function's own;
 * docs/snapshots.md says so.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import { syncBuiltinESMExports } from "node:module";
import { resolve as resolvePath, sep } from "node:path";

type AnyFunction = (this: unknown, ...args: unknown[]) => unknown;

const CRYPTO_SOURCES = [
  "randomBytes",
  "randomFill",
  "randomFillSync",
  "randomInt",
  "randomUUID",
  "getRandomValues",
  "generateKey",
  "generateKeySync",
  "generateKeyPair",
  "generateKeyPairSync",
  "generatePrime",
  "generatePrimeSync",
] as const;
const WEB_CRYPTO_SOURCES = ["getRandomValues", "randomUUID"] as const;
const FILE_OPENERS = ["open", "openSync", "readFile", "readFileSync", "createReadStream"] as const;
const RANDOM_DEVICE = /^(file:\/\/)?\/dev\/u?random$/;
/** `fs` functions whose first argument is a path (copies and renames: their first two). */
const PATH_FUNCTIONS = [
  "access",
  "appendFile",
  "chmod",
  "chown",
  "createReadStream",
  "createWriteStream",
  "exists",
  "lstat",
  "mkdir",
  "open",
  "opendir",
  "readFile",
  "readdir",
  "readlink",
  "realpath",
  "rm",
  "rmdir",
  "stat",
  "statfs",
  "truncate",
  "unlink",
  "utimes",
  "watch",
  "watchFile",
  "writeFile",
] as const;
const TWO_PATH_FUNCTIONS = ["copyFile", "cp", "link", "rename", "symlink"] as const;

function pathText(path: unknown): string {
  return typeof path === "string"
    ? path
    : path instanceof URL
      ? path.protocol === "file:"
        ? decodeURIComponent(path.pathname)
        : ""
      : Buffer.isBuffer(path)
        ? path.toString()
        : "";
}

function isRandomDevice(path: unknown): boolean {
  return RANDOM_DEVICE.test(path instanceof URL ? path.href : pathText(path));
}

/** What an init phase used that its clones would all repeat or miss. */
export interface Watched {
  /** Sources of randomness and of the time, in the order of their first use. */
  randomness: string[];
  /** Paths in the folders to come, in the order they were first touched. */
  folders: string[];
}

/**
 * Starts watching (`foldersToCome`: the guest paths where clones mount their
 * shared folders). The returned function ends the watch (the originals back in
 * place) and says what was used.
 */
export function watchInitPhase(foldersToCome: readonly string[] = []): () => Watched {
  const used = new Set<string>();
  const touched = new Set<string>();
  let watching = true;
  const restores: Array<() => void> = [];
  const inFolderToCome = (path: unknown): string | undefined => {
    const text = pathText(path);
    if (text === "") return undefined;
    const absolute = resolvePath(text);
    return foldersToCome.some((folder) => absolute === folder || absolute.startsWith(`${folder}${sep}`))
      ? absolute
      : undefined;
  };

  /** Wraps `target[name]` so that `note` sees the arguments of every call while watching. */
  function replace(target: object, name: string, note: (args: unknown[]) => void): void {
    const holder = target as Record<string, unknown>;
    const original = holder[name];
    const descriptor = Object.getOwnPropertyDescriptor(target, name);
    if (typeof original !== "function" || (descriptor && !descriptor.configurable)) return;
    function wrapper(this: unknown, ...args: unknown[]): unknown {
      if (watching) note(args);
      // After the watch: whatever the source is now (a clone's reseeded one).
      const current = holder[name];
      const call = (watching || current === wrapper ? original : current) as AnyFunction;
      return call.apply(this, args);
    }
    // A property as it was (some of node:crypto's are getters), but the wrapper's value.
    Object.defineProperty(target, name, {
      configurable: true,
      enumerable: descriptor?.enumerable ?? false,
      writable: true,
      value: wrapper,
    });
    restores.push(() => {
      if (descriptor) Object.defineProperty(target, name, descriptor);
      else delete holder[name];
    });
  }

  const source = (label: string) => () => used.add(label);
  const randomDevice = (args: unknown[]) => {
    if (isRandomDevice(args[0])) used.add("/dev/urandom");
  };
  replace(Math, "random", source("Math.random"));
  // The clock too: the saved VM's (set ahead by stage-0, see reseed.ts) would be every clone's.
  replace(Date, "now", source("Date.now"));
  const RealDate = Date;
  globalThis.Date = new Proxy(RealDate, {
    construct(target, args, newTarget) {
      if (watching && args.length === 0) used.add("new Date()");
      return Reflect.construct(target, args, newTarget) as object;
    },
    apply(target, self, args) {
      if (watching) used.add("Date()");
      return Reflect.apply(target, self, args) as unknown;
    },
  });
  restores.push(() => {
    globalThis.Date = RealDate;
  });
  for (const name of CRYPTO_SOURCES) replace(crypto, name, source(`crypto.${name}`));
  if (globalThis.crypto) {
    for (const name of WEB_CRYPTO_SOURCES) replace(globalThis.crypto, name, source(`crypto.${name}`));
    replace(globalThis.crypto.subtle, "generateKey", source("crypto.subtle.generateKey"));
  }
  for (const name of FILE_OPENERS) replace(fs, name, randomDevice);
  replace(fs.promises, "open", randomDevice);
  replace(fs.promises, "readFile", randomDevice);
  if (foldersToCome.length > 0) {
    /** Notes the paths among the first `count` arguments that are in a folder to come. */
    const touches = (count: number) => (args: unknown[]) => {
      for (const path of args.slice(0, count)) {
        const inside = inFolderToCome(path);
        if (inside !== undefined) touched.add(inside);
      }
    };
    for (const [names, count] of [
      [PATH_FUNCTIONS, 1],
      [TWO_PATH_FUNCTIONS, 2],
    ] as const) {
      for (const name of names) {
        replace(fs, name, touches(count));
        replace(fs, `${name}Sync`, touches(count));
        replace(fs.promises, name, touches(count));
      }
    }
  }
  // `import { randomUUID } from "node:crypto"` reads the ES module's own bindings.
  syncBuiltinESMExports();

  return () => {
    watching = false;
    // Last wrapped, first restored: a function wrapped twice gets its original back.
    for (const restore of restores.reverse()) restore();
    syncBuiltinESMExports();
    return { randomness: [...used], folders: [...touched] };
  };
}
