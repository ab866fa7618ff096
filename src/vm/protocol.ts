/**
 * The wire protocol between the host and the guest runtime.
 *
 * Both directions carry messages (JSON) cut into frames, one frame per line:
 *
 *     FNRUN1:<nonce>:<message id>:<part>:<parts>:<crc32 of payload, hex>:<payload, base64>\n
 *
 * The guest is untrusted. Its channel may also carry text that is not ours (the
 * serial console mixes kernel messages and raw writes into it), so the decoder
 * treats every line that is not a valid frame with the expected nonce as plain
 * text, bounds every buffer it keeps, and never lets one message grow past its
 * limit. The nonce is fresh per invocation and reaches the guest in a way user
 * code never sees, so a function that prints something shaped like a frame
 * (say, by echoing its input) cannot forge a result.
 *
 * This module is bundled into the guest runtime too: keep it free of host-only
 * imports. It is longer than most on purpose: the one definition of the wire
 * format (frames, messages, limits, validation) for both sides.
 */
import { crc32 } from "node:zlib";

export const FRAME_MAGIC = "FNRUN1";
/** Base64 characters per frame: short enough that one corrupted line loses little. */
export const FRAME_PAYLOAD_CHARS = 64 * 1024;
const NONCE_PATTERN = /^[0-9a-f]{16,64}$/;

/** Timeline points the guest reports, in milliseconds of its own monotonic clock (0 = kernel start). */
export type GuestMark =
  | "initStart"
  | "runtimeStart"
  /** A snapshot clone has reseeded after its wake-up and waits for its invocation. */
  | "awake"
  | "invocationReceived"
  | "handlerStart"
  | "handlerEnd";

export interface LambdaError {
  errorType: string;
  errorMessage: string;
  stack: string[];
}

export type GuestMessage =
  /** The runtime is up and waits for an invocation (warm pool, snapshot). */
  | { type: "ready"; marks: Partial<Record<GuestMark, number>>; initPhase?: InitPhase }
  | { type: "mark"; name: GuestMark; at: number }
  | { type: "log"; stream: "stdout" | "stderr"; text: string }
  /** `json` is the handler's return value as JSON text (`null` for undefined). */
  | { type: "result"; json: string }
  | { type: "error"; error: LambdaError }
  /**
   * A booted VM asks for the host's clock, once, before any function code
   * runs: the kernel read its own from the RTC, in whole seconds.
   */
  | { type: "clock" };

/** What a function's init phase did, in a VM booted to be saved as its function snapshot. */
export interface InitPhase {
  /** The sources of randomness and of the time it used ("crypto.randomUUID", "Math.random", "Date.now", ...). */
  randomness: string[];
  /** Paths in the folders its clones mount that it touched through `fs` (the saved VM has none mounted). */
  folders?: string[];
  /** It failed: the error's type and message. */
  error?: string;
}

export interface MountRequest {
  tag: string;
  guestPath: string;
  readOnly: boolean;
}

/** Everything the guest needs to run one invocation. */
export interface Invocation {
  /**
   * The key the guest signs its frames with from now on (hex; src/vm/frame-keys.ts).
   * It reaches the guest before any of the function's code runs, and never leaves it.
   */
  key: string;
  requestId: string;
  functionName: string;
  functionVersion: string;
  invokedFunctionArn: string;
  memoryLimitInMB: number;
  timeoutMs: number;
  /** The export to call (`handler` by default; `default` is tried when it is missing). */
  handler: string;
  env: Record<string, string>;
  /** The event as JSON text; parsed in the guest. */
  event: string;
  maxResultBytes: number;
  mounts: MountRequest[];
}

/** What a VM needs to import a function before its event is known (a pooled VM). */
export type FunctionSettings = Pick<
  Invocation,
  "functionName" | "functionVersion" | "memoryLimitInMB" | "handler" | "env" | "mounts"
>;

/**
 * A VM booted with its function (pooled, or to be saved as a function
 * snapshot): its settings, and the key of its frames. A function snapshot's
 * VM mounts no folder; `foldersToCome` are the guest paths its clones mount
 * theirs at, which its init phase must not touch.
 */
export type BoundFunction = FunctionSettings & Pick<Invocation, "key"> & { foldersToCome?: string[] };

/** The guest's side of QEMU's user-mode network (slirp's defaults). */
export interface GuestNetwork {
  address: string;
  gateway: string;
  prefixLength: number;
}

export const SLIRP_NETWORK: GuestNetwork = { address: "10.0.2.15", gateway: "10.0.2.2", prefixLength: 24 };

export type HostMessage =
  /**
   * A clone's first message, sent as soon as it is restored: fresh randomness
   * (hex) and the host's clock, to reseed with before any function code runs.
   */
  | {
      type: "wake";
      entropy: string;
      epochMs: number;
      /** A device this clone has that the saved VM did not (a network card): bind it, with this address. */
      attach?: { network?: GuestNetwork };
    }
  /** Run this invocation (with the bundle, unless one is loaded already). */
  | { type: "invoke"; invocation: Invocation; bundle?: string }
  /** The answer to a booted VM's "clock": the host's, as it sends this. */
  | { type: "time"; epochMs: number }
  /**
   * Import this function now (its init phase) and say "ready" again, signed
   * with `key` from now on (before the function's code runs); the event follows.
   */
  | { type: "load"; settings: FunctionSettings; bundle: string; key: string }
  /**
   * A pooled clone of a function snapshot (its function imported before it was
   * saved): run the runtime's per-invocation code once, with nothing sent, and
   * say "ready", signed with `key` from now on; the event follows.
   */
  | { type: "warm"; key: string };

/** A clone's first message (vm/launch.ts's restoreVm sends it, the guest's wakeUp reads it). */
export type WakeMessage = Extract<HostMessage, { type: "wake" }>;

export function isValidNonce(nonce: string): boolean {
  return NONCE_PATTERN.test(nonce);
}

function checksum(text: string): string {
  return crc32(text).toString(16).padStart(8, "0");
}

/**
 * How the frames of one direction are told from text, and vouched for: the
 * host's to the guest carry the boot nonce and a checksum (only the host writes
 * there); the guest's to the host are signed (runtime-initrd/guest/frames.ts),
 * with a key the host checks them against, and their message ids only increase.
 */
export interface FrameFormat {
  /** What a frame line starts with, up to its message id. */
  marker: string;
  /** Whether `tag` vouches for a frame's fields. */
  check(id: string, part: string, parts: string, tag: string, payload: string): boolean;
  /** Refuse a message whose id is not above the last one's (a frame replayed). */
  increasingIds: boolean;
}

/** FNRUN1 frames: the nonce in the clear, a CRC-32 of the payload. */
export function nonceFormat(nonce: string): FrameFormat {
  return {
    marker: `${FRAME_MAGIC}:${nonce}:`,
    check: (_id, _part, _parts, tag, payload) => checksum(payload) === tag,
    increasingIds: false,
  };
}

export const SIGNED_FRAME_MAGIC = "FNRUN2";

/** FNRUN2 frames: `verify` checks the tag of "id:part:parts:payload" (the host's HMAC, src/vm/frame-keys.ts). */
export function signedFormat(verify: (signed: string, tag: string) => boolean): FrameFormat {
  return {
    marker: `${SIGNED_FRAME_MAGIC}:`,
    check: (id, part, parts, tag, payload) =>
      /^[0-9a-f]{32}$/.test(tag) && verify(`${id}:${part}:${parts}:${payload}`, tag),
    increasingIds: true,
  };
}

/** Encodes one message as frame lines (always ending in a newline). */
export function encodeMessage(nonce: string, messageId: number, message: unknown): string {
  const payload = Buffer.from(JSON.stringify(message), "utf8").toString("base64");
  const parts = Math.max(1, Math.ceil(payload.length / FRAME_PAYLOAD_CHARS));
  let out = "";
  for (let part = 0; part < parts; part++) {
    const chunk = payload.slice(part * FRAME_PAYLOAD_CHARS, (part + 1) * FRAME_PAYLOAD_CHARS);
    out += `${FRAME_MAGIC}:${nonce}:${messageId}:${part}:${parts}:${checksum(chunk)}:${chunk}\n`;
  }
  return out;
}

export interface DecoderLimits {
  /** Longest line kept whole; longer lines are passed on as text in pieces. */
  maxLineBytes: number;
  /** Largest message (its JSON text) assembled; larger ones are dropped and reported. */
  maxMessageBytes: number;
}

export const DEFAULT_DECODER_LIMITS: DecoderLimits = {
  maxLineBytes: FRAME_PAYLOAD_CHARS + 256,
  maxMessageBytes: 8 * 1024 * 1024,
};

export interface DecoderEvents {
  /** A complete, checksummed message (parsed JSON; the caller validates its shape). */
  message(value: unknown): void;
  /** Bytes that are not frames: console output, raw writes, forgeries. */
  text(text: string): void;
  /** A message went over the size limit or a frame was malformed. */
  anomaly?(reason: "oversize" | "corrupt"): void;
}

const NEWLINE = 0x0a;

/**
 * A streaming decoder for one direction of one channel. Feed it chunks as they
 * arrive; it calls back with messages and text. Memory use is bounded by
 * maxLineBytes + maxMessageBytes whatever the peer sends.
 */
export class FrameDecoder {
  #format: FrameFormat;
  #lastId = -1;
  readonly #limits: DecoderLimits;
  readonly #events: DecoderEvents;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** True while skipping the rest of an overlong line (already passed on as text). */
  #overflowing = false;
  #assembly:
    | { id: string; parts: number; next: number; chunks: string[]; bytes: number; discarding: boolean }
    | undefined;

  /** `format` is a FrameFormat, or the nonce of FNRUN1 frames. */
  constructor(
    format: FrameFormat | string,
    events: DecoderEvents,
    limits: DecoderLimits = DEFAULT_DECODER_LIMITS,
  ) {
    this.#format = typeof format === "string" ? nonceFormat(format) : format;
    this.#events = events;
    this.#limits = limits;
  }

  /** From now on only frames of this format are accepted (the invocation's key, after the boot's). */
  setFormat(format: FrameFormat): void {
    this.#format = format;
    this.#assembly = undefined;
  }

  /** setFormat for FNRUN1 frames with this nonce. */
  setNonce(nonce: string): void {
    this.setFormat(nonceFormat(nonce));
  }

  push(chunk: Uint8Array): void {
    let data = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    for (;;) {
      const newline = data.indexOf(NEWLINE);
      if (newline < 0) break;
      this.#appendPending(data.subarray(0, newline));
      this.#finishLine();
      data = data.subarray(newline + 1);
    }
    if (data.length > 0) this.#appendPending(data);
  }

  /** The stream ended: whatever is left is text, but for a frame it cut short (not the guest's words). */
  end(): void {
    let rest = Buffer.concat(this.#pending).toString("utf8");
    const cutFrame = this.#overflowing ? -1 : rest.indexOf(this.#format.marker);
    if (cutFrame >= 0) rest = rest.slice(0, cutFrame);
    if (rest) this.#events.text(rest);
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#overflowing = false;
  }

  #appendPending(bytes: Buffer): void {
    if (bytes.length === 0) return;
    // Copy: callers may reuse their buffers.
    this.#pending.push(Buffer.from(bytes));
    this.#pendingBytes += bytes.length;
    if (this.#pendingBytes > this.#limits.maxLineBytes) {
      this.#events.text(Buffer.concat(this.#pending).toString("utf8"));
      this.#pending = [];
      this.#pendingBytes = 0;
      this.#overflowing = true;
    }
  }

  #finishLine(): void {
    const bytes = Buffer.concat(this.#pending);
    this.#pending = [];
    this.#pendingBytes = 0;
    if (this.#overflowing) {
      this.#overflowing = false;
      this.#events.text(`${bytes.toString("utf8")}\n`);
      return;
    }
    let line = bytes.toString("utf8");
    if (line.endsWith("\r")) line = line.slice(0, -1);
    const marker = this.#format.marker;
    const at = line.indexOf(marker);
    if (at < 0) {
      this.#events.text(`${line}\n`);
      return;
    }
    if (at > 0) this.#events.text(`${line.slice(0, at)}\n`);
    if (!this.#acceptFrame(line.slice(at + marker.length))) {
      this.#events.anomaly?.("corrupt");
      this.#events.text(`${line.slice(at)}\n`);
    }
  }

  /** Returns false when the frame is malformed (it is then shown as text). */
  #acceptFrame(rest: string): boolean {
    const fields = rest.split(":");
    if (fields.length !== 5) return false;
    const [id, partText, partsText, sum, payload] = fields as [string, string, string, string, string];
    if (!/^\d{1,9}$/.test(id) || !/^\d{1,9}$/.test(partText) || !/^\d{1,9}$/.test(partsText)) return false;
    const part = Number(partText);
    const parts = Number(partsText);
    if (parts < 1 || part >= parts || payload.length > FRAME_PAYLOAD_CHARS) return false;
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(payload)) return false;
    if (!this.#format.check(id, partText, partsText, sum, payload)) return false;
    if (this.#format.increasingIds && part === 0 && Number(id) <= this.#lastId) return false;

    if (part === 0) this.#assembly = { id, parts, next: 0, chunks: [], bytes: 0, discarding: false };
    const assembly = this.#assembly;
    if (!assembly || assembly.id !== id || assembly.parts !== parts || assembly.next !== part) {
      // A part out of order: the message it belonged to is lost.
      this.#assembly = undefined;
      return false;
    }
    assembly.next++;
    if (!assembly.discarding) {
      assembly.bytes += payload.length;
      if ((assembly.bytes * 3) / 4 > this.#limits.maxMessageBytes + 2) {
        // Over the limit: keep reading its frames (so they do not show up as text), keep none.
        assembly.discarding = true;
        assembly.chunks = [];
        this.#events.anomaly?.("oversize");
      } else {
        assembly.chunks.push(payload);
      }
    }
    if (assembly.next < parts) return true;

    this.#assembly = undefined;
    if (this.#format.increasingIds) this.#lastId = Number(id);
    if (assembly.discarding) return true;
    let value: unknown;
    try {
      value = JSON.parse(Buffer.from(assembly.chunks.join(""), "base64").toString("utf8"));
    } catch {
      return false;
    }
    this.#events.message(value);
    return true;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const MARKS: ReadonlySet<string> = new Set<GuestMark>([
  "initStart",
  "runtimeStart",
  "awake",
  "invocationReceived",
  "handlerStart",
  "handlerEnd",
]);

function isFiniteNumber(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value);
}

function toStringArray(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((line): line is string => typeof line === "string") : [];
}

const MAX_INIT_SOURCES = 32;
const MAX_INIT_TEXT = 2000;

function parseInitPhase(value: unknown): InitPhase | undefined {
  if (!isRecord(value)) return undefined;
  const randomness = toStringArray(value.randomness)
    .slice(0, MAX_INIT_SOURCES)
    .map((source) => source.slice(0, 100));
  const folders = toStringArray(value.folders)
    .slice(0, MAX_INIT_SOURCES)
    .map((path) => path.slice(0, 300));
  const error = typeof value.error === "string" ? value.error.slice(0, MAX_INIT_TEXT) : undefined;
  return {
    randomness,
    ...(folders.length > 0 ? { folders } : {}),
    ...(error !== undefined ? { error } : {}),
  };
}

/** Validates a message from the (untrusted) guest. Returns undefined for anything malformed. */
export function parseGuestMessage(value: unknown): GuestMessage | undefined {
  if (!isRecord(value)) return undefined;
  switch (value.type) {
    case "ready": {
      const marks: Partial<Record<GuestMark, number>> = {};
      if (isRecord(value.marks)) {
        for (const [name, at] of Object.entries(value.marks)) {
          if (MARKS.has(name) && isFiniteNumber(at)) marks[name as GuestMark] = at;
        }
      }
      const initPhase = parseInitPhase(value.initPhase);
      return { type: "ready", marks, ...(initPhase ? { initPhase } : {}) };
    }
    case "mark":
      if (typeof value.name === "string" && MARKS.has(value.name) && isFiniteNumber(value.at)) {
        return { type: "mark", name: value.name as GuestMark, at: value.at };
      }
      return undefined;
    case "log":
      if ((value.stream === "stdout" || value.stream === "stderr") && typeof value.text === "string") {
        return { type: "log", stream: value.stream, text: value.text };
      }
      return undefined;
    case "result":
      return typeof value.json === "string" ? { type: "result", json: value.json } : undefined;
    case "clock":
      return { type: "clock" };
    case "error": {
      const error = value.error;
      if (!isRecord(error)) return undefined;
      return {
        type: "error",
        error: {
          errorType: typeof error.errorType === "string" ? error.errorType : "Error",
          errorMessage:
            typeof error.errorMessage === "string" ? error.errorMessage : String(error.errorMessage),
          stack: toStringArray(error.stack),
        },
      };
    }
    default:
      return undefined;
  }
}
