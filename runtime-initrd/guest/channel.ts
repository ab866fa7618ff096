/**
 * The channel to the host: a virtio-serial port (or, for kernels without
 * virtio, the console itself), framed messages out, framed messages in.
 */
import fs from "node:fs";
import {
  encodeMessage,
  FrameDecoder,
  type GuestMark,
  type GuestMessage,
  type HostMessage,
} from "../../src/vm/protocol.ts";
import { boot, marks, now } from "./state.ts";

export function sleepMs(milliseconds: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, milliseconds);
}

export function writeAll(fd: number, text: string): void {
  const data = Buffer.from(text, "utf8");
  let offset = 0;
  while (offset < data.length) {
    try {
      offset += fs.writeSync(fd, data, offset);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EAGAIN") throw error;
      sleepMs(1);
    }
  }
}

interface Channel {
  write(text: string): void;
  read(into: Buffer): number;
}

function openChannel(): Channel {
  if (boot.channel === "serial") {
    // Kernels without virtio: frames share the console. Cold starts only (no input).
    return { write: (text) => writeAll(1, text), read: () => 0 };
  }
  const port = fs.readdirSync("/dev").find((name) => name.startsWith("vport"));
  if (!port) throw new Error("fnrun: no virtio-serial port in /dev (kernel without VIRTIO_CONSOLE?)");
  const fd = fs.openSync(`/dev/${port}`, "r+");
  return {
    write: (text) => writeAll(fd, text),
    read: (into) => fs.readSync(fd, into, 0, into.length, null),
  };
}

const channel = openChannel();
/** Where frames go: the channel, or elsewhere while rehearsing. */
let output: Pick<Channel, "write"> = channel;
let nonce = boot.nonce;
let messageId = 0;

/** Frames from now on carry `next` (the invocation's nonce; the boot's again after a rehearsal). */
export function useNonce(next: string): void {
  nonce = next;
}

/** Sends frames to `sink` instead of the host (the rehearsal), until restoreOutput(). */
export function redirectOutput(sink: (text: string) => void): void {
  output = { write: sink };
}

export function restoreOutput(): void {
  output = channel;
}

export function send(message: GuestMessage): void {
  output.write(encodeMessage(nonce, messageId++, message));
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

/** Blocks until the host sends a message. Only used while nothing else runs. */
export function receive(): HostMessage {
  while (inbox.length === 0) {
    const count = channel.read(readBuffer);
    // A virtio-serial port reads 0 while the host side is not connected.
    if (count === 0) sleepMs(2);
    else inboxDecoder.push(readBuffer.subarray(0, count));
  }
  return inbox.shift() as HostMessage;
}
