/** QEMU on this host: its binary, and the firmware fnrun boots bzImages with. */
import { readFile } from "node:fs/promises";
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
 * The patch that lets fnrun's QEMU (7.2) save and restore a vhost-user-fs
 * device, which stock 7.2 marks unmigratable (scripts/qemu-patches/). The build
 * lists the patches it applied in `patches`, next to `bin/`.
 */
export const FOLDER_PATCH = "vhost-user-fs-migratable";

/**
 * The QEMU that saves and restores VMs with shared folders, in this order:
 * FNRUN_FOLDER_QEMU; fnrun's own build when it has FOLDER_PATCH (the fastest:
 * docs/performance.md); QEMU 10, which can do it as it is, if `make
 * folder-qemu` fetched it into the cache; else none, and invocations with
 * folders boot. Pure: `own` is fnrun's build and the patches it lists, or
 * undefined when it is not there.
 */
export function pickFolderQemu(choices: {
  override?: string | undefined;
  own?: { path: string; patches: readonly string[] } | undefined;
  fetched?: string | undefined;
}): string | undefined {
  if (choices.override) return choices.override;
  if (choices.own?.patches.includes(FOLDER_PATCH)) return choices.own.path;
  return choices.fetched;
}

/** pickFolderQemu on this host: the binaries that are there and run. */
export async function locateFolderQemu(env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  const present = async (path: string) => ((await isExecutable(path)) ? path : undefined);
  if (env.FNRUN_FOLDER_QEMU) return present(env.FNRUN_FOLDER_QEMU);
  const own = await present(microvmQemuPath(env));
  const patches = own
    ? await readFile(join(own, "..", "..", "patches"), "utf8").then(
        (text) => text.split("\n").filter(Boolean),
        () => [],
      )
    : [];
  return pickFolderQemu({
    own: own ? { path: own, patches } : undefined,
    fetched: await present(join(cacheRoot(env), "folder-qemu", "qemu-system-x86_64")),
  });
}
