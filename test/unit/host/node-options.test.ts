import { describe, expect, it } from "vitest";
import { guestNodeOptions } from "../../../src/host/runtime.ts";

describe("guestNodeOptions", () => {
  it("leaves the runtime room in the heap, and under TCG drops Sparkplug", () => {
    expect(guestNodeOptions(256, "kvm")).toEqual(["--max-old-space-size=204"]);
    expect(guestNodeOptions(256, "tcg")).toEqual(["--max-old-space-size=204", "--no-sparkplug"]);
    expect(guestNodeOptions(10, "tcg")).toEqual(["--max-old-space-size=16", "--no-sparkplug"]);
  });

  it("compiles everything before a save under TCG, so that clones compile nothing they were saved with", () => {
    expect(guestNodeOptions(512, "tcg", true)).toEqual([
      "--max-old-space-size=409",
      "--no-sparkplug",
      "--no-lazy",
    ]);
    expect(guestNodeOptions(512, "kvm", true)).toEqual(["--max-old-space-size=409"]);
  });
});
