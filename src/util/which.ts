/** Finds executables on PATH, as `which` does. */
import { accessSync, constants } from "node:fs";
import { access } from "node:fs/promises";
import { delimiter, join } from "node:path";

function candidates(name: string, env: NodeJS.ProcessEnv): string[] {
  return (env.PATH ?? "/usr/bin:/bin")
    .split(delimiter)
    .filter((directory) => directory !== "")
    .map((directory) => join(directory, name));
}

export async function which(name: string, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  for (const candidate of candidates(name, env)) {
    if (await isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/** which(), without waiting for I/O (for the few lookups on a path that must not yield). */
export function whichSync(name: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return candidates(name, env).find((candidate) => {
    try {
      accessSync(candidate, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export async function isExecutable(path: string): Promise<boolean> {
  return access(path, constants.X_OK).then(
    () => true,
    () => false,
  );
}
