// `fnrun build -o`: where an artifact is written, and what a path it cannot be
// written to gets (before: an InternalError, exit 1, for a folder or a missing one).
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readArtifact } from "../../../src/build/artifact.ts";
import { build } from "../../../src/build/build.ts";
import { UsageError } from "../../../src/util/errors.ts";
import { temporaryDirectory } from "../temporary-directory.ts";

function greeter(): { directory: string; file: string } {
  const directory = temporaryDirectory("artifact");
  const file = join(directory, "greeter.ts");
  writeFileSync(file, 'export const config = { timeout: 5 };\nexport const handler = () => "hi";\n');
  return { directory, file };
}

describe("writing an artifact", () => {
  it("writes the file named, whole, and nothing beside it", async () => {
    const { directory, file } = greeter();
    const output = join(directory, "out.tgz");
    writeFileSync(output, "an older artifact");
    const built = await build(file, { cache: false, output });
    expect(built.artifact).toBe(output);
    const read = await readArtifact(output);
    expect(read.code).toBe(built.code);
    expect(read.config).toEqual({ timeout: 5 });
    expect(readdirSync(directory).sort()).toEqual(["greeter.ts", "out.tgz"]);
  });

  it("writes into a folder as NAME.tgz", async () => {
    const { directory, file } = greeter();
    const built = await build(file, { cache: false, output: directory });
    expect(built.artifact).toBe(join(directory, "greeter.tgz"));
    expect((await readArtifact(join(directory, "greeter.tgz"))).name).toBe("greeter");
  });

  it("refuses a folder that does not exist, or a file as a folder, as usage errors", async () => {
    const { directory, file } = greeter();
    const missing = join(directory, "no-such-folder", "out.tgz");
    await expect(build(file, { cache: false, output: missing })).rejects.toThrow(UsageError);
    await expect(build(file, { cache: false, output: missing })).rejects.toThrow(
      `cannot write the artifact to ${missing}: the folder ${join(directory, "no-such-folder")} does not exist`,
    );
    const underAFile = join(file, "out.tgz");
    await expect(build(file, { cache: false, output: underAFile })).rejects.toThrow(
      `cannot write the artifact to ${underAFile}: ${file} is not a folder`,
    );
    expect(readdirSync(directory)).toEqual(["greeter.ts"]);
  });
});
