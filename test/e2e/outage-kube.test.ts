// The Kubernetes API server goes away mid-attempt for longer than every retry
// budget, at the step that reads it fresh: the merge decision (I2 reads the
// Application past the watch cache, I3 the Deployments). Without those reads the
// invariants are UNKNOWN, and UNKNOWN never merges: the attempt waits, and merges
// once the API server is back. The scenario runs on a PRIVATE API server (on an
// etcd of its own), the operator's state store and NATS on the shared stack.
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { StackEndpoints } from '../../dev/stack/index.ts';
import { outage, PrivateComponents, type Component } from './support/faults.ts';
import { eventually } from './support/operator.ts';
import { nothingLost, readyz, ReadinessWatch, stillRunning } from './support/outage-checks.ts';
import { givenRollbackScenario, REPO, type Stopper } from './support/rollback-scenario.ts';

const shared = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

const WINDOW_MS = 35_000;
const components = new PrivateComponents();
let kube: { endpoints: Pick<StackEndpoints, 'kubeUrl' | 'kubeconfig' | 'kubectl'>; component: Component };
beforeAll(async () => { kube = await components.kube(); }, 180_000);
afterAll(() => components.dispose());

describe('kube-apiserver down mid-attempt', () => {
  it('stopped for 35 s while CI goes green: no merge on UNKNOWN invariants, /readyz names the API server, then the merge and completion once it is back', async () => {
    // Given a staging rollback PR waiting for CI, on a private API server
    const stack = { ...shared, ...kube.endpoints };
    const s = await givenRollbackScenario(stack, 'outage-kube', { environment: 'staging', startOperator: false }, stoppers);
    const operator = await s.startOperator();
    const pid = operator.child.pid!;
    await s.release('v2', true);
    const pr = await s.firstPull();
    await s.inState('PRCreated');
    const watch = new ReadinessWatch(operator.httpPort);
    stoppers.push(() => watch.stop());

    // When the API server stops (its etcd and port kept) and CI turns green meanwhile
    const window = await outage(kube.component, 'stop', WINDOW_MS);
    s.ci(pr.headSha, 'success');

    // Then nothing merges while the fresh reads cannot be made
    await new Promise((r) => setTimeout(r, WINDOW_MS - 5000));
    expect(s.github.control.pulls(REPO)[0]).toMatchObject({ state: 'open', merged: false });
    const during = await s.attempts();
    expect(during.map((r) => r.state)).not.toContain('Abort');
    const { downMs, backAt } = await window.end();

    // And once it is back the attempt merges and completes
    const done = await s.inState('RollbackComplete', 90_000).catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    const completedAfterMs = Date.now() - backAt;
    await eventually('ready again', async () => (await readyz(operator.httpPort)).status === 200, 30_000, 250);
    await watch.stop();
    expect(done.transitions.map((t) => t.to)).toEqual(['DegradationDetected', 'CandidateResolved', 'PRCreated', 'AwaitingMergeApproval', 'RollbackMerged', 'RollbackComplete']);
    expect(s.github.control.pulls(REPO)).toMatchObject([{ number: pr.number, merged: true }]);
    expect((await nothingLost(s, done, shared.nats)).problems).toEqual([]);

    // /readyz named the API server while it was away, and came back by itself
    const samples = watch.between(window.startedAt + 3000, window.startedAt + downMs - 500);
    expect(samples.length).toBeGreaterThan(20);
    expect(samples.filter((x) => x.status !== 503 || !/^Kubernetes API: /m.test(x.body) || x.ms >= 2000)).toEqual([]);
    const ready = watch.readyAgain(backAt);
    expect(ready).toBeDefined();
    expect(stillRunning(operator, pid)).toBeUndefined();
    console.log(`[outage-kube] stop ${downMs} ms; ready ${ready!.afterMs} ms and RollbackComplete ${completedAfterMs} ms after the API server was back`);
  }, 240_000);
});
