/**
 * Maps stack traces from the bundle the guest ran back to the function's own
 * source files, on the host (the guest never parses source maps).
 */
import { SourceMap, type SourceMapPayload } from "node:module";
import { relative, resolve } from "node:path";

/** Where the guest keeps the bundle (see runtime-initrd/guest.ts). */
export const GUEST_BUNDLE_PATH = "/fnrun/function.mjs";
const FRAME = /(?:file:\/\/)?\/fnrun\/function\.mjs:(\d+):(\d+)/g;

export function createStackMapper(sourceMapJson: string, cwd = process.cwd()): (line: string) => string {
  let map: SourceMap | undefined;
  return (line) =>
    line.replace(FRAME, (whole, lineText: string, columnText: string) => {
      map ??= new SourceMap(JSON.parse(sourceMapJson) as SourceMapPayload);
      const found = map.findEntry(Number(lineText) - 1, Number(columnText) - 1) as {
        originalSource?: string;
        originalLine?: number;
        originalColumn?: number;
      };
      if (!found.originalSource || found.originalLine === undefined || found.originalColumn === undefined) {
        return whole;
      }
      const absolute = resolve("/fnrun", pathOfSource(found.originalSource));
      const shown = relative(cwd, absolute);
      return `${shown.startsWith("..") ? absolute : shown}:${found.originalLine + 1}:${found.originalColumn + 1}`;
    });
}

/** A source map's source is a URL: esbuild writes "ü" as %C3%BC, and "%" as %25. */
function pathOfSource(source: string): string {
  const path = source.replace(/^file:\/\//, "");
  try {
    return decodeURIComponent(path);
  } catch {
    return path; // not encoded after all (a lone "%")
  }
}
