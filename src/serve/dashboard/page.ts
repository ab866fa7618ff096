/**
 * The dashboard's page and assets: src/dashboard/app.ts bundled for the browser
 * by esbuild (once per process), its stylesheet, and the HTML shell. Served by
 * fnrun itself; nothing comes from a CDN.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { loadEsbuild } from "../../build/bundle.ts";
import { packageRoot } from "../../util/paths.ts";

export interface DashboardPage {
  html: string;
  assets: Map<string, { type: string; body: string }>;
}

const HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fnrun</title>
<link rel="stylesheet" href="/_fnrun/assets/app.css">
</head>
<body>
<header>
  <span class="brand">fnrun</span>
  <nav>
    <a href="#/" data-route="invocations">Invocations</a>
    <a href="#/functions" data-route="functions">Functions</a>
    <a href="#/queue" data-route="queue">Queue</a>
    <a href="#/performance" data-route="performance">Performance</a>
  </nav>
</header>
<main id="main"><p>Loading…</p></main>
<script src="/_fnrun/assets/app.js"></script>
</body>
</html>
`;

let page: Promise<DashboardPage> | undefined;

export function dashboardPage(): Promise<DashboardPage> {
  page ??= (async () => {
    const directory = join(packageRoot, "src", "serve", "dashboard", "app");
    const esbuild = await loadEsbuild();
    const script = await esbuild.build({
      entryPoints: [join(directory, "app.ts")],
      bundle: true,
      write: false,
      platform: "browser",
      format: "iife",
      target: "es2022",
      minify: true,
      logLevel: "silent",
    });
    const code = script.outputFiles[0]?.text ?? "";
    const css = await readFile(join(directory, "app.css"), "utf8");
    return {
      html: HTML,
      assets: new Map([
        ["app.js", { type: "text/javascript; charset=utf-8", body: code }],
        ["app.css", { type: "text/css; charset=utf-8", body: css }],
      ]),
    };
  })();
  return page;
}
