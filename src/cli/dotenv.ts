/** Environment for a function from the command line: .env files and KEY=VALUE pairs. */
import { UsageError } from "../util/errors.ts";

/** Parses .env text: KEY=VALUE lines, `export ` prefixes, # comments, quoted values. */
export function parseDotenv(text: string, source: string): Record<string, string> {
  const env: Record<string, string> = {};
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (!line || line.startsWith("#")) return;
    const match = line.match(/^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/);
    if (!match)
      throw new UsageError(`${source}:${index + 1}: expected KEY=VALUE, got ${JSON.stringify(raw)}`);
    let value = match[2] ?? "";
    const quote = value[0];
    if ((quote === '"' || quote === "'") && value.endsWith(quote) && value.length >= 2) {
      value = value.slice(1, -1);
      if (quote === '"') value = value.replace(/\\n/g, "\n").replace(/\\"/g, '"');
    } else {
      value = value.replace(/\s+#.*$/, "");
    }
    env[match[1] as string] = value;
  });
  return env;
}

export function parseEnvPairs(pairs: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const at = pair.indexOf("=");
    const key = at > 0 ? pair.slice(0, at) : "";
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new UsageError(`--env ${pair}: expected KEY=VALUE`);
    env[key] = pair.slice(at + 1);
  }
  return env;
}
