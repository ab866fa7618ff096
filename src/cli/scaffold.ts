/**
 * `fnrun init [NAME] [--template plain|http|cron|webhook]`: a typed function to
 * start from, in the functions directory, and an example event in events/.
 */
import { mkdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { FUNCTION_NAME, FUNCTION_NAME_RULE } from "../build/functions-dir.ts";
import { UsageError } from "../util/errors.ts";

export const TEMPLATES = ["plain", "http", "cron", "webhook"] as const;
export type Template = (typeof TEMPLATES)[number];

function source(name: string, template: Template): string {
  switch (template) {
    case "plain":
      return `/**
 * ${name}: run it with
 *
 *     fnrun invoke functions/${name}.ts --event-file events/${name}.json
 */
import type { Context } from "fnrun";

interface Event {
  name?: string;
}

export const handler = async (event: Event, context: Context) => {
  console.log(\`${name} called with \${JSON.stringify(event)}\`);
  return { message: \`Hello, \${event.name ?? "world"}!\`, requestId: context.awsRequestId };
};
`;
    case "http":
      return `/**
 * ${name}: an HTTP handler (a Lambda function URL / API Gateway HTTP API event).
 *
 *     fnrun invoke functions/${name}.ts --event-file events/${name}.json
 *     fnrun serve   # then: curl -d @events/${name}.json localhost:9000/invoke/${name}
 */
import type { HttpEvent, HttpResult } from "fnrun";

export const handler = async (event: HttpEvent): Promise<HttpResult> => {
  const body = event.body ? (JSON.parse(event.body) as { name?: string }) : {};
  const name = event.queryStringParameters?.name ?? body.name ?? "world";
  return {
    statusCode: 200,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ message: \`Hello, \${name}!\`, method: event.requestContext.http.method }),
  };
};
`;
    case "cron":
      return `/**
 * ${name}: runs on a schedule while \`fnrun serve\` runs (cron, in UTC).
 *
 *     fnrun invoke functions/${name}.ts --event-file events/${name}.json
 */
import type { ScheduledEvent } from "fnrun";

export const config = { schedule: "*/5 * * * *", overlap: "skip" };

export const handler = async (event: ScheduledEvent) => {
  const missed = event.detail.missed ?? 0;
  console.log(\`${name}: scheduled run at \${event.time}\${missed ? \` (\${missed} missed)\` : ""}\`);
  return { ranAt: event.time, missed };
};
`;
    case "webhook":
      return `/**
 * ${name}: receives signed webhook deliveries (GitHub's X-Hub-Signature-256).
 *
 *     export WEBHOOK_SECRET=...   # the secret the sender signs with
 *     fnrun serve                 # deliveries: POST localhost:9000/webhooks/${name}
 *     fnrun invoke functions/${name}.ts --event-file events/${name}.json
 */
import type { WebhookEvent } from "fnrun";

export const config = { webhook: { secretEnv: "WEBHOOK_SECRET" } };

export const handler = async (event: WebhookEvent) => {
  const payload = JSON.parse(event.body ?? "{}") as { action?: string };
  const kind = event.headers["x-github-event"] ?? "unknown";
  console.log(\`${name}: \${kind} \${payload.action ?? ""}\`);
  return { received: kind, action: payload.action ?? null };
};
`;
  }
}

function exampleEvent(name: string, template: Template): unknown {
  switch (template) {
    case "plain":
      return { name: "Ada" };
    case "http":
      return {
        version: "2.0",
        rawPath: `/${name}`,
        rawQueryString: "name=Ada",
        headers: { "content-type": "application/json" },
        queryStringParameters: { name: "Ada" },
        requestContext: { http: { method: "GET", path: `/${name}` } },
        isBase64Encoded: false,
      };
    case "cron":
      return {
        version: "0",
        id: "00000000-0000-0000-0000-000000000000",
        "detail-type": "Scheduled Event",
        source: "aws.events",
        time: "2026-01-01T00:00:00Z",
        resources: [],
        detail: { schedule: "*/5 * * * *" },
      };
    case "webhook":
      return {
        version: "2.0",
        rawPath: `/webhooks/${name}`,
        rawQueryString: "",
        headers: { "content-type": "application/json", "x-github-event": "issues" },
        requestContext: { http: { method: "POST", path: `/webhooks/${name}` } },
        body: JSON.stringify({ action: "opened" }),
        isBase64Encoded: false,
      };
  }
}

export interface InitResult {
  functionFile: string;
  eventFile: string;
}

export async function scaffold(
  name: string,
  template: Template,
  options: { directory?: string; eventsDirectory?: string; force?: boolean } = {},
): Promise<InitResult> {
  if (!FUNCTION_NAME.test(name))
    throw new UsageError(`"${name}" is not a function name (${FUNCTION_NAME_RULE})`);
  if (!(TEMPLATES as readonly string[]).includes(template)) {
    throw new UsageError(`unknown template "${template}"; choose one of ${TEMPLATES.join(", ")}`);
  }
  const directory = options.directory ?? "functions";
  const eventsDirectory = options.eventsDirectory ?? "events";
  const functionFile = join(directory, `${name}.ts`);
  const eventFile = join(eventsDirectory, `${name}.json`);
  for (const path of [functionFile, eventFile]) {
    if (
      !options.force &&
      (await stat(path).then(
        () => true,
        () => false,
      ))
    ) {
      throw new UsageError(`${path} exists already (--force replaces it)`);
    }
  }
  await mkdir(directory, { recursive: true });
  await mkdir(eventsDirectory, { recursive: true });
  await writeFile(functionFile, source(name, template));
  await writeFile(eventFile, `${JSON.stringify(exampleEvent(name, template), null, 2)}\n`);
  return { functionFile, eventFile };
}
