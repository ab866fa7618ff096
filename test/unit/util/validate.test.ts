import { describe, expect, it } from "vitest";
import { UsageError } from "../../../src/util/errors.ts";
import { checkRange, parseNumberText } from "../../../src/util/validate.ts";

const SECONDS = { min: 0.1, max: 900 };
const MEGABYTES = { min: 64, max: 16384, integer: true };

describe("parseNumberText (a numeric flag, as typed)", () => {
  it("takes numbers in range, however they are written", () => {
    expect(parseNumberText("5", "--timeout", SECONDS)).toBe(5);
    expect(parseNumberText(" 2.5 ", "--timeout", SECONDS)).toBe(2.5);
    expect(parseNumberText("1e2", "--timeout", SECONDS)).toBe(100);
    expect(parseNumberText(512, "--memory", MEGABYTES)).toBe(512);
  });

  it("refuses anything else, naming the flag and showing the text as typed", () => {
    const refusals: Array<[unknown, string, typeof SECONDS | typeof MEGABYTES, string]> = [
      ["1s", "--timeout", SECONDS, "--timeout must be a number from 0.1 to 900, not 1s"],
      ["", "--timeout", SECONDS, '--timeout must be a number from 0.1 to 900, not ""'],
      ["  ", "--timeout", SECONDS, '--timeout must be a number from 0.1 to 900, not ""'],
      ["NaN", "--timeout", SECONDS, "--timeout must be a number from 0.1 to 900, not NaN"],
      ["Infinity", "--timeout", SECONDS, "--timeout must be a number from 0.1 to 900, not Infinity"],
      ["901", "--timeout", SECONDS, "--timeout must be a number from 0.1 to 900, not 901"],
      ["512k", "--memory", MEGABYTES, "--memory must be a whole number from 64 to 16384, not 512k"],
      ["100.5", "--memory", MEGABYTES, "--memory must be a whole number from 64 to 16384, not 100.5"],
      [["1", "2"], "--memory", MEGABYTES, "--memory is given 2 times: give it once"],
    ];
    for (const [text, flag, range, message] of refusals) {
      expect(() => parseNumberText(text, flag, range)).toThrow(UsageError);
      expect(() => parseNumberText(text, flag, range)).toThrow(message);
    }
  });
});

describe("checkRange (an option's value)", () => {
  it("passes undefined and numbers in range, and refuses the rest by name", () => {
    expect(checkRange(undefined, "memory", MEGABYTES)).toBeUndefined();
    expect(checkRange(128, "memory", MEGABYTES)).toBe(128);
    expect(() => checkRange(128.5, "memory", MEGABYTES)).toThrow(
      "memory must be a whole number from 64 to 16384, not 128.5",
    );
    expect(() => checkRange("128", "memory", MEGABYTES)).toThrow(
      'memory must be a whole number from 64 to 16384, not "128"',
    );
    expect(() => checkRange(Number.NaN, "timeout", SECONDS)).toThrow(
      "timeout must be a number from 0.1 to 900, not null",
    );
  });
});
