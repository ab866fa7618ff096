// Where `fnrun invoke` reads its event from, and how: what is refused happens
// before any VM, so each case here is a usage error (exit 2).
import { describe, expect, it } from "vitest";
import { parseJson } from "../../../src/cli/io.ts";
import { ExitCode } from "../../../src/util/errors.ts";
import { runMain } from "./run-main.ts";

const HELLO = "functions/hello.ts";

describe("the event's input", () => {
  it("reads standard input for --event-file - as for --event -", async () => {
    for (const flag of ["--event", "-e", "--event-file"]) {
      const run = await runMain(["invoke", HELLO, flag, "-"], {}, "{nope");
      expect(run.code, flag).toBe(ExitCode.usage);
      expect(run.stderr, flag).toContain("the event on standard input is not valid JSON");
    }
    const empty = await runMain(["invoke", HELLO, "--event-file", "-"]);
    expect(empty.code).toBe(ExitCode.usage);
    expect(empty.stderr).toContain("--event-file -: standard input is empty; pipe a JSON event into fnrun");
  });

  it("refuses - for fnrun dev, whose standard input is its keys", async () => {
    for (const flag of ["--event", "--event-file"]) {
      const run = await runMain(["dev", HELLO, flag, "-"], {}, "{}");
      expect(run.code, flag).toBe(ExitCode.usage);
      expect(run.stderr, flag).toContain("fnrun dev reads its keys (r, q) from standard input, not an event");
    }
  });

  it("reads JSON past a UTF-8 byte order mark, as editors on Windows save it", () => {
    expect(parseJson('\uFEFF{"name":"Notepad"}', "event file")).toEqual({ name: "Notepad" });
    expect(() => parseJson("\uFEFF", "event file")).toThrow("event file is not valid JSON");
  });
});
