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
export type { FunctionConfig } from "./build/config.ts";

/** An HTTP request as a Lambda function URL (or API Gateway HTTP API, payload 2.0) delivers it. */
export interface HttpEvent {
  version: "2.0";
  rawPath: string;
  rawQueryString: string;
  headers: Record<string, string>;
  queryStringParameters?: Record<string, string>;
  requestContext: {
    http: { method: string; path: string; protocol?: string; sourceIp?: string; userAgent?: string };
    requestId?: string;
    timeEpoch?: number;
  };
  body?: string;
  isBase64Encoded: boolean;
}

/** What an HTTP handler returns. */
export interface HttpResult {
  statusCode: number;
  headers?: Record<string, string>;
  body?: string;
  isBase64Encoded?: boolean;
}

/** A scheduled run (config.schedule), shaped as EventBridge's "Scheduled Event". */
export interface ScheduledEvent {
  version: "0";
  id: string;
  "detail-type": "Scheduled Event";
  source: "aws.events";
  time: string;
  resources: string[];
  detail: { schedule?: string; missed?: number };
}

/** A webhook delivery (config.webhook): an HttpEvent whose signature fnrun has already checked. */
export type WebhookEvent = HttpEvent;
