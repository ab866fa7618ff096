import type { CliIo } from "./io.ts";

export interface ProgressReporter {
  /** Called with each slow step (kernel build, runtime image, snapshot). */
  step?: (line: string) => void;
  /** Ends the last step's line. */
  done: () => void;
}

/**
 * Progress on slow steps: on a terminal, one line per step whose elapsed time
 * keeps counting; otherwise one plain line per step; nothing in CI (CI is set),
 * with --json or --quiet.
 */
export function createProgress(io: CliIo, options: { quiet?: boolean; json?: boolean }): ProgressReporter {
  if (options.quiet || options.json) return { done: () => {} };
  if (!io.stderr.isTTY) {
    if (io.env.CI) return { done: () => {} };
    return { step: (line) => io.stderr.write(`fnrun: ${line}\n`), done: () => {} };
  }
  let current: { text: string; started: number } | undefined;
  let timer: NodeJS.Timeout | undefined;
  const seconds = () => Math.round((Date.now() - (current?.started ?? Date.now())) / 1000);
  const redraw = () => {
    if (current) io.stderr.write(`\r\u001b[2Kfnrun: ${current.text} … ${seconds()} s`);
  };
  const finish = () => {
    clearInterval(timer);
    if (current) io.stderr.write(`\r\u001b[2Kfnrun: ${current.text} (${seconds()} s)\n`);
    current = undefined;
  };
  return {
    step: (line) => {
      finish();
      current = { text: line, started: Date.now() };
      redraw();
      timer = setInterval(redraw, 1000);
      timer.unref();
    },
    done: finish,
  };
}
