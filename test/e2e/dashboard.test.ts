// Every panel of config/grafana/ai-operator-dashboard.json shows data from a real
// Prometheus scraping the real operator (src/main.ts) through a real staging run:
// a rollback that rides out two GitHub 502s and completes, then a second bad release
// whose rollback PR GitHub calls unmergeable, so I8 stops it (InvariantViolated).
// Each target is run as Grafana runs a panel — a range query over the run, with
// the dashboard's variables filled in — and must give at least one series with a
// number in it (not only NaN, which Grafana draws as "No data").
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { startPrometheus } from '../../dev/stack/prometheus.ts';
import { eventually } from './support/operator.ts';
import { givenRollbackScenario, REPO, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

interface Target { refId: string; expr: string; datasource: { uid: string } }
interface Panel { id: number; type: string; title: string; datasource?: { type: string; uid: string }; targets?: Target[] }
interface Dashboard { schemaVersion: number; templating: { list: Array<{ name: string; type: string; query: string }> }; panels: Panel[] }

const dashboard = JSON.parse(readFileSync(fileURLToPath(new URL('../../config/grafana/ai-operator-dashboard.json', import.meta.url)), 'utf8')) as Dashboard;
const panels = dashboard.panels.filter((p) => p.type !== 'row');

/** What Grafana puts in for the variables: the whole run fits in the window; rate over 30 s at a 1 s scrape. */
const VARIABLES: Record<string, string> = { window: '10m', __rate_interval: '30s', __interval: '1s', __range: '10m' };
function substitute(expr: string): string {
  return expr.replace(/\$\{?(\w+)\}?/g, (whole, name: string) => {
    const value = VARIABLES[name];
    if (value === undefined) throw new Error(`no test value for ${whole} in ${expr}`);
    return value;
  });
}

interface RangeResult { status: string; error?: string; data?: { result: Array<{ metric: Record<string, string>; values: Array<[number, string]> }> } }

describe('the Grafana dashboard', () => {
  it('is a dashboard Grafana imports: schema 39, every panel on the Prometheus datasource variable, every panel with a query', () => {
    expect(dashboard.schemaVersion).toBe(39);
    expect(dashboard.templating.list).toContainEqual(expect.objectContaining({ name: 'datasource', type: 'datasource', query: 'prometheus' }));
    expect(panels.length).toBeGreaterThanOrEqual(6);
    for (const panel of panels) {
      expect(panel.datasource, panel.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets!) expect(target.datasource.uid, panel.title).toBe('${datasource}');
    }
    // The seed's six panels (§6.2)
    expect(panels.map((p) => p.title.replace(/ \(\$window\)$/, ''))).toEqual(expect.arrayContaining([
      'Rollback Success Rate', 'Active Rollback Attempts (by FSM state)', 'Mean Time to Recovery Trend',
      'MCP Call Latency (p50, p95, p99)', 'Invariant Violations by Type', 'Degradations Detected per App',
    ]));
  });

  it('has data in every panel from Prometheus scraping the operator through a staging rollback and an aborted one', async () => {
    const s = await givenRollbackScenario(stack, 'dashboard', { environment: 'staging', startOperator: false, env: { ROLLBACK_COOLDOWN: '0' } }, stoppers);
    // GitHub errors for the error panel: two 502s on reading the repo, retried.
    s.github.control.fail({ route: 'GET /repos/{owner}/{repo}/commits', status: 502, times: 2 });
    const operator = await s.startOperator();
    const prometheus = await startPrometheus(mkdtempSync(join(tmpdir(), 'ai-operator-dashboard-')), [], [`127.0.0.1:${operator.httpPort}`], '1s');
    stoppers.push(() => prometheus.process.stop());
    const query = async (expr: string, start: number, end: number): Promise<RangeResult> => {
      const params = new URLSearchParams({ query: expr, start: String(start), end: String(end), step: '1' });
      return (await fetch(`${prometheus.url}/api/v1/query_range?${params}`)).json() as Promise<RangeResult>;
    };
    const started = Date.now() / 1000;
    await eventually('the operator scraped', async () => ((await query('up{job="ai-operator"} == 1', started - 5, Date.now() / 1000)).data?.result.length ?? 0) > 0, 30_000, 500);

    // When a bad release is rolled back in Git (CI green on the PR, merged, health back)
    await s.release('v2', true);
    const first = await s.firstPull(90_000);
    s.ci(first.headSha, 'success');
    const done = await s.inState('RollbackComplete', 90_000);

    // And a second bad release gets a rollback PR that GitHub calls unmergeable: I8 stops it
    await s.release('v3', true);
    const second = await eventually('second rollback PR', async () => s.github.control.pulls(REPO).find((p) => p.number !== first.number), 90_000, 250);
    s.github.control.setMergeable({ ...REPO, number: second.number, mergeable: false });
    s.ci(second.headSha, 'success');
    const aborted = await eventually('the second attempt aborted', async () => (await s.attempts()).find((r) => r.correlationId !== done.correlationId && r.state === 'Abort'), 90_000, 250);
    expect(aborted.reason, s.logs()).toBe('InvariantViolated');
    // A few more scrapes, so the last transitions are in Prometheus.
    await new Promise((r) => setTimeout(r, 3000));

    // Then every target of every panel has a series with a number in it over the run
    const end = Date.now() / 1000;
    const empty: string[] = [];
    for (const panel of panels) {
      for (const target of panel.targets!) {
        const expr = substitute(target.expr);
        const result = await query(expr, started, end);
        expect(result.status, `${panel.title} ${target.refId}: ${result.error ?? ''}\n${expr}`).toBe('success');
        const numbers = result.data!.result.flatMap((series) => series.values.map(([, v]) => Number(v)).filter(Number.isFinite));
        if (numbers.length === 0) empty.push(`${panel.title} ${target.refId} (${result.data!.result.length} series, none with a number): ${expr}`);
      }
    }
    expect(empty, s.logs()).toEqual([]);

    // And the panels say what happened: one rollback merged of two proposed, I8 the violation, the 502s counted
    const at = async (expr: string) => (await query(substitute(expr), end, end)).data!.result.map((r) => ({ ...r.metric, value: Number(r.values.at(-1)![1]) }));
    const target = (title: string, refId = 'A') => panels.find((p) => p.title.startsWith(title))!.targets!.find((t) => t.refId === refId)!.expr;
    expect(await at(target('Rollback Success Rate'))).toEqual([{ value: 0.5 }]);
    expect(await at(target('Invariant Violations by Type'))).toEqual([{ invariant_id: 'I8_branch_protection', value: 1 }]);
    expect(await at(target('Aborts by reason'))).toEqual([{ reason: 'InvariantViolated', value: 1 }]);
    expect(await at(target('Rollbacks completed'))).toEqual([{ value: 1 }]);
    expect(await at(target('External call errors'))).toContainEqual({ call_name: 'readRepositoryContent', error_code: 'UNAVAILABLE', value: 2 });
  }, 300_000);
});
