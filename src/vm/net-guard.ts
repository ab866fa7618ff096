/**
 * The network a `--net` guest gets: QEMU's user-mode stack (slirp) toward the
 * outside, never toward this host. slirp hands a connection to its gateway, or
 * to any other address of its network (10.0.2.0/24), to the host's loopback,
 * and one to 127.0.0.0/8 or to the host's own addresses to the host itself:
 * where `fnrun serve`, Redis and databases listen, trusting who connects from
 * there. So every frame the guest sends goes through fnrun first (QEMU's
 * filter-redirector on the netdev's receive queue), and only frames that cannot
 * reach this host go on to slirp: ARP, DNS to slirp's resolver (10.0.2.3, port
 * 53), and IPv4 to addresses that are not loopback, link-local (cloud metadata
 * services), multicast, broadcast, slirp's own network or one of the host's.
 * IPv6 is off (`ipv6=off`) and dropped here too.
 *
 * A guest is root in its VM and can send any frame it likes, so the decision is
 * made on the host, from the frame's own headers (allowedFrame, pure and tested).
 */
import { networkInterfaces } from "node:os";
import type { Duplex } from "node:stream";

/** slirp's network, its gateway (the host alias) and its DNS forwarder. */
const SLIRP_NETWORK = [10, 0, 2, 0] as const;
const SLIRP_DNS = "10.0.2.3";

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_ARP = 0x0806;
const PROTOCOL_TCP = 6;
const PROTOCOL_UDP = 17;

function dottedQuad(frame: Buffer, offset: number): string {
  return `${frame[offset]}.${frame[offset + 1]}.${frame[offset + 2]}.${frame[offset + 3]}`;
}

/** Whether IPv4 address `address` (four bytes at `offset`) is one a guest must not send to. */
function hostBound(frame: Buffer, offset: number, hostAddresses: ReadonlySet<string>): boolean {
  const [a = 0, b = 0, c = 0] = [frame[offset], frame[offset + 1], frame[offset + 2]];
  if (a === 127 || a === 0) return true; // loopback, "this host"
  if (a === 169 && b === 254) return true; // link-local: metadata services
  if (a >= 224) return true; // multicast, reserved, broadcast
  if (a === SLIRP_NETWORK[0] && b === SLIRP_NETWORK[1] && c === SLIRP_NETWORK[2]) return true;
  return hostAddresses.has(dottedQuad(frame, offset));
}

/**
 * Whether a frame the guest sent may go on to slirp. `hostAddresses` are this
 * host's own IPv4 addresses (its interfaces'), which reach it as surely as
 * loopback does.
 */
export function allowedFrame(frame: Buffer, hostAddresses: ReadonlySet<string>): boolean {
  if (frame.length < 14) return false;
  const ethertype = frame.readUInt16BE(12);
  if (ethertype === ETHERTYPE_ARP) return true;
  if (ethertype !== ETHERTYPE_IPV4 || frame.length < 34) return false;
  const ip = 14;
  if (frame[ip] === undefined || (frame[ip] as number) >> 4 !== 4) return false;
  const headerBytes = ((frame[ip] as number) & 0x0f) * 4;
  if (headerBytes < 20 || frame.length < ip + headerBytes) return false;
  const destination = ip + 16;
  const protocol = frame[ip + 9];
  const fragmentOffset = frame.readUInt16BE(ip + 6) & 0x1fff;
  if (dottedQuad(frame, destination) === SLIRP_DNS) {
    // DNS to slirp's forwarder, whole (a later fragment carries no port to check).
    if ((protocol !== PROTOCOL_UDP && protocol !== PROTOCOL_TCP) || fragmentOffset !== 0) return false;
    if (frame.length < ip + headerBytes + 4) return false;
    return frame.readUInt16BE(ip + headerBytes + 2) === 53;
  }
  return !hostBound(frame, destination, hostAddresses);
}

/** This host's own IPv4 addresses. */
export function hostIPv4Addresses(): Set<string> {
  const addresses = new Set<string>();
  for (const entries of Object.values(networkInterfaces())) {
    for (const entry of entries ?? []) if (entry.family === "IPv4") addresses.add(entry.address);
  }
  return addresses;
}

/** Frames bigger than this are not Ethernet frames (QEMU's own limit is 69 KB with offloads). */
const MAX_FRAME_BYTES = 128 * 1024;

/**
 * How much the guard keeps for slirp (QEMU) to read, at most. Beyond it, frames
 * are dropped, as a congested link drops them (TCP sends them again): a guest
 * that sends faster than slirp reads cannot grow fnrun's memory.
 */
export const NET_GUARD_QUEUE_BYTES = 4 * 1024 * 1024;

/**
 * One VM's guard: reads the frames its guest sends, passes on the allowed ones.
 * Its sockets are this side of the socket pairs QEMU's filter-redirector was
 * spawned with (`-chardev socket,fd=`): connected before QEMU runs, so a clone
 * spawned before the guard is attached (a prestart's) loses no frame, and none
 * reaches slirp until the guard has read it.
 */
export class NetGuard {
  /** Frames not passed on: not allowed, or beyond what may wait for slirp. */
  dropped = 0;
  passed = 0;
  readonly #sockets: [Duplex, Duplex];

  /** `fromGuest`: the frames QEMU redirects (its `outdev`); `toSlirp`: what goes on (its `indev`). */
  constructor(fromGuest: Duplex, toSlirp: Duplex, hostAddresses: ReadonlySet<string> = hostIPv4Addresses()) {
    this.#sockets = [fromGuest, toSlirp];
    for (const socket of this.#sockets) socket.on("error", () => {});
    let pending: Buffer = Buffer.alloc(0);
    fromGuest.on("data", (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      while (pending.length >= 4) {
        const length = pending.readUInt32BE(0);
        if (length > MAX_FRAME_BYTES) {
          fromGuest.destroy(); // not QEMU's framing: stop listening rather than guess
          return;
        }
        if (pending.length < 4 + length) break;
        const frame = pending.subarray(4, 4 + length);
        if (allowedFrame(frame, hostAddresses) && toSlirp.writableLength < NET_GUARD_QUEUE_BYTES) {
          this.passed++;
          toSlirp.write(pending.subarray(0, 4 + length));
        } else {
          this.dropped++;
        }
        pending = pending.subarray(4 + length);
      }
    });
  }

  close(): void {
    for (const socket of this.#sockets) socket.destroy();
  }
}
