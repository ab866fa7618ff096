import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defineConfig } from "vitest/config";

// Tests keep their invocation history away from the user's own, and remove it when done.
if (!process.env.FNRUN_STATE_DIR) {
  const stateDirectory = join(tmpdir(), `fnrun-test-state-${process.pid}`);
  process.env.FNRUN_STATE_DIR = stateDirectory;
  process.on("exit", () => rmSync(stateDirectory, { recursive: true, force: true }));
}

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts"],
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          // Real VMs under TCG on 2 cores: a few seconds each, more under load.
          testTimeout: 240_000,
          hookTimeout: 900_000,
          // VMs are CPU-bound: run test files one after another.
          fileParallelism: false,
          globalSetup: ["test/e2e/global-setup.ts"],
          // Each test's VMs are its own: no function snapshot made in the
          // background on a function's second invocation (2 cores, and a
          // bounded cache). snapshot.test.ts's function snapshot tests turn it on.
          env: { FNRUN_FUNCTION_SNAPSHOTS: "off" },
        },
      },
    ],
  },
});
