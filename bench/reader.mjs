// Reads a file once, in 1 MB chunks, and reports how fast (timed inside the guest).
import { closeSync, openSync, readSync } from "node:fs";

export const handler = async (event) => {
  const buffer = Buffer.alloc(1024 * 1024);
  const started = performance.now();
  const fd = openSync(event.path, "r");
  let bytes = 0;
  for (;;) {
    const count = readSync(fd, buffer, 0, buffer.length, null);
    if (count === 0) break;
    bytes += count;
  }
  closeSync(fd);
  const ms = performance.now() - started;
  return { bytes, ms, mbPerSecond: bytes / 1024 / 1024 / (ms / 1000) };
};
