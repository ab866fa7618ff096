/**
 * Signed frames, from the guest to the host:
 *
 *     FNRUN2:<message id>:<part>:<parts>:<tag>:<payload, base64>\n
 *
 * where the tag is the first 16 bytes (hex) of HMAC-SHA256(key,
 * "<id>:<part>:<parts>:<payload>"), with the invocation's key, which the host
 * chose and the runtime read before any of the function's code ran. No key is
 * ever on the wire, so a function that reads the frames the runtime writes
 * (it shares the process) learns nothing it can forge frames with.
 *
 * The function can also replace any built-in method (String.prototype.slice,
 * JSON.stringify, Buffer, crypto's internals) to see what the runtime passes it
 * or to change what it returns. So nothing on the way from a message to its
 * frames calls a method the function could have replaced: what is used is
 * captured here, when the runtime loads, before the function does (intrinsics
 * uncurried, as Node's own internals do), and the rest (UTF-8, base64, JSON
 * strings) is written out below with operators and indexing only. The HMAC is
 * Node's native one, called through its native methods (init, update, digest
 * of the handle behind crypto.createHmac), captured when the runtime loads: the
 * JavaScript around them (Hmac.prototype, the handle's prototype) is the
 * function's to replace, the captured natives are not. Where they cannot be
 * found (another Node), SHA-256 and HMAC are written out below too: the same
 * tags, ~10 ms a frame slower under TCG.
 *
 * Pure: no I/O, no state but the key a signer holds (test/unit/guest/frames.test.ts).
 */

import { createHmac } from "node:crypto";
import { FRAME_PAYLOAD_CHARS, SIGNED_FRAME_MAGIC } from "../../src/vm/protocol.ts";

// Held before the function loads: later replacements of these do not reach here.
const reflectApply = Reflect.apply;
const stringCharCodeAt = String.prototype.charCodeAt;
const charCodeAt = (text: string, index: number): number =>
  reflectApply(stringCharCodeAt, text, [index]) as number;
const objectKeys = Object.keys;
const getPrototypeOf = Object.getPrototypeOf;
const getOwnPropertySymbols = Object.getOwnPropertySymbols;
const isFiniteNumber = Number.isFinite;
const U8 = Uint8Array;
const I32 = Int32Array;

// ---------------------------------------------------------------- SHA-256 and HMAC

const K = new I32([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);
const INITIAL = [
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
const W = new I32(64);

/** Runs the compression function over the 64-byte block at `offset` of `bytes`. */
function compress(state: Int32Array, bytes: Uint8Array, offset: number): void {
  for (let i = 0; i < 16; i++) {
    const at = offset + i * 4;
    W[i] =
      ((bytes[at] as number) << 24) |
      ((bytes[at + 1] as number) << 16) |
      ((bytes[at + 2] as number) << 8) |
      (bytes[at + 3] as number);
  }
  for (let i = 16; i < 64; i++) {
    const w15 = W[i - 15] as number;
    const w2 = W[i - 2] as number;
    const s0 = ((w15 >>> 7) | (w15 << 25)) ^ ((w15 >>> 18) | (w15 << 14)) ^ (w15 >>> 3);
    const s1 = ((w2 >>> 17) | (w2 << 15)) ^ ((w2 >>> 19) | (w2 << 13)) ^ (w2 >>> 10);
    W[i] = ((W[i - 16] as number) + s0 + (W[i - 7] as number) + s1) | 0;
  }
  let a = state[0] as number;
  let b = state[1] as number;
  let c = state[2] as number;
  let d = state[3] as number;
  let e = state[4] as number;
  let f = state[5] as number;
  let g = state[6] as number;
  let h = state[7] as number;
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const ch = (e & f) ^ (~e & g);
    const t1 = (h + S1 + ch + (K[i] as number) + (W[i] as number)) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const maj = (a & b) ^ (a & c) ^ (b & c);
    const t2 = (S0 + maj) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  state[0] = ((state[0] as number) + a) | 0;
  state[1] = ((state[1] as number) + b) | 0;
  state[2] = ((state[2] as number) + c) | 0;
  state[3] = ((state[3] as number) + d) | 0;
  state[4] = ((state[4] as number) + e) | 0;
  state[5] = ((state[5] as number) + f) | 0;
  state[6] = ((state[6] as number) + g) | 0;
  state[7] = ((state[7] as number) + h) | 0;
}

/**
 * SHA-256 of `length` bytes of `bytes`, continuing from `state` after `prefixBytes`
 * bytes already compressed into it (a padded HMAC key block). Returns 32 bytes.
 */
function sha256From(state: Int32Array, prefixBytes: number, bytes: Uint8Array, length: number): Uint8Array {
  const working = new I32(8);
  for (let i = 0; i < 8; i++) working[i] = state[i] as number;
  let offset = 0;
  for (; offset + 64 <= length; offset += 64) compress(working, bytes, offset);
  // The tail, a 1 bit, zeros, and the length in bits (big-endian, 64 bits).
  const tail = new U8(128);
  const left = length - offset;
  for (let i = 0; i < left; i++) tail[i] = bytes[offset + i] as number;
  tail[left] = 0x80;
  const blocks = left + 9 > 64 ? 2 : 1;
  const bits = (prefixBytes + length) * 8;
  const end = blocks * 64;
  const high = (bits / 0x100000000) | 0; // messages are far below 2^31 bytes
  tail[end - 8] = (high >>> 24) & 0xff;
  tail[end - 7] = (high >>> 16) & 0xff;
  tail[end - 6] = (high >>> 8) & 0xff;
  tail[end - 5] = high & 0xff;
  tail[end - 4] = (bits >>> 24) & 0xff;
  tail[end - 3] = (bits >>> 16) & 0xff;
  tail[end - 2] = (bits >>> 8) & 0xff;
  tail[end - 1] = bits & 0xff;
  for (let block = 0; block < blocks; block++) compress(working, tail, block * 64);
  const digest = new U8(32);
  for (let i = 0; i < 8; i++) {
    const word = working[i] as number;
    digest[i * 4] = (word >>> 24) & 0xff;
    digest[i * 4 + 1] = (word >>> 16) & 0xff;
    digest[i * 4 + 2] = (word >>> 8) & 0xff;
    digest[i * 4 + 3] = word & 0xff;
  }
  return digest;
}

/** The SHA-256 state after one 64-byte block of `key` XOR `pad`. */
function paddedKeyState(key: Uint8Array, pad: number): Int32Array {
  const block = new U8(64);
  for (let i = 0; i < 64; i++) block[i] = ((key[i] ?? 0) as number) ^ pad;
  const state = new I32(8);
  for (let i = 0; i < 8; i++) state[i] = INITIAL[i] as number;
  compress(state, block, 0);
  return state;
}

const HEX = "0123456789abcdef";

/** Signs frame text with HMAC-SHA256 under one key (its ASCII bytes; at most 64 of them). */
export interface FrameSigner {
  /** The tag of `length` ASCII bytes: 32 hex characters. */
  tag(bytes: Uint8Array, length: number): string;
}

interface NativeHmac {
  construct: new () => object;
  init: (hash: string, key: Uint8Array) => void;
  update: (data: Uint8Array) => boolean;
  digest: (encoding: string) => Uint8Array;
}

/** The native methods of the handle behind crypto.createHmac, or undefined where they are not as expected. */
function captureNativeHmac(): NativeHmac | undefined {
  try {
    const probe = createHmac("sha256", "probe") as unknown as Record<symbol, object>;
    for (const symbol of getOwnPropertySymbols(probe)) {
      const handle = probe[symbol] as { constructor?: unknown } | undefined;
      if (typeof handle !== "object" || handle === null) continue;
      const prototype = getPrototypeOf(handle) as Record<string, unknown>;
      const { init, update, digest } = prototype;
      const construct = handle.constructor;
      if (typeof init !== "function" || typeof update !== "function" || typeof digest !== "function")
        continue;
      if (typeof construct !== "function") continue;
      const native = { construct, init, update, digest } as unknown as NativeHmac;
      // It must give HMAC-SHA256's known answer (RFC 4231, test case 2).
      const tag = nativeTag(native, asciiBytes("Jefe"), asciiBytes("what do ya want for nothing?"));
      if (hex(tag, 4) === "5bdcc146") return native;
    }
  } catch {}
  return undefined;
}

function nativeTag(native: NativeHmac, key: Uint8Array, bytes: Uint8Array): Uint8Array {
  const handle = new native.construct();
  reflectApply(native.init, handle, ["sha256", key]);
  reflectApply(native.update, handle, [bytes]);
  return reflectApply(native.digest, handle, ["buffer"]) as Uint8Array;
}

function asciiBytes(text: string): Uint8Array {
  const bytes = new U8(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = charCodeAt(text, i) & 0xff;
  return bytes;
}

/** The first `count` bytes of `bytes` in hex. */
function hex(bytes: Uint8Array, count: number): string {
  let text = "";
  for (let i = 0; i < count; i++) {
    const byte = bytes[i] as number;
    text += HEX[byte >>> 4] + (HEX[byte & 15] as string);
  }
  return text;
}

const native = captureNativeHmac();
/** Whether frames are tagged by Node's native HMAC (else by the one written out here). */
export const nativeHmacFound = native !== undefined;

/**
 * A signer for `key`: Node's native HMAC where it was found (`useNative`), else
 * the one written out above. `bytes` given to its tag() are exactly `length` long.
 */
export function frameSigner(key: string, useNative = native !== undefined): FrameSigner {
  const keyBytes = new U8(64);
  // biome-ignore lint/complexity/useMathMinMax: Math is the function's to replace
  const keyLength = key.length > 64 ? 64 : key.length;
  for (let i = 0; i < keyLength; i++) keyBytes[i] = charCodeAt(key, i) & 0xff;
  if (useNative && native) {
    const exactKey = new U8(keyLength);
    for (let i = 0; i < keyLength; i++) exactKey[i] = keyBytes[i] as number;
    return { tag: (bytes) => hex(nativeTag(native, exactKey, bytes), 16) };
  }
  const inner = paddedKeyState(keyBytes, 0x36);
  const outer = paddedKeyState(keyBytes, 0x5c);
  return {
    tag(bytes, length) {
      const innerDigest = sha256From(inner, 64, bytes, length);
      return hex(sha256From(outer, 64, innerDigest, 32), 16);
    },
  };
}

// ---------------------------------------------------------------- a message as JSON, in UTF-8

/** Bytes, appended to (grown by copying: no method of a built-in is called). */
class Bytes {
  bytes = new U8(256);
  length = 0;
  // Not bytes.byteLength: that is a getter the function could replace.
  #capacity = 256;

  #room(more: number): void {
    let size = this.#capacity;
    if (this.length + more <= size) return;
    while (this.length + more > size) size *= 2;
    const grown = new U8(size);
    const old = this.bytes;
    for (let i = 0; i < this.length; i++) grown[i] = old[i] as number;
    this.bytes = grown;
    this.#capacity = size;
  }

  byte(value: number): void {
    this.#room(1);
    this.bytes[this.length++] = value;
  }

  /** Text known to be ASCII (field names, numbers, the frame header). */
  ascii(text: string): void {
    const count = text.length;
    this.#room(count);
    for (let i = 0; i < count; i++) this.bytes[this.length++] = charCodeAt(text, i) & 0x7f;
  }

  /** A JSON array of string literals. */
  strings(texts: readonly string[]): void {
    this.byte(0x5b);
    for (let i = 0; i < texts.length; i++) {
      if (i > 0) this.byte(0x2c);
      this.string(`${texts[i]}`);
    }
    this.byte(0x5d);
  }

  /** A JSON string literal of `text`, as JSON.stringify writes it, in UTF-8. */
  string(text: string): void {
    const count = text.length;
    // Two passes: the size, then the bytes (a result may be megabytes: no room to spare).
    let size = 2;
    for (let i = 0; i < count; i++) {
      const code = charCodeAt(text, i);
      if (code === 0x22 || code === 0x5c) size += 2;
      else if (code < 0x20) size += shortEscape(code) ? 2 : 6;
      else if (code < 0x80) size += 1;
      else if (code < 0x800) size += 2;
      else if (code >= 0xd800 && code <= 0xdbff && isLowSurrogate(text, i + 1, count)) {
        size += 4;
        i++;
      } else if (code >= 0xd800 && code <= 0xdfff) size += 6;
      else size += 3;
    }
    this.#room(size);
    const out = this.bytes;
    let n = this.length;
    out[n++] = 0x22;
    for (let i = 0; i < count; i++) {
      let code = charCodeAt(text, i);
      if (code === 0x22 || code === 0x5c) {
        out[n++] = 0x5c;
        out[n++] = code;
      } else if (code < 0x20) {
        const short = shortEscape(code);
        out[n++] = 0x5c;
        if (short) {
          out[n++] = short;
        } else {
          out[n++] = 0x75;
          out[n++] = 0x30;
          out[n++] = 0x30;
          out[n++] = HEX_CODES[code >>> 4] as number;
          out[n++] = HEX_CODES[code & 15] as number;
        }
      } else if (code < 0x80) {
        out[n++] = code;
      } else if (code < 0x800) {
        out[n++] = 0xc0 | (code >>> 6);
        out[n++] = 0x80 | (code & 0x3f);
      } else if (code >= 0xd800 && code <= 0xdbff && isLowSurrogate(text, i + 1, count)) {
        code = 0x10000 + ((code - 0xd800) << 10) + (charCodeAt(text, ++i) - 0xdc00);
        out[n++] = 0xf0 | (code >>> 18);
        out[n++] = 0x80 | ((code >>> 12) & 0x3f);
        out[n++] = 0x80 | ((code >>> 6) & 0x3f);
        out[n++] = 0x80 | (code & 0x3f);
      } else if (code >= 0xd800 && code <= 0xdfff) {
        // A lone surrogate: JSON.stringify escapes it.
        out[n++] = 0x5c;
        out[n++] = 0x75;
        out[n++] = HEX_CODES[code >>> 12] as number;
        out[n++] = HEX_CODES[(code >>> 8) & 15] as number;
        out[n++] = HEX_CODES[(code >>> 4) & 15] as number;
        out[n++] = HEX_CODES[code & 15] as number;
      } else {
        out[n++] = 0xe0 | (code >>> 12);
        out[n++] = 0x80 | ((code >>> 6) & 0x3f);
        out[n++] = 0x80 | (code & 0x3f);
      }
    }
    out[n++] = 0x22;
    this.length = n;
  }

  /** A JSON number, as JSON.stringify writes one (null when not finite). */
  number(value: number): void {
    this.ascii(isFiniteNumber(value) ? `${value}` : "null");
  }
}

/** The one-letter escape of a control character (\\n, \\t, ...), or 0. */
function shortEscape(code: number): number {
  return code === 0x08
    ? 0x62
    : code === 0x09
      ? 0x74
      : code === 0x0a
        ? 0x6e
        : code === 0x0c
          ? 0x66
          : code === 0x0d
            ? 0x72
            : 0;
}

function isLowSurrogate(text: string, index: number, count: number): boolean {
  if (index >= count) return false;
  const code = charCodeAt(text, index);
  return code >= 0xdc00 && code <= 0xdfff;
}

const HEX_CODES = new U8(16);
for (let i = 0; i < 16; i++) HEX_CODES[i] = charCodeAt(HEX, i);

/** What the runtime sends (src/vm/protocol.ts's GuestMessage), spelled out here for the encoder. */
export type SignedMessage =
  | {
      type: "ready";
      marks: Record<string, number>;
      initPhase?: { randomness: readonly string[]; folders?: readonly string[]; error?: string };
    }
  | { type: "mark"; name: string; at: number }
  | { type: "log"; stream: "stdout" | "stderr"; text: string }
  | { type: "result"; json: string }
  | { type: "error"; error: { errorType: string; errorMessage: string; stack: readonly string[] } }
  | { type: "clock" };

/** The message's JSON, as JSON.stringify would write it, in UTF-8. The type is always the runtime's. */
export function messageJson(message: SignedMessage): Bytes {
  const out = new Bytes();
  const field = (name: string, first = false) => out.ascii(`${first ? "" : ","}"${name}":`);
  out.byte(0x7b);
  field("type", true);
  switch (message.type) {
    case "ready": {
      out.ascii('"ready"');
      field("marks");
      out.byte(0x7b);
      const names = objectKeys(message.marks);
      for (let i = 0; i < names.length; i++) {
        const name = names[i] as string;
        if (i > 0) out.byte(0x2c);
        out.string(name);
        out.byte(0x3a);
        out.number(message.marks[name] as number);
      }
      out.byte(0x7d);
      const initPhase = message.initPhase;
      if (initPhase) {
        field("initPhase");
        out.byte(0x7b);
        field("randomness", true);
        out.strings(initPhase.randomness);
        if (initPhase.folders !== undefined) {
          field("folders");
          out.strings(initPhase.folders);
        }
        if (initPhase.error !== undefined) {
          field("error");
          out.string(`${initPhase.error}`);
        }
        out.byte(0x7d);
      }
      break;
    }
    case "mark":
      out.ascii('"mark"');
      field("name");
      out.string(message.name);
      field("at");
      out.number(message.at);
      break;
    case "log":
      out.ascii('"log"');
      field("stream");
      out.ascii(message.stream === "stderr" ? '"stderr"' : '"stdout"');
      field("text");
      out.string(`${message.text}`);
      break;
    case "result":
      out.ascii('"result"');
      field("json");
      out.string(`${message.json}`);
      break;
    case "error": {
      out.ascii('"error"');
      field("error");
      out.byte(0x7b);
      field("errorType", true);
      out.string(`${message.error.errorType}`);
      field("errorMessage");
      out.string(`${message.error.errorMessage}`);
      field("stack");
      out.strings(message.error.stack);
      out.byte(0x7d);
      break;
    }
    case "clock":
      out.ascii('"clock"');
      break;
  }
  out.byte(0x7d);
  return out;
}

// ---------------------------------------------------------------- base64 and frames

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_CODES = new U8(64);
for (let i = 0; i < 64; i++) BASE64_CODES[i] = charCodeAt(BASE64, i);

/** Base64 of bytes [from, to) of `bytes`, written into `into` from `at`; returns the next offset. */
function base64Into(bytes: Uint8Array, from: number, to: number, into: Uint8Array, at: number): number {
  let n = at;
  let i = from;
  for (; i + 2 < to; i += 3) {
    const triple = ((bytes[i] as number) << 16) | ((bytes[i + 1] as number) << 8) | (bytes[i + 2] as number);
    into[n++] = BASE64_CODES[triple >>> 18] as number;
    into[n++] = BASE64_CODES[(triple >>> 12) & 63] as number;
    into[n++] = BASE64_CODES[(triple >>> 6) & 63] as number;
    into[n++] = BASE64_CODES[triple & 63] as number;
  }
  if (i < to) {
    const one = bytes[i] as number;
    const two = i + 1 < to ? (bytes[i + 1] as number) : 0;
    into[n++] = BASE64_CODES[one >>> 2] as number;
    into[n++] = BASE64_CODES[((one & 3) << 4) | (two >>> 4)] as number;
    into[n++] = i + 1 < to ? (BASE64_CODES[(two & 15) << 2] as number) : 0x3d;
    into[n++] = 0x3d;
  }
  return n;
}

/** Copies the ASCII of `text` into `into` at `at`; returns the next offset. */
function putAscii(into: Uint8Array, at: number, text: string): number {
  const length = text.length;
  for (let i = 0; i < length; i++) into[at + i] = charCodeAt(text, i) & 0x7f;
  return at + length;
}

/** JSON bytes per frame: their base64 fills exactly FRAME_PAYLOAD_CHARS. */
const FRAME_JSON_BYTES = (FRAME_PAYLOAD_CHARS / 4) * 3;

/**
 * The frame lines of one message, signed: one frame per FRAME_PAYLOAD_CHARS of
 * base64, as bytes ready to write, and how many.
 */
export function signedFrames(
  signer: FrameSigner,
  messageId: number,
  message: SignedMessage,
): { bytes: Uint8Array; length: number } {
  const json = messageJson(message);
  const parts = json.length === 0 ? 1 : ((json.length + FRAME_JSON_BYTES - 1) / FRAME_JSON_BYTES) | 0;
  // Each line: the magic, a header of at most ~30 characters, the 32-character tag, the payload, a newline.
  const out = new U8((((json.length + 2) / 3) | 0) * 4 + parts * 96);
  let n = 0;
  for (let part = 0; part < parts; part++) {
    const from = part * FRAME_JSON_BYTES;
    // biome-ignore lint/complexity/useMathMinMax: Math is the function's to replace
    const to = from + FRAME_JSON_BYTES < json.length ? from + FRAME_JSON_BYTES : json.length;
    const header = `${messageId}:${part}:${parts}:`;
    // Exactly what is signed: the header and the payload's base64.
    const signed = new U8(header.length + (((to - from + 2) / 3) | 0) * 4);
    const payloadAt = putAscii(signed, 0, header);
    const end = base64Into(json.bytes, from, to, signed, payloadAt);
    const tag = signer.tag(signed, end);
    n = putAscii(out, n, `${SIGNED_FRAME_MAGIC}:${header}${tag}:`);
    for (let i = payloadAt; i < end; i++) out[n++] = signed[i] as number;
    out[n++] = 0x0a;
  }
  return { bytes: out, length: n };
}
