// The dashboard in a real browser (Debian's Chromium, driven by Playwright),
// against a real `fnrun serve` booting real VMs.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveHost } from "../../src/host/setup.ts";
import { type FnrunServer, serve } from "../../src/serve/server.ts";
import { expectNothingLeftBehind } from "./helpers.ts";

const TOKEN = "dashboard-test-token";
const SCREENSHOTS = join("test", ".tmp", "screenshots");
let state: string;
let server: FnrunServer;
let browser: Browser;
let page: Page;

async function invokeOverHttp(
  name: string,
  event: unknown,
): Promise<{ status: number; requestId: string | null }> {
  const response = await fetch(`${server.url}/invoke/${name}`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify(event),
  });
  await response.text();
  return { status: response.status, requestId: response.headers.get("x-fnrun-request-id") };
}

beforeAll(async () => {
  state = mkdtempSync(join(tmpdir(), "fnrun-test-dashboard-"));
  process.env.FNRUN_STATE_DIR = join(state, "history");
  process.env.TEST_WEBHOOK_SECRET = "never-shown-on-the-dashboard";
  mkdirSync(SCREENSHOTS, { recursive: true });
  server = await serve({
    directory: "test/fixtures/served",
    port: 0,
    pool: 1,
    token: TOKEN,
    retryBaseMs: 100,
    stateDirectory: join(state, "server"),
    machine: await resolveHost(),
    schedules: false,
  });
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  rmSync(state, { recursive: true, force: true });
  expectNothingLeftBehind(expect);
});

describe("the dashboard", () => {
  it("needs the token, then keeps it in a cookie", async () => {
    const refused = await page.goto(`${server.url}/_fnrun/`);
    expect(refused?.status()).toBe(401);
    const opened = await page.goto(`${server.url}/_fnrun/?token=${TOKEN}`);
    expect(opened?.status()).toBe(200);
    await page.waitForSelector("h1:has-text('Invocations')");
    const cookies = await page.context().cookies();
    expect(cookies.find((cookie) => cookie.name === "fnrun_token")).toMatchObject({
      httpOnly: true,
      sameSite: "Strict",
    });
  });

  it("shows an invocation live within a second of its end, opens it with its waterfall, and replays it", async () => {
    await page.goto(`${server.url}/_fnrun/#/`);
    await page.waitForSelector("#invocations");
    const { status, requestId } = await invokeOverHttp("echo", { marker: "from-the-dashboard-test" });
    expect(status).toBe(200);
    const row = page.locator(`tr.invocation[data-request-id="${requestId}"]`);
    await row.waitFor({ timeout: 1000 });
    expect(await row.locator(".function").textContent()).toBe("echo");
    expect(await row.locator("[data-status]").getAttribute("data-status")).toBe("ok");
    await page.screenshot({ path: join(SCREENSHOTS, "invocations.png"), fullPage: true });

    await row.click();
    await page.waitForSelector("#event");
    expect(await page.locator("#event").textContent()).toContain("from-the-dashboard-test");
    expect(await page.locator("#result").textContent()).toContain("from-the-dashboard-test");
    expect(await page.locator("#logs").textContent()).toContain("echo got an event");
    const phases = await page.locator("#waterfall rect.phase").count();
    expect(phases).toBeGreaterThanOrEqual(4);
    expect(await page.locator("#waterfall text.label").allTextContents()).toEqual(
      expect.arrayContaining(["invocationSent", "handlerStart", "handlerEnd", "vmGone"]),
    );
    await page.screenshot({ path: join(SCREENSHOTS, "invocation.png"), fullPage: true });

    await page.click("#replay");
    await page.waitForSelector("#replay-note:has-text('Queued as job')");
    await page.goto(`${server.url}/_fnrun/#/`);
    const replayed = page.locator("tr.invocation", { hasText: "replay" }).first();
    await replayed.waitFor({ timeout: 30_000 });
    await replayed.click();
    await page.waitForSelector("#event");
    expect(await page.locator("#event").textContent()).toContain("from-the-dashboard-test");
  });

  it("shows a function's output as text: markup from a function never runs", async () => {
    const { requestId } = await invokeOverHttp("xss", {});
    await page.goto(`${server.url}/_fnrun/#/invocation/${requestId}`);
    // Only the hash changes: the last test's view, with its own #logs, may still be up.
    await page.locator("#logs", { hasText: 'window.__xss = "log"' }).waitFor({ timeout: 10_000 });
    expect(await page.locator("#logs").textContent()).toContain('<script>window.__xss = "log"</script>');
    expect(await page.locator("#result").textContent()).toContain("<img src=x onerror=");
    await page.waitForTimeout(300);
    expect(await page.evaluate("window.__xss")).toBeUndefined();
    expect(await page.locator("main script, main img").count()).toBe(0);
  });

  it("lists the functions with their config, and never a secret's value", async () => {
    await page.goto(`${server.url}/_fnrun/#/functions`);
    const github = page.locator('article[data-function="github"]');
    await github.waitFor();
    expect(await github.textContent()).toContain("POST /webhooks/github (secret in $TEST_WEBHOOK_SECRET)");
    expect(await page.locator('article[data-function="limited"]').textContent()).toContain(
      "at most 1 at once",
    );
    expect(await page.content()).not.toContain("never-shown-on-the-dashboard");
    await page.screenshot({ path: join(SCREENSHOTS, "functions.png"), fullPage: true });
  });

  it("shows dead-lettered events, replays one and purges the list", async () => {
    const response = await fetch(`${server.url}/2015-03-31/functions/fails/invocations`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "x-amz-invocation-type": "Event" },
      body: JSON.stringify({ reason: "dashboard" }),
    });
    expect(response.status).toBe(202);
    const deadline = Date.now() + 60_000;
    while ((await server.queue.list(["dead"])).length === 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await page.goto(`${server.url}/_fnrun/#/queue`);
    const dead = page.locator('tr.job[data-state="dead-lettered"]');
    await dead.first().waitFor();
    expect(await dead.count()).toBe(1);
    expect(await dead.first().locator(".last-error").textContent()).toContain(
      "failing on purpose: dashboard",
    );
    await page.screenshot({ path: join(SCREENSHOTS, "queue.png"), fullPage: true });

    await dead.first().locator("button.replay-job").click();
    // The replay is a new job of its own, which fails in turn and is dead-lettered too.
    await expect.poll(() => page.locator("tr.job").count(), { timeout: 30_000 }).toBeGreaterThanOrEqual(2);
    while ((await server.queue.list(["dead"])).length < 2 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await page.goto(`${server.url}/_fnrun/#/functions`);
    await page.goto(`${server.url}/_fnrun/#/queue`);
    await page.waitForSelector('tr.job[data-state="dead-lettered"]');
    await page.click("#purge");
    await page.waitForSelector("#queue-empty:not([hidden])");
    expect(await page.locator('tr.job[data-state="dead-lettered"]').count()).toBe(0);
  });

  it("shows the latest benchmark on the performance page", async () => {
    await page.goto(`${server.url}/_fnrun/#/performance`);
    await page.waitForSelector("h1:has-text('Performance')");
    const charts = page.locator("img.chart");
    if ((await charts.count()) > 0) {
      const loaded = () =>
        charts.evaluateAll((images) =>
          images.every((image) => {
            const { complete, naturalWidth } = image as unknown as {
              complete: boolean;
              naturalWidth: number;
            };
            return complete && naturalWidth > 0;
          }),
        );
      await expect.poll(loaded, { timeout: 30_000 }).toBe(true);
      expect(await page.locator("pre.table").textContent()).toContain("floor");
    } else {
      expect(await page.locator("main").textContent()).toContain("make bench");
    }
    await page.screenshot({ path: join(SCREENSHOTS, "performance.png"), fullPage: true });
  });
});
