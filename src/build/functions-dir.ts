/**
 * The functions `fnrun serve` serves: every function file directly in its
 * directory (hello.ts is "hello"), and every subdirectory with an index file
 * (orders/index.ts is "orders"). Rescanned when asked for a name it does not
 * know, and at most once a second otherwise, so new and edited functions are
 * picked up without a restart. A function file it cannot serve (a name no URL
 * can carry, a name another file has) is said once, not passed over in silence.
 */
import { readdir } from "node:fs/promises";
import { extname, isAbsolute, join, relative, resolve } from "node:path";
import { FnrunError } from "../util/errors.ts";
import { isFile } from "../util/fs.ts";
import { type Bundle, bundleFunction } from "./bundle.ts";
import type { FunctionConfig } from "./config.ts";

const EXTENSIONS = [".ts", ".mts", ".cts", ".js", ".mjs", ".cjs"];
export const FUNCTION_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
/** FUNCTION_NAME in words. */
export const FUNCTION_NAME_RULE = "letters, digits, - and _, at most 64, starting with a letter or digit";

/** A function file the directory holds but cannot serve, and why. */
export interface SkippedFile {
  file: string;
  /** The name a request would use for it. */
  name: string;
  reason: string;
}

export interface ServedFunction {
  name: string;
  file: string;
  config: FunctionConfig;
  /** Why the function cannot run (it does not bundle), if so. */
  problem?: string;
  bundle?: Bundle;
}

function isFunctionFile(name: string): boolean {
  return (
    EXTENSIONS.includes(extname(name)) && !name.endsWith(".d.ts") && !/\.(test|spec)\.[cm]?[jt]s$/.test(name)
  );
}

/** A path as a notice shows it: from the working directory when it is under it. */
function shownPath(path: string): string {
  const fromHere = relative(process.cwd(), path);
  return fromHere === "" || fromHere.startsWith("..") || isAbsolute(fromHere) ? path : fromHere;
}

export class FunctionDirectory {
  readonly directory: string;
  #functions = new Map<string, ServedFunction>();
  #skipped: SkippedFile[] = [];
  #said = new Set<string>();
  #scannedAt = 0;
  #scanning: Promise<Map<string, ServedFunction>> | undefined;
  readonly #onNotice: (line: string) => void;

  /** `onNotice` hears of each file that cannot be served, once. */
  constructor(directory: string, onNotice: (line: string) => void = () => {}) {
    this.directory = resolve(directory);
    this.#onNotice = onNotice;
  }

  /** The function files found by the last scan that are not served. */
  get skipped(): readonly SkippedFile[] {
    return this.#skipped;
  }

  async #findFiles(): Promise<{ files: Map<string, string>; skipped: SkippedFile[] }> {
    const files = new Map<string, string>();
    const skipped: SkippedFile[] = [];
    let entries: Array<{ name: string; isDirectory(): boolean; isFile(): boolean }>;
    try {
      entries = await readdir(this.directory, { withFileTypes: true });
    } catch {
      return { files, skipped };
    }
    const add = (name: string, file: string) => {
      const taken = files.get(name);
      if (!FUNCTION_NAME.test(name)) {
        skipped.push({
          file,
          name,
          reason: `"${name}" is not a function name (${FUNCTION_NAME_RULE}): rename it`,
        });
      } else if (taken) {
        skipped.push({
          file,
          name,
          reason: `"${name}" is served from ${shownPath(taken)}: rename one of them`,
        });
      } else {
        files.set(name, file);
      }
    };
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      if (entry.name.startsWith(".") || entry.name === "node_modules") continue;
      if (entry.isFile() && isFunctionFile(entry.name)) {
        add(entry.name.slice(0, -extname(entry.name).length), join(this.directory, entry.name));
      } else if (entry.isDirectory()) {
        // A folder without an index file is the functions' shared code, not a function.
        for (const extension of EXTENSIONS) {
          const index = join(this.directory, entry.name, `index${extension}`);
          if (await isFile(index)) {
            add(entry.name, index);
            break;
          }
        }
      }
    }
    return { files, skipped };
  }

  /** Scans now (bundling what changed; bundles are cached). */
  async scan(): Promise<Map<string, ServedFunction>> {
    this.#scanning ??= (async () => {
      const found = new Map<string, ServedFunction>();
      const { files, skipped } = await this.#findFiles();
      for (const { file, reason } of skipped) {
        const said = `${file}\0${reason}`;
        if (this.#said.has(said)) continue;
        this.#said.add(said);
        this.#onNotice(`fnrun: ${shownPath(file)} is not served: ${reason}`);
      }
      this.#skipped = skipped;
      for (const [name, file] of files) {
        try {
          const bundle = await bundleFunction(file);
          found.set(name, { name, file, config: bundle.config, bundle });
        } catch (error) {
          found.set(name, {
            name,
            file,
            config: {},
            problem: error instanceof FnrunError ? error.message : String(error),
          });
        }
      }
      this.#functions = found;
      this.#scannedAt = Date.now();
      return found;
    })().finally(() => {
      this.#scanning = undefined;
    });
    return this.#scanning;
  }

  async list(): Promise<ServedFunction[]> {
    if (Date.now() - this.#scannedAt > 1000) await this.scan();
    return [...this.#functions.values()];
  }

  async get(name: string): Promise<ServedFunction | undefined> {
    if (!FUNCTION_NAME.test(name)) return undefined;
    if (!this.#functions.has(name) || Date.now() - this.#scannedAt > 1000) await this.scan();
    return this.#functions.get(name);
  }
}
