/**
 * A pre-commit check, run in a microvm by git:
 *
 *     fnrun hook install pre-commit functions/lint-check.ts
 *
 * Refuses a commit whose staged files hold unresolved merge-conflict markers,
 * a leftover `debugger` statement, or a private key.
 */
interface StagedFile {
  path: string;
  content?: string;
  size: number;
}

interface PreCommitEvent {
  hook: string;
  stagedFiles?: StagedFile[];
}

const RULES: Array<{ name: string; pattern: RegExp; applies: (path: string) => boolean }> = [
  { name: "merge-conflict marker", pattern: /^(<{7}|>{7}|={7})( |$)/m, applies: () => true },
  {
    name: "debugger statement",
    pattern: /^\s*debugger;?\s*$/m,
    applies: (path) => /\.[cm]?[jt]sx?$/.test(path),
  },
  { name: "private key", pattern: /-----BEGIN [A-Z ]*PRIVATE KEY-----/, applies: () => true },
];

export const handler = async (event: PreCommitEvent) => {
  const problems: string[] = [];
  for (const file of event.stagedFiles ?? []) {
    if (file.content === undefined) continue;
    for (const rule of RULES) {
      if (rule.applies(file.path) && rule.pattern.test(file.content))
        problems.push(`${file.path}: ${rule.name}`);
    }
  }
  const checked = event.stagedFiles?.length ?? 0;
  console.log(`checked ${checked} staged file(s)`);
  return problems.length === 0
    ? { ok: true, message: `lint-check: ${checked} file(s) clean` }
    : { ok: false, message: `lint-check refused the commit:\n  ${problems.join("\n  ")}`, problems };
};
