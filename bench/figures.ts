// The bench's arithmetic: percentiles, GitHub requests by purpose (from the
// simulator's per-route counters), and the operator's resident set sampled
// over a burst.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

export const percentile = (values: readonly number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
};

export const PURPOSES = ['history', 'tree/commit/ref', 'PR', 'CI polling', 'merge', 'other'] as const;
export type Purpose = typeof PURPOSES[number];

/**
 * What the operator asked a route ("METHOD /template", the simulator's counter
 * key) for: the history it picks a revision from (commit lists, comparisons),
 * the Git objects it reads and writes to make the rollback commit (trees, blobs,
 * commits, refs, contents, a branch), the pull request (open, find, label,
 * comment), CI polling (the PR's state, its head's statuses and checks, the
 * branch's protection and rules), the merge, or something else.
 */
export function purposeOf(route: string): Purpose {
  const [method = '', path = ''] = route.split(' ');
  if (method === 'PUT' && path.endsWith('/merge')) return 'merge';
  if (method === 'GET' && (path === '/repos/{owner}/{repo}/commits' || path.includes('/compare/'))) return 'history';
  if (/\/commits\/\{[^}]+\}\/(status|statuses|check-runs|check-suites)$/.test(path) || path.includes('/check-runs') || path.includes('/check-suites')) return 'CI polling';
  if (/\/branches\/\{[^}]+\}\/protection/.test(path) || path.includes('/rules/branches/')) return 'CI polling';
  if (method === 'GET' && /\/pulls\/\{[^}]+\}$/.test(path)) return 'CI polling';
  if (path.includes('/pulls') || /\/issues\/\{[^}]+\}\/(labels|comments)/.test(path)) return 'PR';
  if (path.includes('/git/') || path.includes('/contents') || /\/commits\/\{[^}]+\}$/.test(path) || /\/branches\/\{[^}]+\}$/.test(path)) return 'tree/commit/ref';
  return 'other';
}

/** Requests per route between two snapshots of the counters. */
export function counterDelta(before: Record<string, number>, after: Record<string, number>): Map<string, number> {
  const delta = new Map<string, number>();
  for (const [route, n] of Object.entries(after)) {
    const d = n - (before[route] ?? 0);
    if (d > 0) delta.set(route, d);
  }
  return delta;
}

/** The requests of each purpose, with the routes that made them (most first). */
export function byPurpose(delta: ReadonlyMap<string, number>): Map<Purpose, { total: number; routes: Array<[string, number]> }> {
  const split = new Map<Purpose, { total: number; routes: Array<[string, number]> }>(PURPOSES.map((p) => [p, { total: 0, routes: [] }]));
  for (const [route, n] of delta) {
    const entry = split.get(purposeOf(route))!;
    entry.total += n;
    entry.routes.push([route, n]);
  }
  for (const entry of split.values()) entry.routes.sort((a, b) => b[1] - a[1]);
  return split;
}

const statusLine = (pid: number, field: string): number => {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(`${field}:`));
  if (!line) throw new Error(`/proc/${pid}/status has no ${field}`);
  return Number(line.replace(/\D+/g, '')) / 1024;
};

/** The resident set now (VmRSS), in MiB. */
export const rssMiB = (pid: number): number => statusLine(pid, 'VmRSS');
/** The highest resident set since the process started (VmHWM), in MiB. */
export const peakRssMiB = (pid: number): number => statusLine(pid, 'VmHWM');

export interface RssSeries {
  samples: number;
  maxMiB: number;
  lastMiB: number;
  /** VmHWM at the last sample. */
  hwmMiB: number;
}

/**
 * VmRSS of each named process every `everyMs` until stop(); a process that is
 * gone is no longer sampled (its series ends at its last sample).
 */
export function sampleRss(processes: () => ReadonlyArray<{ name: string; pid: number }>, everyMs = 250): { stop(): Map<string, RssSeries> } {
  const series = new Map<string, RssSeries>();
  const sample = () => {
    for (const { name, pid } of processes()) {
      try {
        const rss = rssMiB(pid);
        const hwm = peakRssMiB(pid);
        const s = series.get(name) ?? { samples: 0, maxMiB: 0, lastMiB: 0, hwmMiB: 0 };
        series.set(name, { samples: s.samples + 1, maxMiB: Math.max(s.maxMiB, rss), lastMiB: rss, hwmMiB: hwm });
      } catch {
        // Gone (killed): its series stands as it was.
      }
    }
  };
  sample();
  const timer = setInterval(sample, everyMs);
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      return series;
    },
  };
}

/**
 * The V8 heap (MiB of old space) the operator's image gives it under the chart's memory limit: the
 * Dockerfile's `--max-old-space-size-percentage` of `resources.limits.memory` (Node 24 takes the percentage
 * of the cgroup's limit), or undefined when either is not set. What the bench passes as --max-old-space-size,
 * so that a process without a cgroup runs with the heap it would have in its container.
 */
export function imageHeapMiB(dockerfile: string, values: string): { heapMiB: number; limit: string; percent: number } | undefined {
  const percent = /^ENV NODE_OPTIONS=.*--max-old-space-size-percentage=(\d+(?:\.\d+)?)/m.exec(dockerfile)?.[1];
  const limit = (parse(values) as { resources?: { limits?: { memory?: unknown } } } | null)?.resources?.limits?.memory;
  if (percent === undefined || limit === undefined) return undefined;
  if (typeof limit !== 'string') throw new Error(`resources.limits.memory ${String(limit)}: not a quantity this bench reads (Mi, Gi, M, G)`);
  const quantity = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|K|M|G)?$/.exec(limit);
  if (!quantity) throw new Error(`resources.limits.memory ${limit}: not a quantity this bench reads (Mi, Gi, M, G)`);
  const unit = { Ki: 1 / 1024, Mi: 1, Gi: 1024, K: 1000 / 2 ** 20, M: 1e6 / 2 ** 20, G: 1e9 / 2 ** 20 }[quantity[2] ?? ''] ?? 1 / 2 ** 20;
  return { heapMiB: Math.floor((Number(quantity[1]) * unit * Number(percent)) / 100), limit, percent: Number(percent) };
}
