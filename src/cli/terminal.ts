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
