/** QEMU on this host: its binary, and the firmware fnrun boots bzImages with. */
import { isExecutable, which } from "../util/which.ts";
import type { Accel } from "./accel.ts";

/** qboot, QEMU's minimal firmware for microvm (Debian: qemu-system-data). */
export const QBOOT_BIOS = "/usr/share/qemu/bios-microvm.bin";

/**
 * The QEMU binary: FNRUN_QEMU, else Debian/Ubuntu's reduced microvm build when it
 * supports the accelerator (Debian's is built for KVM only), else the full one.
 */
export async function locateQemu(
  accel: Accel,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ path: string } | { missing: string }> {
  if (env.FNRUN_QEMU) {
    return (await isExecutable(env.FNRUN_QEMU))
      ? { path: env.FNRUN_QEMU }
      : { missing: `FNRUN_QEMU=${env.FNRUN_QEMU} is not an executable file` };
  }
  const candidates =
    accel === "kvm" ? ["qemu-system-x86_64-microvm", "qemu-system-x86_64"] : ["qemu-system-x86_64"];
  for (const name of candidates) {
    const found = await which(name, env);
    if (found) return { path: found };
  }
  return { missing: "qemu-system-x86_64 not found: run `make setup` (or apt-get install qemu-system-x86)" };
}
