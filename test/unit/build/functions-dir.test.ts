// What `fnrun serve` serves from a functions directory, and what it says of the
// function files it cannot serve (before, they were passed over in silence, and
// a request for one got a bare 404).
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FunctionDirectory } from "../../../src/build/functions-dir.ts";
import { temporaryDirectory } from "../temporary-directory.ts";

const HANDLER = 'export const handler = () => "ok";\n';

function functionsDirectory(files: string[]): string {
  const directory = temporaryDirectory("functions-dir");
  for (const file of files) {
    mkdirSync(join(directory, file, ".."), { recursive: true });
    writeFileSync(join(directory, file), HANDLER);
  }
  return directory;
}

describe("FunctionDirectory", () => {
  it("serves files and folders with index files by name, and says once why it cannot serve the others", async () => {
    const long = "a".repeat(65);
    const directory = functionsDirectory([
      "hello.ts",
      "hello.js",
      "orders/index.ts",
      "orders.mjs",
      "send.email.ts",
      "über.ts",
      `${long}.ts`,
      "_private.ts",
      // Not function files: no notice.
      "lib/format.ts",
      "hello.test.ts",
      "types.d.ts",
      ".hidden.ts",
      "README.md",
    ]);
    const notices: string[] = [];
    const functions = new FunctionDirectory(directory, (line) => notices.push(line));

    const found = await functions.scan();
    expect([...found.keys()].sort()).toEqual(["hello", "orders"]);
    expect(found.get("hello")?.file).toBe(join(directory, "hello.js"));
    expect(found.get("orders")?.file).toBe(join(directory, "orders/index.ts"));

    const rule = "letters, digits, - and _, at most 64, starting with a letter or digit";
    const skipped = functions.skipped
      .map(({ file, name, reason }) => ({
        file: file.slice(directory.length + 1),
        name,
        reason: reason.replaceAll(`${directory}/`, ""),
      }))
      .sort((a, b) => (a.file < b.file ? -1 : 1));
    expect(skipped).toEqual([
      {
        file: "_private.ts",
        name: "_private",
        reason: `"_private" is not a function name (${rule}): rename it`,
      },
      { file: `${long}.ts`, name: long, reason: `"${long}" is not a function name (${rule}): rename it` },
      { file: "hello.ts", name: "hello", reason: '"hello" is served from hello.js: rename one of them' },
      {
        file: "orders.mjs",
        name: "orders",
        reason: '"orders" is served from orders/index.ts: rename one of them',
      },
      {
        file: "send.email.ts",
        name: "send.email",
        reason: `"send.email" is not a function name (${rule}): rename it`,
      },
      { file: "über.ts", name: "über", reason: `"über" is not a function name (${rule}): rename it` },
    ]);
    expect(notices).toHaveLength(6);
    expect(notices).toContain(
      `fnrun: ${join(directory, "send.email.ts")} is not served: "send.email" is not a function name (${rule}): rename it`,
    );

    // Said once: a rescan finds the same files and says nothing more.
    await functions.scan();
    expect(notices).toHaveLength(6);
    expect(await functions.get("send.email")).toBeUndefined();
  });
});
