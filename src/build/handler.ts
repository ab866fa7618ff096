/**
 * Handler strings, as AWS Lambda's Node.js runtime reads them: MODULE.PATH,
 * where MODULE is a file (without its extension, possibly behind a directory:
 * "src/index.handler") and PATH a property path in its exports
 * ("nested.somethingComplex.handler"). With the function's file given, PATH alone
 * is enough. The path is walked in the guest (runtime-initrd/guest/resolve-handler.ts),
 * where the module's exports are.
 */
import { join, posix } from "node:path";
import { UsageError } from "../util/errors.ts";
import { isFile } from "../util/fs.ts";

/**
 * A handler string: an optional directory, an optional MODULE (a file's name),
 * then the path: JavaScript names separated by dots.
 */
const HANDLER_STRING = /^(?:[^\s/.][^\s/]*\/)*(?:[^\s/.]+\.)?[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*$/;

export function isHandlerString(value: unknown): value is string {
  return typeof value === "string" && value.length <= 256 && HANDLER_STRING.test(value);
}

export interface HandlerString {
  /** The directory of MODULE ("" or "src/"). */
  directory: string;
  module: string;
  /** The property path in MODULE's exports. */
  path: string;
}

/** Lambda's split of "dir/module.path.to.handler": the directory, the module before the first dot, the rest. */
export function parseHandlerString(handler: string): HandlerString | undefined {
  const slash = handler.lastIndexOf("/");
  const directory = handler.slice(0, slash + 1);
  const base = handler.slice(slash + 1);
  const dot = base.indexOf(".");
  if (dot <= 0 || dot === base.length - 1) return undefined;
  return { directory, module: base.slice(0, dot), path: base.slice(dot + 1) };
}

/**
 * The export path to call in the function named `functionName`: the handler as
 * given (PATH), or its PATH when it names the function's own module
 * (MODULE.PATH: "hello.greet" for hello.ts).
 */
export function handlerPath(handler: string, functionName: string): string {
  const parsed = parseHandlerString(handler);
  if (parsed && parsed.module === functionName) return parsed.path;
  if (parsed?.directory) {
    throw new UsageError(
      `handler "${handler}" names the module ${parsed.directory}${parsed.module}, but the function is ${functionName}: ` +
        `use ${functionName}.${parsed.path}, or just ${parsed.path}`,
    );
  }
  return handler;
}

/** The extensions tried for MODULE, in Lambda's order (.js, .mjs, .cjs), then TypeScript's. */
export const MODULE_EXTENSIONS = [".js", ".mjs", ".cjs", ".ts", ".mts", ".cts"];

/**
 * The file of a handler string's MODULE, looked for as Lambda looks in its task
 * root: in `directories` in turn (the current directory, then the functions
 * directory), each extension in turn.
 */
export async function findHandlerModule(handler: string, directories: string[]): Promise<string> {
  const parsed = parseHandlerString(handler);
  if (!parsed) {
    throw new UsageError(
      `--handler ${handler}: without the function's file, the handler must be MODULE.EXPORT (index.handler), as Lambda's`,
    );
  }
  const tried: string[] = [];
  for (const directory of directories) {
    for (const extension of MODULE_EXTENSIONS) {
      const candidate = join(directory, posix.normalize(`${parsed.directory}${parsed.module}${extension}`));
      tried.push(candidate);
      if (await isFile(candidate)) return candidate;
    }
  }
  throw new UsageError(
    `--handler ${handler}: no module ${parsed.directory}${parsed.module} (${MODULE_EXTENSIONS.join(", ")}) in ${directories.join(" or ")}; give the function's file, or run fnrun where the module is`,
  );
}
