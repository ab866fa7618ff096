import { describe, expect, it } from "vitest";
import { automaticFunctionSnapshots, nextStep } from "../../../src/start/function-snapshots.ts";

describe("automatic function snapshots", () => {
  it("remembers a version's first invocation, makes its snapshot on the second, never after a refusal", () => {
    expect(nextStep(undefined)).toBe("remember");
    expect(nextStep("seen\n")).toBe("make");
    expect(nextStep("refused: Runtime.SnapshotError: f draws randomness\n")).toBe("none");
    // A marker this fnrun does not know (a later format): start again.
    expect(nextStep("made-by-a-later-fnrun\n")).toBe("remember");
  });

  it("is on unless FNRUN_FUNCTION_SNAPSHOTS=off", () => {
    expect(automaticFunctionSnapshots({})).toBe(true);
    expect(automaticFunctionSnapshots({ FNRUN_FUNCTION_SNAPSHOTS: "on" })).toBe(true);
    expect(automaticFunctionSnapshots({ FNRUN_FUNCTION_SNAPSHOTS: "off" })).toBe(false);
  });
});
