/**
 * `fnrun dev FILE`: the edit-run loop. Watches the function and every file it
 * imports; on each save it rebundles and runs the function again with the last
 * event, in a fresh VM as always. A warm pool keeps a VM ready with the current
 * code, so a run after an edit does not wait for a VM to start. Keys (on a
 * terminal): r or Enter runs again, q or Ctrl-C quits; nothing is left running.
 */
import { type FSWatcher, watch } from "node:fs";
import { dirname, relative } from "node:path";
import { bundleFunction } from "../build/bundle.ts";
import type { HostSetup } from "../host/setup.ts";
import type { InvokeResult } from "../invoke/options.ts";
import { createPool, type Pool } from "../invoke/pool.ts";
import { FnrunError, FunctionError } from "../util/errors.ts";
import type { LogEntry } from "../vm/log-collector.ts";
import { logPrinter } from "./terminal.ts";

export interface DevOptions {
  file: string;
  event: unknown;
  machine?: HostSetup;
  /** Colours (on a terminal, unless NO_COLOR). */
  color: boolean;
  write: (text: string) => void;
  /** Keys pressed (raw mode); the loop handles r, Enter, q and Ctrl-C. */
  keys?: AsyncIterable<string>;
  signal?: AbortSignal;
}

const STYLES = {
  bold: [1, 22],
  dim: [2, 22],
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
  cyan: [36, 39],
} as const;
type Style = keyof typeof STYLES;

export function paint(enabled: boolean, style: Style, text: string): string {
  if (!enabled) return text;
  const [open, close] = STYLES[style];
  return `\u001b[${open}m${text}\u001b[${close}m`;
}

export async function runDev(options: DevOptions): Promise<void> {
  const { write, color } = options;
  const shown = relative(process.cwd(), options.file) || options.file;
  let pool: Pool | undefined;
  let watchers: FSWatcher[] = [];
  let running = false;
  let again = false;
  let timer: NodeJS.Timeout | undefined;
  let stop: () => void = () => {};
  const stopped = new Promise<void>((resolve) => {
    stop = resolve;
  });

  const line = (text = "") => write(`${text}\n`);

  async function watchInputs(inputs: string[]): Promise<void> {
    for (const watcher of watchers) watcher.close();
    watchers = [];
    const files = new Set(inputs);
    // Watch directories, not files: editors often save by writing a new file and renaming it.
    for (const directory of new Set(inputs.map((input) => dirname(input)))) {
      try {
        const watcher = watch(directory, (_event, name) => {
          if (name && files.has(`${directory}/${name}`)) schedule();
        });
        watcher.on("error", () => {});
        watchers.push(watcher);
      } catch {}
    }
  }

  function schedule(): void {
    clearTimeout(timer);
    timer = setTimeout(() => void runOnce("changed"), 120);
  }

  function printResult(result: InvokeResult): void {
    line(
      paint(
        color,
        "green",
        `✔ ${result.functionName} returned in ${Math.round(result.durationMs)} ms (${result.startMode})`,
      ),
    );
    line(JSON.stringify(result.result, null, 2));
  }

  function printFailure(error: FnrunError): void {
    if (error instanceof FunctionError) {
      line(paint(color, "red", `✘ ${error.errorType}: ${error.errorMessage}`));
      for (const frame of error.trace.filter((entry) => entry.trimStart().startsWith("at ")))
        line(paint(color, "dim", frame));
    } else {
      line(paint(color, "red", `✘ ${error.name}: ${error.message}`));
    }
  }

  async function runOnce(reason: string): Promise<void> {
    if (running) {
      again = true;
      return;
    }
    running = true;
    const logs = logPrinter(write, (text) => paint(color, "dim", text));
    try {
      line(paint(color, "cyan", `\n── ${new Date().toLocaleTimeString()} ${reason}: running ${shown}`));
      const bundle = await bundleFunction(options.file);
      await watchInputs(bundle.inputs);
      pool ??= await createPool({ size: 1, ...(options.machine ? { host: options.machine } : {}) });
      const result = await pool.invoke(options.file, {
        event: options.event,
        onLog: (entry: LogEntry) => logs.log(entry.text),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      logs.endLine();
      printResult(result);
    } catch (error) {
      logs.endLine();
      if (error instanceof FnrunError) printFailure(error);
      else line(paint(color, "red", `✘ ${(error as Error).message}`));
      // A file that does not bundle is still watched, so fixing it runs again.
      if (watchers.length === 0) await watchInputs([options.file]);
    } finally {
      running = false;
      line(paint(color, "dim", "watching for changes · r: run again · q: quit"));
    }
    if (again) {
      again = false;
      await runOnce("changed");
    }
  }

  options.signal?.addEventListener("abort", () => stop(), { once: true });
  void (async () => {
    for await (const key of options.keys ?? []) {
      if (key === "q" || key === "\u0003" || key === "\u0004") return stop();
      if (key === "r" || key === "\r" || key === "\n") void runOnce("run again");
    }
  })();

  await runOnce("start");
  await stopped;
  clearTimeout(timer);
  for (const watcher of watchers) watcher.close();
  line(paint(color, "dim", "stopping…"));
  await pool?.close();
}
