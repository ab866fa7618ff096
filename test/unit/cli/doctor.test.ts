import { describe, expect, it } from "vitest";
import { sqliteCheck } from "../../../src/cli/doctor.ts";
import type { loadSqlite } from "../../../src/util/sqlite.ts";

describe("doctor's SQLite check", () => {
  it("passes with the installed better-sqlite3, which opens a database", () => {
    expect(sqliteCheck()).toMatchObject({ name: "SQLite", level: "ok" });
  });

  it("warns, with the fix, when the package loads but its native part does not (built for another Node)", () => {
    const builtForAnotherNode = class {
      constructor() {
        throw new Error("was compiled against a different Node.js version (NODE_MODULE_VERSION 108)");
      }
    } as unknown as ReturnType<typeof loadSqlite>;
    expect(sqliteCheck(() => builtForAnotherNode)).toMatchObject({
      level: "warn",
      detail: expect.stringContaining("different Node.js version"),
      fix: expect.stringContaining("make setup"),
    });
  });

  it("warns when the package is missing", () => {
    const missing = () => {
      throw new Error("Cannot find module 'better-sqlite3'");
    };
    expect(sqliteCheck(missing)).toMatchObject({
      level: "warn",
      detail: expect.stringContaining("Cannot find"),
    });
  });
});
