/**
 * Small host-side helpers fnrun compiles from runtime-initrd/ with the
 * system's gcc, once per source (cached by its hash): the read-only wrapper
 * and the save proxy for shared folders' daemons (vm/mounts.ts), the TSC
 * rate a TCG guest's kernel is told (host/tsc.ts).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { cacheRoot, ensureEntry, sha256 } from "../util/cache.ts";
import { SetupError } from "../util/errors.ts";
import { runtimeSourceDir } from "../util/paths.ts";

/** Compiles a host-side helper from runtime-initrd/ once (cached by its source's hash). */
export async function hostTool(name: string, sourceFile: string, env: NodeJS.ProcessEnv): Promise<string> {
  const sourcePath = join(runtimeSourceDir, sourceFile);
  const source = await readFile(sourcePath);
  const entry = await ensureEntry(
    "host-tools",
    sha256(`${name}-v1`, source),
    async (directory) => {
      const { execa } = await import("execa");
      const result = await execa("gcc", ["-O2", "-Wall", "-o", join(directory, name), sourcePath], {
        reject: false,
        all: true,
        timeout: 60_000,
      });
      if (result.exitCode !== 0) throw new SetupError(`compiling ${sourceFile} failed:\n${result.all}`);
      return [name];
    },
    {},
    cacheRoot(env),
  );
  return entry.path(name);
}
