/**
 * Choosing the accelerator. KVM when it really works, TCG (software emulation)
 * otherwise.
 *
 * `/dev/kvm` alone proves nothing: on some hosts it is backed by kvm_pvm, a
 * paravirtual KVM that stock guest kernels cannot run under, and on others the
 * CPU has no hardware virtualisation. KVM counts as usable only when the device
 * opens read/write, the CPU advertises vmx or svm, and kvm_pvm is not loaded.
 */
import { constants } from "node:fs";
import { access, readFile } from "node:fs/promises";

export type AccelRequest = "auto" | "kvm" | "tcg";
export type Accel = "kvm" | "tcg";

export interface AccelProbe {
  /** Null when /dev/kvm opens read/write, else why not ("missing", "EACCES"). */
  kvmDeviceProblem: string | null;
  cpuHasVirtualization: boolean;
  pvmBackend: boolean;
}

export interface AccelChoice {
  accel: Accel;
  /** Why KVM is not used; null when KVM was chosen or TCG was asked for. */
  fallbackReason: string | null;
}

/** Why KVM cannot be used on a host with this probe, or null when it can. */
export function kvmProblem(probe: AccelProbe): string | null {
  if (probe.kvmDeviceProblem === "missing") return "/dev/kvm does not exist (KVM module not loaded?)";
  if (probe.kvmDeviceProblem) {
    return `/dev/kvm cannot be opened read/write (${probe.kvmDeviceProblem}): add your user to the kvm group`;
  }
  if (probe.pvmBackend) {
    return "/dev/kvm is backed by kvm_pvm, which needs a special PVM guest kernel";
  }
  if (!probe.cpuHasVirtualization) {
    return "the CPU advertises neither vmx nor svm (hardware virtualisation off, or a nested VM without it)";
  }
  return null;
}

export function chooseAccel(request: AccelRequest, probe: AccelProbe): AccelChoice {
  if (request === "tcg") return { accel: "tcg", fallbackReason: null };
  const problem = kvmProblem(probe);
  if (request === "kvm") {
    if (problem) throw new KvmUnavailable(problem);
    return { accel: "kvm", fallbackReason: null };
  }
  return problem ? { accel: "tcg", fallbackReason: problem } : { accel: "kvm", fallbackReason: null };
}

export class KvmUnavailable extends Error {}

export async function probeAccel(): Promise<AccelProbe> {
  let kvmDeviceProblem: string | null = null;
  try {
    await access("/dev/kvm", constants.R_OK | constants.W_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    kvmDeviceProblem = code === "ENOENT" ? "missing" : (code ?? "error");
  }
  const cpuinfo = await readFile("/proc/cpuinfo", "utf8").catch(() => "");
  const cpuHasVirtualization = /^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo);
  const pvmBackend = await access("/sys/module/kvm_pvm").then(
    () => true,
    () => false,
  );
  return { kvmDeviceProblem, cpuHasVirtualization, pvmBackend };
}
