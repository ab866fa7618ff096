// Property tests of the network guard (src/vm/net-guard.ts), a trust boundary:
// a --net guest is root in its VM and can send any bytes it likes. Whatever it
// sends, no IPv4 frame to this host gets through, nothing throws, and the stream
// of QEMU's framing is cut into the same frames however it arrives.
import { PassThrough } from "node:stream";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { allowedFrame, NetGuard } from "../../../src/vm/net-guard.ts";
import { framed } from "./redirector-framing.ts";

const HOST = new Set(["192.0.2.2", "10.213.0.1"]);

const byte = fc.integer({ min: 0, max: 255 });
/** Destinations, many of them where a guest must not reach. */
const destination: fc.Arbitrary<readonly number[]> = fc.oneof<fc.Arbitrary<readonly number[]>[]>(
  fc.tuple(byte, byte, byte, byte),
  fc
    .constantFrom(
      ...["127.0.0.1", "127.9.9.9", "0.0.0.0", "10.0.2.2", "10.0.2.3", "10.0.2.255", "169.254.169.254"],
      ...["224.0.0.1", "255.255.255.255", "192.0.2.2", "10.213.0.1", "198.51.100.7"],
    )
    .map((address) => address.split(".").map(Number)),
  fc.tuple(fc.constantFrom(127, 0, 169, 224, 239, 240, 255, 10), byte, byte, byte),
);

/** An Ethernet frame that is IPv4, or nearly: any header fields, cut anywhere. */
const ipv4Frame = fc
  .record({
    version: fc.constantFrom(4, 4, 4, 6, 0),
    ihl: fc.integer({ min: 0, max: 15 }),
    protocol: fc.constantFrom(6, 17, 1, 0, 255),
    fragment: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff })),
    destination,
    port: fc.oneof(fc.constant(53), fc.integer({ min: 0, max: 0xffff })),
    payload: fc.uint8Array({ maxLength: 64 }),
    cut: fc.option(fc.nat(), { nil: undefined }),
  })
  .map(({ version, ihl, protocol, fragment, destination, port, payload, cut }) => {
    const headerBytes = Math.max(ihl, 5) * 4;
    const frame = Buffer.alloc(14 + headerBytes + 4 + payload.length);
    frame.writeUInt16BE(0x0800, 12);
    frame[14] = (version << 4) | ihl;
    frame.writeUInt16BE(fragment, 14 + 6);
    frame[14 + 9] = protocol;
    destination.forEach((value, index) => {
      frame[14 + 16 + index] = value;
    });
    frame.writeUInt16BE(port, 14 + headerBytes + 2);
    Buffer.from(payload).copy(frame, 14 + headerBytes + 4);
    return cut === undefined ? frame : frame.subarray(0, cut % (frame.length + 1));
  });

/** Anything at all, other ethertypes included. */
const anyFrame = fc.oneof(
  ipv4Frame,
  fc.uint8Array({ maxLength: 120 }).map((bytes) => Buffer.from(bytes)),
  fc
    .tuple(fc.constantFrom(0x0806, 0x86dd, 0x8100, 0x88cc), fc.uint8Array({ maxLength: 60 }))
    .map(([ethertype, rest]) => {
      const frame = Buffer.concat([Buffer.alloc(14), Buffer.from(rest)]);
      frame.writeUInt16BE(ethertype, 12);
      return frame;
    }),
);

/** Written apart from the guard: whether an IPv4 frame's destination is this host or its way to it. */
function reachesHost(frame: Buffer): boolean {
  const [a, b, c] = [frame[30] ?? 0, frame[31] ?? 0, frame[32] ?? 0];
  const address = [...frame.subarray(30, 34)].join(".");
  if (a === 127 || a === 0 || a >= 224 || (a === 169 && b === 254) || HOST.has(address)) return true;
  if (a === 10 && b === 0 && c === 2) {
    // Only DNS to slirp's forwarder, in an unfragmented first piece.
    const headerBytes = ((frame[14] ?? 0) & 0x0f) * 4;
    const protocol = frame[23];
    const dns =
      address === "10.0.2.3" &&
      (protocol === 6 || protocol === 17) &&
      (frame.readUInt16BE(20) & 0x1fff) === 0 &&
      frame.readUInt16BE(14 + headerBytes + 2) === 53;
    return !dns;
  }
  return false;
}

describe("allowedFrame, whatever the guest sends", () => {
  it("never throws, and lets no IPv4 frame through to this host", () => {
    fc.assert(
      fc.property(anyFrame, (frame) => {
        const allowed = allowedFrame(frame, HOST);
        if (allowed && frame.length >= 14 && frame.readUInt16BE(12) === 0x0800) {
          expect(frame.length).toBeGreaterThanOrEqual(34);
          expect((frame[14] ?? 0) >> 4).toBe(4);
          expect(reachesHost(frame)).toBe(false);
        }
        // Only ARP and IPv4 ever pass.
        if (allowed) expect([0x0806, 0x0800]).toContain(frame.readUInt16BE(12));
      }),
      { numRuns: 5000 },
    );
  });
});

describe("NetGuard, whatever the guest sends and however it arrives", () => {
  it("passes on exactly the allowed frames, whole and in order", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(anyFrame, { maxLength: 30 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        async (frames, cuts) => {
          const fromGuest = new PassThrough();
          const toSlirp = new PassThrough();
          const guard = new NetGuard(fromGuest, toSlirp, HOST);
          const stream = Buffer.concat(frames.map(framed));
          const points = [...new Set(cuts.map((cut) => cut % (stream.length + 1)))].sort((x, y) => x - y);
          let start = 0;
          for (const point of [...points, stream.length]) {
            fromGuest.write(stream.subarray(start, point));
            start = point;
          }
          await new Promise((resolve) => setImmediate(resolve));
          const expected = Buffer.concat(frames.filter((frame) => allowedFrame(frame, HOST)).map(framed));
          expect(toSlirp.read() ?? Buffer.alloc(0)).toEqual(expected);
          expect(guard.passed + guard.dropped).toBe(frames.length);
          guard.close();
        },
      ),
      { numRuns: 300 },
    );
  });
});
