import { createHmac, randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  frameSigner,
  messageJson,
  nativeHmacFound,
  type SignedMessage,
  signedFrames,
} from "../../../runtime-initrd/guest/frames.ts";
import { framesSignedWith, newFrameKey } from "../../../src/vm/frame-keys.ts";
import { FrameDecoder } from "../../../src/vm/protocol.ts";

const KEY = "a".repeat(64);

function decode(key: string, chunks: Uint8Array[]): { messages: unknown[]; text: string } {
  const messages: unknown[] = [];
  let text = "";
  const decoder = new FrameDecoder(
    framesSignedWith(key),
    { message: (value) => messages.push(value), text: (t) => (text += t) },
    { maxLineBytes: 64 * 1024 + 256, maxMessageBytes: 64 * 1024 * 1024 },
  );
  for (const chunk of chunks) decoder.push(chunk);
  decoder.end();
  return { messages, text };
}

const frames = (key: string, id: number, message: SignedMessage) => {
  const { bytes, length } = signedFrames(frameSigner(key), id, message);
  return bytes.subarray(0, length);
};

describe("the guest's signed frames", () => {
  it("finds Node's native HMAC", () => {
    expect(nativeHmacFound).toBe(true);
  });

  it.each([
    ["native", true],
    ["written-out", false],
  ])("tags like HMAC-SHA256, for any data and key (%s)", (_name, useNative) => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.stringMatching(/^[0-9a-f]{1,64}$/), (data, key) => {
        const ascii = Uint8Array.from(data, (byte) => byte & 0x7f);
        const expected = createHmac("sha256", key).update(ascii).digest("hex").slice(0, 32);
        expect(frameSigner(key, useNative).tag(ascii, ascii.length)).toBe(expected);
      }),
    );
    const big = Uint8Array.from(randomBytes(200_000), (byte) => byte & 0x7f);
    expect(frameSigner(KEY, useNative).tag(big, big.length)).toBe(
      createHmac("sha256", KEY).update(big).digest("hex").slice(0, 32),
    );
  });

  it("writes each message's JSON as JSON.stringify does, in UTF-8", () => {
    const text = fc.string({ unit: "binary" });
    const messages = fc.oneof(
      fc.record({
        type: fc.constant("log" as const),
        stream: fc.constantFrom("stdout" as const, "stderr" as const),
        text,
      }),
      fc.record({ type: fc.constant("result" as const), json: text }),
      fc.record({ type: fc.constant("clock" as const) }),
      fc.record({ type: fc.constant("mark" as const), name: text, at: fc.double() }),
      fc.record({
        type: fc.constant("error" as const),
        error: fc.record({ errorType: text, errorMessage: text, stack: fc.array(text) }),
      }),
      fc.record({ type: fc.constant("ready" as const), marks: fc.dictionary(text, fc.double()) }),
      fc.record({
        type: fc.constant("ready" as const),
        marks: fc.dictionary(text, fc.double()),
        initPhase: fc.record(
          { randomness: fc.array(text), folders: fc.array(text), error: text },
          { requiredKeys: ["randomness"] },
        ),
      }),
    );
    fc.assert(
      fc.property(messages, (message) => {
        const json = messageJson(message);
        expect(Buffer.from(json.bytes.subarray(0, json.length)).toString("utf8")).toBe(
          JSON.stringify(message),
        );
      }),
    );
  });

  it("are read back by the host with the key, and by nobody without it", () => {
    const message: SignedMessage = {
      type: "result",
      json: JSON.stringify({ ü: "ok", big: "x".repeat(200_000) }),
    };
    expect(decode(KEY, [frames(KEY, 3, message)]).messages).toEqual([message]);
    const other = decode(newFrameKey(), [frames(KEY, 3, message)]);
    expect(other.messages).toEqual([]);
    expect(other.text).toContain("FNRUN2:3:0:");
  });

  it("never yields another message when a byte is changed, and refuses a replayed or older id", () => {
    const message: SignedMessage = { type: "log", stream: "stdout", text: "a line\n" };
    const good = frames(KEY, 7, message);
    fc.assert(
      fc.property(fc.nat({ max: good.length - 2 }), fc.integer({ min: 1, max: 255 }), (at, delta) => {
        const changed = Uint8Array.from(good);
        changed[at] = ((changed[at] as number) + delta) % 256;
        const { messages } = decode(KEY, [changed]);
        expect(messages.every((value) => JSON.stringify(value) === JSON.stringify(message))).toBe(true);
      }),
    );
    expect(decode(KEY, [good, good, frames(KEY, 5, message), frames(KEY, 8, message)]).messages).toHaveLength(
      2,
    );
  });

  it("signs what the runtime meant even when the function has replaced built-ins", () => {
    const message: SignedMessage = { type: "result", json: '"the real result ü"' };
    const before = Buffer.from(frames(KEY, 1, message)).toString("latin1");
    const saved = {
      charCodeAt: String.prototype.charCodeAt,
      slice: String.prototype.slice,
      stringify: JSON.stringify,
      keys: Object.keys,
      apply: Function.prototype.apply,
      call: Function.prototype.call,
      length: Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), "length"),
      byteLength: Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), "byteLength"),
    };
    // crypto's JavaScript, and the prototype of the native handle behind it, are reachable too.
    const probe = createHmac("sha256", "x") as unknown as Record<symbol, object>;
    const handleSymbol = Object.getOwnPropertySymbols(probe).find(
      (symbol) => symbol.description === "kHandle",
    );
    const handlePrototype = Object.getPrototypeOf(probe[handleSymbol as symbol]) as Record<string, unknown>;
    const hmacPrototype = Object.getPrototypeOf(probe) as Record<string, unknown>;
    const natives = { ...handlePrototype };
    const hmacMethods = { update: hmacPrototype.update, digest: hmacPrototype.digest };
    const spy = (name: string) =>
      function (this: unknown, ...args: unknown[]) {
        seen.push(name, this, args);
        return "forged";
      };
    const seen: unknown[] = [];
    let after: { bytes: Uint8Array; length: number } | undefined;
    try {
      // What a hostile function can do to the process it shares with the runtime.
      String.prototype.charCodeAt = function (this: string, index: number) {
        seen.push(this);
        return 65 + index;
      };
      String.prototype.slice = () => "forged";
      JSON.stringify = () => '{"type":"result","json":"\\"forged\\""}';
      Object.keys = () => ["forged"];
      Function.prototype.call = () => "forged";
      Function.prototype.apply = () => "forged";
      Object.defineProperty(Object.getPrototypeOf(Uint8Array.prototype), "length", {
        get: () => 3,
        configurable: true,
      });
      Object.defineProperty(Object.getPrototypeOf(Uint8Array.prototype), "byteLength", {
        get: () => 3,
        configurable: true,
      });
      for (const name of ["init", "update", "digest"]) handlePrototype[name] = spy(name);
      hmacPrototype.update = spy("Hmac.update");
      hmacPrototype.digest = spy("Hmac.digest");
      after = signedFrames(frameSigner(KEY), 1, message);
    } finally {
      Object.assign(handlePrototype, natives);
      Object.assign(hmacPrototype, hmacMethods);
      String.prototype.charCodeAt = saved.charCodeAt;
      String.prototype.slice = saved.slice;
      JSON.stringify = saved.stringify;
      Object.keys = saved.keys;
      Function.prototype.call = saved.call;
      Function.prototype.apply = saved.apply;
      Object.defineProperty(
        Object.getPrototypeOf(Uint8Array.prototype),
        "length",
        saved.length as PropertyDescriptor,
      );
      Object.defineProperty(
        Object.getPrototypeOf(Uint8Array.prototype),
        "byteLength",
        saved.byteLength as PropertyDescriptor,
      );
    }
    expect(Buffer.from(after.bytes.subarray(0, after.length)).toString("latin1")).toBe(before);
    expect(seen).toEqual([]);
  });
});
