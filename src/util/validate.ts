/** Checks of values that come from users (options, flags), as UsageErrors that name the value. */
import { UsageError } from "./errors.ts";

/** A value for an error message, whatever it is (BigInt, Symbol, circular, null-prototype). */
export function shown(value: unknown): string {
  try {
    if (typeof value === "bigint") return `${value}n`;
    return JSON.stringify(value) ?? String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

export function checkRange(
  value: unknown,
  name: string,
  range: { min: number; max: number },
  integer = false,
): number | undefined {
  if (value === undefined) return undefined;
  if (
    typeof value !== "number" ||
    !Number.isFinite(value) ||
    value < range.min ||
    value > range.max ||
    (integer && !Number.isInteger(value))
  ) {
    throw new UsageError(
      `${name} must be ${integer ? "a whole number" : "a number"} from ${range.min} to ${range.max}, not ${shown(value)}`,
    );
  }
  return value;
}
