/**
 * invoke(): one function, one event, one throw-away VM.
 *
 *   bundle (build/) -> options checked (options.ts) and merged with the
 *   function's config (prepare.ts) -> the machine (host/) -> a VM slot ->
 *   a boot or a snapshot clone (start/run.ts) -> session (vm/session.ts) ->
 *   VM killed -> the result, or an error with stack traces mapped to the
 *   TypeScript source (report.ts).
 */
import { type Bundle, bundleFunction } from "../build/bundle.ts";
import { abandonPrestart, takePrestartSlot } from "../start/prestart.ts";
import { startAndRun } from "../start/run.ts";
import { FnrunError, InterruptedError, toFnrunError, UsageError } from "../util/errors.ts";
import { shown } from "../util/validate.ts";
import { bootTimeoutMs } from "../vm/launch.ts";
import { hostSlots, vmSlots } from "../vm/slots.ts";
import { type InvokeOptions, type InvokeResult, validateInvokeOptions } from "./options.ts";
import { hostFor, prepareInvocation } from "./prepare.ts";
import { finishReport } from "./report.ts";

/**
 * Runs a function once in a fresh VM and returns its result, or throws a
 * FnrunError. `file` is a function's source file, or an artifact (.tgz) made
 * by `fnrun build`.
 */
export async function invoke(file: string, options: InvokeOptions = {}): Promise<InvokeResult> {
  if (typeof file !== "string" || file === "")
    throw new UsageError(`the function must be a file path, not ${shown(file)}`);
  validateInvokeOptions(options);
  let bundle: Bundle;
  if (file.endsWith(".tgz")) {
    const { readArtifact } = await import("../build/artifact.ts");
    bundle = await readArtifact(file);
  } else {
    bundle = await bundleFunction(file);
  }
  return invokeBundle(bundle, options);
}

/** invoke() for a function already bundled (a queue job's artifact, say). */
export async function invokeBundle(bundle: Bundle, options: InvokeOptions = {}): Promise<InvokeResult> {
  validateInvokeOptions(options);
  const startedAt = performance.now();
  for (const warning of bundle.warnings) options.onNotice?.(`fnrun: bundle warning: ${warning}`);
  const prepared = prepareInvocation(bundle, options);
  try {
    const host = await hostFor(options);
    prepared.limits.bootTimeoutMs = bootTimeoutMs(host);
    const { report, startMode } = await vmSlots
      .run(async () => {
        const release =
          takePrestartSlot() ??
          (await hostSlots.acquire(options.signal, () =>
            options.onProgress?.(
              `waiting for a free VM slot (${hostSlots.limit} VMs run at once; FNRUN_MAX_VMS sets it)`,
            ),
          ));
        try {
          return await startAndRun(host, prepared, options);
        } finally {
          await release();
        }
      }, options.signal)
      .catch((error: unknown) => {
        if (options.signal?.aborted && !(error instanceof FnrunError)) {
          throw new InterruptedError("interrupted while waiting for a free VM slot");
        }
        throw error;
      });
    return finishReport(prepared, report, host, startMode, startedAt);
  } catch (error) {
    throw toFnrunError(error);
  } finally {
    await abandonPrestart();
  }
}
