/** Questions about paths that a missing path answers with no. */
import { stat } from "node:fs/promises";

/** `path` is a file (following symbolic links); false when it is anything else or nothing. */
export function isFile(path: string): Promise<boolean> {
  return stat(path).then(
    (info) => info.isFile(),
    () => false,
  );
}

/** `path` is a folder (following symbolic links); false when it is anything else or nothing. */
export function isDirectory(path: string): Promise<boolean> {
  return stat(path).then(
    (info) => info.isDirectory(),
    () => false,
  );
}
