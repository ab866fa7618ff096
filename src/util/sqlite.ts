/**
 * better-sqlite3, for the history and the embedded queue. It is CommonJS:
 * `require` loads it as it is, where `import()` would first have Node's ESM
 * loader scan its files for their exports (as for esbuild, build/bundle.ts).
 */
import { createRequire } from "node:module";
import type Database from "better-sqlite3";
import { SetupError } from "./errors.ts";

/** An error's first line, without a closing full stop or a last phrase that introduces what follows (bindings' "Tried:"). */
function firstLine(message: string): string {
  return (message.split("\n")[0] ?? "").replace(/\s*[^.]*:\s*$/, "").replace(/[.\s]+$/, "");
}

/** What to do when it does not work. */
export const SQLITE_FIX = "run `make setup` (npm ci builds it for this Node)";

/** What went wrong, from the error of loading the package or opening a database (without the fix). */
export function sqliteProblem(error: unknown): string {
  const detail = error instanceof Error ? error.message : String(error);
  return `better-sqlite3 (for the history and the embedded queue) does not work: ${firstLine(detail)}`;
}

let loaded: typeof Database | undefined;

/**
 * The package, checked to work: its native part loads with the first database
 * opened, so one is opened in memory here, and a part built for another Node
 * (or never built) fails now, with the fix, rather than as the history's or
 * the queue's own error.
 */
export function loadSqlite(require?: NodeJS.Require): typeof Database {
  if (loaded && !require) return loaded;
  try {
    const DatabaseClass = (require ?? createRequire(import.meta.url))("better-sqlite3") as typeof Database;
    new DatabaseClass(":memory:").close();
    if (!require) loaded = DatabaseClass;
    return DatabaseClass;
  } catch (error) {
    throw new SetupError(`${sqliteProblem(error)}: ${SQLITE_FIX}`, { cause: error });
  }
}
