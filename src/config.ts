/**
 * A function's own configuration: `export const config = { ... }` in its file,
 * read without running the file (it must run in the VM, not on the host). Like
 * Next.js route config, it must be a literal: strings, numbers, booleans, null,
 * arrays and objects of those.
 */
import type { Expression, Node, ObjectExpression, Program } from "acorn";
import { parse } from "acorn";
import { BundleError } from "./errors.ts";

export interface MountConfig {
  /** Host directory; relative paths are relative to the function's file. */
  source: string;
  /** Where the guest sees it. */
  target: string;
  readOnly: boolean;
}

export interface WebhookConfig {
  /** The environment variable (on the host running `fnrun serve`) that holds the shared secret. */
  secretEnv: string;
}

export interface FunctionConfig {
  /** Seconds the handler may run. */
  timeout?: number;
  /** Guest RAM in MB. */
  memory?: number;
  env?: Record<string, string>;
  /** Give the guest a network device (user-mode networking). Off by default. */
  net?: boolean;
  /** The export to call. */
  handler?: string;
  mounts?: MountConfig[];
  /** Cron expressions (5 fields) on which `fnrun serve` runs the function. */
  schedule?: string[];
  /** What to do when a scheduled run is due while the previous one still runs. */
  overlap?: "skip" | "queue" | "allow";
  webhook?: WebhookConfig;
  /** At most this many VMs of this function at once under `fnrun serve`. */
  concurrency?: number;
}

export const CONFIG_KEYS = [
  "timeout",
  "memory",
  "env",
  "net",
  "handler",
  "mounts",
  "schedule",
  "overlap",
  "webhook",
  "concurrency",
] as const;

export const LIMITS = {
  timeoutSeconds: { min: 0.1, max: 900 },
  memoryMB: { min: 64, max: 16384 },
  concurrency: { min: 1, max: 256 },
} as const;

class NotLiteral extends Error {
  constructor(readonly node: Node) {
    super("not a literal");
  }
}

function literalValue(node: Node): unknown {
  const expression = node as Expression;
  switch (expression.type) {
    case "Literal":
      if (expression.regex || typeof expression.value === "bigint") throw new NotLiteral(node);
      return expression.value;
    case "TemplateLiteral":
      if (expression.expressions.length > 0) throw new NotLiteral(node);
      return expression.quasis.map((quasi) => quasi.value.cooked ?? "").join("");
    case "UnaryExpression":
      if (expression.operator === "-" && expression.argument.type === "Literal") {
        const value = literalValue(expression.argument);
        if (typeof value === "number") return -value;
      }
      throw new NotLiteral(node);
    case "ArrayExpression":
      return expression.elements.map((element) => {
        if (!element || element.type === "SpreadElement") throw new NotLiteral(node);
        return literalValue(element);
      });
    case "ObjectExpression":
      return objectValue(expression);
    default:
      throw new NotLiteral(node);
  }
}

function objectValue(node: ObjectExpression): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  for (const property of node.properties) {
    if (property.type !== "Property" || property.computed || property.kind !== "init")
      throw new NotLiteral(property);
    const key = property.key;
    const name =
      key.type === "Identifier" ? key.name : key.type === "Literal" ? String(key.value) : undefined;
    if (name === undefined) throw new NotLiteral(property);
    result[name] = literalValue(property.value);
  }
  return result;
}

function topLevelConst(program: Program, name: string): Node | undefined {
  for (const statement of program.body) {
    const declaration =
      statement.type === "VariableDeclaration"
        ? statement
        : statement.type === "ExportNamedDeclaration" && statement.declaration?.type === "VariableDeclaration"
          ? statement.declaration
          : undefined;
    if (declaration?.kind !== "const") continue;
    for (const declarator of declaration.declarations) {
      if (declarator.id.type === "Identifier" && declarator.id.name === name && declarator.init)
        return declarator.init;
    }
  }
  return undefined;
}

/**
 * Finds `export const config = ...`, `export { local as config }` (of a top-level
 * const), or CommonJS `module.exports.config = ...` / `exports.config = ...`.
 */
function findConfigNode(program: Program): Node | undefined {
  for (const statement of program.body) {
    if (statement.type === "ExportNamedDeclaration") {
      if (statement.declaration?.type === "VariableDeclaration") {
        const found = topLevelConst({ ...program, body: [statement] }, "config");
        if (found) return found;
      }
      for (const specifier of statement.specifiers) {
        const exported =
          specifier.exported.type === "Identifier" ? specifier.exported.name : specifier.exported.value;
        if (exported === "config" && specifier.local.type === "Identifier" && !statement.source) {
          return topLevelConst(program, specifier.local.name);
        }
      }
    }
    if (statement.type === "ExpressionStatement" && statement.expression.type === "AssignmentExpression") {
      const target = statement.expression.left;
      if (
        target.type === "MemberExpression" &&
        !target.computed &&
        target.property.type === "Identifier" &&
        target.property.name === "config"
      ) {
        const object = target.object;
        const isExports =
          (object.type === "Identifier" && object.name === "exports") ||
          (object.type === "MemberExpression" &&
            object.object.type === "Identifier" &&
            object.object.name === "module" &&
            object.property.type === "Identifier" &&
            object.property.name === "exports");
        if (isExports) return statement.expression.right;
      }
    }
  }
  return undefined;
}

function lineAndColumn(source: string, offset: number): { line: number; column: number } {
  const before = source.slice(0, offset).split("\n");
  return { line: before.length, column: (before.at(-1)?.length ?? 0) + 1 };
}

/**
 * Reads the config from the function's JavaScript (already stripped of types).
 * `file` is for messages. Throws BundleError when it is not a literal or invalid.
 */
export function extractConfig(javascript: string, file: string): FunctionConfig {
  let program: Program;
  try {
    program = parse(javascript, { ecmaVersion: "latest", sourceType: "module", allowHashBang: true });
  } catch {
    return {};
  }
  const node = findConfigNode(program);
  if (!node) return {};
  let value: unknown;
  try {
    value = literalValue(node);
  } catch (error) {
    if (!(error instanceof NotLiteral)) throw error;
    const where = lineAndColumn(javascript, error.node.start);
    throw new BundleError(
      "`config` must be a literal object (strings, numbers, booleans, arrays, objects): fnrun reads it without running the function",
      { file, ...where },
    );
  }
  try {
    return validateConfig(value, "config");
  } catch (error) {
    throw new BundleError(`${(error as Error).message}`, { file, ...lineAndColumn(javascript, node.start) });
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function checkNumber(value: unknown, name: string, range: { min: number; max: number }): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < range.min || value > range.max) {
    throw new Error(
      `${name} must be a number from ${range.min} to ${range.max}, not ${JSON.stringify(value)}`,
    );
  }
  return value;
}

export function validateEnv(value: unknown, name: string): Record<string, string> {
  if (!isRecord(value)) throw new Error(`${name} must be an object of strings`);
  const env: Record<string, string> = {};
  for (const [key, entry] of Object.entries(value)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key))
      throw new Error(`${name}: "${key}" is not a valid variable name`);
    if (typeof entry !== "string" && typeof entry !== "number" && typeof entry !== "boolean") {
      throw new Error(`${name}.${key} must be a string`);
    }
    env[key] = String(entry);
  }
  return env;
}

/** Parses "HOST:GUEST[:ro|rw]". */
export function parseMount(spec: string): MountConfig {
  const parts = spec.split(":");
  const mode = parts.length === 3 ? parts[2] : "ro";
  if (parts.length < 2 || parts.length > 3 || !parts[0] || !parts[1] || (mode !== "ro" && mode !== "rw")) {
    throw new Error(`mount "${spec}" must look like HOST_DIR:GUEST_DIR[:ro|rw]`);
  }
  return { source: parts[0], target: parts[1], readOnly: mode === "ro" };
}

function validateMounts(value: unknown, name: string): MountConfig[] {
  if (!Array.isArray(value)) throw new Error(`${name} must be an array of "HOST:GUEST[:ro|rw]" strings`);
  return value.map((entry, index) => {
    if (typeof entry === "string") return parseMount(entry);
    if (isRecord(entry) && typeof entry.source === "string" && typeof entry.target === "string") {
      return { source: entry.source, target: entry.target, readOnly: entry.readOnly !== false };
    }
    throw new Error(`${name}[${index}] must be "HOST:GUEST[:ro|rw]" or { source, target, readOnly }`);
  });
}

export function validateConfig(value: unknown, name: string): FunctionConfig {
  if (!isRecord(value)) throw new Error(`${name} must be an object`);
  const unknownKeys = Object.keys(value).filter((key) => !(CONFIG_KEYS as readonly string[]).includes(key));
  if (unknownKeys.length > 0) {
    throw new Error(
      `${name} has unknown key(s) ${unknownKeys.join(", ")}; known keys: ${CONFIG_KEYS.join(", ")}`,
    );
  }
  const config: FunctionConfig = {};
  if (value.timeout !== undefined)
    config.timeout = checkNumber(value.timeout, `${name}.timeout`, LIMITS.timeoutSeconds);
  if (value.memory !== undefined)
    config.memory = checkNumber(value.memory, `${name}.memory`, LIMITS.memoryMB);
  if (value.env !== undefined) config.env = validateEnv(value.env, `${name}.env`);
  if (value.net !== undefined) {
    if (typeof value.net !== "boolean") throw new Error(`${name}.net must be true or false`);
    config.net = value.net;
  }
  if (value.handler !== undefined) {
    if (typeof value.handler !== "string" || !/^[A-Za-z_$][\w$]*$/.test(value.handler)) {
      throw new Error(`${name}.handler must be an export name`);
    }
    config.handler = value.handler;
  }
  if (value.mounts !== undefined) config.mounts = validateMounts(value.mounts, `${name}.mounts`);
  if (value.schedule !== undefined) {
    const schedule = typeof value.schedule === "string" ? [value.schedule] : value.schedule;
    if (!Array.isArray(schedule) || !schedule.every((entry) => typeof entry === "string")) {
      throw new Error(`${name}.schedule must be a cron expression or an array of them`);
    }
    config.schedule = schedule as string[];
  }
  if (value.overlap !== undefined) {
    if (value.overlap !== "skip" && value.overlap !== "queue" && value.overlap !== "allow") {
      throw new Error(`${name}.overlap must be "skip", "queue" or "allow"`);
    }
    config.overlap = value.overlap;
  }
  if (value.webhook !== undefined) {
    const webhook = value.webhook;
    if (!isRecord(webhook) || typeof webhook.secretEnv !== "string" || !webhook.secretEnv) {
      throw new Error(`${name}.webhook must be { secretEnv: "NAME_OF_THE_VARIABLE_HOLDING_THE_SECRET" }`);
    }
    config.webhook = { secretEnv: webhook.secretEnv };
  }
  if (value.concurrency !== undefined) {
    config.concurrency = checkNumber(value.concurrency, `${name}.concurrency`, LIMITS.concurrency);
  }
  return config;
}
