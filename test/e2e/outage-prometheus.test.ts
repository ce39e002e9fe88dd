// Prometheus hangs during the candidate search, for longer than the query's
// whole retry budget (a 15 s timeout per try, 3 retries). SPEC §6.3: Prometheus
// unreachable → CI-only selection, said in I5's detail. So the search falls
// back to CI within its own budget (searchTimeoutSeconds, 120 s) instead of
// waiting for Prometheus or aborting, and the attempt completes. The operator
// runs on a PRIVATE Prometheus whose history says the good revision was 100 %
// Healthy — what it would have chosen on metrics, had Prometheus answered.
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Sample } from '../../dev/stack/prometheus.ts';
import { outage, PrivateComponents, type Component } from './support/faults.ts';
import { eventually } from './support/operator.ts';
import { nothingLost, readyz, ReadinessWatch, stillRunning } from './support/outage-checks.ts';
import { givenRollbackScenario, REPO, type Stopper } from './support/rollback-scenario.ts';

const shared = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

const APP = 'outage-prom-app';
// Past the query's retry budget: 4 tries of 15 s plus up to 7 s of backoff.
const WINDOW_MS = 75_000;
const components = new PrivateComponents();
let prometheus: { url: string; component: Component };

/** argocd_app_info for APP, Healthy every minute from 27 h to 3 h ago (blocks promtool writes, not the head). */
function healthyHistory(): Sample[] {
  const end = Math.floor(Date.now() / 1000) - 3 * 3600;
  const samples: Sample[] = [];
  for (let at = end - 24 * 3600; at < end; at += 60) {
    samples.push({ metric: 'argocd_app_info', labels: { name: APP, namespace: 'argocd', project: 'default', health_status: 'Healthy', sync_status: 'Synced' }, value: 1, at });
  }
  return samples;
}

beforeAll(async () => { prometheus = await components.prometheus(healthyHistory()); }, 120_000);
afterAll(() => components.dispose());

describe('Prometheus down during the candidate search', () => {
  it('paused for 75 s from the degradation on: the search falls back to CI-only within its budget, says why, and the attempt completes', async () => {
    // Given a staging app whose good revision Prometheus knows as 100 % Healthy
    const stack = { ...shared, prometheus: prometheus.url };
    const s = await givenRollbackScenario(stack, 'outage-prom', { environment: 'staging', app: APP, startOperator: false }, stoppers);
    const operator = await s.startOperator();
    const pid = operator.child.pid!;
    await eventually('operator ready', async () => (await readyz(operator.httpPort)).status === 200, 60_000, 250);
    const watch = new ReadinessWatch(operator.httpPort);
    stoppers.push(() => watch.stop());

    // When Prometheus hangs as the app degrades (the search starts once persistence is confirmed)
    const window = await outage(prometheus.component, 'pause', WINDOW_MS);
    await s.release('v2', true);

    // Then the candidate is chosen on CI alone while Prometheus is still away, and the PR opens
    const resolved = await s.inState('CandidateResolved', WINDOW_MS).catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    const resolvedAfterMs = Date.now() - window.startedAt;
    expect(prometheus.component.isDown()).toBe('pause');
    expect(resolved.candidate).toMatchObject({ revision: s.good, mode: 'ci-only', ciState: 'success' });
    expect(resolved.candidate!.evidence).toMatch(/^CI-only selection \(queryPrometheus.*no answer within 15000 ms/);
    const { downMs } = await window.end();

    const pr = await s.firstPull();
    expect(pr.body).toContain('CI-only selection');
    s.ci(pr.headSha, 'success');
    const done = await s.inState('RollbackComplete', 60_000);
    expect(done.invariants.find((i) => i.id === 'I5_stable_previous')).toMatchObject({ result: 'PASS' });
    expect(done.invariants.find((i) => i.id === 'I5_stable_previous')!.detail).toMatch(/CI-only/);
    expect(s.github.control.pulls(REPO)).toMatchObject([{ number: pr.number, merged: true }]);
    expect((await nothingLost(s, done, shared.nats)).problems).toEqual([]);

    // Readiness is not Prometheus's to fail: without it the operator still chooses, on CI.
    await watch.stop();
    expect(watch.samples.filter((x) => x.status !== 200)).toEqual([]);
    expect(stillRunning(operator, pid)).toBeUndefined();
    console.log(`[outage-prometheus] paused ${downMs} ms; CI-only candidate ${resolvedAfterMs} ms into the outage`);
  }, 200_000);
});
