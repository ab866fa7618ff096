import { describe, expect, it } from "vitest";
import { clockRequest, reseedRequest } from "../../../runtime-initrd/guest/reseed-request.ts";

describe("reseedRequest (the clone's request to the stage-0 agent)", () => {
  it("carries the host's clock, when the guest read it (monotonic, ns), and the entropy", () => {
    expect(reseedRequest("ab".repeat(64), 1_796_610_000_123.5, 6_512.25)).toBe(
      `reseed 1796610000 123500000 6512250000 ${"ab".repeat(64)}`,
    );
  });

  it("splits whole seconds exactly", () => {
    expect(reseedRequest("00", 1_000, 0.000001)).toBe("reseed 1 0 1 00");
  });
});

describe("clockRequest (a booted VM's clock, set from the host's)", () => {
  it("carries the host's clock and when the guest read it", () => {
    expect(clockRequest(1_796_610_000_123.5, 2_800.5)).toBe("clock 1796610000 123500000 2800500000");
  });
});
