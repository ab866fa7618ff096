/** Keeps the last `limit` characters of a text stream (a console, a daemon's stderr). */
export class TextTail {
  #text = "";
  constructor(private readonly limit: number) {}
  push(text: string): void {
    this.#text = (this.#text + text).slice(-this.limit);
  }
  toString(): string {
    return this.#text;
  }
  lastLines(count: number): string {
    return this.#text
      .split("\n")
      .slice(-count - 1)
      .join("\n")
      .trim();
  }
}
