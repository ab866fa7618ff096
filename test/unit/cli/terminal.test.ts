import { describe, expect, it } from "vitest";
import { logPrinter } from "../../../src/cli/terminal.ts";

describe("logPrinter", () => {
  it("ends a log's open line only when asked, and only if it is open", () => {
    let out = "";
    const logs = logPrinter((text) => (out += text));
    logs.endLine();
    expect(out).toBe("");
    logs.log("one\n");
    logs.endLine();
    expect(out).toBe("one\n");
    logs.log("no newline");
    logs.log("");
    logs.endLine();
    logs.endLine();
    expect(out).toBe("one\nno newline\n");
  });

  it("makes control characters visible, then styles the text", () => {
    let out = "";
    const logs = logPrinter(
      (text) => (out += text),
      (text) => `<${text}>`,
    );
    logs.log("\u001b[2Jred\r\n");
    expect(out).toBe("<\\x1b[2Jred\n>");
  });
});
