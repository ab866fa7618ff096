/**
 * The host's TSC rate, for the kernels of guests under TCG: their TSC counts at
 * the host's rate, and a kernel told it (`tsc_early_khz=`, with `tsc=reliable`)
 * neither calibrates it against the emulated PIT nor watches it with jiffies.
 * On a busy host (measured: every boot with three busy loops beside it) either
 * failed (no rate; or jiffies, which lose ticks, "saw" the TSC skew), and the
 * kernel kept time with jiffies, in 4 ms steps, for the VM's life and all its
 * clones' if it was saved: `Date.now()`, `performance.now()` and timers.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { hostTool } from "./tools.ts";

const execFileAsync = promisify(execFile);

let measured: Promise<number | undefined> | undefined;

/** The host's TSC rate in kHz (runtime-initrd/tsc-khz.c, ~50 ms, once per process), or undefined where it cannot be had. */
export function hostTscKhz(env: NodeJS.ProcessEnv = process.env): Promise<number | undefined> {
  measured ??= (async () => {
    if (process.arch !== "x64") return undefined;
    try {
      const tool = await hostTool("fnrun-tsc-khz", "tsc-khz.c", env);
      const { stdout } = await execFileAsync(tool, [], { timeout: 10_000 });
      return plausibleKhz(stdout);
    } catch {
      return undefined; // the kernel calibrates, as it did before
    }
  })();
  return measured;
}

/** The tool's output as kHz, if it is a rate a CPU's TSC can have (100 MHz to 20 GHz). */
export function plausibleKhz(output: string): number | undefined {
  const khz = Number(output.trim());
  return Number.isInteger(khz) && khz >= 100_000 && khz <= 20_000_000 ? khz : undefined;
}
