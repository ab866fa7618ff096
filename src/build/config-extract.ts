/**
 * Reads a function's `export const config = { ... }` without running the file
 * (the function's code runs only in its VM, never on the host). Like Next.js
 * route config, it must be a literal: strings, numbers, booleans, null, arrays
 * and objects of those. Loaded only when a function is bundled (acorn is not
 * needed on every run).
 */
import type { Expression, Node, ObjectExpression, Program } from "acorn";
import { parse } from "acorn";
import { BundleError } from "../util/errors.ts";
import { type FunctionConfig, validateConfig } from "./config.ts";

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
