import { describe, expect, it } from "vitest";
import { type AccelProbe, chooseAccel, KvmUnavailable } from "../../../src/host/accel.ts";

const usable: AccelProbe = { kvmDeviceProblem: null, cpuHasVirtualization: true, pvmBackend: false };

describe("chooseAccel", () => {
  it("picks KVM on an ordinary Linux host with VT-x/AMD-V", () => {
    expect(chooseAccel("auto", usable)).toEqual({ accel: "kvm", fallbackReason: null });
  });

  it("falls back to TCG with a one-line reason for each way KVM can be unusable", () => {
    const cases: Array<[Partial<AccelProbe>, RegExp]> = [
      [{ kvmDeviceProblem: "missing" }, /\/dev\/kvm does not exist/],
      [{ kvmDeviceProblem: "EACCES" }, /cannot be opened read\/write \(EACCES\).*kvm group/],
      [{ pvmBackend: true }, /kvm_pvm/],
      [{ cpuHasVirtualization: false }, /neither vmx nor svm/],
    ];
    for (const [change, reason] of cases) {
      const choice = chooseAccel("auto", { ...usable, ...change });
      expect(choice.accel).toBe("tcg");
      expect(choice.fallbackReason).toMatch(reason);
      expect(choice.fallbackReason).not.toContain("\n");
    }
  });

  it("does not trust /dev/kvm alone: this project's machines (PVM, no vmx) get TCG", () => {
    expect(
      chooseAccel("auto", { kvmDeviceProblem: null, cpuHasVirtualization: false, pvmBackend: true }).accel,
    ).toBe("tcg");
  });

  it("honours an explicit choice, and refuses KVM where it cannot work", () => {
    expect(chooseAccel("tcg", usable)).toEqual({ accel: "tcg", fallbackReason: null });
    expect(chooseAccel("kvm", usable)).toEqual({ accel: "kvm", fallbackReason: null });
    expect(() => chooseAccel("kvm", { ...usable, pvmBackend: true })).toThrow(KvmUnavailable);
  });
});
