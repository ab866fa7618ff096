import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onTestFinished } from "vitest";

/**
 * A folder of the running test's own (`fnrun-test-NAME-…` in the temp dir),
 * removed when the test finishes, whether it passed or failed. Call it inside
 * a test.
 */
export function temporaryDirectory(name: string): string {
  const directory = mkdtempSync(join(tmpdir(), `fnrun-test-${name}-`));
  onTestFinished(() => rmSync(directory, { recursive: true, force: true }));
  return directory;
}
