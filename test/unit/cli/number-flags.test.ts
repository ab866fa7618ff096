// Every numeric flag of the CLI, given text that is no number it takes: a usage
// error (exit 2) that names the flag and shows the text as typed, before any
// command runs. (yargs's own numbers once made "1s" NaN, shown as "not null",
// and the library's option names stood in for the flags.)
import { describe, expect, it } from "vitest";
import { ExitCode } from "../../../src/util/errors.ts";
import { runMain } from "./run-main.ts";

const HELLO = "functions/hello.ts";

describe("numeric flags", () => {
  const cases: Array<[string[], string]> = [
    [["invoke", HELLO, "--timeout", "1s"], "--timeout must be a number from 0.1 to 900, not 1s"],
    [["invoke", HELLO, "--timeout", "0"], "--timeout must be a number from 0.1 to 900, not 0"],
    [["invoke", HELLO, "--timeout", "1", "--timeout", "2"], "--timeout is given 2 times: give it once"],
    [["invoke", HELLO, "--memory", "512k"], "--memory must be a whole number from 64 to 16384, not 512k"],
    [["invoke", HELLO, "--memory", "100.5"], "--memory must be a whole number from 64 to 16384, not 100.5"],
    [
      ["invoke", HELLO, "--max-result-size", "6MB"],
      "--max-result-size must be a whole number from 1 to 268435456, not 6MB",
    ],
    [
      ["invoke", HELLO, "--max-log-size", "10"],
      "--max-log-size must be a whole number from 1024 to 268435456, not 10",
    ],
    [["snapshot", "--memory", "big"], "--memory must be a whole number from 64 to 16384, not big"],
    [["snapshot", "--memory", "100.5"], "--memory must be a whole number from 64 to 16384, not 100.5"],
    [["history", "--limit", "abc"], "--limit must be a whole number from 1 to 1000, not abc"],
    [["serve", "--port", "http"], "--port must be a whole number from 0 to 65535, not http"],
    [["serve", "--pool", "x"], "--pool must be a whole number from 0 to 64, not x"],
    [["serve", "--memory", "1G"], "--memory must be a whole number from 64 to 16384, not 1G"],
    [["serve", "--max-concurrency", "0"], "--max-concurrency must be a whole number from 1 to 1024, not 0"],
    [["serve", "--max-waiting", "lots"], "--max-waiting must be a whole number from 0 to 100000, not lots"],
    [["serve", "--workers", "2.5"], "--workers must be a whole number from 0 to 256, not 2.5"],
    [
      ["worker", "--queue", "redis://127.0.0.1:1", "--concurrency", "0"],
      "--concurrency must be a whole number from 1 to 256, not 0",
    ],
  ];

  it.each(cases)("fnrun %j", async (argv, message) => {
    const { code, stdout, stderr } = await runMain(argv, {
      FNRUN_STATE_DIR: "/nonexistent/fnrun-number-flags-test",
    });
    expect(code).toBe(ExitCode.usage);
    expect(stdout).toBe("");
    expect(stderr).toBe(`fnrun: UsageError: ${message}\nRun \`fnrun --help\` for usage.\n`);
  });
});
