/**
 * The errors fnrun reports. Each class is one failure a user can act on, with its
 * own exit code (documented in the README and docs/functions.md) and a message that says what to do.
 */

export const ExitCode = {
  ok: 0,
  internal: 1,
  usage: 2,
  bundle: 3,
  function: 4,
  timeout: 5,
  outOfMemory: 6,
  boot: 7,
  setup: 8,
  resultTooLarge: 9,
  handlerNotFound: 10,
  interrupted: 130,
  /** fnrun's standard output or error was closed under it (`| head`): as SIGPIPE would end it. */
  outputClosed: 141,
} as const;

export type ErrorCode =
  | "USAGE"
  | "BUNDLE"
  | "FUNCTION"
  | "HANDLER_NOT_FOUND"
  | "TIMEOUT"
  | "OUT_OF_MEMORY"
  | "BOOT"
  | "SETUP"
  | "RESULT_TOO_LARGE"
  | "INTERRUPTED"
  | "INTERNAL";

/** What is known of an invocation that failed: for `--json`, the dashboard and history. */
export interface FailureReport {
  requestId: string;
  functionName: string;
  logs: string;
  logsTruncated: boolean;
  timeline: Array<{ name: string; atMs: number; source: "host" | "guest" }>;
  startMode: string;
}

export abstract class FnrunError extends Error {
  abstract readonly code: ErrorCode;
  abstract readonly exitCode: number;
  /** Set when the error ended an invocation that had begun. */
  report?: FailureReport;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }

  /** The error as plain data, for `--json` and the HTTP API. */
  toJSON(): Record<string, unknown> {
    return { errorType: this.name, code: this.code, errorMessage: this.message };
  }
}

/** A bad flag, option, path or event: fix the command line or the API call. */
export class UsageError extends FnrunError {
  readonly code = "USAGE";
  readonly exitCode = ExitCode.usage;
}

export interface SourceLocation {
  file: string;
  line: number;
  column: number;
  lineText?: string;
}

/** The function could not be bundled (syntax error, missing import). No VM was booted. */
export class BundleError extends FnrunError {
  readonly code = "BUNDLE";
  readonly exitCode = ExitCode.bundle;
  readonly location: SourceLocation | undefined;

  constructor(message: string, location?: SourceLocation, options?: { cause?: unknown }) {
    super(location ? `${location.file}:${location.line}:${location.column}: ${message}` : message, options);
    this.location = location;
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), location: this.location };
  }
}

/** The shape AWS Lambda gives a function's error. */
export interface LambdaErrorShape {
  errorType: string;
  errorMessage: string;
  stack: string[];
}

/** The function itself failed: it threw, rejected, exited, or returned something unserialisable. */
export class FunctionError extends FnrunError {
  readonly code: "FUNCTION" | "HANDLER_NOT_FOUND" = "FUNCTION";
  readonly exitCode: number = ExitCode.function;
  readonly errorType: string;
  readonly errorMessage: string;
  readonly trace: string[];

  constructor(error: LambdaErrorShape) {
    super(`${error.errorType}: ${error.errorMessage}`);
    this.errorType = error.errorType;
    this.errorMessage = error.errorMessage;
    this.trace = error.stack;
  }

  override toJSON(): Record<string, unknown> {
    return {
      errorType: this.errorType,
      errorMessage: this.errorMessage,
      stack: this.trace,
      code: this.code,
    };
  }
}

/**
 * The handler string names nothing callable in the function's module: Lambda's
 * Runtime.HandlerNotFound, with the path that was tried. A function error in
 * Lambda's shape, with an exit code of its own: the fix is in the handler
 * setting, not in the function's code.
 */
export class HandlerNotFoundError extends FunctionError {
  override readonly code = "HANDLER_NOT_FOUND";
  override readonly exitCode = ExitCode.handlerNotFound;
}

/** The FunctionError for a function's error as the guest reported it. */
export function functionErrorOf(error: LambdaErrorShape): FunctionError {
  return error.errorType === "Runtime.HandlerNotFound"
    ? new HandlerNotFoundError(error)
    : new FunctionError(error);
}

/** The handler ran past its time limit; the VM was killed. */
export class TimeoutError extends FnrunError {
  readonly code = "TIMEOUT";
  readonly exitCode = ExitCode.timeout;
  readonly timeoutMs: number;

  constructor(message: string, timeoutMs: number) {
    super(message);
    this.timeoutMs = timeoutMs;
  }
}

/** The function used up the VM's memory. */
export class OutOfMemoryError extends FnrunError {
  readonly code = "OUT_OF_MEMORY";
  readonly exitCode = ExitCode.outOfMemory;
  readonly memoryMB: number;
  readonly consoleTail: string;

  constructor(message: string, memoryMB: number, consoleTail: string) {
    super(message);
    this.memoryMB = memoryMB;
    this.consoleTail = consoleTail;
  }
}

/** The VM did not come up, or died before the function could answer. */
export class BootError extends FnrunError {
  readonly code = "BOOT";
  readonly exitCode = ExitCode.boot;
  /** The last lines the guest printed on its console: usually the reason. */
  readonly consoleTail: string;

  constructor(message: string, consoleTail: string, options?: { cause?: unknown }) {
    super(
      consoleTail ? `${message}\n--- last lines of the VM console ---\n${consoleTail}` : message,
      options,
    );
    this.consoleTail = consoleTail;
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), consoleTail: this.consoleTail };
  }
}

/** Something fnrun needs on this machine is missing: QEMU, a kernel, a compiler. */
export class SetupError extends FnrunError {
  readonly code = "SETUP";
  readonly exitCode = ExitCode.setup;
}

/** The function's result is larger than the limit (6 MB by default, as Lambda's). */
export class ResultTooLargeError extends FnrunError {
  readonly code = "RESULT_TOO_LARGE";
  readonly exitCode = ExitCode.resultTooLarge;
}

/** fnrun was stopped (SIGINT, SIGTERM, an aborted signal) before the invocation ended. */
export class InterruptedError extends FnrunError {
  readonly code = "INTERRUPTED";
  readonly exitCode = ExitCode.interrupted;
}

/** A bug in fnrun. */
export class InternalError extends FnrunError {
  readonly code = "INTERNAL";
  readonly exitCode = ExitCode.internal;
}

/** What the machine, not fnrun, got wrong: errno codes that a user fixes. */
const ENVIRONMENT_FAILURES: Record<string, string> = {
  ENOSPC:
    "no space left on the device: free some space, or point FNRUN_CACHE_DIR (and TMPDIR) at a disk with room",
  EDQUOT: "the disk quota is used up: free some space, or point FNRUN_CACHE_DIR at another disk",
  EROFS: "the file system is read-only: point FNRUN_CACHE_DIR (and TMPDIR) at a writable directory",
  EACCES: "permission denied: check the owner of that path, or point FNRUN_CACHE_DIR at a directory you own",
  EMFILE: "too many open files: raise the limit (ulimit -n)",
};

/**
 * Any error as the FnrunError to report: FnrunErrors as they are, a full disk or
 * an unwritable cache as a SetupError that says what to do, anything else as an
 * InternalError (a bug in fnrun) with its stack.
 */
export function toFnrunError(error: unknown): FnrunError {
  if (error instanceof FnrunError) return error;
  const { code, path: source, dest } = (error ?? {}) as NodeJS.ErrnoException & { dest?: string };
  // A copy names what it read and where it wrote; the problem is where it wrote.
  const path = dest ?? source;
  const advice = code ? ENVIRONMENT_FAILURES[code] : undefined;
  if (advice) return new SetupError(`${path ? `${path}: ` : ""}${advice} (${code})`, { cause: error });
  return new InternalError(`fnrun failed unexpectedly: ${(error as Error)?.stack ?? error}`, {
    cause: error,
  });
}
