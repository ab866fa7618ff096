import { describe, expect, it } from "vitest";
import { temporaryDirectory } from "../temporary-directory.ts";
import { runMain } from "./run-main.ts";

describe("fnrun history, empty", () => {
  it("says there is nothing yet, of the function asked for when one is (its name escaped)", async () => {
    const env = { FNRUN_STATE_DIR: temporaryDirectory("history-cli") };
    expect(await runMain(["history"], env)).toEqual({ code: 0, stdout: "", stderr: "no invocations yet\n" });
    expect(await runMain(["history", "--function", "nope"], env)).toEqual({
      code: 0,
      stdout: "",
      stderr: "no invocations of nope yet\n",
    });
    expect((await runMain(["history", "--function", "x\u001b[31m"], env)).stderr).toBe(
      "no invocations of x\\x1b[31m yet\n",
    );
  });
});
