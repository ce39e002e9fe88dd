import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { byPurpose, counterDelta, imageHeapMiB, percentile, purposeOf, sampleRss } from './figures.ts';

describe('purposeOf', () => {
  it('sorts the simulator routes the operator calls by what it calls them for', () => {
    const cases: Record<string, string> = {
      'GET /repos/{owner}/{repo}/commits': 'history',
      'GET /repos/{owner}/{repo}/compare/{basehead}': 'history',
      'GET /repos/{owner}/{repo}/git/trees/{tree_sha}': 'tree/commit/ref',
      'POST /repos/{owner}/{repo}/git/commits': 'tree/commit/ref',
      'GET /repos/{owner}/{repo}/git/ref/{ref}': 'tree/commit/ref',
      'POST /repos/{owner}/{repo}/git/refs': 'tree/commit/ref',
      'GET /repos/{owner}/{repo}/contents/{path}': 'tree/commit/ref',
      'GET /repos/{owner}/{repo}/commits/{ref}': 'tree/commit/ref',
      'GET /repos/{owner}/{repo}/branches/{branch}': 'tree/commit/ref',
      'POST /repos/{owner}/{repo}/pulls': 'PR',
      'GET /repos/{owner}/{repo}/pulls': 'PR',
      'POST /repos/{owner}/{repo}/issues/{issue_number}/labels': 'PR',
      'POST /repos/{owner}/{repo}/issues/{issue_number}/comments': 'PR',
      'GET /repos/{owner}/{repo}/pulls/{pull_number}': 'CI polling',
      'GET /repos/{owner}/{repo}/commits/{ref}/status': 'CI polling',
      'GET /repos/{owner}/{repo}/commits/{ref}/check-runs': 'CI polling',
      'GET /repos/{owner}/{repo}/branches/{branch}/protection': 'CI polling',
      'GET /repos/{owner}/{repo}/rules/branches/{branch}': 'CI polling',
      'PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge': 'merge',
      'GET /user': 'other',
      'GET /repos/{owner}/{repo}': 'other',
    };
    expect(Object.fromEntries(Object.keys(cases).map((route) => [route, purposeOf(route)]))).toEqual(cases);
  });

  it('splits the requests between two snapshots by purpose, routes most first', () => {
    const delta = counterDelta(
      { 'GET /repos/{owner}/{repo}/commits': 10, 'GET /user': 3 },
      { 'GET /repos/{owner}/{repo}/commits': 30, 'GET /user': 3, 'GET /repos/{owner}/{repo}/pulls/{pull_number}': 5, 'GET /repos/{owner}/{repo}/commits/{ref}/status': 9 },
    );
    const split = byPurpose(delta);
    expect(split.get('history')).toEqual({ total: 20, routes: [['GET /repos/{owner}/{repo}/commits', 20]] });
    expect(split.get('CI polling')).toEqual({ total: 14, routes: [['GET /repos/{owner}/{repo}/commits/{ref}/status', 9], ['GET /repos/{owner}/{repo}/pulls/{pull_number}', 5]] });
    expect(split.get('other')).toEqual({ total: 0, routes: [] });
  });
});

describe('percentile', () => {
  it('is the nearest rank', () => {
    const values = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect([percentile(values, 50), percentile(values, 95), percentile(values, 100)]).toEqual([50, 95, 100]);
    expect(percentile([], 50)).toBeNaN();
  });
});

describe('sampleRss', () => {
  it('keeps the max and the last VmRSS of a live process, and skips one that is gone', async () => {
    const sampler = sampleRss(() => [{ name: 'self', pid: process.pid }, { name: 'gone', pid: 2 ** 22 + 1 }], 10);
    await new Promise((r) => setTimeout(r, 50));
    const series = sampler.stop();
    const self = series.get('self')!;
    expect(self.samples).toBeGreaterThan(2);
    expect(self.maxMiB).toBeGreaterThanOrEqual(self.lastMiB);
    expect(self.lastMiB).toBeCloseTo(process.memoryUsage().rss / 2 ** 20, -1);
    expect(series.has('gone')).toBe(false);
  });
});

describe('imageHeapMiB', () => {
  const values = (memory: string) => `replicaCount: 2\nresources:\n  requests:\n    cpu: 200m\n    memory: 512Mi\n  limits:\n    cpu: 500m\n    memory: ${memory}\n`;
  const dockerfile = 'FROM node\nENV NODE_ENV=production\nENV NODE_OPTIONS=--max-old-space-size-percentage=30\nCMD ["node", "src/main.ts"]\n';

  it('is the Dockerfile\'s percentage of the chart\'s memory limit, not of its request', () => {
    expect(imageHeapMiB(dockerfile, values('1Gi'))).toEqual({ heapMiB: 307, limit: '1Gi', percent: 30 });
    expect(imageHeapMiB(dockerfile, values('768Mi'))?.heapMiB).toBe(230);
    expect(imageHeapMiB(dockerfile, values('1G'))?.heapMiB).toBe(286);
  });

  it('is undefined without a percentage or a limit, and refuses a limit it cannot read', () => {
    expect(imageHeapMiB('FROM node\n', values('1Gi'))).toBeUndefined();
    expect(imageHeapMiB(dockerfile, 'resources: {}\n')).toBeUndefined();
    expect(() => imageHeapMiB(dockerfile, values('lots'))).toThrow(/resources.limits.memory lots/);
  });

  it('reads this repository\'s Dockerfile and chart', () => {
    const read = (file: string) => readFileSync(new URL(`../${file}`, import.meta.url), 'utf8');
    expect(imageHeapMiB(read('Dockerfile'), read('charts/ai-operator/values.yaml'))?.heapMiB).toBeGreaterThan(0);
  });
});
