/**
 * The channel to the host: a virtio-serial port (or, for kernels without
 * virtio, the console itself), framed messages out, framed messages in.
 */
import fs from "node:fs";
import { FrameDecoder, type GuestMark, type GuestMessage, type HostMessage } from "../../src/vm/protocol.ts";
import { type FrameSigner, frameSigner, type SignedMessage, signedFrames } from "./frames.ts";
import { boot, marks, now } from "./state.ts";

// Held before the function loads: it may replace fs's functions to watch or change what is written.
const writeSync = fs.writeSync;
const readSync = fs.readSync;
const atomicsWait = Atomics.wait;

export function sleepMs(milliseconds: number): void {
  atomicsWait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, milliseconds);
}

/**
 * Errors after which a write can be tried again: nothing was written. The
 * virtio console allocates each write's buffer (32 KiB), which a guest short
 * of memory may not have at that moment. A write that never goes through is
 * ended by the host's deadline.
 */
const TRANSIENT_WRITE_ERRORS = new Set(["EAGAIN", "EINTR", "ENOMEM"]);

/** Writes `length` bytes of `bytes` to `fd`, whole. */
export function writeAll(fd: number, bytes: Uint8Array, length: number): void {
  let offset = 0;
  while (offset < length) {
    try {
      offset += writeSync(fd, bytes, offset, length - offset);
    } catch (error) {
      if (!TRANSIENT_WRITE_ERRORS.has((error as NodeJS.ErrnoException).code ?? "")) throw error;
      sleepMs(1);
    }
  }
}

type Sink = (bytes: Uint8Array, length: number) => void;

interface Channel {
  write: Sink;
  read(into: Buffer): number;
}

function openChannel(): Channel {
  if (boot.channel === "serial") {
    // Kernels without virtio: frames share the console. Cold starts only (no input).
    return { write: (bytes, length) => writeAll(1, bytes, length), read: () => 0 };
  }
  const port = fs.readdirSync("/dev").find((name) => name.startsWith("vport"));
  if (!port) throw new Error("fnrun: no virtio-serial port in /dev (kernel without VIRTIO_CONSOLE?)");
  const fd = fs.openSync(`/dev/${port}`, "r+");
  return {
    write: (bytes, length) => writeAll(fd, bytes, length),
    read: (into) => readSync(fd, into, 0, into.length, null),
  };
}

const channel = openChannel();
/** Where frames go: the channel, or elsewhere while rehearsing. */
let output: Sink = channel.write;
/** Signs frames with the key of the moment: the boot nonce, then the invocation's (or a pooled VM's). */
let signer: FrameSigner = frameSigner(boot.nonce);
let messageId = 0;

/** Frames from now on are signed with `key` (the invocation's; the boot nonce again after a rehearsal). */
export function useKey(key: string): void {
  signer = frameSigner(key);
}

/** Sends frames to `sink` instead of the host (the rehearsal), until restoreOutput(). */
export function redirectOutput(sink: Sink): void {
  output = sink;
}

export function restoreOutput(): void {
  output = channel.write;
}

export function send(message: GuestMessage): void {
  const frames = signedFrames(signer, messageId++, message as SignedMessage);
  output(frames.bytes, frames.length);
}

/** Records a timeline point and tells the host. */
export function mark(name: GuestMark): void {
  const at = now();
  marks[name] = at;
  send({ type: "mark", name, at });
}

/** A decoder of the host's frames that queues each message it completes. */
export function hostDecoder(inbox: unknown[]): FrameDecoder {
  return new FrameDecoder(
    boot.nonce,
    { message: (value) => inbox.push(value), text: () => {} },
    { maxLineBytes: 1024 * 1024, maxMessageBytes: 256 * 1024 * 1024 },
  );
}

/** Messages from the host, in order: one read may hold more than one. */
const inbox: unknown[] = [];
const inboxDecoder = hostDecoder(inbox);
const readBuffer = Buffer.alloc(256 * 1024);

/** When the read that completed the last message received returned (the monotonic clock). */
let lastReadAt = 0;

/** Blocks until the host sends a message. Only used while nothing else runs. */
export function receive(): HostMessage {
  while (inbox.length === 0) {
    const count = channel.read(readBuffer);
    // A virtio-serial port reads 0 while the host side is not connected.
    if (count === 0) sleepMs(2);
    else {
      lastReadAt = now();
      inboxDecoder.push(readBuffer.subarray(0, count));
    }
  }
  return inbox.shift() as HostMessage;
}

/** When the guest read the message receive() returned last (ms, monotonic): a clock reading in it was that old then. */
export function receivedAt(): number {
  return lastReadAt;
}
