// The ways a rollback on the simulators does not end in a merge — or ends in one
// only after the operator rode out failures — with the real operator process.
import { afterEach, describe, expect, inject, it } from 'vitest';
import { freePort } from '../../dev/stack/process.ts';
import { HISTORY_APP, HISTORY_NAMESPACE } from './fixtures/history.ts';
import { kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { givenRollbackScenario, REPO, type ScenarioOptions, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });
const given = (name: string, options: ScenarioOptions) => givenRollbackScenario(stack, name, options, stoppers);
const PULLS = 'POST /repos/{owner}/{repo}/pulls';

/** The value of one series of the operator's /metrics, 0 when absent. */
function sample(metrics: string, name: string, labels: Record<string, string>): number {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const line = metrics.split('\n').find((l) => l.startsWith(`${name}{`) && wanted.every((w) => l.includes(w)));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

describe('a degradation that clears by itself', () => {
  it('counts its checks in the health key, starts no attempt, opens no PR, and leaves nothing behind', async () => {
    // Checks 4 s apart: the fix lands well inside the three checks persistence needs.
    const s = await given('transient', { environment: 'staging', env: { POLL_INTERVAL_SEC: '4' } });
    const appKey = `${s.namespace}_${s.app}`;
    await s.release('v2', true);
    const counting = await eventually('a Degraded check in the health key', async () => (await s.store.loadApp(appKey)).pending);
    expect(counting.checks[0]).toMatchObject({ status: 'Degraded' });
    await s.release('v3', false);

    await eventually('the health key cleared', async () => (await s.store.loadApp(appKey)).pending === undefined);
    await new Promise((r) => setTimeout(r, 3000));
    // What `kubectl get rollbackattempts` shows for a blip: nothing.
    expect(await s.attempts()).toEqual([]);
    expect(JSON.parse(await kubectlOk(stack, ['get', 'rollbackattempts', '-n', s.namespace, '-o', 'json'])).items).toEqual([]);
    expect(s.github.control.pulls(REPO)).toEqual([]);
    expect(s.github.control.counters()[PULLS]).toBeUndefined();
  }, 120_000);
});

describe('health that comes back before the merge', () => {
  it('closes the rollback PR with a comment and goes back to Idle', async () => {
    const s = await given('restored', { environment: 'staging' });
    await s.release('v2', true);
    const pr = await s.firstPull();
    // CI stays pending on the PR; meanwhile a human fixes forward and Argo CD syncs it.
    await s.inState('PRCreated');
    await s.release('v3', false);

    const idle = await s.inState('Idle');
    expect(idle.reason).toBe('HealthRestoredBeforeMerge');
    expect(idle.transitions.map((t) => t.to)).toEqual(['DegradationDetected', 'CandidateResolved', 'PRCreated', 'Idle']);
    expect(s.github.control.pulls(REPO)[0]).toMatchObject({ number: pr.number, state: 'closed', merged: false });
    expect(s.github.control.comments({ ...REPO, number: pr.number }).map((c) => c.body).join('\n')).toContain('back to Healthy before this rollback was merged');
    expect(s.github.violations()).toEqual([]);
  }, 120_000);
});

describe('a rollback PR whose CI fails', () => {
  it('aborts with CIFailure, never merges, and says why on the PR', async () => {
    const s = await given('ci-failure', { environment: 'staging' });
    await s.release('v2', true);
    const pr = await s.firstPull();
    s.ci(pr.headSha, 'failure');

    const aborted = await s.inState('Abort');
    expect(aborted.reason).toBe('CIFailure');
    expect(aborted.transitions.map((t) => t.to)).toEqual(['DegradationDetected', 'CandidateResolved', 'PRCreated', 'Abort']);
    const comment = await eventually('abort comment', async () => s.github.control.comments({ ...REPO, number: pr.number }).find((c) => c.body.includes('CIFailure')));
    expect(comment.body).toContain('left open for a human to decide');
    expect(s.github.control.pulls(REPO)[0]).toMatchObject({ state: 'open', merged: false });
    expect(s.github.violations()).toEqual([]);
  }, 120_000);
});

describe('candidate selection', () => {
  it('aborts with NoStableCandidate when Prometheus says no older revision was 99 % healthy', async () => {
    // Prometheus holds 24 h of history for this app name with a Degraded hour in it (test/e2e/fixtures/history.ts).
    const s = await given('no-candidate', { environment: 'staging', app: HISTORY_APP, namespace: HISTORY_NAMESPACE });
    await s.release('v2', true);

    const aborted = await s.inState('Abort');
    expect(aborted.reason).toBe('NoStableCandidate');
    expect(aborted.transitions.map((t) => t.to)).toEqual(['DegradationDetected', 'Abort']);
    const uptime = Number(new RegExp(`${s.good.slice(0, 7)}: ([0-9.]+)%`).exec(aborted.message)?.[1]);
    expect(aborted.message).toMatch(/^no deployment reached 99\.00% uptime/);
    expect(uptime).toBeGreaterThan(90);
    expect(uptime).toBeLessThan(99);
    expect(s.github.control.pulls(REPO)).toEqual([]);
  }, 120_000);

  it('chooses by CI alone when Prometheus is down, and I5 says so', async () => {
    const s = await given('prometheus-down', { environment: 'staging', env: { PROMETHEUS_URL: `http://127.0.0.1:${await freePort()}` } });
    await s.release('v2', true);
    const pr = await s.firstPull(90_000);
    s.ci(pr.headSha, 'success');

    const done = await s.inState('RollbackComplete', 90_000);
    expect(done.candidate).toMatchObject({ revision: s.good, mode: 'ci-only', uptime: null });
    const i5 = done.invariants.find((i) => i.id === 'I5_stable_previous');
    expect(i5).toMatchObject({ result: 'PASS' });
    expect(i5!.detail).toMatch(/^CI-only selection \(queryPrometheus: UNAVAILABLE/);
    expect(pr.body).toContain('CI-only selection');
  }, 150_000);
});

describe('GitHub failures', () => {
  it('rides out 5xx and 429 answers with retries, counted in the operator\'s metrics', async () => {
    const s = await given('retries', { environment: 'staging', startOperator: false });
    s.github.control.fail({ route: 'GET /repos/{owner}/{repo}/commits', status: 502, times: 2 });
    s.github.control.fail({ route: PULLS, status: 429, retryAfterSeconds: 1 });
    s.github.control.fail({ route: 'PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge', status: 503 });
    const operator = await s.startOperator();
    await s.release('v2', true);
    const pr = await s.firstPull(90_000);
    s.ci(pr.headSha, 'success');

    const done = await s.inState('RollbackComplete', 90_000);
    expect(done.transitions.map((t) => t.to)).toEqual(['DegradationDetected', 'CandidateResolved', 'PRCreated', 'AwaitingMergeApproval', 'RollbackMerged', 'RollbackComplete']);
    expect(s.github.control.pulls(REPO)).toHaveLength(1);
    const counters = s.github.control.counters();
    expect(counters[PULLS]).toBe(2);
    expect(counters['PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge']).toBe(2);
    const metrics = await operator.metrics();
    const errors = (call: string, code: string) => sample(metrics, 'ai_operator_mcp_call_errors_total', { call_name: call, error_code: code });
    expect(errors('readRepositoryContent', 'UNAVAILABLE')).toBe(2);
    expect(errors('createPullRequest', 'RATE_LIMITED')).toBe(1);
    expect(errors('mergePullRequest', 'UNAVAILABLE')).toBe(1);
    expect(s.github.violations()).toEqual([]);
  }, 150_000);

  it('aborts with PermissionDenied on a 403, without retrying it', async () => {
    const s = await given('forbidden', { environment: 'staging', startOperator: false });
    s.github.control.fail({ route: 'POST /repos/{owner}/{repo}/git/refs', status: 403 });
    const operator = await s.startOperator();
    await s.release('v2', true);

    const aborted = await s.inState('Abort');
    expect(aborted.reason).toBe('PermissionDenied');
    expect(aborted.transitions.map((t) => t.to)).toEqual(['DegradationDetected', 'CandidateResolved', 'Abort']);
    expect(aborted.message).toContain('Resource not accessible by integration');
    expect(s.github.control.counters()['POST /repos/{owner}/{repo}/git/refs']).toBe(1);
    expect(s.github.control.pulls(REPO)).toEqual([]);
    expect(sample(await operator.metrics(), 'ai_operator_mcp_call_errors_total', { call_name: 'createPullRequest', error_code: 'PERMISSION_DENIED' })).toBe(1);
    expect(s.github.violations()).toEqual([]);
  }, 120_000);
});
