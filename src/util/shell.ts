/** Quotes a word for a POSIX shell (QEMU runs `exec:` migration commands with one). */
export function shellQuote(text: string): string {
  return `'${text.replaceAll("'", "'\\''")}'`;
}
