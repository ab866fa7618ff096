/** A session's timeline: host and guest points on one clock. */
import type { HostMarks } from "./process.ts";
import type { GuestMark } from "./protocol.ts";

export interface TimelineEntry {
  name: string;
  /** Milliseconds since QEMU was spawned (guest points mapped onto the host clock). */
  atMs: number;
  source: "host" | "guest";
}

/** Maps guest marks (guest clock) onto the host clock: offset = min(receipt - sent). */
export function buildTimeline(
  hostMarks: HostMarks,
  guest: Array<{ name: GuestMark; at: number; receivedAt: number }>,
) {
  const entries: TimelineEntry[] = [];
  const host: Array<[string, number | undefined]> = [
    ["qemuSpawn", hostMarks.spawn],
    ["firstConsoleOutput", hostMarks.firstConsoleOutput],
    ["ready", hostMarks.ready],
    ["restoreStarted", hostMarks.restoreStarted],
    ["vmResumed", hostMarks.resumed],
    ["cloneAdopted", hostMarks.adopted],
    ["invocationSent", hostMarks.invocationSent],
    ["resultReceived", hostMarks.resultReceived],
    ["vmGone", hostMarks.exited],
  ];
  for (const [name, at] of host) if (at !== undefined) entries.push({ name, atMs: at, source: "host" });
  if (guest.length > 0) {
    const offset = Math.min(...guest.map((mark) => mark.receivedAt - mark.at));
    const seen = new Set<string>();
    for (const mark of guest) {
      if (seen.has(mark.name)) continue;
      seen.add(mark.name);
      entries.push({ name: mark.name, atMs: mark.at + offset, source: "guest" });
    }
    // Kernel start is the guest clock's zero, when the VM booted (not restored).
    if (guest.some((mark) => mark.name === "initStart")) {
      entries.push({ name: "kernelStart", atMs: Math.max(0, offset), source: "guest" });
    }
  }
  return entries.sort((a, b) => a.atMs - b.atMs);
}
