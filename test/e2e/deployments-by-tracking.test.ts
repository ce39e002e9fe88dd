// Issue 17 §7: whose word is the Application's status. Argo CD's Application CRD has
// no status subresource, so whoever may patch an Application may write its
// status.resources. I3 must read the Deployments Argo CD actually manages for the
// app (its tracking id on each, as the simulator writes it like Argo CD 3.x), not
// the names in that status: a listed Deployment that does not exist is no shortage,
// and a real one the status leaves out still counts. The real operator process, the
// real API server, the GitHub simulator; the Argo CD simulator syncs the app, then is
// stopped so the test can write the status as someone who may patch Applications.
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { afterEach, describe, expect, inject, it } from 'vitest';
import type { AttemptRecord } from '../../src/fsm/record.ts';
import { kubeConfig, kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { givenRollbackScenario, REPO, type Scenario, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

type Json = Record<string, any>;
const APP = { group: 'argoproj.io', version: 'v1alpha1', plural: 'applications' } as const;

async function application(s: Scenario): Promise<Json> {
  return kubeConfig(stack).makeApiClient(CustomObjectsApi).getNamespacedCustomObject({ ...APP, namespace: s.namespace, name: s.app }) as Promise<Json>;
}

/** A merge patch of the Application's status, as anyone who may patch Applications can write it. */
async function writeStatus(s: Scenario, status: Json): Promise<void> {
  await kubeConfig(stack).makeApiClient(CustomObjectsApi).patchNamespacedCustomObjectStatus({ ...APP, namespace: s.namespace, name: s.app, body: { status } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
}

/** Until the attempt aborted or was merged (CI green on any rollback PR, so one the operator may merge is merged). */
async function outcome(s: Scenario): Promise<AttemptRecord> {
  return eventually('the attempt aborted or merged', async () => {
    for (const pull of s.github.control.pulls(REPO)) s.ci(pull.headSha, 'success');
    return (await s.attempts()).find((r) => r.state === 'Abort' || r.state === 'RollbackMerged');
  }, 90_000, 250).catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
}

const i3 = (record: AttemptRecord) => record.invariants.find((i) => i.id === 'I3_replica_shortage');
const summary = (record: AttemptRecord) => ({ state: record.state, reason: record.reason, message: record.message, pullRequest: record.pullRequest?.number });

describe('I3 reads the Deployments Argo CD tracks for the app', () => {
  it('a Deployment the status lists but the cluster lacks is no shortage: no rollback of a healthy workload', async () => {
    // Given a staging app that Argo CD deployed (Deployment cart, rolled out in full, its tracking id on it)
    const s = await givenRollbackScenario(stack, 'tracking-ghost', { environment: 'staging', startOperator: false }, stoppers);
    await s.argocd.stop();
    // When someone who may patch the Application writes a status: Degraded on a new commit, listing a Deployment that does not exist
    const bad = await s.release('v2', true);
    const before = await application(s);
    await writeStatus(s, {
      health: { status: 'Degraded', message: 'Deployment "ghost" exceeded its progress deadline' }, sync: { status: 'Synced', revision: bad },
      history: [...before.status.history, { id: 1, revision: bad, deployedAt: new Date().toISOString().replace(/\.\d+Z$/, 'Z') }],
      resources: [{ group: 'apps', version: 'v1', kind: 'Deployment', namespace: s.target, name: 'ghost', status: 'Synced' }],
    });
    await s.startOperator();

    // Then the attempt aborts before any PR: the app's real Deployment runs its revision in full
    const record = await outcome(s);
    expect(summary(record)).toEqual({ state: 'Abort', reason: 'InvariantViolated', pullRequest: undefined,
      message: 'no pull request opened: I3_replica_shortage: every Deployment runs its current revision in full: cart: 2/2 updated, 2 available, 0 unavailable' });
    expect(s.github.control.pulls(REPO)).toEqual([]);
    // Argo CD's tracking id on it, as the simulator writes it like Argo CD 3.x (the app outside Argo CD's namespace: <namespace>_<name>)
    const deployment = JSON.parse(await kubectlOk(stack, ['get', 'deployment', 'cart', '-n', s.target, '-o', 'json'])) as Json;
    expect(deployment.metadata.annotations['argocd.argoproj.io/tracking-id']).toBe(`${s.namespace}_cart:apps/Deployment:${s.target}/cart`);
  }, 180_000);

  it('a real Deployment the status leaves out still counts: its shortage is seen and the rollback goes on', async () => {
    // Given a staging app whose bad release Argo CD deployed: Deployment cart short of its new revision
    const s = await givenRollbackScenario(stack, 'tracking-omitted', { environment: 'staging', startOperator: false }, stoppers);
    await s.release('v2', true);
    await eventually('Degraded', async () => (await application(s)).status?.health?.status === 'Degraded', 60_000);
    await s.argocd.stop();
    // When someone who may patch the Application empties its status.resources
    await writeStatus(s, { resources: [] });
    expect((await application(s)).status.resources).toEqual([]);
    await s.startOperator();

    // Then I3 reads cart all the same: the rollback PR is opened and (staging, CI green) merged
    const record = await outcome(s);
    expect(summary(record)).toMatchObject({ state: 'RollbackMerged', pullRequest: expect.any(Number) });
    expect(i3(record)).toMatchObject({ result: 'PASS', detail: expect.stringMatching(/^short of the current revision: cart: /) });
  }, 180_000);
});
