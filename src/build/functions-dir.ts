/**
 * The functions `fnrun serve` serves: every function file directly in its
 * directory (hello.ts is "hello"), and every subdirectory with an index file
 * (orders/index.ts is "orders"). Rescanned when asked for a name it does not
 * know, and at most once a second otherwise, so new and edited functions are
 * picked up without a restart.
 */
import { readdir, stat } from "node:fs/promises";
import { extname, join, resolve } from "node:path";
import { FnrunError } from "../util/errors.ts";
import { type Bundle, bundleFunction } from "./bundle.ts";
import type { FunctionConfig } from "./config.ts";

const EXTENSIONS = [".ts", ".mts", ".cts", ".js", ".mjs", ".cjs"];
export const FUNCTION_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

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

export class FunctionDirectory {
  readonly directory: string;
  #functions = new Map<string, ServedFunction>();
  #scannedAt = 0;
  #scanning: Promise<Map<string, ServedFunction>> | undefined;

  constructor(directory: string) {
    this.directory = resolve(directory);
  }

  async #findFiles(): Promise<Map<string, string>> {
    const files = new Map<string, string>();
    let entries: Array<{ name: string; isDirectory(): boolean; isFile(): boolean }>;
    try {
      entries = await readdir(this.directory, { withFileTypes: true });
    } catch {
      return files;
    }
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      if (entry.name.startsWith(".") || entry.name === "node_modules") continue;
      if (entry.isFile() && isFunctionFile(entry.name)) {
        const name = entry.name.slice(0, -extname(entry.name).length);
        if (FUNCTION_NAME.test(name) && !files.has(name)) files.set(name, join(this.directory, entry.name));
      } else if (entry.isDirectory() && FUNCTION_NAME.test(entry.name)) {
        for (const extension of EXTENSIONS) {
          const index = join(this.directory, entry.name, `index${extension}`);
          if (
            await stat(index).then(
              (info) => info.isFile(),
              () => false,
            )
          ) {
            if (!files.has(entry.name)) files.set(entry.name, index);
            break;
          }
        }
      }
    }
    return files;
  }

  /** Scans now (bundling what changed; bundles are cached). */
  async scan(): Promise<Map<string, ServedFunction>> {
    this.#scanning ??= (async () => {
      const found = new Map<string, ServedFunction>();
      for (const [name, file] of await this.#findFiles()) {
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
