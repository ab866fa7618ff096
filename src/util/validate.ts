/** Checks of values that come from users (options, flags), as UsageErrors that name the value. */
import { UsageError } from "./errors.ts";

/** What a numeric option or flag accepts. */
export interface NumberRange {
  min: number;
  max: number;
  /** Whole numbers only. */
  integer?: boolean;
}

/** A value for an error message, whatever it is (BigInt, Symbol, circular, null-prototype). */
export function shown(value: unknown): string {
  try {
    if (typeof value === "bigint") return `${value}n`;
    return JSON.stringify(value) ?? String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/** `value` is a finite number within `range` (and whole, where it must be). */
export function inRange(value: number, range: NumberRange): boolean {
  return (
    Number.isFinite(value) &&
    value >= range.min &&
    value <= range.max &&
    (!range.integer || Number.isInteger(value))
  );
}

/** What a value out of `range` is told: `got` is the value as shown. */
export function outOfRangeMessage(name: string, range: NumberRange, got: string): string {
  const kind = range.integer ? "a whole number" : "a number";
  return `${name} must be ${kind} from ${range.min} to ${range.max}, not ${got}`;
}

function outOfRange(name: string, range: NumberRange, got: string): UsageError {
  return new UsageError(outOfRangeMessage(name, range, got));
}

/** An option's value (undefined: not given), checked against its range. */
export function checkRange(value: unknown, name: string, range: NumberRange): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !inRange(value, range)) throw outOfRange(name, range, shown(value));
  return value;
}

/**
 * A flag's text as the number it takes, refused as typed: `--timeout 1s` says
 * "1s" (yargs's own numbers would have made it NaN, shown as null).
 */
export function parseNumberText(text: unknown, name: string, range: NumberRange): number {
  if (Array.isArray(text)) throw new UsageError(`${name} is given ${text.length} times: give it once`);
  const typed = String(text);
  const value = typed.trim() === "" ? Number.NaN : Number(typed);
  if (!inRange(value, range)) throw outOfRange(name, range, typed.trim() === "" ? '""' : typed);
  return value;
}
