import { describe, expect, it } from "vitest";
import { plausibleKhz } from "../../../src/host/tsc.ts";

describe("the host's TSC rate for TCG guests", () => {
  it("takes the tool's output only as a rate a TSC can have", () => {
    expect(plausibleKhz("2096021\n")).toBe(2_096_021);
    expect(plausibleKhz("")).toBeUndefined();
    expect(plausibleKhz("12.5\n")).toBeUndefined();
    expect(plausibleKhz("99999\n")).toBeUndefined();
    expect(plausibleKhz("20000001\n")).toBeUndefined();
  });
});
