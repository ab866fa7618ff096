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
