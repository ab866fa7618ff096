/**
 * SVG charts of `make bench` results, for docs/performance.md and the
 * dashboard's performance page. Plain SVG, no dependencies.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";

export interface BenchResults {
  date: string;
  runs: number;
  cores: number;
  rows: Array<{ id: string; label: string; median: number; p90: number }>;
  throughput: { clients: number; seconds: number; pool: number; snapshot: number; boot: number };
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (character) => `&#${character.charCodeAt(0)};`);
}

interface Bar {
  label: string;
  value: number;
  whisker?: number;
  text: string;
}

function barChart(title: string, bars: Bar[], unit: string): string {
  const width = 760;
  const labelWidth = 360;
  const barHeight = 22;
  const gap = 10;
  const top = 40;
  const height = top + bars.length * (barHeight + gap) + 30;
  const max = Math.max(...bars.map((bar) => Math.max(bar.value, bar.whisker ?? 0)), 1);
  const scale = (width - labelWidth - 90) / max;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="13">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="12" y="24" font-size="15" font-weight="600">${escapeXml(title)}</text>`,
  ];
  bars.forEach((bar, index) => {
    const y = top + index * (barHeight + gap);
    const length = Math.max(1, bar.value * scale);
    parts.push(
      `<text x="12" y="${y + 15}">${escapeXml(bar.label)}</text>`,
      `<rect x="${labelWidth}" y="${y}" width="${length.toFixed(1)}" height="${barHeight}" fill="#3b6fd4" rx="2"/>`,
    );
    if (bar.whisker !== undefined) {
      const x = labelWidth + bar.whisker * scale;
      parts.push(
        `<line x1="${x.toFixed(1)}" y1="${y + 4}" x2="${x.toFixed(1)}" y2="${y + barHeight - 4}" stroke="#1b2a4a" stroke-width="2"/>`,
      );
    }
    const textX = labelWidth + Math.max(length, (bar.whisker ?? 0) * scale) + 8;
    parts.push(`<text x="${textX.toFixed(1)}" y="${y + 15}">${escapeXml(bar.text)}</text>`);
  });
  parts.push(`<text x="12" y="${height - 10}" fill="#555">${escapeXml(unit)}</text>`, "</svg>");
  return `${parts.join("\n")}\n`;
}

export function latencyChart(results: BenchResults): string {
  return barChart(
    `Time to a result, TCG, ${results.cores} cores (median; line: p90; ${results.runs} runs)`,
    results.rows.map((row) => ({
      label: row.label.length > 52 ? `${row.label.slice(0, 51)}…` : row.label,
      value: row.median,
      whisker: row.p90,
      text: `${row.median.toFixed(0)} ms`,
    })),
    `make bench, ${results.date.slice(0, 10)}`,
  );
}

export function throughputChart(results: BenchResults): string {
  const { throughput } = results;
  return barChart(
    `Sustained throughput, hello, ${throughput.clients} clients for ${throughput.seconds} s`,
    [
      { label: "warm pool", value: throughput.pool, text: `${throughput.pool.toFixed(2)} /s` },
      { label: "snapshot starts", value: throughput.snapshot, text: `${throughput.snapshot.toFixed(2)} /s` },
      { label: "boots", value: throughput.boot, text: `${throughput.boot.toFixed(2)} /s` },
    ],
    `invocations per second, make bench, ${results.date.slice(0, 10)}`,
  );
}

export function renderCharts(results: BenchResults, directory: string): void {
  writeFileSync(join(directory, "performance-latency.svg"), latencyChart(results));
  writeFileSync(join(directory, "performance-throughput.svg"), throughputChart(results));
}
