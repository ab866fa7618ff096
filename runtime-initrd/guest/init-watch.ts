/**
 * Watching a function's init phase before it is saved in a function snapshot:
 * every clone of that snapshot starts with what the init phase made, so
 * randomness drawn there would be the same in all of them (a token, a UUID, a
 * key), and so would the time it read. While the function is imported, the
 * usual sources of randomness and the clock are replaced by wrappers that note
 * their use; the host then refuses to save it.
 *
 * A wrapper the function keeps (`const { randomUUID } = crypto` at top level)
 * goes on working after the watch: it calls what the source is then, so a
 * clone's reseeded Math.random, not the saved one. What the watch cannot see
 * (randomness drawn by a timer after the import, or read from a file it does
 * not know) is the function's own; docs/snapshots.md says so.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import { syncBuiltinESMExports } from "node:module";

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

function isRandomDevice(path: unknown): boolean {
  const text =
    typeof path === "string"
      ? path
      : path instanceof URL
        ? path.href
        : Buffer.isBuffer(path)
          ? path.toString()
          : "";
  return RANDOM_DEVICE.test(text);
}

/**
 * Starts watching. The returned function ends the watch (the originals back in
 * place) and says which sources were used, in the order of their first use.
 */
export function watchInitPhase(): () => string[] {
  const used = new Set<string>();
  let watching = true;
  const restores: Array<() => void> = [];

  function replace(target: object, name: string, label: string, when?: (args: unknown[]) => boolean): void {
    const holder = target as Record<string, unknown>;
    const original = holder[name];
    const descriptor = Object.getOwnPropertyDescriptor(target, name);
    if (typeof original !== "function" || (descriptor && !descriptor.configurable)) return;
    function wrapper(this: unknown, ...args: unknown[]): unknown {
      if (watching && (!when || when(args))) used.add(label);
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

  replace(Math, "random", "Math.random");
  // The clock too: the saved VM's (set ahead by stage-0, see reseed.ts) would be every clone's.
  replace(Date, "now", "Date.now");
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
  for (const name of CRYPTO_SOURCES) replace(crypto, name, `crypto.${name}`);
  if (globalThis.crypto) {
    for (const name of WEB_CRYPTO_SOURCES) replace(globalThis.crypto, name, `crypto.${name}`);
    replace(globalThis.crypto.subtle, "generateKey", "crypto.subtle.generateKey");
  }
  for (const name of FILE_OPENERS) {
    replace(fs, name, "/dev/urandom", (args) => isRandomDevice(args[0]));
  }
  replace(fs.promises, "open", "/dev/urandom", (args) => isRandomDevice(args[0]));
  replace(fs.promises, "readFile", "/dev/urandom", (args) => isRandomDevice(args[0]));
  // `import { randomUUID } from "node:crypto"` reads the ES module's own bindings.
  syncBuiltinESMExports();

  return () => {
    watching = false;
    for (const restore of restores) restore();
    syncBuiltinESMExports();
    return [...used];
  };
}
