/**
 * The Makefile's package lists, as make itself expands them: `make setup`
 * installs what building fnrun's QEMU takes, or a new machine without meson
 * never builds it and every VM runs on the system's QEMU.
 */
import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";

/** A variable of the Makefile as make expands it, printed by a rule of the test's own. */
function makeVariable(name: string): string[] {
  const printed = execFileSync(
    "make",
    ["-s", "--no-print-directory", "-f", "Makefile", "-f", "-", "print-variable"],
    { input: `print-variable: ; @echo '$(${name})'\n`, encoding: "utf8" },
  );
  return printed.trim().split(/\s+/);
}

describe("Makefile", () => {
  it("installs the packages that build fnrun's QEMU with the others", () => {
    const buildPackages = makeVariable("QEMU_BUILD_PACKAGES");
    expect(buildPackages).toContain("meson");
    const packages = makeVariable("PACKAGES");
    expect(packages).toEqual(expect.arrayContaining(buildPackages));
  });
});
