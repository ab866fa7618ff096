/**
 * The dashboard of `fnrun serve` (browser code, bundled by esbuild when served).
 *
 * Every piece of text that comes from a function (events, results, logs,
 * errors, names) reaches the page through textContent or SVG text nodes, never
 * as HTML: a function that prints markup shows markup, it does not run it. The
 * page's Content-Security-Policy allows only this script anyway.
 *
 * One file on purpose: it is served as one script (no module loader in the
 * page), and its views share the few helpers at its top.
 */

interface Summary {
  requestId: string;
  functionName: string;
  trigger: string;
  status: string;
  startMode: string;
  startedAt: number;
  durationMs: number;
}

interface TimelineEntry {
  name: string;
  atMs: number;
  source: "host" | "guest";
}

interface InvocationRecord extends Summary {
  file: string;
  event: string;
  eventTruncated: boolean;
  result: string | null;
  error: { errorType?: string; errorMessage?: string; stack?: string[]; [key: string]: unknown } | null;
  logs: string;
  timeline: TimelineEntry[];
}

interface FunctionView {
  name: string;
  file: string;
  problem: string | null;
  timeout: number | null;
  memory: number | null;
  net: boolean;
  concurrency: number | null;
  env: string[];
  mounts: string[];
  webhook: { path: string; secretEnv: string } | null;
  schedules: Array<{ expression: string; overlap: string; next: string | null; problem: string | null }>;
}

interface Job {
  id: string;
  functionName: string;
  trigger: string;
  state: string;
  attempts: number;
  maxAttempts: number;
  lastError: string | null;
  updatedAt: number;
  retrying: boolean;
}

type Child = Node | string | null | undefined | false;

/** Builds an element; strings become text nodes (never HTML). */
function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return element;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag: string, attributes: Record<string, string | number>, text?: string): SVGElement {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

async function api<T>(path: string, init?: RequestInit): Promise<T> {
  const response = await fetch(`/_fnrun/api/${path}`, { credentials: "same-origin", ...init });
  if (!response.ok) {
    const body = (await response.json().catch(() => ({}))) as { message?: string };
    throw new Error(body.message ?? `${response.status} ${response.statusText}`);
  }
  return (await response.json()) as T;
}

function formatMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

function formatTime(epochMs: number): string {
  return new Date(epochMs).toLocaleTimeString(undefined, { hour12: false });
}

function prettyJson(text: string | null): string {
  if (text === null) return "";
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

function statusBadge(status: string): HTMLElement {
  return el("span", { class: `badge status-${status.replace(/\s+/g, "-")}`, "data-status": status }, status);
}

const main = document.getElementById("main") as HTMLElement;
/** Counts navigations; a page whose data arrives after the user moved on is not drawn. */
let navigation = 0;

function render(view: number, ...children: (Node | string)[]): void {
  if (view === navigation) main.replaceChildren(...children);
}
let invocations: Summary[] = [];
let events: EventSource | undefined;

function setActiveTab(route: string): void {
  for (const link of document.querySelectorAll<HTMLAnchorElement>("nav a")) {
    link.classList.toggle("active", link.dataset.route === route);
  }
}

function invocationRow(summary: Summary): HTMLElement {
  const row = el(
    "tr",
    { class: "invocation", "data-request-id": summary.requestId },
    el("td", {}, formatTime(summary.startedAt)),
    el("td", { class: "function" }, summary.functionName),
    el("td", {}, summary.trigger),
    el("td", {}, statusBadge(summary.status)),
    el("td", { class: "number" }, formatMs(summary.durationMs)),
    el("td", {}, summary.startMode),
  );
  row.addEventListener("click", () => {
    location.hash = `#/invocation/${encodeURIComponent(summary.requestId)}`;
  });
  return row;
}

function renderInvocationList(): void {
  const body = document.getElementById("invocation-rows");
  if (!body) return;
  body.replaceChildren(...invocations.map(invocationRow));
  const empty = document.getElementById("no-invocations");
  if (empty) empty.hidden = invocations.length > 0;
}

async function showInvocations(): Promise<void> {
  const view = navigation;
  setActiveTab("invocations");
  invocations = await api<Summary[]>("invocations?limit=200");
  render(
    view,
    el("h1", {}, "Invocations"),
    el("p", { class: "hint" }, "Newest first; new ones appear as they end."),
    el(
      "table",
      { class: "list", id: "invocations" },
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          ...["Time", "Function", "Trigger", "Status", "Duration", "Start"].map((h) => el("th", {}, h)),
        ),
      ),
      el("tbody", { id: "invocation-rows" }),
    ),
    el("p", { id: "no-invocations", class: "hint" }, "No invocations yet."),
  );
  renderInvocationList();
}

/** The boot timeline as a waterfall: one bar per phase, from one point to the next. */
function waterfall(timeline: TimelineEntry[]): SVGElement {
  const points = [...timeline].sort((a, b) => a.atMs - b.atMs);
  const total = Math.max(1, points.at(-1)?.atMs ?? 1);
  const rowHeight = 26;
  const labelWidth = 190;
  const width = 760;
  const scale = (width - labelWidth - 150) / total;
  const chart = svg("svg", {
    id: "waterfall",
    viewBox: `0 0 ${width} ${rowHeight * points.length + 24}`,
    width: "100%",
    role: "img",
    "aria-label": "boot timeline",
  });
  points.forEach((point, index) => {
    const next = points[index + 1];
    const y = index * rowHeight + 4;
    const x = labelWidth + point.atMs * scale;
    const barWidth = next ? Math.max(2, (next.atMs - point.atMs) * scale) : 2;
    chart.append(
      svg("text", { x: 4, y: y + 15, class: `label ${point.source}` }, point.name),
      svg("rect", { x, y, width: barWidth, height: rowHeight - 8, rx: 2, class: `phase ${point.source}` }),
      svg(
        "text",
        { x: x + barWidth + 6, y: y + 15, class: "time" },
        `${formatMs(point.atMs)}${next ? ` (+${formatMs(next.atMs - point.atMs)})` : ""}`,
      ),
    );
  });
  chart.append(
    svg(
      "text",
      { x: 4, y: rowHeight * points.length + 18, class: "legend" },
      "blue: measured on the host; green: the guest's clock",
    ),
  );
  return chart;
}

function section(title: string, ...children: Child[]): HTMLElement {
  return el("section", {}, el("h2", {}, title), ...children);
}

async function showInvocation(requestId: string): Promise<void> {
  const view = navigation;
  setActiveTab("invocations");
  const record = await api<InvocationRecord>(`invocations/${encodeURIComponent(requestId)}`);
  const replay = el("button", { id: "replay", type: "button" }, "Replay with the same event");
  const replayNote = el("span", { class: "hint", id: "replay-note" });
  replay.addEventListener("click", async () => {
    replay.disabled = true;
    try {
      const { job } = await api<{ job: string }>(`invocations/${encodeURIComponent(requestId)}/replay`, {
        method: "POST",
      });
      replayNote.textContent = `Queued as job ${job}; it will appear in the list when it ends.`;
    } catch (error) {
      replayNote.textContent = `Could not replay: ${(error as Error).message}`;
      replay.disabled = false;
    }
  });
  const error = record.error;
  render(
    view,
    el("p", {}, el("a", { href: "#/" }, "← Invocations")),
    el("h1", {}, record.functionName, " ", statusBadge(record.status)),
    el(
      "dl",
      { class: "facts" },
      el("dt", {}, "Request"),
      el("dd", { class: "mono" }, record.requestId),
      el("dt", {}, "Started"),
      el("dd", {}, new Date(record.startedAt).toLocaleString()),
      el("dt", {}, "Duration"),
      el("dd", {}, formatMs(record.durationMs)),
      el("dt", {}, "Trigger"),
      el("dd", {}, record.trigger),
      el("dt", {}, "Start"),
      el("dd", {}, record.startMode),
      el("dt", {}, "File"),
      el("dd", { class: "mono" }, record.file),
    ),
    el("p", {}, replay, " ", replayNote),
    section(
      "Event",
      el("pre", { id: "event" }, prettyJson(record.event)),
      record.eventTruncated && el("p", { class: "hint" }, "(cut: too large to keep)"),
    ),
    record.result !== null
      ? section("Result", el("pre", { id: "result" }, prettyJson(record.result)))
      : section(
          "Error",
          el(
            "p",
            { id: "error", class: "error" },
            `${error?.errorType ?? "Error"}: ${error?.errorMessage ?? ""}`,
          ),
          el(
            "pre",
            { id: "stack" },
            (error?.stack ?? (error?.consoleTail ? [String(error.consoleTail)] : [])).join("\n"),
          ),
        ),
    section("Logs", el("pre", { id: "logs" }, record.logs || "(none)")),
    section(
      "Boot timeline",
      record.timeline.length > 0 ? waterfall(record.timeline) : el("p", { class: "hint" }, "(none)"),
    ),
  );
}

async function showFunctions(): Promise<void> {
  const view = navigation;
  setActiveTab("functions");
  const functions = await api<FunctionView[]>("functions");
  const cards = functions.map((fn) =>
    el(
      "article",
      { class: "card function-card", "data-function": fn.name },
      el("h2", {}, fn.name),
      el("p", { class: "mono hint" }, fn.file),
      fn.problem && el("p", { class: "error" }, fn.problem),
      el(
        "dl",
        { class: "facts" },
        el("dt", {}, "Timeout"),
        el("dd", {}, fn.timeout === null ? "30 s (default)" : `${fn.timeout} s`),
        el("dt", {}, "Memory"),
        el("dd", {}, fn.memory === null ? "256 MB (default)" : `${fn.memory} MB`),
        el("dt", {}, "Network"),
        el("dd", {}, fn.net ? "yes" : "none"),
        el("dt", {}, "Concurrency"),
        el("dd", {}, fn.concurrency === null ? "the server's limit" : `at most ${fn.concurrency} at once`),
        el("dt", {}, "Environment"),
        el("dd", { class: "env" }, fn.env.length > 0 ? fn.env.join(", ") : "(none)"),
        el("dt", {}, "Mounts"),
        el("dd", {}, fn.mounts.length > 0 ? fn.mounts.join(", ") : "(none)"),
        el("dt", {}, "Webhook"),
        el("dd", {}, fn.webhook ? `POST ${fn.webhook.path} (secret in $${fn.webhook.secretEnv})` : "(none)"),
        el("dt", {}, "Schedule"),
        el(
          "dd",
          {},
          fn.schedules.length === 0
            ? "(none)"
            : el(
                "ul",
                {},
                ...fn.schedules.map((entry) =>
                  el(
                    "li",
                    {},
                    el("code", {}, entry.expression),
                    entry.problem
                      ? ` ${entry.problem}`
                      : ` next ${entry.next ? new Date(entry.next).toLocaleString() : "?"} (overlap: ${entry.overlap})`,
                  ),
                ),
              ),
        ),
      ),
    ),
  );
  render(
    view,
    el("h1", {}, "Functions"),
    ...(cards.length > 0 ? cards : [el("p", { class: "hint" }, "No functions.")]),
  );
}

async function showQueue(): Promise<void> {
  const view = navigation;
  setActiveTab("queue");
  const jobs = await api<Job[]>("queue");
  const dead = jobs.filter((job) => job.state === "dead");
  const purge = el("button", { id: "purge", type: "button" }, `Purge the dead-letter list (${dead.length})`);
  purge.disabled = dead.length === 0;
  purge.addEventListener("click", async () => {
    await api("queue/purge", { method: "POST" });
    await showQueue();
  });
  const rows = jobs.map((job) => {
    const state =
      job.state === "pending" && job.retrying
        ? "retrying"
        : job.state === "dead"
          ? "dead-lettered"
          : job.state;
    const actions = el("td", {});
    if (job.state === "dead") {
      const replay = el("button", { type: "button", class: "replay-job" }, "Replay");
      replay.addEventListener("click", async () => {
        replay.disabled = true;
        await api(`queue/${encodeURIComponent(job.id)}/replay`, { method: "POST" });
        await showQueue();
      });
      actions.append(replay);
    }
    return el(
      "tr",
      { class: "job", "data-job": job.id, "data-state": state },
      el("td", { class: "mono" }, job.id),
      el("td", { class: "function" }, job.functionName),
      el("td", {}, job.trigger),
      el("td", {}, statusBadge(state)),
      el("td", { class: "number" }, `${job.attempts}/${job.maxAttempts}`),
      el("td", { class: "last-error" }, job.lastError ? job.lastError.slice(0, 200) : ""),
      actions,
    );
  });
  render(
    view,
    el("h1", {}, "Queue"),
    el("p", { class: "hint" }, "Pending, retrying and dead-lettered asynchronous invocations."),
    el("p", {}, purge),
    el(
      "table",
      { class: "list", id: "jobs" },
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          ...["Job", "Function", "Trigger", "State", "Attempts", "Last error", ""].map((h) =>
            el("th", {}, h),
          ),
        ),
      ),
      el("tbody", {}, ...rows),
    ),
    el(
      "p",
      { class: "hint", id: "queue-empty", ...(jobs.length === 0 ? {} : { hidden: "" }) },
      "The queue is empty.",
    ),
  );
}

async function showPerformance(): Promise<void> {
  const view = navigation;
  setActiveTab("performance");
  try {
    const results = await api<{ date: string; table: string }>("performance");
    render(
      view,
      el("h1", {}, "Performance"),
      el("p", { class: "hint" }, `The latest \`make bench\`, ${new Date(results.date).toLocaleString()}.`),
      el("img", { src: "/_fnrun/api/performance/latency.svg", alt: "time to a result", class: "chart" }),
      el("img", { src: "/_fnrun/api/performance/throughput.svg", alt: "throughput", class: "chart" }),
      el("pre", { class: "table" }, results.table),
    );
  } catch (error) {
    render(view, el("h1", {}, "Performance"), el("p", { class: "hint" }, (error as Error).message));
  }
}

function listenForInvocations(): void {
  events?.close();
  events = new EventSource("/_fnrun/api/events");
  events.addEventListener("invocation", (message) => {
    const summary = JSON.parse((message as MessageEvent<string>).data) as Summary;
    invocations = [summary, ...invocations.filter((entry) => entry.requestId !== summary.requestId)].slice(
      0,
      200,
    );
    renderInvocationList();
  });
}

async function route(): Promise<void> {
  navigation += 1;
  const view = navigation;
  const hash = location.hash.replace(/^#/, "") || "/";
  try {
    const invocation = hash.match(/^\/invocation\/(.+)$/);
    if (invocation) await showInvocation(decodeURIComponent(invocation[1] as string));
    else if (hash === "/functions") await showFunctions();
    else if (hash === "/queue") await showQueue();
    else if (hash === "/performance") await showPerformance();
    else await showInvocations();
  } catch (error) {
    render(view, el("p", { class: "error" }, `Could not load this page: ${(error as Error).message}`));
  }
}

window.addEventListener("hashchange", () => void route());
listenForInvocations();
void route();
