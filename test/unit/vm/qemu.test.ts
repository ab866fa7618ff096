import { describe, expect, it } from "vitest";
import {
  buildKernelCmdline,
  buildQemuArgs,
  pluggedDevices,
  spareTransports,
  spareTransportWords,
  type VmSpec,
} from "../../../src/vm/qemu.ts";

const base: VmSpec = {
  accel: "tcg",
  kernel: { path: "/cache/vmlinux", entry: "pvh" },
  initrd: "/run/fnrun-x/initrd.cpio",
  memoryMB: 256,
  cpus: 1,
  channel: { kind: "serial" },
  cmdline: "console=ttyS0",
  sandbox: false,
  sharedFolders: [],
  network: false,
};

describe("buildQemuArgs", () => {
  it("builds the smallest microvm: PVH kernel, serial channel, TCG", () => {
    expect(buildQemuArgs(base)).toEqual([
      "-M",
      "microvm,acpi=off",
      "-accel",
      "tcg",
      "-m",
      "256",
      "-smp",
      "1",
      "-nodefaults",
      "-no-user-config",
      "-no-reboot",
      "-display",
      "none",
      "-serial",
      "stdio",
      "-kernel",
      "/cache/vmlinux",
      "-initrd",
      "/run/fnrun-x/initrd.cpio",
      "-append",
      "console=ttyS0",
    ]);
  });

  it("adds qboot for a bzImage, the runtime disk, the virtio channel, KVM and the sandbox", () => {
    expect(
      buildQemuArgs({
        ...base,
        accel: "kvm",
        kernel: { path: "/cache/bzImage", entry: "bios" },
        runtimeDisk: "/cache/runtime.erofs",
        channel: { kind: "virtio", fd: 3 },
        sandbox: true,
      }),
    ).toEqual([
      "-M",
      "microvm,acpi=off",
      "-accel",
      "kvm",
      "-cpu",
      "host",
      "-m",
      "256",
      "-smp",
      "1",
      "-nodefaults",
      "-no-user-config",
      "-no-reboot",
      "-display",
      "none",
      "-serial",
      "stdio",
      "-bios",
      "/usr/share/qemu/bios-microvm.bin",
      "-kernel",
      "/cache/bzImage",
      "-initrd",
      "/run/fnrun-x/initrd.cpio",
      "-append",
      "console=ttyS0",
      "-global",
      "virtio-mmio.force-legacy=false",
      "-drive",
      "file=/cache/runtime.erofs,format=raw,if=none,id=runtime,readonly=on",
      "-device",
      "virtio-blk-device,drive=runtime",
      "-device",
      "virtio-serial-device",
      "-chardev",
      "socket,id=channel,fd=3",
      "-device",
      "virtserialport,chardev=channel,name=fnrun",
      "-sandbox",
      "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
    ]);
  });

  it("lets only the VM that saves a snapshot start processes", () => {
    const args = buildQemuArgs({ ...base, sandbox: true, allowSpawn: true });
    expect(args.slice(-2)).toEqual([
      "-sandbox",
      "on,obsolete=deny,elevateprivileges=deny,spawn=allow,resourcecontrol=deny",
    ]);
  });

  it("puts guest RAM in a file for snapshots: shared to save, private to restore", () => {
    const save = buildQemuArgs({
      ...base,
      memoryFile: { path: "/cache/ram", shared: true },
      qmpFd: 4,
    });
    expect(save.slice(0, 10)).toEqual([
      "-M",
      "microvm,acpi=off,memory-backend=mem",
      "-accel",
      "tcg",
      "-m",
      "256",
      "-smp",
      "1",
      "-object",
      "memory-backend-file,id=mem,size=256M,mem-path=/cache/ram,share=on",
    ]);
    expect(save.slice(-4)).toEqual(["-chardev", "socket,id=qmp,fd=4", "-mon", "chardev=qmp,mode=control"]);
    const restore = buildQemuArgs({
      ...base,
      memoryFile: { path: "/cache/ram", shared: false },
      incoming: true,
    });
    expect(restore[9]).toBe("memory-backend-file,id=mem,size=256M,mem-path=/cache/ram,share=off");
    expect(restore.slice(-2)).toEqual(["-incoming", "defer"]);
  });

  it("shares guest RAM through a memfd and adds one vhost-user-fs device per shared folder", () => {
    const args = buildQemuArgs({
      ...base,
      sharedFolders: [
        { tag: "fnrun0", socketPath: "/r/fs0.sock" },
        { tag: "fnrun1", socketPath: "/r/fs1.sock" },
      ],
    });
    expect(args.slice(0, 10)).toEqual([
      "-M",
      "microvm,acpi=off,memory-backend=mem",
      "-accel",
      "tcg",
      "-m",
      "256",
      "-smp",
      "1",
      "-object",
      "memory-backend-memfd,id=mem,size=256M,share=on",
    ]);
    expect(args.slice(-10)).toEqual([
      "-global",
      "virtio-mmio.force-legacy=false",
      "-chardev",
      "socket,id=fs0,path=/r/fs0.sock",
      "-device",
      "vhost-user-fs-device,queue-size=1024,chardev=fs0,tag=fnrun0",
      "-chardev",
      "socket,id=fs1,path=/r/fs1.sock",
      "-device",
      "vhost-user-fs-device,queue-size=1024,chardev=fs1,tag=fnrun1",
    ]);
  });

  it("adds a network device only when asked", () => {
    expect(buildQemuArgs(base).some((arg) => arg.includes("net"))).toBe(false);
    expect(
      buildQemuArgs({
        ...base,
        network: true,
        netGuardFds: { out: 6, in: 7 },
        macAddress: "02:0a:0b:0c:0d:0e",
      }).slice(-10),
    ).toEqual([
      "-netdev",
      "user,id=net0,ipv6=off",
      "-device",
      "virtio-net-device,netdev=net0,status=off,mac=02:0a:0b:0c:0d:0e",
      "-chardev",
      "socket,id=netguard-out,fd=6",
      "-chardev",
      "socket,id=netguard-in,fd=7",
      "-object",
      "filter-redirector,id=netguard,netdev=net0,queue=rx,outdev=netguard-out,indev=netguard-in",
    ]);
    expect(() => buildQemuArgs({ ...base, network: true })).toThrow(/guard/);
  });
});

describe("buildKernelCmdline", () => {
  it("builds the quiet default line", () => {
    expect(
      buildKernelCmdline({
        channel: "virtio",
        runtime: "disk",
        bootNonce: "abc123",
        snapshot: false,
        nodeOptions: [],
        network: false,
        verbose: false,
      }),
    ).toBe(
      "console=ttyS0 loglevel=1 panic=-1 reboot=t rdinit=/init 8250.nr_uarts=1 fnrun_boot=abc123 fnrun_channel=virtio fnrun_runtime=disk",
    );
  });

  it("adds snapshot preparation, networking, kernel messages and Node options", () => {
    expect(
      buildKernelCmdline({
        channel: "serial",
        runtime: "initrd",
        bootNonce: "n",
        snapshot: true,
        nodeOptions: ["--max-old-space-size=204"],
        network: true,
        verbose: true,
        firmwareBoot: true,
      }),
    ).toBe(
      "console=ttyS0 loglevel=7 panic=-1 reboot=t rdinit=/init 8250.nr_uarts=1 fnrun_boot=n fnrun_channel=serial fnrun_runtime=initrd edd=off fnrun_snapshot=1 ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off fnrun_node=--max-old-space-size=204",
    );
  });
});

/** The command line of a VM to be saved, with nothing else asked for. */
const SAVED_VM_LINE = {
  channel: "virtio",
  runtime: "disk",
  bootNonce: "n",
  snapshot: true,
  nodeOptions: [],
  network: false,
  verbose: false,
} as const;

describe("buildKernelCmdline: the TSC's rate under TCG", () => {
  it("tells the kernel the rate and to trust it: no calibration against the emulated PIT, no jiffies watchdog", () => {
    expect(buildKernelCmdline({ ...SAVED_VM_LINE, nodeOptions: [], tscKhz: 2_096_021 })).toBe(
      "console=ttyS0 loglevel=1 panic=-1 reboot=t rdinit=/init 8250.nr_uarts=1 fnrun_boot=n fnrun_channel=virtio fnrun_runtime=disk tsc_early_khz=2096021 tsc=reliable fnrun_snapshot=1",
    );
  });
});

describe("spare virtio-mmio transports", () => {
  it("lists the transports QEMU leaves free, from the highest down, as it fills them", () => {
    // QEMU 7.2 plugs the first device into 0xfeb00e00 (irq 12), the next into 0xfeb00c00 (irq 11).
    expect(spareTransports(2)).toEqual([
      { address: 0xfeb00a00, irq: 10 },
      { address: 0xfeb00800, irq: 9 },
      { address: 0xfeb00600, irq: 8 },
      { address: 0xfeb00400, irq: 7 },
      { address: 0xfeb00200, irq: 6 },
      { address: 0xfeb00000, irq: 5 },
    ]);
    expect(spareTransports(8)).toEqual([]);
  });

  it("registers them with the kernel of a VM to be saved, after everything else", () => {
    // One by default: a clone's network card.
    expect(spareTransportWords(2)).toEqual(["virtio_mmio.device=512@0xfeb00a00:10"]);
    expect(spareTransportWords(6, 3)).toEqual([
      "virtio_mmio.device=512@0xfeb00200:6",
      "virtio_mmio.device=512@0xfeb00000:5",
    ]);
    const line = buildKernelCmdline({ ...SAVED_VM_LINE, nodeOptions: [], spareTransportsAfter: 7 });
    expect(line.endsWith("fnrun_snapshot=1 virtio_mmio.device=512@0xfeb00000:5")).toBe(true);
  });

  it("counts the plugged devices, and asks for virtio 1.0 only when there is one", () => {
    expect(pluggedDevices(base)).toBe(0);
    expect(buildQemuArgs(base)).not.toContain("virtio-mmio.force-legacy=false");
    const clone: VmSpec = {
      ...base,
      runtimeDisk: "/d",
      channel: { kind: "virtio", fd: 3 },
      sharedFolders: [{ tag: "fnrun0", socketPath: "/f" }],
      network: true,
      netGuardFds: { out: 4, in: 5 },
    };
    expect(pluggedDevices(clone)).toBe(4);
    const args = buildQemuArgs(clone);
    // The saved devices first (the transports they had), the clone's after them.
    const order = [
      "virtio-mmio.force-legacy=false",
      "virtio-blk-device,drive=runtime",
      "virtio-serial-device",
    ]
      .concat([
        "vhost-user-fs-device,queue-size=1024,chardev=fs0,tag=fnrun0",
        "virtio-net-device,netdev=net0,status=off",
      ])
      .map((arg) => args.indexOf(arg));
    expect(order.every((index) => index >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
  });
});
