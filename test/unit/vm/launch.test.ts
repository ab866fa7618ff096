import { describe, expect, it } from "vitest";
import type { HostSetup } from "../../../src/host/setup.ts";
import { payloadArchive } from "../../../src/vm/initrd.ts";
import {
  guestRamMB,
  mountRequests,
  restoreTarget,
  savedDevices,
  vmSpec,
  withCloneDevices,
} from "../../../src/vm/launch.ts";
import { qemuCommand } from "../../../src/vm/process.ts";
import { buildQemuArgs } from "../../../src/vm/qemu.ts";

const host: HostSetup = {
  accel: { accel: "tcg" } as HostSetup["accel"],
  qemuPath: "/usr/bin/qemu-system-x86_64",
  kernel: { path: "/cache/vmlinux", entry: "pvh", origin: "fnrun", virtio: true } as HostSetup["kernel"],
  runtime: { layout: "disk", key: "k", bootArchive: "/cache/boot.cpio", disk: "/cache/runtime.erofs" },
  channel: "virtio",
};

/** A VM saved for a snapshot, with `folders` shared-folder devices. */
function savedVm(folders = 0) {
  return {
    ram: "/cache/snap/ram",
    state: "/cache/snap/state",
    memoryMB: 256,
    folders,
    bootNonce: "0".repeat(32),
    cmdline: "CMDLINE",
  };
}

describe("vmSpec", () => {
  it("gives a booted VM and a clone the same machine, differing only in memory and start", () => {
    const booted = vmSpec(
      host,
      { memoryMB: 256, network: false },
      {
        initrd: "/cache/boot.cpio",
        cmdline: "CMDLINE",
        sharedFolders: [],
        memoryFile: { path: "/cache/snap/ram", shared: true },
        qmp: true,
        allowSpawn: true,
      },
    );
    const restored = restoreTarget(host, savedVm());
    expect(restored.qemuPath).toBe("/usr/bin/qemu-system-x86_64");
    const argsOf = (spec: typeof booted) =>
      buildQemuArgs({
        ...spec,
        channel: { kind: "virtio", fd: 4 },
        qmpFd: 5,
      });
    const saved = argsOf(booted);
    const clone = argsOf(restored.spec);
    expect(saved).toEqual([
      "-M",
      "microvm,acpi=off,memory-backend=mem",
      "-accel",
      "tcg",
      "-m",
      "256",
      "-smp",
      "1",
      "-object",
      "memory-backend-file,id=mem,size=256M,mem-path=/cache/snap/ram,share=on",
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
      "/cache/boot.cpio",
      "-append",
      "CMDLINE",
      "-global",
      "virtio-mmio.force-legacy=false",
      "-drive",
      "file=/cache/runtime.erofs,format=raw,if=none,id=runtime,readonly=on",
      "-device",
      "virtio-blk-device,drive=runtime",
      "-device",
      "virtio-serial-device",
      "-chardev",
      "socket,id=channel,fd=4",
      "-device",
      "virtserialport,chardev=channel,name=fnrun",
      "-chardev",
      "socket,id=qmp,fd=5",
      "-mon",
      "chardev=qmp,mode=control",
      "-sandbox",
      "on,obsolete=deny,elevateprivileges=deny,spawn=allow,resourcecontrol=deny",
    ]);
    // The clone: the same devices, its RAM mapped privately, waiting for its state, no process spawning.
    expect(clone).toEqual(
      saved
        .map((arg) => arg.replace("share=on", "share=off").replace("spawn=allow", "spawn=deny"))
        .toSpliced(saved.indexOf("-sandbox"), 0, "-incoming", "defer"),
    );
  });

  it("gives a clone with a network the saved machine plus its card, after the saved devices", () => {
    const saved = savedVm();
    const channel = { kind: "virtio" as const, fd: 4 };
    const plain = buildQemuArgs({ ...restoreTarget(host, saved).spec, channel });
    const spec = restoreTarget(host, saved, { network: true }).spec;
    expect(spec).toMatchObject({ network: true, cmdline: "CMDLINE", incoming: true });
    expect(spec.memoryFile).toEqual({ path: "/cache/snap/ram", shared: false });
    // A card of its own: no two clones share a MAC address.
    expect(spec.macAddress).toMatch(/^02(:[0-9a-f]{2}){5}$/);
    const args = buildQemuArgs({ ...spec, channel, netGuardFds: { out: 6, in: 7 } });
    // The saved devices keep their places (and so their transports); the card comes next.
    const card = args.indexOf("-netdev");
    expect(args.slice(0, card)).toEqual(plain.slice(0, plain.indexOf("-incoming")));
    expect(args[card + 3]).toBe(`virtio-net-device,netdev=net0,status=off,mac=${spec.macAddress}`);
  });

  it("gives a clone with folders their devices in the saved order and its own shared RAM copy", () => {
    const saved = savedVm(2);
    const devices = [
      { tag: "fnrun0", socketPath: "/run/fnrun0.sock" },
      { tag: "fnrun1", socketPath: "/run/fnrun1.sock" },
    ];
    const spec = restoreTarget(host, saved, {
      folders: { devices, ram: "/run/ram" },
      network: true,
    }).spec;
    // Shared, so that the daemons can map it; a copy, so that the snapshot is never written.
    expect(spec.memoryFile).toEqual({ path: "/run/ram", shared: true });
    const args = buildQemuArgs({
      ...spec,
      channel: { kind: "virtio", fd: 4 },
      netGuardFds: { out: 6, in: 7 },
    });
    const firstFolder = args.indexOf("-chardev", args.indexOf("virtserialport,chardev=channel,name=fnrun"));
    expect(args.slice(firstFolder, firstFolder + 8)).toEqual([
      "-chardev",
      "socket,id=fs0,path=/run/fnrun0.sock",
      "-device",
      "vhost-user-fs-device,queue-size=1024,chardev=fs0,tag=fnrun0",
      "-chardev",
      "socket,id=fs1,path=/run/fnrun1.sock",
      "-device",
      "vhost-user-fs-device,queue-size=1024,chardev=fs1,tag=fnrun1",
    ]);
    // The card comes after them, on the transport their saved VM left free.
    expect(args.indexOf("-netdev")).toBe(firstFolder + 8);
    expect(args).toContain("memory-backend-file,id=mem,size=256M,mem-path=/run/ram,share=on");
  });

  it("plugs a prestart's card into its noted target as restoreTarget does for a clone with a network", () => {
    const saved = savedVm();
    const direct = restoreTarget(host, saved, { network: true });
    const plugged = withCloneDevices(restoreTarget(host, saved), { network: true });
    const { macAddress: first, ...rest } = plugged.spec;
    const { macAddress: _, ...expected } = direct.spec;
    expect(rest).toEqual(expected);
    expect(first).toMatch(/^02(:[0-9a-f]{2}){5}$/);
    // Each clone its own address.
    expect(withCloneDevices(restoreTarget(host, saved), { network: true }).spec.macAddress).not.toBe(first);
  });

  it("registers the transport after a saved VM's folder devices for a clone's card", () => {
    expect(savedDevices(host, 2)).toBe(savedDevices(host) + 2);
  });

  it("adds the runtime's files to guest RAM in the initrd layout", () => {
    const initrdHost = { ...host, runtime: { layout: "initrd" as const, key: "k", bootArchive: "/b" } };
    expect(guestRamMB(host, 256)).toBe(256);
    expect(guestRamMB(initrdHost, 256)).toBe(512);
    expect(
      vmSpec(
        initrdHost,
        { memoryMB: 256, network: true },
        {
          initrd: "/b",
          cmdline: "",
          sharedFolders: [],
        },
      ),
    ).toMatchObject({ memoryMB: 512, network: true, sandbox: true, cpus: 1 });
  });

  it("tells the guest how to mount each shared folder", () => {
    expect(
      mountRequests([
        { source: "/home/a/data", target: "/mnt/data", readOnly: true, tag: "fnrun0" },
        { source: "/home/a/out", target: "/mnt/out", readOnly: false, tag: "fnrun1" },
      ]),
    ).toEqual([
      { tag: "fnrun0", guestPath: "/mnt/data", readOnly: true },
      { tag: "fnrun1", guestPath: "/mnt/out", readOnly: false },
    ]);
  });
});

describe("qemuCommand", () => {
  it("numbers a clone's descriptors after the state it inherits: the channel's, then QMP's", () => {
    const target = restoreTarget(host, savedVm());
    const { wrapper, ...command } = qemuCommand(target, 1);
    expect(command).toEqual({
      qemuPath: "/usr/bin/qemu-system-x86_64",
      args: buildQemuArgs({ ...target.spec, channel: { kind: "virtio", fd: 4 }, qmpFd: 5 }),
      inherited: 1,
      channelFd: 4,
      qmpFd: 5,
    });
    expect(command.args).toEqual(expect.arrayContaining(["socket,id=channel,fd=4", "socket,id=qmp,fd=5"]));
    // setpriv where the host has one: QEMU dies with fnrun.
    expect([[], [expect.stringMatching(/setpriv$/), "--pdeathsig", "KILL", "--"]]).toContainEqual(wrapper);
  });

  it("numbers a network clone's guard descriptors after QMP's, and names its card's MAC address", () => {
    const target = withCloneDevices(restoreTarget(host, savedVm()), { network: true });
    const { wrapper: _wrapper, ...command } = qemuCommand(target, 1);
    const { macAddress } = target.spec;
    expect(command).toEqual({
      qemuPath: "/usr/bin/qemu-system-x86_64",
      args: buildQemuArgs({
        ...target.spec,
        channel: { kind: "virtio", fd: 4 },
        qmpFd: 5,
        netGuardFds: { out: 6, in: 7 },
      }),
      inherited: 1,
      channelFd: 4,
      qmpFd: 5,
      netGuardFds: { out: 6, in: 7 },
      macAddress,
    });
    expect(command.args).toEqual(
      expect.arrayContaining(["socket,id=netguard-out,fd=6", "socket,id=netguard-in,fd=7"]),
    );
  });

  it("gives a VM whose frames come on the serial console no channel or QMP descriptors", () => {
    const spec = vmSpec(
      { ...host, channel: "serial" },
      { memoryMB: 128, network: false },
      { initrd: "/run/initrd.cpio", cmdline: "CMDLINE", sharedFolders: [] },
    );
    const { wrapper: _wrapper, ...command } = qemuCommand({ qemuPath: "/q", spec });
    expect(command).toEqual({
      qemuPath: "/q",
      args: buildQemuArgs({ ...spec, channel: { kind: "serial" } }),
      inherited: 0,
    });
  });
});

describe("payloadArchive", () => {
  it("appends nothing for a VM that waits for its function, and the function's files otherwise", () => {
    expect(payloadArchive({ kind: "none" })).toBeUndefined();
    const settings = {
      functionName: "hello",
      functionVersion: "$LATEST",
      memoryLimitInMB: 256,
      handler: "handler",
      env: {},
      mounts: [],
    };
    const pooled = payloadArchive({
      kind: "function",
      settings: { ...settings, key: "k".repeat(64) },
      bundleCode: "export const handler = 1;",
    });
    const text = pooled?.toString("latin1") ?? "";
    expect(text).toContain("fnrun/function.json");
    expect(text).toContain(JSON.stringify({ ...settings, key: "k".repeat(64) }));
    expect(text).toContain("export const handler = 1;");
    expect(text).not.toContain("fnrun/invocation.json");
  });
});
