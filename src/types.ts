/**
 * Types for functions: the handler contract of AWS Lambda's Node.js runtime.
 *
 *     import type { Context, Handler } from "fnrun";
 *     export const handler: Handler<{ name: string }, { message: string }> = async (event) => ...
 */

export interface Context {
  /** This invocation's id (also `requestId`). */
  awsRequestId: string;
  requestId: string;
  functionName: string;
  functionVersion: string;
  invokedFunctionArn: string;
  /** Guest RAM in MB, as a string (as Lambda gives it). */
  memoryLimitInMB: string;
  logGroupName: string;
  logStreamName: string;
  callbackWaitsForEmptyEventLoop: boolean;
  /** Milliseconds until the timeout kills the VM. */
  getRemainingTimeInMillis(): number;
  done(error?: unknown, result?: unknown): void;
  succeed(result?: unknown): void;
  fail(error?: unknown): void;
}

export type Callback<TResult = unknown> = (error?: unknown, result?: TResult) => void;

export type Handler<TEvent = unknown, TResult = unknown> = (
  event: TEvent,
  context: Context,
  callback: Callback<TResult>,
) => undefined | TResult | Promise<TResult>;

/** `export const config: FunctionConfig = { ... }` in a function's file (a literal). */
export type { FunctionConfig } from "./config.ts";
