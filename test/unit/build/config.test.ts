import { describe, expect, it } from "vitest";
import { parseMount } from "../../../src/build/config.ts";
import { extractConfig } from "../../../src/build/config-extract.ts";
import { BundleError } from "../../../src/util/errors.ts";

describe("extractConfig", () => {
  it("reads `export const config` as a literal", () => {
    expect(
      extractConfig(
        'export const config = { timeout: 5, memory: 512, env: { A: "1", B: `two` }, net: true, handler: "main" };',
        "f.ts",
      ),
    ).toEqual({ timeout: 5, memory: 512, env: { A: "1", B: "two" }, net: true, handler: "main" });
  });

  it("reads `export { local as config }` and CommonJS `module.exports.config`", () => {
    expect(extractConfig("const settings = { timeout: 2 };\nexport { settings as config };", "f.js")).toEqual(
      {
        timeout: 2,
      },
    );
    expect(extractConfig("module.exports.config = { memory: 128 };", "f.cjs")).toEqual({ memory: 128 });
    expect(extractConfig("exports.config = { memory: 128 };", "f.cjs")).toEqual({ memory: 128 });
  });

  it("returns {} when there is no config", () => {
    expect(extractConfig("export const handler = async () => 1;", "f.js")).toEqual({});
  });

  it("rejects a config that is not a literal, with its position", () => {
    const error = (() => {
      try {
        extractConfig("const t = 5;\nexport const config = { timeout: t };", "f.ts");
      } catch (caught) {
        return caught as BundleError;
      }
    })();
    expect(error).toBeInstanceOf(BundleError);
    expect(error?.location).toMatchObject({ file: "f.ts", line: 2, column: 34 });
    expect(error?.message).toMatch(/must be a literal object/);
  });

  it("rejects unknown keys and values out of range", () => {
    expect(() => extractConfig("export const config = { timout: 5 };", "f.ts")).toThrow(
      /unknown key\(s\) timout; known keys: timeout, memory/,
    );
    expect(() => extractConfig("export const config = { memory: 1 };", "f.ts")).toThrow(
      "config.memory must be a whole number from 64 to 16384, not 1",
    );
    // QEMU would refuse "-m 100.5" as the VM started: a boot error, not the config's.
    expect(() => extractConfig("export const config = { memory: 100.5 };", "f.ts")).toThrow(
      "config.memory must be a whole number from 64 to 16384, not 100.5",
    );
    expect(() => extractConfig("export const config = { concurrency: 2.5 };", "f.ts")).toThrow(
      "config.concurrency must be a whole number from 1 to 256, not 2.5",
    );
    expect(() => extractConfig("export const config = { timeout: 1000 };", "f.ts")).toThrow(
      "config.timeout must be a number from 0.1 to 900, not 1000",
    );
    expect(() => extractConfig('export const config = { env: { "BAD-NAME": "x" } };', "f.ts")).toThrow(
      /not a valid variable name/,
    );
  });
});

describe("parseMount", () => {
  it("parses HOST:GUEST[:ro|rw], read-only by default", () => {
    expect(parseMount("./data:/mnt/data")).toEqual({ source: "./data", target: "/mnt/data", readOnly: true });
    expect(parseMount("./out:/mnt/out:rw")).toEqual({ source: "./out", target: "/mnt/out", readOnly: false });
    expect(() => parseMount("./data")).toThrow(/HOST_DIR:GUEST_DIR/);
    expect(() => parseMount("./a:/b:rx")).toThrow(/HOST_DIR:GUEST_DIR/);
  });
});
