// Bundles the CLI (dist/cli/fnrun.mjs and its chunks): loading a few files
// instead of a few hundred modules saves ~100 ms on every `fnrun` run. esbuild stays external
// (it ships a native binary); the library API is compiled by tsc as usual.
// Also bundles the benchmark (dist/bench.mjs): it is TypeScript, which Node 20
// cannot run directly.
import { rmSync } from "node:fs";
import { build } from "esbuild";

// Chunk names change with their content: start clean, or old chunks pile up.
rmSync("dist/cli", { recursive: true, force: true });

const common = {
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  // Native code (better-sqlite3) and packages that read their own files at run
  // time (esbuild's binary, BullMQ's Lua scripts) stay in node_modules.
  external: ["esbuild", "better-sqlite3", "bullmq"],
  sourcemap: "linked",
  // Bundled CommonJS dependencies call require().
  banner: {
    js: 'import { createRequire as __fnrunRequire } from "node:module"; const require = __fnrunRequire(import.meta.url);',
  },
  logLevel: "warning",
};

// Split: what only some runs need (esbuild's API, acorn, execa, the snapshot and
// kernel builders) lives in chunks loaded when first used.
await build({
  ...common,
  entryPoints: { fnrun: "src/cli.ts" },
  outdir: "dist/cli",
  splitting: true,
  outExtension: { ".js": ".mjs" },
});
await build({ ...common, entryPoints: ["bench/run.ts"], outfile: "dist/bench.mjs" });
