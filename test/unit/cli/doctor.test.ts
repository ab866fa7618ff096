import { describe, expect, it } from "vitest";
import { sqliteCheck } from "../../../src/cli/doctor.ts";
import { SetupError } from "../../../src/util/errors.ts";
import { loadSqlite } from "../../../src/util/sqlite.ts";

/** A `require` whose better-sqlite3 loads, but whose native part fails with the first database opened, saying `message`. */
function nativePartFails(message: string): NodeJS.Require {
  return (() =>
    class {
      constructor() {
        throw new Error(message);
      }
    }) as unknown as NodeJS.Require;
}

/** As one built for another Node does. */
const builtForAnotherNode = nativePartFails(
  "was compiled against a different Node.js version (NODE_MODULE_VERSION 108)\nmore",
);

describe("better-sqlite3, checked to work", () => {
  it("opens a database with the installed package (doctor: ok)", () => {
    expect(loadSqlite()).toBeTypeOf("function");
    expect(sqliteCheck()).toMatchObject({ name: "SQLite", level: "ok" });
  });

  it("is a SetupError with the fix when the package loads but its native part does not", () => {
    const load = () => loadSqlite(builtForAnotherNode);
    expect(load).toThrow(SetupError);
    expect(load).toThrow(
      /does not work: was compiled against a different Node\.js version \(NODE_MODULE_VERSION 108\): run `make setup`/,
    );
    expect(sqliteCheck(load)).toEqual({
      name: "SQLite",
      level: "warn",
      detail:
        "better-sqlite3 (for the history and the embedded queue) does not work: was compiled against a different Node.js version (NODE_MODULE_VERSION 108)",
      fix: "run `make setup` (npm ci builds it for this Node)",
    });
  });

  it("is a SetupError when the package is missing", () => {
    const missing = (() => {
      throw new Error("Cannot find module 'better-sqlite3'");
    }) as unknown as NodeJS.Require;
    expect(() => loadSqlite(missing)).toThrow(/Cannot find module 'better-sqlite3'/);
  });
});

describe("better-sqlite3's error, shown", () => {
  it("keeps the first line of bindings' error without the list it introduces", () => {
    const unbuilt = nativePartFails(
      "Could not locate the bindings file. Tried:\n → /a/build/better_sqlite3.node",
    );
    expect(() => loadSqlite(unbuilt)).toThrow(
      "better-sqlite3 (for the history and the embedded queue) does not work: Could not locate the bindings file: run `make setup` (npm ci builds it for this Node)",
    );
  });
});
