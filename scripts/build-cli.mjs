// Bundles the CLI (dist/cli/fnrun.mjs and its chunks): loading a few files
// instead of a few hundred modules saves ~100 ms on every `fnrun` run. esbuild stays external
// (it ships a native binary); the library API is compiled by tsc as usual.
// Also bundles the benchmark (dist/bench.mjs): it is TypeScript, which Node 20
// cannot run directly.
import { rmSync } from "node:fs";
import { dirname } from "node:path";
import { build } from "esbuild";

/**
 * yargs measures its help text with string-width, whose module builds large
 * Unicode tables when it is imported (an Intl.Segmenter and a \p{RGI_Emoji}
 * regular expression: ~27 ms of every `fnrun` run, help shown or not). Each
 * import of it gets this stand-in instead: printable ASCII, which all of fnrun's
 * help is, has as many columns as characters; anything else goes to the real
 * module, loaded (bundled, lazily initialized) the first time it is needed.
 */
const lazyStringWidth = {
  name: "lazy-string-width",
  setup(build) {
    build.onResolve({ filter: /^string-width$/ }, async (args) => {
      if (args.pluginData === "real") return undefined;
      const real = await build.resolve("string-width", {
        kind: args.kind,
        resolveDir: args.resolveDir,
        pluginData: "real",
      });
      if (real.errors.length > 0) return { errors: real.errors };
      return { path: real.path, namespace: "lazy-string-width" };
    });
    build.onLoad({ filter: /.*/, namespace: "lazy-string-width" }, (args) => ({
      resolveDir: dirname(args.path),
      contents: `const PRINTABLE_ASCII = /^[\\x20-\\x7e]*$/;
let real;
export default function stringWidth(text, options) {
  if (typeof text === "string" && PRINTABLE_ASCII.test(text)) return text.length;
  real ??= require(${JSON.stringify(args.path)}).default;
  return real(text, options);
}
`,
    }));
  },
};

// Chunk names change with their content: start clean, or old chunks pile up.
rmSync("dist/cli", { recursive: true, force: true });

const common = {
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  // Native code (better-sqlite3) and packages that read their own files at run
  // time (esbuild's binary, BullMQ's Lua scripts) stay in node_modules.
  external: ["esbuild", "better-sqlite3", "bullmq", "ioredis"],
  sourcemap: "linked",
  // Bundled CommonJS dependencies call require().
  banner: {
    js: 'import { createRequire as __fnrunRequire } from "node:module"; const require = __fnrunRequire(import.meta.url);',
  },
  logLevel: "warning",
  plugins: [lazyStringWidth],
};

// Split: what only some runs need (esbuild's API, acorn, execa, the snapshot and
// kernel builders) lives in chunks loaded when first used.
await build({
  ...common,
  entryPoints: { fnrun: "src/cli/main.ts", prestart: "src/start/prestart.ts" },
  outdir: "dist/cli",
  splitting: true,
  outExtension: { ".js": ".mjs" },
});
// The first step of a prestart, alone in one file with no banner: `fnrun invoke`
// loads it before QEMU's spawn, and every module Node loads costs ~1.5 ms.
await build({
  ...common,
  entryPoints: { "prestart-spawn": "src/start/prestart-spawn.ts" },
  outdir: "dist/cli",
  outExtension: { ".js": ".mjs" },
  banner: {},
});
await build({ ...common, entryPoints: ["bench/run.ts"], outfile: "dist/bench.mjs" });
