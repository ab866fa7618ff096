/**
 * better-sqlite3, for the history and the embedded queue. It is CommonJS:
 * `require` loads it as it is, where `import()` would first have Node's ESM
 * loader scan its files for their exports (as for esbuild, build/bundle.ts).
 */
import { createRequire } from "node:module";
import type Database from "better-sqlite3";

export function loadSqlite(): typeof Database {
  return createRequire(import.meta.url)("better-sqlite3") as typeof Database;
}
