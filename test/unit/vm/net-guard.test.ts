import { describe, expect, it } from "vitest";
import { allowedFrame } from "../../../src/vm/net-guard.ts";

/** An Ethernet frame from the guest: IPv4 to `destination`, with a TCP/UDP header to `port`. */
function ipv4(
  destination: string,
  options: { protocol?: number; port?: number; fragment?: number; ihl?: number } = {},
) {
  const ihl = options.ihl ?? 5;
  const frame = Buffer.alloc(14 + ihl * 4 + 8);
  frame.writeUInt16BE(0x0800, 12);
  frame[14] = 0x40 | ihl;
  frame.writeUInt16BE(options.fragment ?? 0, 14 + 6);
  frame[14 + 9] = options.protocol ?? 6;
  destination.split(".").forEach((byte, index) => {
    frame[14 + 16 + index] = Number(byte);
  });
  frame.writeUInt16BE(options.port ?? 80, 14 + ihl * 4 + 2);
  return frame;
}

const host = new Set(["192.0.2.2", "10.213.0.1"]);

describe("allowedFrame (what a --net guest may send on)", () => {
  it("lets through what reaches other hosts: ARP, DNS to slirp's resolver, IPv4 elsewhere", () => {
    const arp = Buffer.alloc(42);
    arp.writeUInt16BE(0x0806, 12);
    expect(allowedFrame(arp, host)).toBe(true);
    expect(allowedFrame(ipv4("10.0.2.3", { protocol: 17, port: 53 }), host)).toBe(true);
    expect(allowedFrame(ipv4("10.0.2.3", { protocol: 6, port: 53 }), host)).toBe(true);
    expect(allowedFrame(ipv4("93.184.216.34"), host)).toBe(true);
    expect(allowedFrame(ipv4("10.213.0.2", { port: 8080 }), host)).toBe(true);
  });

  it("drops what reaches this host: slirp's network (its gateway maps to loopback), loopback, its own addresses", () => {
    for (const destination of [
      "10.0.2.2",
      "10.0.2.77",
      "10.0.2.255",
      "127.0.0.1",
      "127.1.2.3",
      "0.0.0.0",
      "192.0.2.2",
      "10.213.0.1",
    ]) {
      expect(allowedFrame(ipv4(destination), host), destination).toBe(false);
    }
    // Slirp's resolver, but not for DNS; or a later fragment, which carries no port to check.
    expect(allowedFrame(ipv4("10.0.2.3", { port: 80 }), host)).toBe(false);
    expect(allowedFrame(ipv4("10.0.2.3", { protocol: 17, port: 53, fragment: 3 }), host)).toBe(false);
    expect(allowedFrame(ipv4("10.0.2.3", { protocol: 1, port: 53 }), host)).toBe(false);
  });

  it("drops metadata services, multicast, broadcast, IPv6 and anything malformed", () => {
    for (const destination of ["169.254.169.254", "224.0.0.251", "239.255.255.250", "255.255.255.255"]) {
      expect(allowedFrame(ipv4(destination), host), destination).toBe(false);
    }
    const v6 = Buffer.alloc(60);
    v6.writeUInt16BE(0x86dd, 12);
    expect(allowedFrame(v6, host)).toBe(false);
    expect(allowedFrame(Buffer.alloc(10), host)).toBe(false);
    expect(allowedFrame(ipv4("93.184.216.34").subarray(0, 30), host)).toBe(false);
    expect(allowedFrame(ipv4("93.184.216.34", { ihl: 3 }), host)).toBe(false);
    const vlan = ipv4("93.184.216.34");
    vlan.writeUInt16BE(0x8100, 12);
    expect(allowedFrame(vlan, host)).toBe(false);
  });
});
