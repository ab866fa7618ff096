import { describe, expect, it } from "vitest";
import { resolveHandler } from "../../../runtime-initrd/guest/resolve-handler.ts";

const handler = async () => "top";
const nested = async () => "something interesting";

describe("resolveHandler (the guest's walk along a handler path)", () => {
  it("finds a top-level export, and the default export for `handler`", () => {
    expect(resolveHandler({ handler }, "handler", "f.handler")).toEqual({ handler });
    const fallback = async () => "default";
    expect(resolveHandler({ default: fallback }, "handler", "f.handler")).toEqual({ handler: fallback });
  });

  it("walks a nested path, in the exports or in CommonJS's module.exports (the default export)", () => {
    const exports = { nested: { somethingComplex: { handler: nested } } };
    expect(resolveHandler(exports, "nested.somethingComplex.handler", "x")).toEqual({ handler: nested });
    expect(resolveHandler({ default: exports }, "nested.somethingComplex.handler", "x")).toEqual({
      handler: nested,
    });
  });

  it("says which path was tried when it names nothing", () => {
    expect(
      resolveHandler({ handler, other: 1 }, "nested.missing.handler", "fn.nested.missing.handler"),
    ).toEqual({
      error: {
        errorType: "Runtime.HandlerNotFound",
        errorMessage:
          "fn.nested.missing.handler is undefined or not exported (the function exports: handler, other). " +
          "Export it, or choose another with --handler (docs/functions.md: handler strings).",
      },
    });
    expect(resolveHandler({}, "handler", "fn.handler")).toMatchObject({
      error: {
        errorMessage: expect.stringMatching(
          /^fn\.handler is undefined or not exported \(the function exports: nothing\)/,
        ),
      },
    });
  });

  it("says so when the path names something that is not a function", () => {
    const exports = { nested: { somethingComplex: { handler: "a string" } }, config: { timeout: 5 } };
    expect(
      resolveHandler(exports, "nested.somethingComplex.handler", "fn.nested.somethingComplex.handler"),
    ).toEqual({
      error: {
        errorType: "Runtime.HandlerNotFound",
        errorMessage: "fn.nested.somethingComplex.handler is not a function (it is a string)",
      },
    });
    expect(resolveHandler(exports, "nested", "fn.nested")).toMatchObject({
      error: { errorMessage: "fn.nested is not a function (it is an object)" },
    });
  });

  it("stops at values that have no properties instead of throwing", () => {
    expect(resolveHandler({ a: null, b: 3 }, "a.handler", "fn.a.handler")).toMatchObject({
      error: { errorType: "Runtime.HandlerNotFound" },
    });
    expect(resolveHandler({ a: null, b: 3 }, "b.handler", "fn.b.handler")).toMatchObject({
      error: { errorType: "Runtime.HandlerNotFound" },
    });
  });
});
