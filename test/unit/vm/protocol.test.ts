import { describe, expect, it } from "vitest";
import {
  DEFAULT_DECODER_LIMITS,
  type DecoderLimits,
  encodeMessage,
  FRAME_PAYLOAD_CHARS,
  FrameDecoder,
  parseGuestMessage,
} from "../../../src/vm/protocol.ts";

const NONCE = "0123456789abcdef0123456789abcdef";
const OTHER = "fedcba9876543210fedcba9876543210";

function decodeAll(
  chunks: Array<string | Uint8Array>,
  nonce = NONCE,
  limits: DecoderLimits = DEFAULT_DECODER_LIMITS,
) {
  const messages: unknown[] = [];
  let text = "";
  const anomalies: string[] = [];
  const decoder = new FrameDecoder(
    nonce,
    {
      message: (value) => messages.push(value),
      text: (chunk) => (text += chunk),
      anomaly: (reason) => anomalies.push(reason),
    },
    limits,
  );
  for (const chunk of chunks) decoder.push(typeof chunk === "string" ? Buffer.from(chunk, "utf8") : chunk);
  decoder.end();
  return { messages, text, anomalies };
}

describe("frame encoding", () => {
  it("encodes a message as one exact line", () => {
    expect(encodeMessage(NONCE, 7, { type: "result", json: "1" })).toBe(
      `FNRUN1:${NONCE}:7:0:1:9dba95bb:eyJ0eXBlIjoicmVzdWx0IiwianNvbiI6IjEifQ==\n`,
    );
  });

  it("round-trips messages of every size, including multi-frame ones", () => {
    for (const size of [0, 1, 100, FRAME_PAYLOAD_CHARS, 3 * FRAME_PAYLOAD_CHARS + 17]) {
      const message = { type: "log", stream: "stdout", text: "é".repeat(size) };
      const { messages, text } = decodeAll([encodeMessage(NONCE, 1, message)]);
      expect(messages).toEqual([message]);
      expect(text).toBe("");
    }
  });

  it("decodes frames split at every byte boundary", () => {
    const encoded = Buffer.from(
      `boot text\n${encodeMessage(NONCE, 1, { type: "result", json: '{"a":"ü"}' })}tail`,
    );
    for (let cut = 0; cut <= encoded.length; cut++) {
      const { messages, text } = decodeAll([encoded.subarray(0, cut), encoded.subarray(cut)]);
      expect(messages).toEqual([{ type: "result", json: '{"a":"ü"}' }]);
      expect(text).toBe("boot text\ntail");
    }
  });

  it("passes text around frames through, with CR LF line ends from a tty", () => {
    const frame = encodeMessage(NONCE, 1, { type: "result", json: "2" }).replace("\n", "\r\n");
    const { messages, text } = decodeAll([`[ kernel ] hello\r\n${frame}`]);
    expect(messages).toEqual([{ type: "result", json: "2" }]);
    expect(text).toBe("[ kernel ] hello\n");
  });

  it("drops a frame the stream's end cut short, and keeps the text before it", () => {
    const frame = encodeMessage(NONCE, 1, { type: "result", json: JSON.stringify("x".repeat(5000)) });
    for (const cut of [`FNRUN1:${NONCE}:`.length, 100, frame.length >> 1, frame.length - 2]) {
      const { messages, text } = decodeAll([`last words\nno newline ${frame.slice(0, cut)}`]);
      expect(messages).toEqual([]);
      expect(text).toBe("last words\nno newline ");
    }
  });

  it("finds a frame that starts mid-line, after raw output without a newline", () => {
    const { messages, text } = decodeAll([
      `partial${encodeMessage(NONCE, 1, { type: "result", json: "3" })}`,
    ]);
    expect(messages).toEqual([{ type: "result", json: "3" }]);
    expect(text).toBe("partial\n");
  });
});

describe("decoding hostile input", () => {
  it("treats a frame with another nonce as text: a function cannot forge a result", () => {
    const forged = encodeMessage(OTHER, 1, { type: "result", json: '"forged"' });
    const { messages, text } = decodeAll([forged]);
    expect(messages).toEqual([]);
    expect(text).toBe(forged);
  });

  it("rejects frames with a bad checksum, bad fields or bad base64", () => {
    const good = encodeMessage(NONCE, 1, { type: "result", json: "1" }).trimEnd();
    const [magic, nonce, id, part, parts, sum, payload] = good.split(":");
    const variants = [
      [magic, nonce, id, part, parts, "00000000", payload],
      [magic, nonce, id, part, parts, sum, `${payload}A`],
      [magic, nonce, "x", part, parts, sum, payload],
      [magic, nonce, id, "1", "1", sum, payload],
      [magic, nonce, id, part, "0", sum, payload],
      [magic, nonce, id, part, parts, sum, "!!!!"],
      [magic, nonce, id, part, parts, sum],
    ];
    for (const fields of variants) {
      const line = `${fields.join(":")}\n`;
      const { messages, text, anomalies } = decodeAll([line]);
      expect(messages).toEqual([]);
      expect(text).toBe(line);
      expect(anomalies).toEqual(["corrupt"]);
    }
  });

  it("drops a message whose parts arrive out of order", () => {
    const big = { type: "log", stream: "stdout", text: "x".repeat(2 * FRAME_PAYLOAD_CHARS) };
    const lines = encodeMessage(NONCE, 4, big).trimEnd().split("\n");
    expect(lines.length).toBeGreaterThan(2);
    const swapped = [lines[1], lines[0], ...lines.slice(2)].map((line) => `${line}\n`);
    expect(decodeAll(swapped).messages).toEqual([]);
  });

  it("keeps memory bounded on an endless line without newlines", () => {
    const limits = { maxLineBytes: 1024, maxMessageBytes: 4096 };
    const chunk = Buffer.alloc(10_000, 0x41);
    const texts: string[] = [];
    const decoder = new FrameDecoder(NONCE, { message: () => {}, text: (t) => texts.push(t) }, limits);
    for (let i = 0; i < 100; i++) decoder.push(chunk);
    // Everything came out as text in pieces, none of them larger than a chunk plus the limit.
    expect(texts.reduce((sum, t) => sum + t.length, 0)).toBeGreaterThan(900_000);
    expect(Math.max(...texts.map((t) => t.length))).toBeLessThanOrEqual(10_000 + 1024);
  });

  it("refuses a message over the size limit without keeping it", () => {
    const limits = { maxLineBytes: DEFAULT_DECODER_LIMITS.maxLineBytes, maxMessageBytes: 1000 };
    const big = encodeMessage(NONCE, 1, { type: "result", json: "x".repeat(5000) });
    const small = encodeMessage(NONCE, 2, { type: "result", json: "1" });
    const { messages, anomalies, text } = decodeAll([big, small], NONCE, limits);
    expect(messages).toEqual([{ type: "result", json: "1" }]);
    expect(anomalies).toEqual(["oversize"]);
    expect(text).toBe("");
  });

  it("survives random bytes and never emits a message from them", () => {
    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    for (let round = 0; round < 200; round++) {
      const bytes = Buffer.alloc(Math.floor(random() * 4000));
      for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256);
      // Sprinkle the magic and the nonce in, to hit the frame parser.
      const text = `${bytes.toString("latin1")}FNRUN1:${NONCE}:${Math.floor(random() * 10)}:0:1:${bytes.subarray(0, 8).toString("hex")}:`;
      const { messages } = decodeAll([Buffer.from(text, "latin1"), bytes]);
      expect(messages).toEqual([]);
    }
  });
});

describe("parseGuestMessage", () => {
  it("accepts the message types and validates their fields", () => {
    expect(parseGuestMessage({ type: "result", json: "1" })).toEqual({ type: "result", json: "1" });
    expect(parseGuestMessage({ type: "mark", name: "handlerStart", at: 12.5 })).toEqual({
      type: "mark",
      name: "handlerStart",
      at: 12.5,
    });
    expect(
      parseGuestMessage({ type: "ready", marks: { initStart: 1, bogus: 2, runtimeStart: "x" } }),
    ).toEqual({
      type: "ready",
      marks: { initStart: 1 },
    });
    // A function snapshot's init phase: strings only, bounded in number and length.
    expect(
      parseGuestMessage({
        type: "ready",
        marks: {},
        initPhase: {
          randomness: ["crypto.randomUUID", 7, "x".repeat(500), ...Array(40).fill("Math.random")],
          error: 3,
        },
      }),
    ).toEqual({
      type: "ready",
      marks: {},
      initPhase: { randomness: ["crypto.randomUUID", "x".repeat(100), ...Array(30).fill("Math.random")] },
    });
    expect(
      parseGuestMessage({
        type: "ready",
        marks: {},
        initPhase: { randomness: [], folders: ["/mnt/data/config.json", null, "/".repeat(400)] },
      }),
    ).toEqual({
      type: "ready",
      marks: {},
      initPhase: { randomness: [], folders: ["/mnt/data/config.json", "/".repeat(300)] },
    });
    expect(parseGuestMessage({ type: "ready", marks: {}, initPhase: "yes" })).toEqual({
      type: "ready",
      marks: {},
    });
    expect(
      parseGuestMessage({
        type: "error",
        error: { errorType: "TypeError", errorMessage: "bad", stack: ["a", 1] },
      }),
    ).toEqual({ type: "error", error: { errorType: "TypeError", errorMessage: "bad", stack: ["a"] } });
  });

  it("rejects anything else", () => {
    for (const value of [
      null,
      1,
      "result",
      [],
      { type: "result" },
      { type: "result", json: 1 },
      { type: "mark", name: "nope", at: 1 },
      { type: "mark", name: "handlerStart", at: Number.NaN },
      { type: "log", stream: "stdin", text: "x" },
      { type: "error", error: "x" },
      { type: "shutdown" },
    ]) {
      expect(parseGuestMessage(value)).toBeUndefined();
    }
  });
});
