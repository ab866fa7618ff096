import { main } from "../../../src/cli/main.ts";

/** The CLI run in this process, as `fnrun ARGV` would run: its exit code and what it wrote. */
export async function runMain(
  argv: string[],
  env: NodeJS.ProcessEnv = {},
  stdin = "",
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const io = {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    stdin: (async function* () {
      if (stdin) yield Buffer.from(stdin);
    })(),
    env: { ...process.env, ...env },
  };
  const code = await main(argv, io);
  return { code, stdout, stderr };
}
