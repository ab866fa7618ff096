/** A session's logs: kept up to a byte limit, then cut with one marker. */

export type LogStream = "stdout" | "stderr" | "console";

export interface LogEntry {
  stream: LogStream;
  text: string;
}

export const TRUNCATION_MARKER = "\n[fnrun: log output truncated at the limit]\n";

/** Keeps logs up to a byte limit, then one marker; never grows past it. */
export class LogCollector {
  readonly entries: LogEntry[] = [];
  #bytes = 0;
  #truncated = false;

  constructor(
    private readonly maxBytes: number,
    private readonly onLog?: (entry: LogEntry) => void,
  ) {}

  get truncated(): boolean {
    return this.#truncated;
  }

  add(stream: LogStream, text: string): void {
    if (this.#truncated || text.length === 0) return;
    const room = this.maxBytes - this.#bytes;
    let kept = text;
    if (Buffer.byteLength(text) > room) {
      kept = Buffer.from(text)
        .subarray(0, Math.max(0, room))
        .toString("utf8")
        .replace(/\uFFFD$/, "");
      this.#truncated = true;
    }
    if (kept.length > 0) this.#push({ stream, text: kept });
    if (this.#truncated) this.#push({ stream: "stderr", text: TRUNCATION_MARKER });
  }

  text(): string {
    return this.entries.map((entry) => entry.text).join("");
  }

  #push(entry: LogEntry): void {
    this.entries.push(entry);
    this.#bytes += Buffer.byteLength(entry.text);
    this.onLog?.(entry);
  }
}
