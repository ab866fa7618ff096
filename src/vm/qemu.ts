/**
 * The QEMU command line, built from plain data by pure functions.
 *
 * The machine is `microvm`: no PCI, no ACPI (`acpi=off` also makes QEMU list the
 * virtio-mmio devices on the kernel command line, which a kernel without ACPI
 * needs to find them), no default devices, no user config. The kernel is either
 * an uncompressed vmlinux entered directly through PVH (the default: measured
 * faster), or a bzImage started by qboot.
 */
import type { Accel } from "../host/accel.ts";
import { QBOOT_BIOS } from "../host/qemu-binary.ts";

/** How the guest and the host exchange protocol frames. */
export type ChannelSpec =
  /**
   * A virtio-serial port backed by one end of a socket pair QEMU inherits as
   * `fd` (fast, lossless; connected before QEMU starts, so nothing waits for an accept).
   */
  | { kind: "virtio"; fd: number }
  /** The serial console itself (ttyS0 on QEMU's stdio): for kernels without virtio. */
  | { kind: "serial" };

/** A network guard's socket pairs, as QEMU's descriptors (net-guard.ts reads and writes their other ends). */
export interface NetGuardFds {
  out: number;
  in: number;
}

export interface SharedFolderDevice {
  tag: string;
  socketPath: string;
}

export interface VmSpec {
  accel: Accel;
  kernel: { path: string; entry: "pvh" | "bios" };
  biosPath?: string;
  initrd: string;
  /** Read-only erofs image holding Node and its libraries, on virtio-blk. */
  runtimeDisk?: string;
  memoryMB: number;
  cpus: number;
  channel: ChannelSpec;
  cmdline: string;
  /**
   * Guest RAM in a file: `shared` (writes go to the file) when booting a VM to
   * snapshot; private (copy-on-write, the file is never written) for a clone.
   * Without it, guest RAM is anonymous memory, or a shared memfd when folders are
   * shared (vhost-user needs memory it can map).
   */
  memoryFile?: { path: string; shared: boolean };
  /** QMP on one end of a socket pair QEMU inherits as this descriptor. */
  qmpFd?: number;
  /** Wait for a migration stream (snapshot restore) instead of booting. */
  incoming?: boolean;
  sandbox: boolean;
  /**
   * Let the sandboxed QEMU start processes. Only the VM that saves a snapshot
   * needs it (`migrate exec:`); no VM that runs a function gets it.
   */
  allowSpawn?: boolean;
  sharedFolders: SharedFolderDevice[];
  /** A network device (QEMU's user-mode stack), whose frames go through fnrun's guard (net-guard.ts). */
  network: boolean;
  /**
   * The guard's two socket pairs, which QEMU inherits as these descriptors:
   * guest frames out to fnrun, allowed frames back in. Required with `network`.
   */
  netGuardFds?: NetGuardFds;
  /** The network device's MAC address (QEMU's default, 52:54:00:12:34:56, is every VM's). */
  macAddress?: string;
}

/**
 * microvm's virtio-mmio transports: 8 of them, 512 bytes apart from 0xfeb00000,
 * the one at index i on interrupt 5 + i. QEMU plugs devices in from the last
 * one down, in the order of the command line (measured with `info qtree` and
 * the guest's /proc/cmdline under QEMU 7.2).
 */
export const VIRTIO_MMIO = { base: 0xfeb00000, stride: 0x200, count: 8, firstIrq: 5 } as const;

/** The transports left free by `plugged` devices, last first: where a clone's extra devices go. */
export function spareTransports(plugged: number): Array<{ address: number; irq: number }> {
  const spare: Array<{ address: number; irq: number }> = [];
  for (let index = VIRTIO_MMIO.count - 1 - plugged; index >= 0; index--) {
    spare.push({ address: VIRTIO_MMIO.base + index * VIRTIO_MMIO.stride, irq: VIRTIO_MMIO.firstIrq + index });
  }
  return spare;
}

/** Transports a clone can have a device plugged into: one, for its network card. */
export const CLONE_TRANSPORTS = 1;

/**
 * Kernel words that register the first free transports (QEMU lists only the
 * used ones), as many as a clone can use: each one registered costs a probe
 * when the clone binds what it finds. Empty, each is probed and set aside; a
 * clone that finds a device plugged into one binds it after its restore
 * (init.c's "attach"), which is how a VM saved without a network gets one
 * (vm/launch.ts's restoreClone).
 */
export function spareTransportWords(plugged: number, count = CLONE_TRANSPORTS): string[] {
  return spareTransports(plugged)
    .slice(0, count)
    .map(({ address, irq }) => `virtio_mmio.device=${VIRTIO_MMIO.stride}@0x${address.toString(16)}:${irq}`);
}

/** How many virtio devices a VM of `spec` has plugged. */
export function pluggedDevices(
  spec: Pick<VmSpec, "runtimeDisk" | "sharedFolders" | "network"> & { channel: Pick<ChannelSpec, "kind"> },
): number {
  return (
    (spec.runtimeDisk ? 1 : 0) +
    (spec.channel.kind === "virtio" ? 1 : 0) +
    spec.sharedFolders.length +
    (spec.network ? 1 : 0)
  );
}

export interface CmdlineSpec {
  channel: ChannelSpec["kind"];
  runtime: "disk" | "initrd";
  /** Nonce for frames sent before an invocation arrives (the "ready" message). */
  bootNonce: string;
  /** The VM will be snapshotted: prepare for reseeding after restore. */
  snapshot: boolean;
  nodeOptions: string[];
  network: boolean;
  /** Let kernel messages through (default: only emergencies such as panics). */
  verbose: boolean;
  /** The kernel is a bzImage started by firmware (its real-mode setup probes EDD and says so). */
  firmwareBoot?: boolean;
  /** Register the transports a clone can use after these many plugged devices (a VM to be snapshotted). */
  spareTransportsAfter?: number;
  /**
   * The TSC's rate (kHz) under TCG (host/tsc.ts): the kernel need not calibrate
   * it, and trusts it without a watchdog (jiffies, which lose ticks when the
   * host is busy and would mark the TSC unstable).
   */
  tscKhz?: number;
}

export function buildKernelCmdline(spec: CmdlineSpec): string {
  const words = [
    "console=ttyS0",
    // Only emergencies (panics, with the reason a VM died) on the slow UART.
    spec.verbose ? "loglevel=7" : "loglevel=1",
    // Reboot at once on panic (triple fault; with -no-reboot QEMU exits) instead of
    // trying the keyboard controller for seconds first.
    "panic=-1",
    "reboot=t",
    "rdinit=/init",
    // microvm has one UART; do not probe for three more.
    "8250.nr_uarts=1",
    `fnrun_boot=${spec.bootNonce}`,
    `fnrun_channel=${spec.channel}`,
    `fnrun_runtime=${spec.runtime}`,
  ];
  if (spec.firmwareBoot) words.push("edd=off");
  if (spec.tscKhz !== undefined) words.push(`tsc_early_khz=${spec.tscKhz}`, "tsc=reliable");
  if (spec.snapshot) words.push("fnrun_snapshot=1");
  if (spec.network) words.push("ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off");
  // Not after "--": QEMU appends the virtio-mmio device list to the command line,
  // and the kernel would hand those words to init instead of parsing them.
  if (spec.nodeOptions.length > 0) words.push(`fnrun_node=${spec.nodeOptions.join(",")}`);
  if (spec.spareTransportsAfter !== undefined) words.push(...spareTransportWords(spec.spareTransportsAfter));
  return words.join(" ");
}

function memoryBackend(spec: VmSpec): string[] {
  const size = `size=${spec.memoryMB}M`;
  if (spec.memoryFile) {
    const share = spec.memoryFile.shared ? "on" : "off";
    return ["-object", `memory-backend-file,id=mem,${size},mem-path=${spec.memoryFile.path},share=${share}`];
  }
  if (spec.sharedFolders.length > 0) return ["-object", `memory-backend-memfd,id=mem,${size},share=on`];
  return [];
}

export function buildQemuArgs(spec: VmSpec): string[] {
  const backend = memoryBackend(spec);
  const machine = ["microvm", "acpi=off", ...(backend.length > 0 ? ["memory-backend=mem"] : [])].join(",");
  const args = [
    "-M",
    machine,
    "-accel",
    spec.accel,
    ...(spec.accel === "kvm" ? ["-cpu", "host"] : []),
    "-m",
    String(spec.memoryMB),
    "-smp",
    String(spec.cpus),
    ...backend,
    "-nodefaults",
    "-no-user-config",
    "-no-reboot",
    "-display",
    "none",
    "-serial",
    "stdio",
  ];
  if (spec.kernel.entry === "bios") args.push("-bios", spec.biosPath ?? QBOOT_BIOS);
  args.push("-kernel", spec.kernel.path, "-initrd", spec.initrd, "-append", spec.cmdline);
  // Virtio 1.0 everywhere (vhost-user-fs needs it): a clone's devices must be what
  // its saved guest knew, whatever it adds.
  if (pluggedDevices(spec) > 0) args.push("-global", "virtio-mmio.force-legacy=false");
  // Device order fixes guest names and transports: the runtime disk must be the
  // first block device (/dev/vda), and a clone's extra devices come after those
  // its snapshot was saved with.
  if (spec.runtimeDisk) {
    args.push(
      "-drive",
      `file=${spec.runtimeDisk},format=raw,if=none,id=runtime,readonly=on`,
      "-device",
      "virtio-blk-device,drive=runtime",
    );
  }
  if (spec.channel.kind === "virtio") {
    args.push(
      "-device",
      "virtio-serial-device",
      "-chardev",
      `socket,id=channel,fd=${spec.channel.fd}`,
      "-device",
      "virtserialport,chardev=channel,name=fnrun",
    );
  }
  spec.sharedFolders.forEach((folder, index) => {
    args.push(
      "-chardev",
      `socket,id=fs${index},path=${folder.socketPath}`,
      "-device",
      `vhost-user-fs-device,queue-size=1024,chardev=fs${index},tag=${folder.tag}`,
    );
  });
  if (spec.network) {
    if (!spec.netGuardFds) throw new Error("a VM with a network needs its guard (netGuardFds)");
    // Every frame the guest sends is redirected to fnrun's guard, which passes on only
    // the frames that cannot reach this host (net-guard.ts).
    args.push(
      "-netdev",
      "user,id=net0,ipv6=off",
      "-device",
      // Without a link status to report (status=off), the guest's driver sets its
      // carrier at once: a clone's card, bound after its restore, is running as
      // soon as it is up, instead of after Linux's link-event delay (up to 1 s).
      `virtio-net-device,netdev=net0,status=off${spec.macAddress ? `,mac=${spec.macAddress}` : ""}`,
      "-chardev",
      `socket,id=netguard-out,fd=${spec.netGuardFds.out}`,
      "-chardev",
      `socket,id=netguard-in,fd=${spec.netGuardFds.in}`,
      "-object",
      "filter-redirector,id=netguard,netdev=net0,queue=rx,outdev=netguard-out,indev=netguard-in",
    );
  }
  // QMP on a socket pair made before QEMU starts: commands written at once wait
  // in it, and QEMU reads them as soon as its monitor is up.
  if (spec.qmpFd !== undefined)
    args.push("-chardev", `socket,id=qmp,fd=${spec.qmpFd}`, "-mon", "chardev=qmp,mode=control");
  if (spec.incoming) args.push("-incoming", "defer");
  if (spec.sandbox) {
    args.push(
      "-sandbox",
      `on,obsolete=deny,elevateprivileges=deny,spawn=${spec.allowSpawn ? "allow" : "deny"},resourcecontrol=deny`,
    );
  }
  return args;
}
