// etcd, the operator's state store, goes away mid-attempt for longer than every
// retry budget and the leader lease. The operator runs on a PRIVATE etcd (the
// rest on the shared stack), so stopping or pausing it touches no other test.
// Nothing can be decided while etcd is away — not even that a timeout fired — so
// the attempt must resume where it was and finish.
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { outage, PrivateComponents, type Component } from './support/faults.ts';
import { eventually } from './support/operator.ts';
import { nothingLost, readyz, ReadinessWatch, stillRunning } from './support/outage-checks.ts';
import { givenRollbackScenario, REPO, type Stopper } from './support/rollback-scenario.ts';

const shared = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

const WINDOW_MS = 35_000;
const components = new PrivateComponents();
let etcd: { endpoint: string; component: Component };
beforeAll(async () => { etcd = await components.etcd(); }, 60_000);
afterAll(() => components.dispose());

/** Reconciles the operator has finished so far (controller-runtime's counter, all results). */
async function reconciles(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return [...text.matchAll(/^controller_runtime_reconcile_total\{[^}]*\} (\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
}

describe('etcd down mid-attempt', () => {
  it('stopped for 35 s while the PR waits for CI: /readyz names etcd, the operator lives on, and the attempt resumes and completes', async () => {
    // Given a staging rollback PR waiting for CI, the operator on its own etcd
    const stack = { ...shared, etcd: etcd.endpoint };
    const s = await givenRollbackScenario(stack, 'outage-etcd', { environment: 'staging', startOperator: false }, stoppers);
    const operator = await s.startOperator();
    const pid = operator.child.pid!;
    await s.release('v2', true);
    const pr = await s.firstPull();
    await s.inState('PRCreated');
    const watch = new ReadinessWatch(operator.httpPort);
    stoppers.push(() => watch.stop());

    // When etcd stops (its data dir and port kept), and CI turns green while it is away
    const window = await outage(etcd.component, 'stop', WINDOW_MS);
    s.ci(pr.headSha, 'success');
    const { downMs, backAt } = await window.end();

    // Then the attempt resumes from etcd and completes, with the one PR merged once
    const done = await s.inState('RollbackComplete', 90_000).catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    const completedAfterMs = Date.now() - backAt;
    await eventually('ready again', async () => (await readyz(operator.httpPort)).status === 200, 30_000, 250);
    await watch.stop();
    expect(done.transitions.map((t) => t.to)).toEqual(['DegradationDetected', 'CandidateResolved', 'PRCreated', 'AwaitingMergeApproval', 'RollbackMerged', 'RollbackComplete']);
    expect(s.github.control.pulls(REPO)).toMatchObject([{ number: pr.number, merged: true }]);

    // /readyz said etcd was missing while it was (after the first probe deadline), and came back by itself
    const during = watch.between(window.startedAt + 2000, window.startedAt + downMs - 500);
    expect(during.length).toBeGreaterThan(20);
    expect(during.filter((x) => x.status !== 503 || !/^etcd: /m.test(x.body) || x.ms >= 2000)).toEqual([]);
    const ready = watch.readyAgain(backAt);
    expect(ready).toBeDefined();

    // The operator neither crashed nor restarted; nothing was lost or doubled
    expect(stillRunning(operator, pid)).toBeUndefined();
    const lost = await nothingLost(s, done, shared.nats);
    expect(lost.problems).toEqual([]);
    console.log(`[outage-etcd] stop ${downMs} ms; ready ${ready!.afterMs} ms after etcd was back; RollbackComplete ${completedAfterMs} ms after`);
  }, 180_000);

  // The rule (src/governance/merge-verdict.ts, deadlines): a state's timeout counts
  // only time the operator observed — each reconcile that read the deadline's fact
  // adds at most two intervals — so 35 s without etcd cost 2 s of the 20 s.
  it('paused for 35 s, longer than the CI timeout, while CI is pending: the timeout counts only time the operator could observe', async () => {
    // Given a PR waiting for CI under a 20 s CI timeout, the operator on its own etcd
    const stack = { ...shared, etcd: etcd.endpoint };
    const s = await givenRollbackScenario(stack, 'outage-etcd-timeout', { environment: 'staging', startOperator: false, env: { CI_WAIT_TIMEOUT: '20' } }, stoppers);
    const operator = await s.startOperator();
    await s.release('v2', true);
    const pr = await s.firstPull();
    await s.inState('PRCreated');

    // When etcd hangs for longer than the CI timeout, CI still pending
    const window = await outage(etcd.component, 'pause', WINDOW_MS);
    await window.end();

    // Then, after the operator has watched CI pending again for a few reconciles, no timeout has fired
    await eventually('ready again', async () => (await readyz(operator.httpPort)).status === 200, 30_000, 250);
    const before = await reconciles(operator.httpPort);
    await eventually('a few reconciles after the outage', async () => (await reconciles(operator.httpPort)) >= before + 3, 30_000, 250);
    const [record] = await s.attempts();
    expect({ state: record!.state, reason: record!.reason }).toEqual({ state: 'PRCreated', reason: 'PullRequestOpened' });

    // And CI turning green then completes the attempt
    s.ci(pr.headSha, 'success');
    await s.inState('RollbackComplete', 60_000);
  }, 180_000);
});
