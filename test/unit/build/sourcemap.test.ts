import { describe, expect, it } from "vitest";
import { createStackMapper } from "../../../src/build/sourcemap.ts";

describe("createStackMapper", () => {
  it("shows a source's path as it is on disk, not as the source map's URL encodes it", () => {
    // esbuild's source maps hold URLs: "ü" is %C3%BC there, and a "%" of the name %25.
    const map = JSON.stringify({
      version: 3,
      sources: ["../tmp/x/%C3%BCn%C3%AF/a%2520b %C3%A9.ts", "functions/plain.ts"],
      names: [],
      mappings: "AAAA;ACAA",
    });
    const mapped = createStackMapper(map, "/work");
    expect(mapped("    at handler (/fnrun/function.mjs:1:1)")).toBe(
      "    at handler (/tmp/x/ünï/a%20b é.ts:1:1)",
    );
    expect(mapped("    at other (file:///fnrun/function.mjs:2:1)")).toBe(
      "    at other (/fnrun/functions/plain.ts:1:1)",
    );
  });
});
