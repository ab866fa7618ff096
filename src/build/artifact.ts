/**
 * Function artifacts: `fnrun build FILE` writes one portable .tgz holding the
 * bundle, its source map, the function's config and a manifest with the hash of
 * each file; `fnrun invoke ARTIFACT.tgz` runs it as is, and queue workers on
 * other hosts receive the same content with each job, never a source tree.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { sha256, writeFileAtomic } from "../util/cache.ts";
import { UsageError } from "../util/errors.ts";
import { isDirectory } from "../util/fs.ts";
import type { Bundle } from "./bundle.ts";
import { validateConfig } from "./config.ts";

export const ARTIFACT_FORMAT = "fnrun-artifact-1";
const FILES = ["function.mjs", "function.mjs.map", "config.json"] as const;

interface Manifest {
  format: string;
  name: string;
  entry: string;
  createdAt: string;
  node: string;
  files: Record<(typeof FILES)[number], string>;
}

/** A bundle as plain data that travels (in a job, in a .tgz). */
export interface PortableFunction {
  name: string;
  entry: string;
  code: string;
  sourceMap: string;
  config: unknown;
  sha256: string;
}

export function toPortable(bundle: Bundle): PortableFunction {
  return {
    name: bundle.name,
    entry: bundle.entry,
    code: bundle.code,
    sourceMap: bundle.sourceMap,
    config: bundle.config,
    sha256: sha256(bundle.code),
  };
}

/** A portable function with the HMAC of its manifest, made with a key its receivers hold. */
export interface SignedPortableFunction extends PortableFunction {
  signature: string;
}

/** JSON with object keys in order, so that sender and receiver sign the same text. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, entry]) => entry !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([name, entry]) => `${JSON.stringify(name)}:${canonical(entry)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/** What the signature covers: every part of the function, its config included, by hash. */
function manifestOf(portable: PortableFunction): string {
  return canonical({
    format: ARTIFACT_FORMAT,
    name: portable.name,
    entry: portable.entry,
    code: sha256(portable.code),
    sourceMap: sha256(portable.sourceMap),
    config: portable.config ?? {},
  });
}

export function signPortable(portable: PortableFunction, key: string): SignedPortableFunction {
  return { ...portable, signature: createHmac("sha256", key).update(manifestOf(portable)).digest("hex") };
}

/** Thrown for an artifact that does not carry a valid signature by the expected key. */
export class UnsignedArtifactError extends UsageError {}

/** The bundle of a signed portable function, if `key` made its signature (else UnsignedArtifactError). */
export function fromSignedPortable(value: unknown, key: string): Bundle {
  const signature = (value as { signature?: unknown } | null)?.signature;
  if (typeof signature !== "string" || !/^[0-9a-f]{64}$/.test(signature)) {
    throw new UnsignedArtifactError(
      "the job's function is not signed: this worker runs only artifacts signed with its key",
    );
  }
  const expected = createHmac("sha256", key)
    .update(manifestOf(value as PortableFunction))
    .digest();
  if (!timingSafeEqual(Buffer.from(signature, "hex"), expected)) {
    throw new UnsignedArtifactError(
      "the job's function has a signature this worker's key did not make: refused (is FNRUN_SIGNING_KEY the server's?)",
    );
  }
  return fromPortable(value);
}

export function fromPortable(value: unknown): Bundle {
  const portable = value as Partial<PortableFunction> | null;
  if (
    !portable ||
    typeof portable.name !== "string" ||
    typeof portable.code !== "string" ||
    typeof portable.sourceMap !== "string" ||
    sha256(portable.code) !== portable.sha256
  ) {
    throw new UsageError("the function artifact is malformed or does not match its hash");
  }
  return {
    entry: typeof portable.entry === "string" ? portable.entry : `${portable.name}.mjs`,
    name: portable.name,
    code: portable.code,
    sourceMap: portable.sourceMap,
    config: validateConfig(portable.config ?? {}, "artifact config"),
    inputs: [],
    warnings: [],
  };
}

/** Errors of writing a file that say what the user asked for cannot be done, in words. */
const UNWRITABLE: Record<string, string> = {
  ENOENT: "it cannot be made there",
  ENOTDIR: "a part of the path is not a folder",
  EISDIR: "it is a folder",
  EACCES: "permission denied",
  EPERM: "permission denied",
  EROFS: "the file system is read-only",
};

/**
 * Writes `bundle` as a .tgz at `output`, or into it as NAME.tgz when it is a
 * folder; whole or not at all (written beside it, then renamed). Returns the
 * path written.
 */
export async function writeArtifact(bundle: Bundle, output: string): Promise<string> {
  const target = (await isDirectory(output)) ? join(output, `${bundle.name}.tgz`) : output;
  const folder = dirname(resolve(target));
  const info = await stat(folder).catch(() => undefined);
  if (!info?.isDirectory()) {
    throw new UsageError(
      `cannot write the artifact to ${output}: ${info ? `${folder} is not a folder` : `the folder ${folder} does not exist`}`,
    );
  }
  const { create } = await import("tar");
  const staging = await mkdtemp(join(tmpdir(), "fnrun-artifact-"));
  try {
    const contents: Record<(typeof FILES)[number], string> = {
      "function.mjs": bundle.code,
      "function.mjs.map": bundle.sourceMap,
      "config.json": JSON.stringify(bundle.config, null, 2),
    };
    for (const name of FILES) await writeFile(join(staging, name), contents[name]);
    const manifest: Manifest = {
      format: ARTIFACT_FORMAT,
      name: bundle.name,
      entry: basename(bundle.entry),
      createdAt: new Date().toISOString(),
      node: process.versions.node,
      files: Object.fromEntries(FILES.map((name) => [name, sha256(contents[name])])) as Manifest["files"],
    };
    await writeFile(join(staging, "manifest.json"), JSON.stringify(manifest, null, 2));
    const archive = join(staging, "artifact.tgz");
    await create({ gzip: true, file: archive, cwd: staging, portable: true, noMtime: true }, [
      "manifest.json",
      ...FILES,
    ]);
    try {
      await writeFileAtomic(target, await readFile(archive));
    } catch (error) {
      const why = UNWRITABLE[(error as NodeJS.ErrnoException).code ?? ""];
      if (why) throw new UsageError(`cannot write the artifact to ${target}: ${why}`, { cause: error });
      throw error;
    }
    return target;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

export async function readArtifact(path: string): Promise<Bundle> {
  const { list } = await import("tar");
  const contents = new Map<string, string>();
  try {
    await list({
      file: path,
      onReadEntry: (entry) => {
        const chunks: Buffer[] = [];
        entry.on("data", (chunk: Buffer) => chunks.push(chunk));
        entry.on("end", () =>
          contents.set(entry.path.replace(/^\.\//, ""), Buffer.concat(chunks).toString("utf8")),
        );
      },
    });
  } catch (error) {
    throw new UsageError(`${path} is not a readable fnrun artifact: ${(error as Error).message}`);
  }
  let manifest: Manifest;
  try {
    manifest = JSON.parse(contents.get("manifest.json") ?? "") as Manifest;
  } catch {
    throw new UsageError(
      `${path} has no manifest.json: not an fnrun artifact (make one with \`fnrun build\`)`,
    );
  }
  if (manifest.format !== ARTIFACT_FORMAT)
    throw new UsageError(`${path}: unknown artifact format ${manifest.format}`);
  for (const name of FILES) {
    const text = contents.get(name);
    if (text === undefined || sha256(text) !== manifest.files[name]) {
      throw new UsageError(`${path}: ${name} is missing or does not match the manifest's hash`);
    }
  }
  return {
    entry: path,
    name: manifest.name,
    code: contents.get("function.mjs") as string,
    sourceMap: contents.get("function.mjs.map") as string,
    config: validateConfig(JSON.parse(contents.get("config.json") as string), `${path} config`),
    inputs: [path],
    warnings: [],
  };
}
