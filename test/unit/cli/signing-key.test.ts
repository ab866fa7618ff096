// The key Redis jobs are signed with: a guessable one would let anyone who can
// write to Redis queue code for the workers, so it has a minimum, however given.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ExitCode } from "../../../src/util/errors.ts";
import { runMain } from "./run-main.ts";

// Nothing listens there: a key that passes goes on to connect, and fails on that instead.
const QUEUE = ["--queue", "redis://127.0.0.1:1"];
const directory = mkdtempSync(join(tmpdir(), "fnrun-signing-key-"));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

describe("the signing key", () => {
  it("refuses a short key from FNRUN_SIGNING_KEY as from --signing-key-file, for serve and worker", async () => {
    const file = join(directory, "short.key");
    writeFileSync(file, "short\n");
    for (const command of ["serve", "worker"]) {
      const fromEnv = await runMain([command, ...QUEUE], { FNRUN_SIGNING_KEY: "short" });
      expect(fromEnv.code, command).toBe(ExitCode.usage);
      expect(fromEnv.stderr, command).toContain(
        "FNRUN_SIGNING_KEY: a signing key is at least 16 characters (say, `openssl rand -hex 32`)",
      );
      const fromFile = await runMain([command, ...QUEUE, "--signing-key-file", file], {
        FNRUN_SIGNING_KEY: "",
      });
      expect(fromFile.code, command).toBe(ExitCode.usage);
      expect(fromFile.stderr, command).toContain(`${file}: a signing key is at least 16 characters`);
    }
  });

  it("takes a long enough key and goes on to the queue", async () => {
    const run = await runMain(["worker", ...QUEUE], { FNRUN_SIGNING_KEY: "0123456789abcdef" });
    expect(run.code).toBe(ExitCode.usage);
    expect(run.stderr).toContain("cannot use Redis at redis://127.0.0.1:1");
  });
});
