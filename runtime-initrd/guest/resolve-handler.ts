/**
 * Finding the handler in a function's module, as Lambda's Node.js runtime does:
 * property by property along its path ("nested.somethingComplex.handler") from
 * the module's exports. A bundled CommonJS module's `module.exports` is its
 * default export, so the path is tried there too; the default handler name,
 * "handler", falls back to the default export itself.
 *
 * Pure (no I/O, no state): tested on its own (test/unit/guest/).
 */

export type Resolved =
  | { handler: (...args: never[]) => unknown }
  | { error: { errorType: "Runtime.HandlerNotFound"; errorMessage: string } };

function walk(root: unknown, keys: string[]): unknown {
  let value = root;
  for (const key of keys) {
    if (value === null || (typeof value !== "object" && typeof value !== "function")) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

function kindOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

/** `shown` is the handler as the user sees it (MODULE.PATH), for the messages. */
export function resolveHandler(module: Record<string, unknown>, path: string, shown: string): Resolved {
  const keys = path.split(".");
  const fallback = module.default;
  const roots: unknown[] = [module];
  if (fallback !== null && (typeof fallback === "object" || typeof fallback === "function"))
    roots.push(fallback);
  let found: unknown;
  for (const root of roots) {
    const value = walk(root, keys);
    if (typeof value === "function") return { handler: value as (...args: never[]) => unknown };
    if (value !== undefined && found === undefined) found = value;
  }
  if (path === "handler" && typeof fallback === "function") {
    return { handler: fallback as (...args: never[]) => unknown };
  }
  if (found !== undefined) {
    return {
      error: {
        errorType: "Runtime.HandlerNotFound",
        errorMessage: `${shown} is not a function (it is ${kindOf(found)})`,
      },
    };
  }
  const exported = Object.keys(module).join(", ") || "nothing";
  return {
    error: {
      errorType: "Runtime.HandlerNotFound",
      errorMessage:
        `${shown} is undefined or not exported (the function exports: ${exported}). ` +
        "Export it, or choose another with --handler (docs/functions.md: handler strings).",
    },
  };
}
