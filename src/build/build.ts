/**
 * `build()`: a function bundled the way fnrun runs it, optionally written as a
 * portable artifact (`fnrun build`), which `fnrun invoke` and `fnrun serve` accept.
 */

import { writeArtifact } from "./artifact.ts";
import { type Bundle, bundleFunction } from "./bundle.ts";

export interface BuildOptions {
  /** Write the bundle as a `.tgz` artifact here. */
  output?: string;
  /** Use and fill fnrun's bundle cache (default true; false always rebuilds). */
  cache?: boolean;
  env?: NodeJS.ProcessEnv;
}

export interface BuildResult extends Bundle {
  /** The artifact's path, when `output` was given. */
  artifact?: string;
}

/** Bundles `file` with esbuild; a syntax or resolution error is a BundleError with file:line:col. */
export async function build(file: string, options: BuildOptions = {}): Promise<BuildResult> {
  const bundle = await bundleFunction(file, {
    cache: options.cache ?? true,
    ...(options.env ? { env: options.env } : {}),
  });
  if (options.output === undefined) return bundle;
  return { ...bundle, artifact: await writeArtifact(bundle, options.output) };
}
