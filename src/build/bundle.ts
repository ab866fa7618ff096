/**
 * Bundling: the function and everything it imports (TypeScript or JavaScript,
 * ESM or CommonJS, packages from its node_modules) become one ES module with a
 * source map, built with esbuild. Node's built-in modules stay imports. Errors
 * are reported with file:line:col before any VM boots.
 *
 * Bundles are cached per function file with the size and mtime of every file
 * that went into them (and of the package.json and tsconfig.json files above the
 * function); when none changed, neither esbuild nor acorn is even loaded.
 */
import { mkdir, readFile, stat } from "node:fs/promises";
import { createRequire, SourceMap, type SourceMapPayload } from "node:module";
import { basename, dirname, extname, join, relative, resolve } from "node:path";
import type * as Esbuild from "esbuild";
import { cacheRoot, sha256, writeFileAtomic } from "../util/cache.ts";
import { BundleError, UsageError } from "../util/errors.ts";
import { isDirectory, isFile } from "../util/fs.ts";
import { CONFIG_FORMAT, type FunctionConfig } from "./config.ts";

type EsbuildModule = typeof Esbuild;
/** esbuild is resolved from fnrun's own node_modules. */
const requireFromFnrun = createRequire(import.meta.url);
let esbuildModule: Promise<EsbuildModule> | undefined;
/**
 * esbuild is loaded only when something has to be built (~30 ms of start-up
 * saved otherwise), and with require(): it is CommonJS, which import() has
 * Node's ESM loader scan for its exports first (97 KB of it).
 */
export function loadEsbuild(): Promise<EsbuildModule> {
  esbuildModule ??= Promise.resolve().then(() => requireFromFnrun("esbuild") as EsbuildModule);
  return esbuildModule;
}

export interface Bundle {
  /** Absolute path of the function's file. */
  entry: string;
  /** The function's name: its file name without the extension. */
  name: string;
  /** The bundled ES module. */
  code: string;
  /** Its source map (JSON text), used on the host to map stack traces back. */
  sourceMap: string;
  /** `export const config` of the function's file. */
  config: FunctionConfig;
  /** Every file esbuild read (absolute), for watching. */
  inputs: string[];
  /** esbuild's warnings, as "file:line:col: text" (e.g. CommonJS `exports` in an ES module). */
  warnings: string[];
}

// Bundled CommonJS packages may `require()` Node built-ins, and find their files
// through `__filename` and `__dirname`; in an ES module those need defining. The
// two are the bundle's own (as for a bundled function on Lambda), given under
// names of fnrun's (DEFINE) so that a function's own `const __dirname` stays its.
const BANNER =
  'import { createRequire as __fnrunCreateRequire } from "node:module";\n' +
  "const require = __fnrunCreateRequire(import.meta.url);\n" +
  // Not node:url's fileURLToPath: one more module for every clone to load.
  "const __fnrunFilename = decodeURIComponent(new URL(import.meta.url).pathname);\n" +
  'const __fnrunDirname = __fnrunFilename.slice(0, __fnrunFilename.lastIndexOf("/")) || "/";';

const DEFINE = { __filename: "__fnrunFilename", __dirname: "__fnrunDirname" };

const LOADERS: Record<string, Esbuild.Loader> = {
  ".ts": "ts",
  ".mts": "ts",
  ".cts": "ts",
  ".tsx": "tsx",
  ".js": "js",
  ".mjs": "js",
  ".cjs": "js",
  ".jsx": "jsx",
};

export function functionNameOf(path: string): string {
  return basename(path, extname(path));
}

function displayPath(path: string): string {
  const relativePath = relative(process.cwd(), path);
  return relativePath.startsWith("..") ? path : relativePath;
}

async function checkEntry(path: string): Promise<string> {
  const absolute = resolve(path);
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(absolute);
  } catch {
    throw new UsageError(`function file not found: ${path}`);
  }
  if (info.isDirectory())
    throw new UsageError(`${path} is a directory; give the function's file (e.g. ${path}/index.ts)`);
  if (!(extname(absolute) in LOADERS)) {
    throw new UsageError(`${path}: a function is a .ts, .mts, .cts, .js, .mjs or .cjs file`);
  }
  return absolute;
}

function toBundleError(error: unknown, entry: string): BundleError {
  const failure = error as Esbuild.BuildFailure;
  const first = failure.errors?.[0];
  if (!first) return new BundleError(`bundling ${displayPath(entry)} failed: ${(error as Error).message}`);
  const location = first.location
    ? {
        file: displayPath(resolve(first.location.file)),
        line: first.location.line,
        column: first.location.column + 1,
        lineText: first.location.lineText,
      }
    : undefined;
  const more = failure.errors.length > 1 ? ` (and ${failure.errors.length - 1} more)` : "";
  return new BundleError(`${first.text}${more}`, location, { cause: error });
}

async function readConfig(entry: string): Promise<FunctionConfig> {
  const { extractConfig } = await import("./config-extract.ts");
  const source = await readFile(entry, "utf8");
  const loader = LOADERS[extname(entry)] ?? "js";
  if (loader === "js") return extractConfig(source, displayPath(entry));
  let transformed: Esbuild.TransformResult;
  try {
    // No `format`: esbuild then keeps `export const config` where it is.
    const esbuild = await loadEsbuild();
    transformed = await esbuild.transform(source, { loader, target: "esnext", sourcemap: "external" });
  } catch (error) {
    throw toBundleError(error, entry);
  }
  try {
    return extractConfig(transformed.code, displayPath(entry));
  } catch (error) {
    // Point at the TypeScript source, not at the JavaScript esbuild made of it.
    if (error instanceof BundleError && error.location) {
      const original = new SourceMap(JSON.parse(transformed.map) as SourceMapPayload).findEntry(
        error.location.line - 1,
        error.location.column - 1,
      ) as { originalLine?: number; originalColumn?: number };
      if (original.originalLine !== undefined && original.originalColumn !== undefined) {
        const message = error.message.replace(/^[^:]+:\d+:\d+: /, "");
        throw new BundleError(message, {
          file: error.location.file,
          line: original.originalLine + 1,
          column: original.originalColumn + 1,
        });
      }
    }
    throw error;
  }
}

interface Fingerprint {
  path: string;
  /** -1: the file did not exist (creating it may change the bundle). */
  size: number;
  mtimeMs: number;
}

interface CachedBundle {
  version: string;
  fingerprints: Fingerprint[];
  bundle: Bundle;
}

async function fingerprint(path: string): Promise<Fingerprint> {
  try {
    const info = await stat(path);
    return { path, size: info.size, mtimeMs: info.mtimeMs };
  } catch {
    return { path, size: -1, mtimeMs: 0 };
  }
}

/** package.json and tsconfig.json files from the function's directory up: they steer esbuild too. */
function settingsFiles(entry: string): string[] {
  const files: string[] = [];
  let directory = dirname(entry);
  for (;;) {
    files.push(join(directory, "package.json"), join(directory, "tsconfig.json"));
    const parent = dirname(directory);
    if (parent === directory) return files;
    directory = parent;
  }
}

let cacheVersion: string | undefined;
async function bundleCacheVersion(): Promise<string> {
  if (!cacheVersion) {
    const esbuildPackage = requireFromFnrun.resolve("esbuild/package.json");
    const { version } = JSON.parse(await readFile(esbuildPackage, "utf8")) as { version: string };
    cacheVersion = `bundle-v4 config-${CONFIG_FORMAT} esbuild-${version} node-${process.versions.node.split(".")[0]}`;
  }
  return cacheVersion;
}

function bundleCachePath(entry: string, env: NodeJS.ProcessEnv): string {
  return join(cacheRoot(env), "bundles", `${sha256(entry).slice(0, 32)}.json`);
}

async function cachedBundle(entry: string, env: NodeJS.ProcessEnv): Promise<Bundle | undefined> {
  let cached: CachedBundle;
  try {
    cached = JSON.parse(await readFile(bundleCachePath(entry, env), "utf8")) as CachedBundle;
  } catch {
    return undefined;
  }
  if (cached.version !== (await bundleCacheVersion()) || cached.bundle?.entry !== entry) return undefined;
  const now = await Promise.all(cached.fingerprints.map((print) => fingerprint(print.path)));
  const unchanged = now.every(
    (print, index) =>
      print.size === cached.fingerprints[index]?.size &&
      print.mtimeMs === cached.fingerprints[index]?.mtimeMs,
  );
  return unchanged ? cached.bundle : undefined;
}

async function storeBundle(bundle: Bundle, env: NodeJS.ProcessEnv): Promise<void> {
  const fingerprints = await Promise.all([...bundle.inputs, ...settingsFiles(bundle.entry)].map(fingerprint));
  const path = bundleCachePath(bundle.entry, env);
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const record: CachedBundle = { version: await bundleCacheVersion(), fingerprints, bundle };
  await writeFileAtomic(path, JSON.stringify(record), 0o600);
}

export interface BundleOptions {
  /** Use and fill the bundle cache (default true). */
  cache?: boolean;
  env?: NodeJS.ProcessEnv;
}

export async function bundleFunction(path: string, options: BundleOptions = {}): Promise<Bundle> {
  const entry = await checkEntry(path);
  const env = options.env ?? process.env;
  const useCache = options.cache ?? true;
  if (useCache) {
    const cached = await cachedBundle(entry, env);
    if (cached) return cached;
  }
  const bundle = await buildBundle(entry);
  // A cache that cannot be written (read-only home, full disk) only costs speed.
  if (useCache) await storeBundle(bundle, env).catch(() => {});
  return bundle;
}

async function buildBundle(entry: string): Promise<Bundle> {
  const esbuild = await loadEsbuild();
  let result: Esbuild.BuildResult<{ write: false; metafile: true; sourcemap: "external" }>;
  try {
    result = await esbuild.build({
      entryPoints: [entry],
      outfile: "/fnrun/function.mjs",
      bundle: true,
      write: false,
      platform: "node",
      format: "esm",
      target: `node${process.versions.node.split(".")[0]}`,
      sourcemap: "external",
      sourcesContent: false,
      metafile: true,
      banner: { js: BANNER },
      define: DEFINE,
      logLevel: "silent",
      absWorkingDir: process.cwd(),
    });
  } catch (error) {
    throw toBundleError(error, entry);
  }
  const code = result.outputFiles.find((file) => file.path.endsWith(".mjs"))?.text;
  const sourceMap = result.outputFiles.find((file) => file.path.endsWith(".map"))?.text;
  if (code === undefined || sourceMap === undefined) throw new BundleError("esbuild produced no output");
  const inputs = Object.keys(result.metafile.inputs).map((input) => resolve(process.cwd(), input));
  const warnings = result.warnings.map((warning) => {
    const where = warning.location
      ? `${displayPath(resolve(warning.location.file))}:${warning.location.line}:${warning.location.column + 1}: `
      : "";
    return `${where}${warning.text}`;
  });
  for (const addon of await nativeAddons(inputs)) {
    warnings.push(
      `${addon.name} is a native addon (it has ${addon.marker}): its compiled .node file is not in the bundle, so loading it fails in the VM`,
    );
  }
  return {
    entry,
    name: functionNameOf(entry),
    code,
    sourceMap,
    config: await readConfig(entry),
    inputs,
    warnings,
  };
}

/** What marks a package as a native addon: node-gyp's build file, node-gyp-build's binaries. */
const ADDON_MARKERS = [
  { path: "binding.gyp", marker: "a binding.gyp", isThere: isFile },
  { path: "prebuilds", marker: "prebuilds/", isThere: isDirectory },
];

/**
 * The packages among a bundle's inputs that are native addons. esbuild bundles
 * their JavaScript but cannot see the `.node` file it loads at run time (through
 * `bindings` or `node-gyp-build`), so the function would fail in the VM with a
 * message about module roots or missing files: better said at bundle time.
 */
async function nativeAddons(inputs: readonly string[]): Promise<{ name: string; marker: string }[]> {
  const packages = new Map<string, string>();
  const folder = "/node_modules/";
  for (const input of inputs) {
    const at = input.lastIndexOf(folder);
    if (at < 0) continue;
    const inside = at + folder.length;
    const parts = input.slice(inside).split("/");
    const name = parts[0]?.startsWith("@") ? parts.slice(0, 2).join("/") : (parts[0] ?? "");
    packages.set(input.slice(0, inside) + name, name);
  }
  const found: { name: string; marker: string }[] = [];
  for (const [root, name] of packages) {
    for (const { path, marker, isThere } of ADDON_MARKERS) {
      if (await isThere(join(root, path))) {
        found.push({ name, marker });
        break;
      }
    }
  }
  return found;
}
