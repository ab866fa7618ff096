/** Where fnrun's own files are, whether it runs from source or from dist/. */
import { existsSync } from "node:fs";
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

/** Reports one line per slow step (kernel build, runtime image build). */
export type Progress = (message: string) => void;
export const silent: Progress = () => {};
