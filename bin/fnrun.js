#!/usr/bin/env node
// The fnrun command. The CLI itself is src/cli.ts (compiled to dist/ by `npm run build`).
import { main } from "../dist/src/cli.js";

const controller = new AbortController();
let stopSignal;
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    // A second signal while the first is being handled: stop at once.
    if (stopSignal) process.exit(signal === "SIGINT" ? 130 : 143);
    stopSignal = signal;
    controller.abort(new Error(signal));
  });
}

const code = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
  signal: controller.signal,
});
process.exitCode = stopSignal === "SIGTERM" ? 143 : code;
