import { describe, expect, it } from "vitest";
import { type QemuCommand, randomMacAddress, withMacAddress } from "../../../src/vm/spawn-qemu.ts";

describe("randomMacAddress", () => {
  it("makes a unicast, locally administered address of 5 random bytes", () => {
    expect(randomMacAddress(Uint8Array.of(0, 1, 0xab, 0xcd, 0xff))).toBe("02:00:01:ab:cd:ff");
    expect(() => randomMacAddress(Uint8Array.of(1))).toThrow(/5 random bytes/);
  });
});

describe("withMacAddress (a noted command, for another clone)", () => {
  const command: QemuCommand = {
    wrapper: [],
    qemuPath: "/q",
    args: [
      "-netdev",
      "user,id=net0,ipv6=off",
      "-device",
      "virtio-net-device,netdev=net0,status=off,mac=02:00:00:00:00:01",
      "-chardev",
      "socket,id=netguard-out,fd=6",
    ],
    inherited: 1,
    netGuardFds: { out: 6, in: 7 },
    macAddress: "02:00:00:00:00:01",
  };

  it("changes the card's address and nothing else", () => {
    const changed = withMacAddress(command, "02:aa:bb:cc:dd:ee");
    expect(changed).toEqual({
      ...command,
      args: command.args.with(3, "virtio-net-device,netdev=net0,status=off,mac=02:aa:bb:cc:dd:ee"),
      macAddress: "02:aa:bb:cc:dd:ee",
    });
    expect(command.macAddress).toBe("02:00:00:00:00:01"); // the note's own, untouched
  });

  it("refuses a command without a card, or whose arguments do not name its address", () => {
    const { macAddress: _, ...noCard } = command;
    expect(() => withMacAddress(noCard, "02:aa:bb:cc:dd:ee")).toThrow(/no MAC address/);
    expect(() =>
      withMacAddress({ ...command, macAddress: "02:ff:ff:ff:ff:ff" }, "02:aa:bb:cc:dd:ee"),
    ).toThrow(/names no MAC address/);
  });
});
