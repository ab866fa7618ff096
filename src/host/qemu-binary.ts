/** QEMU on this host: its binary, and the firmware fnrun boots bzImages with. */
import { join } from "node:path";
import { cacheRoot } from "../util/cache.ts";
import { isExecutable, which } from "../util/which.ts";
import type { Accel } from "./accel.ts";

/** qboot, QEMU's minimal firmware for microvm (Debian: qemu-system-data). */
export const QBOOT_BIOS = "/usr/share/qemu/bios-microvm.bin";

/**
 * fnrun's own QEMU, which `make setup` builds into the cache
 * (scripts/build-microvm-qemu.sh): Debian's reduced microvm build, with TCG.
 */
export function microvmQemuPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(cacheRoot(env), "microvm-qemu", "bin", "qemu-system-x86_64");
}

/**
 * The QEMU binary: FNRUN_QEMU, else a reduced microvm build that supports the
 * accelerator (Debian/Ubuntu's is built for KVM only; fnrun's own, in the
 * cache, has TCG too), else the full one.
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
  const own = microvmQemuPath(env);
  const candidates =
    accel === "kvm"
      ? [await which("qemu-system-x86_64-microvm", env), own, await which("qemu-system-x86_64", env)]
      : [own, await which("qemu-system-x86_64", env)];
  for (const path of candidates) if (path && (await isExecutable(path))) return { path };
  return { missing: "qemu-system-x86_64 not found: run `make setup` (or apt-get install qemu-system-x86)" };
}

/**
 * The QEMU that saves and restores VMs with shared folders (10.x; 7.2 marks
 * vhost-user-fs unmigratable): FNRUN_FOLDER_QEMU, else the one `make setup`
 * fetched into the cache (scripts/fetch-folder-qemu.sh), else none, and
 * invocations with folders boot.
 */
export async function locateFolderQemu(env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  const path = env.FNRUN_FOLDER_QEMU || join(cacheRoot(env), "folder-qemu", "qemu-system-x86_64");
  return (await isExecutable(path)) ? path : undefined;
}
