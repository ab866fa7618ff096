/**
 * After a snapshot restore: fresh randomness before any function code runs,
 * with the stage-0 agent (runtime-initrd/init.c) doing what Node cannot.
 */
import { randomFillSync } from "node:crypto";
import fs from "node:fs";
import type { WakeMessage } from "../../src/vm/protocol.ts";
import { receive, receivedAt, send, writeAll } from "./channel.ts";
import { clockRequest, reseedRequest } from "./reseed-request.ts";
import { boot } from "./state.ts";

const AGENT_REQUEST_FD = 3;
const AGENT_REPLY_FD = 4;

/** Asks the stage-0 agent (runtime-initrd/init.c) to do what Node has no API for. */
export function agent(request: string): void {
  const line = Buffer.from(`${request}\n`, "latin1");
  writeAll(AGENT_REQUEST_FD, line, line.length);
  const reply = Buffer.alloc(64);
  let text = "";
  while (!text.includes("\n")) {
    const count = fs.readSync(AGENT_REPLY_FD, reply, 0, reply.length, null);
    if (count === 0) throw new Error("fnrun: the guest agent is gone");
    text += reply.toString("latin1", 0, count);
  }
  if (!text.startsWith("ok"))
    throw new Error(`fnrun: agent refused "${request.split(" ")[0]}": ${text.trim()}`);
}

/**
 * A VM restored from a snapshot carries the random state of the VM that was
 * saved, like every other clone of it. Before user code runs: reseed the kernel
 * with the host's fresh bytes, move the clock back to the true time (stage-0 set
 * it in the future before Node started, so OpenSSL sees time go backwards and
 * reseeds from the kernel on its next use; plus what passed in the guest since
 * it read the host's clock: reseedRequest), and replace V8's Math.random, whose
 * state cannot be reseeded, by one drawing on OpenSSL.
 */
function reseedAfterRestore(
  entropy: string,
  epochMs: number,
  readAtMs: number,
  ask: (request: string) => void = agent,
): void {
  // One round trip to the agent: every one costs two context switches.
  ask(reseedRequest(entropy, epochMs, readAtMs));
  const pool = Buffer.alloc(4096);
  let offset = pool.length;
  Object.defineProperty(Math, "random", {
    configurable: true,
    writable: true,
    enumerable: false,
    value: function random(): number {
      if (offset + 8 > pool.length) {
        randomFillSync(pool);
        offset = 0;
      }
      // 53 random bits, as V8 does: 27 high and 26 low.
      const high = pool.readUInt32LE(offset) >>> 5;
      const low = pool.readUInt32LE(offset + 4) >>> 6;
      offset += 8;
      return (high * 67108864 + low) / 9007199254740992;
    },
  });
}

let reseeded = false;

/**
 * A clone's first message: reseed before any function code runs (once, in a VM
 * restored from a snapshot), then take the device it was restored with beyond
 * the saved VM's (a network card, bound and configured now).
 */
export function wakeUp(message: WakeMessage, readAtMs: number, rehearsal = false): void {
  if (!boot.snapshot || reseeded) return;
  // The rehearsal runs the same code, with the agent asked nothing that matters.
  const ask = rehearsal ? () => agent("ping") : agent;
  reseedAfterRestore(message.entropy, message.epochMs, readAtMs, ask);
  reseeded = !rehearsal;
  if (!message.attach) return;
  ask("attach");
  const network = message.attach.network;
  if (network) ask(`network ${network.address} ${network.gateway} ${network.prefixLength}`);
}

/**
 * A VM that booted (neither a clone nor one to be saved: their clocks are set
 * at the wake-up) sets its clock from the host's before any function code runs:
 * the kernel took it from the RTC, in whole seconds, up to ~1 s behind. One
 * request, which the host answers at once (vm/process.ts), then one round trip
 * to the agent. Without a virtio channel nothing comes back: the RTC's stays.
 * Called once (the host answers one request) with the frames' key of the
 * moment set (the host reads no other).
 */
export function setClockFromHost(): void {
  if (boot.snapshot || boot.channel !== "virtio") return;
  send({ type: "clock" });
  const message = receive();
  if (message.type !== "time")
    throw new Error(`fnrun: expected the host's time, not ${String(message.type)}`);
  agent(clockRequest(message.epochMs, receivedAt()));
}
