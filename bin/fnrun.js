#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS FNRUN_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS} node --
// The fnrun command. The CLI is src/cli.ts, bundled into dist/cli/ by `make build`.
// The signal handlers come first and the CLI is loaded after them: a signal that
// arrives while the bundle loads is an interruption (130/143) like any other.

// Node 20 parses its CA certificates as it starts when NODE_EXTRA_CA_CERTS is set
// (~40 ms here, a tenth of a snapshot start), for TLS that only a worker on a
// rediss:// queue does (src/jobs/queue-redis.ts adds them itself). The line above
// starts Node without the variable and passes its value on; it is back for
// whatever fnrun starts. (`node bin/fnrun.js` starts Node with it, as before.)
// The `--` ends Node's options: Node 20 reads an `--env-file FILE` it finds even
// after the script (nodejs/node#54232), and exits 9 when FILE is missing, where
// `fnrun invoke --env-file` is fnrun's own flag.
const extraCaCerts = process.env.FNRUN_EXTRA_CA_CERTS;
delete process.env.FNRUN_EXTRA_CA_CERTS;
if (extraCaCerts) process.env.NODE_EXTRA_CA_CERTS = extraCaCerts;

const DRAINING = new Set(["serve", "worker"]);
// What each way of being stopped exits with: a signal the shell's 128 + its number;
// output that cannot be written (a full disk) 8, as any full disk (src/util/errors.ts).
const EXIT_CODES = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143, SIGPIPE: 141, output: 8 };
const controller = new AbortController();
let stopSignal;
const outputFailed = () => stopSignal === "SIGPIPE" || stopSignal === "output";
function stop(signal) {
  if (stopSignal) return;
  stopSignal = signal;
  controller.abort(new Error(signal));
  // A write that failed after fnrun's work was done still sets how it exits.
  if (outputFailed()) process.exitCode = EXIT_CODES[signal];
  // serve and worker drain their work first; anything else (an invocation, a build)
  // stops within seconds. What fnrun started dies with it: QEMU has a parent-death
  // signal, a kernel build a watcher.
  if (!DRAINING.has(process.argv[2] ?? "")) {
    setTimeout(() => process.exit(EXIT_CODES[signal]), 3000).unref();
  }
}
// SIGHUP: the terminal fnrun runs in was closed (an SSH session dropped, say).
// A second signal while the first is being handled: stop at once.
for (const signal of ["SIGHUP", "SIGINT", "SIGTERM"]) {
  process.on(signal, () => (stopSignal ? process.exit(EXIT_CODES[signal]) : stop(signal)));
}
// Node ignores SIGPIPE: a write to a pipe whose reader is gone (`fnrun invoke F | head`)
// fails with EPIPE instead, and any failed write would crash fnrun with Node's stack,
// leaving its VM to the parent-death signal. fnrun stops as SIGPIPE would stop another
// command, but cleanly; another failure (`> out.json` on a full disk) is said on
// standard error. Whatever fnrun still writes to a failed stream is dropped.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (error) => {
    if (error.code === "EPIPE") return stop("SIGPIPE");
    if (stopSignal === "output" || error.code === "ERR_STREAM_DESTROYED") return;
    if (stream === process.stdout) {
      process.stderr.write(
        `fnrun: SetupError: cannot write to standard output (${error.message}): send it where there is room\n`,
      );
    }
    stop("output");
  });
}

// `fnrun invoke` spawns a snapshot clone's QEMU now, as the last snapshot start
// noted it (src/start/prestart-spawn.ts), and restores it while the rest of the
// CLI loads and the function is bundled (src/start/prestart.ts).
const spawned =
  process.argv[2] === "invoke"
    ? (await import("../dist/cli/prestart-spawn.mjs")).spawnFromNote(process.argv.slice(2))
    : undefined;
const early = spawned ? await import("../dist/cli/prestart.mjs") : undefined;
early?.prestart(spawned);

const { main } = await import("../dist/cli/fnrun.mjs");
const code = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
  signal: controller.signal,
});
// A clone the invocation did not take (it never got that far, say) goes now.
await early?.abandonPrestart();
// An invocation cut short by SIGTERM exits 143, by SIGINT 130, by SIGHUP 129 (the shell's convention);
// a server that shut down cleanly exits 0. Output that could not all be written exits
// 141 or 8, whatever the invocation came to.
process.exitCode = outputFailed() || (code === 130 && stopSignal) ? EXIT_CODES[stopSignal] : code;
