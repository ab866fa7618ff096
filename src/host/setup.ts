/**
 * What a VM needs from this machine, resolved once and reused by invoke, the
 * pool, snapshots and serve: the accelerator, the QEMU binary, the kernel and
 * the runtime image (built on first use, with progress lines).
 */

import { SetupError, UsageError } from "../util/errors.ts";
import { type Progress, silent } from "../util/progress.ts";
import { which } from "../util/which.ts";
import { type AccelChoice, type AccelRequest, chooseAccel, KvmUnavailable, probeAccel } from "./accel.ts";
import { type Kernel, resolveKernel } from "./kernel.ts";
import { locateFolderQemu, locateQemu } from "./qemu-binary.ts";
import { type RuntimeImage, type RuntimeLayout, resolveRuntime } from "./runtime.ts";

export interface HostSetup {
  accel: AccelChoice;
  qemuPath: string;
  /** The QEMU for snapshots with shared folders, when this host has one (qemu-binary.ts). */
  folderQemuPath?: string;
  kernel: Kernel;
  runtime: RuntimeImage;
  /** The protocol channel the kernel supports. */
  channel: "virtio" | "serial";
}

export interface HostOptions {
  accel?: AccelRequest;
  /** "auto": disk when the kernel has virtio and mkfs.erofs exists, else initrd. */
  layout?: RuntimeLayout | "auto";
  kernelEntry?: "pvh" | "bios";
  /** Build the kernel and runtime image when they are missing (default true). */
  build?: boolean;
  progress?: Progress;
  env?: NodeJS.ProcessEnv;
}

export async function resolveHost(options: HostOptions = {}): Promise<HostSetup> {
  const env = options.env ?? process.env;
  const progress = options.progress ?? silent;
  const build = options.build ?? true;
  let accel: AccelChoice;
  try {
    accel = chooseAccel(options.accel ?? "auto", await probeAccel());
  } catch (error) {
    if (error instanceof KvmUnavailable) {
      throw new SetupError(`--accel kvm: KVM is not usable here: ${error.message}. Use --accel auto or tcg.`);
    }
    throw error;
  }
  const qemu = await locateQemu(accel.accel, env);
  if ("missing" in qemu) throw new SetupError(qemu.missing);
  const kernel = await resolveKernel({
    env,
    build,
    progress,
    ...(options.kernelEntry ? { entry: options.kernelEntry } : {}),
  });
  let layout = options.layout ?? "auto";
  if (layout === "auto") layout = kernel.virtio && (await which("mkfs.erofs", env)) ? "disk" : "initrd";
  if (layout === "disk" && !kernel.virtio) {
    throw new UsageError(
      `the runtime disk needs a kernel with virtio; ${kernel.path} has none: use the initrd layout`,
    );
  }
  const runtime = await resolveRuntime({ layout, build, progress, env });
  const folderQemuPath = await locateFolderQemu(env);
  return {
    accel,
    qemuPath: qemu.path,
    ...(folderQemuPath ? { folderQemuPath } : {}),
    kernel,
    runtime,
    channel: kernel.virtio ? "virtio" : "serial",
  };
}
