import { describe, expect, it } from "vitest";
import { bundleFunction } from "../../../src/build/bundle.ts";

describe("bundleFunction", () => {
  it("warns of each native addon it bundled, whose compiled .node file cannot come along", async () => {
    const bundle = await bundleFunction("test/fixtures/native-addon/uses-addon.ts", { cache: false });
    expect(bundle.warnings).toEqual([
      "@scope/prebuilt is a native addon (it has prebuilds/): its compiled .node file is not in the bundle, so loading it fails in the VM",
      "fake-addon is a native addon (it has a binding.gyp): its compiled .node file is not in the bundle, so loading it fails in the VM",
    ]);
  });

  it("warns of nothing for plain packages", async () => {
    const bundle = await bundleFunction("test/fixtures/cjs-dependency/uses-cjs.ts", { cache: false });
    expect(bundle.warnings).toEqual([]);
  });
});
