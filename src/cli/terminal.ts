/** Output helpers for text that came from a function (untrusted) on its way to a terminal. */

/**
 * Makes control characters visible so a function cannot move the cursor,
 * recolour, retitle or otherwise drive the user's terminal: everything but
 * newline and tab in C0, DEL and C1 becomes a visible `\xNN`.
 */
export function sanitizeForTerminal(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (character) => {
    if (character === "\r") return "";
    return `\\x${character.charCodeAt(0).toString(16).padStart(2, "0")}`;
  });
}

/**
 * Prints a function's logs through `write`, made safe for a terminal (and
 * passed through `style`, a colour, say). A function's last log may not end
 * its line (`process.stdout.write("…")`): `endLine()` ends it, so that what
 * fnrun writes next starts on a line of its own.
 */
export function logPrinter(
  write: (text: string) => unknown,
  style: (text: string) => string = (text) => text,
): { log(text: string): void; endLine(): void } {
  let open = false;
  return {
    log(text) {
      if (text === "") return;
      write(style(sanitizeForTerminal(text)));
      open = !text.endsWith("\n");
    },
    endLine() {
      if (open) write("\n");
      open = false;
    },
  };
}
