/** How the CLI shows what happened: failures, and the boot timeline. */
import { type FnrunError, FunctionError } from "../util/errors.ts";
import type { TimelineEntry } from "../vm/timeline.ts";
import { sanitizeForTerminal } from "./terminal.ts";

export function describeFailure(error: FnrunError): string {
  if (error instanceof FunctionError) {
    const stack = error.trace.filter((line) => line.trimStart().startsWith("at ")).join("\n");
    return sanitizeForTerminal(
      `fnrun: function error: ${error.errorType}: ${error.errorMessage}\n${stack ? `${stack}\n` : ""}`,
    );
  }
  return sanitizeForTerminal(`fnrun: ${error.name}: ${error.message}\n`);
}

export function formatTimeline(timeline: TimelineEntry[]): string {
  const lines = ["boot timeline (ms since QEMU was spawned; guest points mapped from the guest clock):"];
  let previous = 0;
  for (const entry of timeline) {
    const delta = entry.atMs - previous;
    previous = entry.atMs;
    lines.push(
      `  ${entry.atMs.toFixed(1).padStart(9)}  (+${delta.toFixed(1).padStart(8)})  ${entry.name.padEnd(20)} ${entry.source}`,
    );
  }
  return `${lines.join("\n")}\n`;
}

/** A table column: its heading (none for a table without headings) and which side it is flush with. */
export interface Column {
  heading?: string;
  align?: "left" | "right";
}

/**
 * Rows of cells as lines of text, each column as wide as its widest cell, two
 * spaces between columns and no trailing spaces. Cells may hold what a user
 * named (a function's file, say): control characters, newlines and tabs
 * included, are shown escaped, so a cell stays one cell on one line.
 */
export function formatTable(columns: readonly Column[], rows: ReadonlyArray<readonly string[]>): string {
  const oneLine = (cell: string) =>
    sanitizeForTerminal(cell).replace(/[\n\t]/g, (character) => (character === "\n" ? "\\n" : "\\t"));
  const headings = columns.some((column) => column.heading !== undefined)
    ? [columns.map((column) => column.heading ?? "")]
    : [];
  const lines = [...headings, ...rows.map((row) => columns.map((_, index) => oneLine(row[index] ?? "")))];
  const widths = columns.map((_, index) => Math.max(0, ...lines.map((line) => line[index]?.length ?? 0)));
  return lines
    .map((line) =>
      line
        .map((cell, index) =>
          columns[index]?.align === "right"
            ? cell.padStart(widths[index] ?? 0)
            : cell.padEnd(widths[index] ?? 0),
        )
        .join("  ")
        .trimEnd(),
    )
    .map((line) => `${line}\n`)
    .join("");
}

/** A time as fnrun's lists show it: UTC, "2026-12-07 20:41:02" (to the minute without `seconds`). */
export function utcTime(time: number | Date, seconds = true): string {
  return new Date(time)
    .toISOString()
    .replace("T", " ")
    .slice(0, seconds ? 19 : 16);
}
