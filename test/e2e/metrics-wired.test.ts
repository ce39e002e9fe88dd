// The metrics an on-call reads, on the real operator process during a real
// staging rollback: the attempt gauges come from the etcd record (so a restarted
// operator shows them before any transition, and they fall back once the attempt
// ends), and the reconcile and work-queue metrics are controller-runtime's.
import { afterEach, describe, expect, inject, it } from 'vitest';
import { eventually } from './support/operator.ts';
import { givenRollbackScenario, type OperatorHandle, type ScenarioOptions, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });
const given = (name: string, options: ScenarioOptions) => givenRollbackScenario(stack, name, options, stoppers);

/** Every sample of /metrics, as `name{labels}` -> value. */
async function scrape(operator: OperatorHandle): Promise<Map<string, number>> {
  const samples = new Map<string, number>();
  for (const line of (await operator.metrics()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

/** What the attempt gauges say: staging's count, and the state at 1 of each app. */
async function attemptGauges(operator: OperatorHandle): Promise<{ staging: number | undefined; states: Record<string, string> }> {
  const samples = await scrape(operator);
  const states: Record<string, string> = {};
  for (const [series, value] of samples) {
    const m = /^ai_operator_fsm_state\{app_name="([^"]+)",state="([^"]+)"\}$/.exec(series);
    if (m && value === 1) states[m[1]!] = m[2]!;
  }
  return { staging: samples.get('ai_operator_active_rollbacks{environment="staging"}'), states };
}

const gaugesAre = (operator: OperatorHandle, want: { staging: number; states: Record<string, string> }) =>
  eventually(`gauges ${JSON.stringify(want)}`, async () => {
    const got = await attemptGauges(operator);
    return JSON.stringify(got) === JSON.stringify(want) ? got : undefined;
  }, 20_000, 200);

describe('metrics that are wired', () => {
  it('shows the attempt gauges from etcd while in flight, after a restart before any transition, and back to none once complete; reconcile and queue metrics count', async () => {
    // Given a staging app watched by the operator, nothing in flight
    const s = await given('metrics-wired', { environment: 'staging', startOperator: false });
    const first = await s.startOperator();
    await gaugesAre(first, { staging: 0, states: {} });

    // When a bad release degrades it and the rollback PR is open (CI not reported yet)
    await s.release('v2', true);
    const pr = await s.firstPull();
    await s.inState('PRCreated');
    // Then one staging rollback is in flight, and the app's state is PRCreated
    await gaugesAre(first, { staging: 1, states: { [s.app]: 'PRCreated' } });

    // When the operator restarts mid-attempt
    const exited = new Promise((resolve) => first.child.once('exit', resolve));
    first.child.kill('SIGTERM');
    await exited;
    const [before] = await s.attempts();
    const second = await s.startOperator();
    // Then the new process shows the gauges at once, read from etcd: no transition has happened since
    await gaugesAre(second, { staging: 1, states: { [s.app]: 'PRCreated' } });
    const [after] = await s.attempts();
    expect(after!.transitions).toHaveLength(before!.transitions.length);
    expect(after!.state).toBe('PRCreated');

    // When CI goes green and the rollback completes
    s.ci(pr.headSha, 'success');
    await s.inState('RollbackComplete', 90_000);
    // Then nothing is in flight and the ended attempt's app has no state series (well before the 30 s resync)
    await gaugesAre(second, { staging: 0, states: {} });

    // And the reconcile and work-queue metrics, under controller-runtime's names and labels, have counted
    const samples = await scrape(second);
    const c = 'controller="application"';
    const q = 'name="application",controller="application"';
    console.log([...samples].filter(([k]) => /^(controller_runtime_reconcile_(total|errors_total)|workqueue_(adds|retries)_total|workqueue_depth|controller_runtime_reconcile_time_seconds_count|workqueue_(queue|work)_duration_seconds_count)\{/.test(k)).map(([k, v]) => `${k} ${v}`).join('\n'));
    expect(samples.get(`controller_runtime_reconcile_total{${c},result="success"}`)).toBeGreaterThan(0);
    expect(samples.get(`controller_runtime_reconcile_total{${c},result="requeue_after"}`)).toBeGreaterThan(0);
    expect(samples.get(`controller_runtime_reconcile_errors_total{${c}}`)).toBeGreaterThanOrEqual(0);
    expect(samples.get(`controller_runtime_reconcile_time_seconds_count{${c}}`)).toBeGreaterThan(0);
    expect(samples.get(`workqueue_adds_total{${q}}`)).toBeGreaterThan(0);
    expect(samples.get(`workqueue_retries_total{${q}}`)).toBeGreaterThan(0);
    expect(samples.get(`workqueue_queue_duration_seconds_count{${q}}`)).toBeGreaterThan(0);
    expect(samples.get(`workqueue_work_duration_seconds_count{${q}}`)).toBeGreaterThan(0);
    expect(samples.get(`workqueue_depth{${q},priority="0"}`)).toBeGreaterThanOrEqual(0);
    expect(samples.get(`workqueue_depth{${q},priority="-100"}`)).toBeGreaterThanOrEqual(0);
  }, 240_000);
});
