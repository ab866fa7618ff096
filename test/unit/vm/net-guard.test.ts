import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { allowedFrame, NET_GUARD_QUEUE_BYTES, NetGuard } from "../../../src/vm/net-guard.ts";
import { framed } from "./redirector-framing.ts";

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

describe("NetGuard (the frames between QEMU's redirector and slirp)", () => {
  it("passes on allowed frames whole, however they are split, and drops the others", async () => {
    const fromGuest = new PassThrough();
    const toSlirp = new PassThrough();
    const guard = new NetGuard(fromGuest, toSlirp, host);
    const out = framed(ipv4("198.51.100.7"));
    const stream = Buffer.concat([framed(ipv4("127.0.0.1")), out, framed(ipv4("10.0.2.2")), out]);
    // Split mid-length and mid-frame.
    for (const at of [
      [0, 3],
      [3, 40],
      [40, stream.length],
    ] as const)
      fromGuest.write(stream.subarray(...at));
    await new Promise((resolve) => setImmediate(resolve));
    expect(toSlirp.read()).toEqual(Buffer.concat([out, out]));
    expect([guard.passed, guard.dropped]).toEqual([2, 2]);
    guard.close();
    expect([fromGuest.destroyed, toSlirp.destroyed]).toEqual([true, true]);
  });

  it("stops reading a stream that is not QEMU's framing (a length beyond any frame)", async () => {
    const fromGuest = new PassThrough();
    const toSlirp = new PassThrough();
    const guard = new NetGuard(fromGuest, toSlirp, host);
    const huge = Buffer.alloc(4);
    huge.writeUInt32BE(1024 * 1024);
    fromGuest.write(Buffer.concat([huge, framed(ipv4("198.51.100.7"))]));
    await new Promise((resolve) => setImmediate(resolve));
    expect(fromGuest.destroyed).toBe(true);
    expect(toSlirp.read()).toBeNull();
    expect(guard.passed).toBe(0);
  });
  it("drops frames rather than queue more than it may for a slirp that does not keep up", async () => {
    const fromGuest = new PassThrough();
    const toSlirp = new PassThrough(); // read by nobody: slirp stalled
    const guard = new NetGuard(fromGuest, toSlirp, host);
    // A guest sending 12 MB of frames fnrun would pass on: they must not all wait in fnrun's memory.
    const frame = Buffer.concat([ipv4("198.51.100.7"), Buffer.alloc(60 * 1024)]);
    for (let index = 0; index < 200; index++) fromGuest.write(framed(frame));
    await new Promise((resolve) => setImmediate(resolve));
    // What waits: up to the bound, plus the frame that crossed it and the one the reader side holds.
    expect(toSlirp.writableLength + toSlirp.readableLength).toBeLessThanOrEqual(
      NET_GUARD_QUEUE_BYTES + 2 * (frame.length + 4),
    );
    expect(guard.dropped).toBeGreaterThan(0);
    expect(guard.passed + guard.dropped).toBe(200);
  });
});
