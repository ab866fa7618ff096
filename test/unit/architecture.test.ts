/**
 * The layers of src/ (docs/architecture.md): imports flow one way, from the
 * command line down to the utilities, and no module imports itself back
 * through others, not even for types.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "../..");
const src = join(root, "src");

/** Lower layers first: a module may import its own layer and the ones before it. */
const LAYERS = ["util", "build", "host", "vm", "start", "invoke", "jobs", "serve", "cli", "api"] as const;

function layerOf(file: string): (typeof LAYERS)[number] {
  const top = relative(src, file).split("/")[0] as string;
  if (top === "index.ts" || top === "types.ts") return "api";
  if (!(LAYERS as readonly string[]).includes(top)) throw new Error(`${file} is in no layer`);
  return top as (typeof LAYERS)[number];
}

function sources(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) return path.endsWith("dashboard/app") ? [] : sources(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

/** Every relative module a file imports: static, type-only, re-exported or dynamic. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const found = [
    ...text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+"(\.[^"]+)"/g),
    ...text.matchAll(/import\(\s*"(\.[^"]+)"\s*\)/g),
  ];
  return found.map((match) => resolve(dirname(file), match[1] as string));
}

const files = sources(src);
const graph = new Map(files.map((file) => [file, importsOf(file)]));

describe("the layers of src/", () => {
  it("puts every module in a layer", () => {
    expect(files.length).toBeGreaterThan(40);
    for (const file of files) expect(LAYERS).toContain(layerOf(file));
  });

  it("imports only from the same layer or the ones below", () => {
    const upward: string[] = [];
    for (const [file, imports] of graph) {
      for (const target of imports) {
        if (!target.startsWith(src)) continue;
        if (LAYERS.indexOf(layerOf(target)) > LAYERS.indexOf(layerOf(file))) {
          upward.push(`${relative(src, file)} -> ${relative(src, target)}`);
        }
      }
    }
    expect(upward).toEqual([]);
  });

  it("has no import cycle, not even through types", () => {
    const cycles: string[] = [];
    const state = new Map<string, "visiting" | "done">();
    const visit = (file: string, path: string[]) => {
      if (state.get(file) === "done") return;
      if (state.get(file) === "visiting") {
        cycles.push([...path.slice(path.indexOf(file)), file].map((f) => relative(src, f)).join(" -> "));
        return;
      }
      state.set(file, "visiting");
      for (const target of graph.get(file) ?? []) if (graph.has(target)) visit(target, [...path, file]);
      state.set(file, "done");
    };
    for (const file of files) visit(file, []);
    expect(cycles).toEqual([]);
  });

  it("keeps the guest runtime to itself and the protocol", () => {
    const guest = join(root, "runtime-initrd", "guest");
    for (const file of sources(guest)) {
      for (const target of importsOf(file)) {
        expect([guest, join(src, "vm", "protocol.ts")]).toContain(target.startsWith(guest) ? guest : target);
      }
    }
  });
});
