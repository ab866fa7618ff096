/**
 * Git hooks that run a function: `fnrun hook install pre-commit functions/lint-check.ts`
 * writes a hook script that calls `fnrun hook run`, which invokes the function
 * with the hook's context as its event. The hook's exit code follows the
 * function: it fails (and git stops) when the function throws, returns false,
 * or returns { ok: false }.
 */
import { execFile } from "node:child_process";
import { chmod, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { isAbsolute, join, resolve } from "node:path";
import { promisify } from "node:util";
import { UsageError } from "../util/errors.ts";
import { isFile } from "../util/fs.ts";
import { packageRoot } from "../util/paths.ts";

const run = promisify(execFile);

export const SUPPORTED_HOOKS = [
  "pre-commit",
  "prepare-commit-msg",
  "commit-msg",
  "post-commit",
  "pre-push",
  "post-checkout",
  "post-merge",
  "pre-rebase",
] as const;
export type HookName = (typeof SUPPORTED_HOOKS)[number];

const MARKER = "# Installed by fnrun";
/** What the event carries of the staged files' contents (the rest: names only). */
const CONTENT_LIMITS = { perFile: 256 * 1024, total: 2 * 1024 * 1024 };

function checkHookName(hook: string): HookName {
  if (!(SUPPORTED_HOOKS as readonly string[]).includes(hook)) {
    throw new UsageError(`unknown git hook "${hook}"; fnrun supports ${SUPPORTED_HOOKS.join(", ")}`);
  }
  return hook as HookName;
}

async function git(args: string[], cwd: string): Promise<string> {
  const { stdout } = await run("git", args, { cwd, maxBuffer: 64 * 1024 * 1024, timeout: 30_000 });
  return stdout;
}

async function hooksDirectory(cwd: string): Promise<string> {
  let path: string;
  try {
    path = (await git(["rev-parse", "--git-path", "hooks"], cwd)).trim();
  } catch {
    throw new UsageError(`${cwd} is not inside a git repository`);
  }
  return isAbsolute(path) ? path : resolve(cwd, path);
}

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

export function hookScript(hook: HookName, functionFile: string, nodePath = process.execPath): string {
  const cli = join(packageRoot, "bin", "fnrun.js");
  return [
    "#!/bin/sh",
    `${MARKER}: runs ${functionFile} in a microvm for each ${hook}.`,
    `# Remove with: fnrun hook uninstall ${hook}`,
    // As bin/fnrun.js's first line: Node starts without parsing NODE_EXTRA_CA_CERTS, which fnrun puts back.
    `exec env -u NODE_EXTRA_CA_CERTS FNRUN_EXTRA_CA_CERTS="\${NODE_EXTRA_CA_CERTS-}" ${shellQuote(nodePath)} ${shellQuote(cli)} hook run ${hook} ${shellQuote(functionFile)} -- "$@"`,
    "",
  ].join("\n");
}

export async function installHook(
  hook: string,
  functionFile: string,
  options: { cwd?: string; force?: boolean } = {},
): Promise<string> {
  const name = checkHookName(hook);
  const cwd = options.cwd ?? process.cwd();
  const file = resolve(cwd, functionFile);
  if (!(await isFile(file))) {
    throw new UsageError(`function file not found: ${functionFile}`);
  }
  const path = join(await hooksDirectory(cwd), name);
  const existing = await readFile(path, "utf8").catch(() => undefined);
  if (existing !== undefined && !existing.includes(MARKER)) {
    if (!options.force) {
      throw new UsageError(
        `${path} exists and was not written by fnrun: keep it, or add --force (it is kept as ${name}.fnrun-backup)`,
      );
    }
    await rename(path, `${path}.fnrun-backup`);
  }
  await writeFile(path, hookScript(name, file));
  await chmod(path, 0o755);
  return path;
}

export async function uninstallHook(hook: string, options: { cwd?: string } = {}): Promise<string> {
  const name = checkHookName(hook);
  const path = join(await hooksDirectory(options.cwd ?? process.cwd()), name);
  const existing = await readFile(path, "utf8").catch(() => undefined);
  if (existing === undefined) throw new UsageError(`no ${name} hook is installed`);
  if (!existing.includes(MARKER)) throw new UsageError(`${path} was not written by fnrun; leaving it alone`);
  await rm(path);
  const backup = `${path}.fnrun-backup`;
  if (
    await stat(backup).then(
      () => true,
      () => false,
    )
  )
    await rename(backup, path);
  return path;
}

export interface HookEvent {
  hook: HookName;
  args: string[];
  repository: string;
  head: string | null;
  branch: string | null;
  /** pre-commit: the staged files (added, copied, modified, renamed), with their staged content when small. */
  stagedFiles?: Array<{ path: string; content?: string; size: number }>;
  /** commit-msg, prepare-commit-msg: the message being committed. */
  message?: string;
  /** pre-push: what is being pushed where. */
  remote?: { name: string; url: string };
  refs?: Array<{ localRef: string; localSha: string; remoteRef: string; remoteSha: string }>;
}

export async function hookEvent(
  hook: string,
  args: string[],
  stdin: string,
  cwd = process.cwd(),
): Promise<HookEvent> {
  const name = checkHookName(hook);
  const repository = (await git(["rev-parse", "--show-toplevel"], cwd)).trim();
  const head = await git(["rev-parse", "--verify", "-q", "HEAD"], repository).then(
    (out) => out.trim() || null,
    () => null,
  );
  const branch = await git(["symbolic-ref", "-q", "--short", "HEAD"], repository).then(
    (out) => out.trim() || null,
    () => null,
  );
  const event: HookEvent = { hook: name, args, repository, head, branch };
  if (name === "pre-commit") {
    const names = (await git(["diff", "--cached", "--name-only", "--diff-filter=ACMR", "-z"], repository))
      .split("\0")
      .filter(Boolean);
    let budget = CONTENT_LIMITS.total;
    event.stagedFiles = [];
    for (const path of names) {
      // The staged version (":path"), which is what the commit will hold.
      const size = Number((await git(["cat-file", "-s", `:${path}`], repository)).trim());
      const entry: { path: string; content?: string; size: number } = { path, size };
      if (size <= CONTENT_LIMITS.perFile && size <= budget) {
        entry.content = await git(["show", `:${path}`], repository);
        budget -= size;
      }
      event.stagedFiles.push(entry);
    }
  }
  if ((name === "commit-msg" || name === "prepare-commit-msg") && args[0]) {
    event.message = await readFile(resolve(repository, args[0]), "utf8").catch(() => "");
  }
  if (name === "pre-push") {
    event.remote = { name: args[0] ?? "", url: args[1] ?? "" };
    event.refs = stdin
      .split("\n")
      .map((line) => line.trim().split(/\s+/))
      .filter((fields) => fields.length === 4)
      .map(([localRef, localSha, remoteRef, remoteSha]) => ({
        localRef: localRef as string,
        localSha: localSha as string,
        remoteRef: remoteRef as string,
        remoteSha: remoteSha as string,
      }));
  }
  return event;
}

/** The hook's verdict from the function's result: false or { ok: false } stops git. */
export function hookVerdict(result: unknown): { ok: boolean; message: string | null } {
  if (result === false) return { ok: false, message: null };
  if (result && typeof result === "object" && "ok" in result) {
    const { ok, message } = result as { ok: unknown; message?: unknown };
    return { ok: ok !== false, message: typeof message === "string" ? message : null };
  }
  return { ok: true, message: null };
}
