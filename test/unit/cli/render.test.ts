import { describe, expect, it } from "vitest";
import { formatTable, utcTime } from "../../../src/cli/render.ts";

describe("formatTable", () => {
  it("makes each column as wide as its widest cell, heading included", () => {
    const text = formatTable(
      [{ heading: "memory" }, { heading: "function" }, { heading: "on disk", align: "right" }, {}],
      [
        ["256 MB", "reads-in-handler", "96 MB", ""],
        ["1024 MB", "-", "1096 MB", "(stale)"],
      ],
    );
    expect(text.split("\n")).toEqual([
      "memory   function          on disk",
      "256 MB   reads-in-handler    96 MB",
      "1024 MB  -                 1096 MB  (stale)",
      "",
    ]);
  });

  it("has no heading line when no column has a heading", () => {
    expect(
      formatTable(
        [{}, { align: "right" }],
        [
          ["a", "1"],
          ["bbb", "22"],
        ],
      ),
    ).toBe("a     1\nbbb  22\n");
  });

  it("keeps a cell on its line: control characters, newlines and tabs shown escaped", () => {
    const text = formatTable([{}, {}], [["evil\u001b[2J\nname\tx", "ok"]]);
    expect(text).toBe("evil\\x1b[2J\\nname\\tx  ok\n");
    expect(text.split("\n")).toHaveLength(2);
  });

  it("writes nothing for no rows and no headings", () => {
    expect(formatTable([{}, {}], [])).toBe("");
  });
});

describe("utcTime", () => {
  it("shows a time in UTC, to the second or the minute", () => {
    const at = Date.UTC(2026, 11, 7, 20, 41, 2, 999);
    expect(utcTime(at)).toBe("2026-12-07 20:41:02");
    expect(utcTime(new Date(at), false)).toBe("2026-12-07 20:41");
  });
});
