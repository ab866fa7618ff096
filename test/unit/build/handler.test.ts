import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  findHandlerModule,
  handlerPath,
  isHandlerString,
  parseHandlerString,
} from "../../../src/build/handler.ts";
import { UsageError } from "../../../src/util/errors.ts";

describe("handler strings, as Lambda reads them", () => {
  it("splits MODULE.PATH at the first dot of the last path component", () => {
    expect(parseHandlerString("index.handler")).toEqual({ directory: "", module: "index", path: "handler" });
    expect(parseHandlerString("nestedHandler.nested.somethingComplex.handler")).toEqual({
      directory: "",
      module: "nestedHandler",
      path: "nested.somethingComplex.handler",
    });
    // Dots in a directory's name are part of the directory, not of the handler.
    expect(parseHandlerString("lib.v2/src/index.handler")).toEqual({
      directory: "lib.v2/src/",
      module: "index",
      path: "handler",
    });
    expect(parseHandlerString("handler")).toBeUndefined();
    expect(parseHandlerString("index.")).toBeUndefined();
  });

  it("accepts exports, paths and MODULE.PATH, and nothing that cannot name one", () => {
    for (const good of [
      "handler",
      "nested.somethingComplex.handler",
      "src/index.handler",
      "lib.v2/index.h",
    ]) {
      expect(isHandlerString(good), good).toBe(true);
    }
    for (const bad of [
      "",
      "a..b",
      ".a",
      "a.",
      "a b",
      "/etc/passwd.x",
      "../up.handler",
      5,
      null,
      "x".repeat(300),
    ]) {
      expect(isHandlerString(bad), String(bad)).toBe(false);
    }
  });

  it("calls PATH in the function's exports, and strips MODULE when it is the function itself", () => {
    expect(handlerPath("handler", "nestedHandler")).toBe("handler");
    expect(handlerPath("nested.somethingComplex.handler", "nestedHandler")).toBe(
      "nested.somethingComplex.handler",
    );
    expect(handlerPath("nestedHandler.nested.somethingComplex.handler", "nestedHandler")).toBe(
      "nested.somethingComplex.handler",
    );
    expect(handlerPath("hello.greet", "hello")).toBe("greet");
    expect(handlerPath("src/hello.greet", "hello")).toBe("greet");
    expect(() => handlerPath("src/other.greet", "hello")).toThrow(UsageError);
    expect(() => handlerPath("src/other.greet", "hello")).toThrow(
      /names the module src\/other, but the function is hello/,
    );
  });
});

describe("findHandlerModule", () => {
  const root = mkdtempSync(join(tmpdir(), "fnrun-handler-test-"));
  const functions = join(root, "functions");
  mkdirSync(join(functions, "lib.v2"), { recursive: true });
  writeFileSync(join(root, "here.cjs"), "module.exports.handler = () => 1;");
  writeFileSync(join(root, "here.ts"), "export const handler = () => 2;");
  writeFileSync(join(functions, "there.mjs"), "export const handler = () => 3;");
  writeFileSync(join(functions, "lib.v2", "index.ts"), "export const handler = () => 4;");
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("looks in the current directory first, then the functions directory, in Lambda's order of extensions", async () => {
    expect(await findHandlerModule("here.handler", [root, functions])).toBe(join(root, "here.cjs"));
    expect(await findHandlerModule("there.handler", [root, functions])).toBe(join(functions, "there.mjs"));
    expect(await findHandlerModule("lib.v2/index.handler", [root, functions])).toBe(
      join(functions, "lib.v2", "index.ts"),
    );
  });

  it("says where it looked when the module is not there, and what a handler string must be", async () => {
    await expect(findHandlerModule("missing.handler", [root, functions])).rejects.toThrow(
      /no module missing \(\.js, \.mjs, \.cjs, \.ts, \.mts, \.cts\) in .* or .*functions/,
    );
    await expect(findHandlerModule("handler", [root])).rejects.toThrow(/must be MODULE\.EXPORT/);
  });
});
