// Property tests of the host's parser of guest output (issue: hostile guest output).
// The guest is untrusted: whatever bytes it writes, the decoder must keep its memory
// bounded, never turn anything but a frame with this invocation's nonce into a
// message, and never hand a corrupted message on as a different one.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { sanitizeForTerminal } from "../../../src/cli/terminal.ts";
import { encodeMessage, FrameDecoder } from "../../../src/vm/protocol.ts";

const NONCE = "0123456789abcdef0123456789abcdef";
const HEX = [..."0123456789abcdef"];
const nonceArbitrary = fc.string({ unit: fc.constantFrom(...HEX), minLength: 32, maxLength: 32 });

interface Decoded {
  messages: unknown[];
  text: string;
  largestText: number;
}

function decode(
  chunks: Uint8Array[],
  nonce = NONCE,
  limits = { maxLineBytes: 4096, maxMessageBytes: 1 << 20 },
) {
  const out: Decoded = { messages: [], text: "", largestText: 0 };
  const decoder = new FrameDecoder(
    nonce,
    {
      message: (value) => out.messages.push(value),
      text: (text) => {
        out.text += text;
        out.largestText = Math.max(out.largestText, Buffer.byteLength(text));
      },
    },
    limits,
  );
  for (const chunk of chunks) decoder.push(chunk);
  decoder.end();
  return out;
}

/** Cuts bytes at the given offsets (any number, any order). */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let start = 0;
  for (const point of points) {
    chunks.push(bytes.subarray(start, point));
    start = point;
  }
  chunks.push(bytes.subarray(start));
  return chunks;
}

const cutsArbitrary = fc.array(fc.nat(), { maxLength: 40 });
/** Console noise: anything, including NULs, ANSI escapes, CRs and partial frame markers. */
const noiseArbitrary = fc.oneof(
  fc.string({ unit: "binary", maxLength: 300 }),
  fc.constantFrom("\u001b[2J\u001b[H", "\u0000\u0000", "FNRUN1:", `FNRUN1:${NONCE.slice(0, 10)}`, "\r\n", ""),
);
const jsonArbitrary = fc.jsonValue().map((value) => JSON.parse(JSON.stringify(value)) as unknown);

describe("the frame decoder under hostile input (property-based)", () => {
  it("turns random bytes, split anywhere, into text only, in bounded pieces", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 20_000 }), cutsArbitrary, (bytes, cuts) => {
        const chunks = split(bytes, cuts);
        const decoded = decode(chunks);
        expect(decoded.messages).toEqual([]);
        const largestChunk = Math.max(0, ...chunks.map((chunk) => chunk.length));
        // What the decoder holds is bounded by the line limit plus one chunk, whatever arrives.
        expect(decoded.largestText).toBeLessThanOrEqual(4096 + largestChunk + 1 + 4);
      }),
      { numRuns: 300 },
    );
  });

  it("finds every real message, in order, among noise, whatever the chunking", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(noiseArbitrary, jsonArbitrary), { maxLength: 6 }),
        noiseArbitrary,
        cutsArbitrary,
        (pairs, tail, cuts) => {
          const stream =
            pairs.map(([noise, value], id) => noise + encodeMessage(NONCE, id, value)).join("") + tail;
          const decoded = decode(split(Buffer.from(stream, "utf8"), cuts));
          expect(decoded.messages).toEqual(pairs.map(([, value]) => value));
        },
      ),
      { numRuns: 300 },
    );
  });

  it("assembles multi-frame messages split at any byte", () => {
    fc.assert(
      fc.property(fc.string({ minLength: 60_000, maxLength: 200_000 }), cutsArbitrary, (big, cuts) => {
        const stream = Buffer.from(encodeMessage(NONCE, 7, { type: "result", json: big }), "utf8");
        const decoded = decode(split(stream, cuts), NONCE, {
          maxLineBytes: 70_000,
          maxMessageBytes: 1 << 21,
        });
        expect(decoded.messages).toEqual([{ type: "result", json: big }]);
      }),
      { numRuns: 20 },
    );
  });

  it("never accepts a frame made with another nonce: a function cannot forge a result", () => {
    fc.assert(
      fc.property(nonceArbitrary, jsonArbitrary, fc.nat(1000), (forged, value, id) => {
        fc.pre(forged !== NONCE);
        const frame = encodeMessage(forged, id, { type: "result", json: JSON.stringify(value) });
        const decoded = decode([Buffer.from(frame)]);
        expect(decoded.messages).toEqual([]);
        expect(decoded.text).toBe(frame);
      }),
      { numRuns: 300 },
    );
  });

  it("stops accepting the boot's nonce once the invocation's is set", () => {
    fc.assert(
      fc.property(nonceArbitrary, jsonArbitrary, (next, value) => {
        fc.pre(next !== NONCE);
        const messages: unknown[] = [];
        const decoder = new FrameDecoder(NONCE, { message: (m) => messages.push(m), text: () => {} });
        decoder.setNonce(next);
        decoder.push(Buffer.from(encodeMessage(NONCE, 1, value)));
        decoder.push(Buffer.from(encodeMessage(next, 2, value)));
        expect(messages).toEqual([value]);
      }),
      { numRuns: 100 },
    );
  });

  it("never turns a corrupted frame into a different message", () => {
    fc.assert(
      fc.property(jsonArbitrary, fc.nat(), fc.integer({ min: 1, max: 255 }), (value, at, flip) => {
        const frame = Buffer.from(encodeMessage(NONCE, 3, value), "utf8");
        const position = at % (frame.length - 1); // not the final newline
        frame[position] = (frame[position] as number) ^ flip;
        const decoded = decode([frame]);
        for (const message of decoded.messages) expect(message).toEqual(value);
      }),
      { numRuns: 500 },
    );
  });
});

describe("text from a function on its way to the terminal", () => {
  it("never contains a raw control character but newline and tab", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 500 }), (text) => {
        // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for control characters is the point
        expect(sanitizeForTerminal(text)).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/);
      }),
      { numRuns: 500 },
    );
    expect(sanitizeForTerminal("\u001b]0;pwned\u0007\u001b[2Jok\n")).toBe("\\x1b]0;pwned\\x07\\x1b[2Jok\n");
  });
});
