/** Where fnrun's own files are (from source or from dist/), and where it keeps its state. */
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

function findPackageRoot(): string {
  let directory = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(directory, "package.json")) && existsSync(join(directory, "runtime-initrd"))) {
      return directory;
    }
    const parent = dirname(directory);
    if (parent === directory) throw new Error("fnrun: cannot find its package root");
    directory = parent;
  }
}

export const packageRoot = findPackageRoot();
export const runtimeSourceDir = join(packageRoot, "runtime-initrd");

/** fnrun's state (history): $FNRUN_STATE_DIR, else $XDG_STATE_HOME/fnrun, else ~/.local/state/fnrun. */
export function stateDirectory(env: NodeJS.ProcessEnv = process.env): string {
  if (env.FNRUN_STATE_DIR) return env.FNRUN_STATE_DIR;
  const base = env.XDG_STATE_HOME || join(env.HOME || homedir(), ".local", "state");
  return join(base, "fnrun");
}
