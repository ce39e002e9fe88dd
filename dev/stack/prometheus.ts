// A real Prometheus on loopback. History is backfilled before start-up with
// `promtool tsdb create-blocks-from openmetrics`, the way an SRE would import it.
import { execFile } from 'node:child_process';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { binaries } from './binaries.ts';
import { freePort, httpOk, spawnManaged, waitHealthy, type ManagedProcess } from './process.ts';

const run = promisify(execFile);

export interface PrometheusInstance {
  url: string;
  process: ManagedProcess;
}

export interface Sample {
  metric: string;
  labels: Record<string, string>;
  value: number;
  /** Unix time in seconds. */
  at: number;
}

/** OpenMetrics text for `promtool`: one line per sample, ordered by series then time. */
export function toOpenMetrics(samples: Sample[]): string {
  const escape = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
  const series = new Map<string, Sample[]>();
  for (const s of samples) {
    const labels = Object.entries(s.labels).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}="${escape(v)}"`).join(',');
    const key = `${s.metric}{${labels}}`;
    series.set(key, [...(series.get(key) ?? []), s]);
  }
  const byMetric = new Map<string, string[]>();
  for (const [key, points] of series) {
    const metric = key.slice(0, key.indexOf('{'));
    const lines = points.sort((a, b) => a.at - b.at).map((p) => `${key} ${p.value} ${p.at}`);
    byMetric.set(metric, [...(byMetric.get(metric) ?? []), ...lines]);
  }
  const out: string[] = [];
  for (const [metric, lines] of byMetric) out.push(`# TYPE ${metric} gauge`, ...lines);
  out.push('# EOF');
  return `${out.join('\n')}\n`;
}

/** Targets read from a file Prometheus watches (file_sd), for endpoints only known after it started. */
export interface FileTargets {
  job: string;
  /** JSON as file_sd reads it; write it with writeFileTargets. */
  file: string;
  interval: string;
}

/** Replaces the targets of `file` (renamed into place, so Prometheus never reads half a file). */
export async function writeFileTargets(file: string, targets: string[]): Promise<void> {
  await writeFile(`${file}.tmp`, JSON.stringify([{ targets }]));
  await rename(`${file}.tmp`, file);
}

/** `scrapeTargets` are scraped as job ai-operator every `scrapeInterval` (a private instance may want 1s); `fileTargets` as their own job. */
export async function startPrometheus(workDir: string, history: Sample[] = [], scrapeTargets: string[] = [], scrapeInterval = '5s', fileTargets?: FileTargets): Promise<PrometheusInstance> {
  const { prometheus, promtool } = await binaries('prometheus');
  const tsdb = join(workDir, 'prometheus-data');
  await mkdir(tsdb, { recursive: true });
  if (history.length > 0) {
    const file = join(workDir, 'history.om');
    await writeFile(file, toOpenMetrics(history));
    await run(promtool!, ['tsdb', 'create-blocks-from', 'openmetrics', file, tsdb], { maxBuffer: 16 << 20 });
  }
  const config = join(workDir, 'prometheus.yml');
  const jobs = [
    ...(scrapeTargets.length === 0 ? [] : [`  - job_name: ai-operator\n    scrape_interval: ${scrapeInterval}\n    static_configs:\n      - targets: [${scrapeTargets.map((t) => `"${t}"`).join(', ')}]\n`]),
    // Prometheus watches the file (and re-reads it every 5 s): targets written later are scraped within seconds.
    ...(fileTargets ? [`  - job_name: ${fileTargets.job}\n    scrape_interval: ${fileTargets.interval}\n    file_sd_configs:\n      - files: ["${fileTargets.file}"]\n        refresh_interval: 5s\n`] : []),
  ];
  if (fileTargets) await writeFileTargets(fileTargets.file, []);
  await writeFile(config, `global:\n  scrape_interval: 15s\n${jobs.length > 0 ? `scrape_configs:\n${jobs.join('')}` : ''}`);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc = spawnManaged('prometheus', prometheus!, [
    `--config.file=${config}`,
    `--storage.tsdb.path=${tsdb}`,
    '--storage.tsdb.retention.time=90d',
    `--web.listen-address=127.0.0.1:${port}`,
    '--log.level=warn',
  ], join(workDir, 'prometheus.log'));
  await waitHealthy(proc, () => httpOk(`${url}/-/ready`), 60_000);
  return { url, process: proc };
}
