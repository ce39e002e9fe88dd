// A bad release under each Deployment strategy, rolled back by the real operator
// on the simulators. The Argo CD simulator stops each rollout where the
// kube-controller-manager would: under the default RollingUpdate the old
// ReplicaSet keeps its pods, so the shortage shows only in the current
// revision's figures (updated, unavailable, ProgressDeadlineExceeded) — which is
// what I3 must read for the rollback to be merged.
import { CustomObjectsApi } from '@kubernetes/client-node';
import { describe, expect, inject, it } from 'vitest';
import { kubeConfig } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { APP_PATH, deployment, givenRollbackScenario, REPO, type DeploymentShape, type Scenario, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');

/** Pushes a release of the app with this shape, CI green on it, and waits until Argo CD has synced it. */
async function release(s: Scenario, image: string, broken: boolean, shape: DeploymentShape): Promise<string> {
  const { sha } = await s.github.control.push({ ...REPO, files: { [`${APP_PATH}/deployment.yaml`]: deployment(s.app, s.target, image, broken, shape) }, message: `Release ${image}` });
  s.ci(sha, 'success');
  const api = kubeConfig(stack).makeApiClient(CustomObjectsApi);
  await eventually(`${image} synced`, async () => {
    const app = await api.getNamespacedCustomObject({ group: 'argoproj.io', version: 'v1alpha1', namespace: s.namespace, plural: 'applications', name: s.app }) as { status?: { history?: Array<{ revision: string }> } };
    return app.status?.history?.at(-1)?.revision === sha;
  }, 20_000);
  return sha;
}

const cases: Array<[string, DeploymentShape, string]> = [
  // Default RollingUpdate: maxSurge 25 % rounds up, maxUnavailable 25 % rounds down.
  ['default RollingUpdate, 1 replica', { replicas: 1 }, '1/1 updated, 1 available, 1 unavailable, ProgressDeadlineExceeded'],
  // The old ReplicaSet at full strength: 2 available of 2 desired, and still a shortage of the current revision.
  ['default RollingUpdate, 2 replicas', { replicas: 2 }, '1/2 updated, 2 available, 1 unavailable, ProgressDeadlineExceeded'],
  ['default RollingUpdate, 4 replicas', { replicas: 4 }, '2/4 updated, 3 available, 2 unavailable, ProgressDeadlineExceeded'],
  ['RollingUpdate with maxUnavailable: 1', { replicas: 2, strategy: { rollingUpdate: { maxUnavailable: 1 } } }, '2/2 updated, 1 available, 2 unavailable, ProgressDeadlineExceeded'],
  ['Recreate', { replicas: 2, strategy: { type: 'Recreate' } }, '2/2 updated, 0 available, 2 unavailable, ProgressDeadlineExceeded'],
];

describe('a bad release under each rollout strategy', () => {
  // Concurrent: each case has its own namespace, etcd prefix, simulators and operator, and stops its own (the file-wide afterEach of the other scenario files would stop every running case's).
  it.concurrent.each(cases)('%s: a staging app is rolled back, I3 reading the current revision\'s shortage', async (_name, shape, figures) => {
    const stoppers: Stopper[] = [];
    let s: Scenario | undefined;
    try {
      // Given a staging app whose Deployment has this shape, deployed and Healthy
      s = await givenRollbackScenario(stack, `rollout-${shape.strategy?.type === 'Recreate' ? 'recreate' : shape.strategy ? 'maxunavailable' : `default${shape.replicas}`}`, { environment: 'staging' }, stoppers);
      const stable = await release(s, 'v1-shaped', false, shape);

      // When a release whose pods never become ready lands
      await release(s, 'v2', true, shape);

      // Then the operator opens a rollback PR that shows the rollout figures, merges it once CI is green, and health comes back
      const scenario = s;
      const first = await eventually('a rollback PR, or the attempt aborted', async () =>
        scenario.github.control.pulls(REPO)[0] ?? (await scenario.attempts()).find((r) => r.state === 'Abort'), 90_000);
      if (!('headSha' in first)) throw new Error(`the attempt aborted without a PR: ${first.reason}`);
      expect(first.body).toContain(`Rollout of the current revision: \`${s.app}: ${figures}\``);
      s.ci(first.headSha, 'success');
      const record = await eventually('the attempt ended', async () => (await scenario.attempts()).find((r) => r.state === 'RollbackComplete' || r.state === 'Abort'), 120_000);
      expect(record.state).toBe('RollbackComplete');
      expect(record.candidate?.revision).toBe(stable);
      // And the I3 recorded for the merge is PASS, naming the figures
      expect(record.invariants.find((i) => i.id === 'I3_replica_shortage')).toMatchObject({ result: 'PASS', detail: `short of the current revision: ${s.app}: ${figures}` });
      expect(s.github.control.pulls(REPO)[0]).toMatchObject({ merged: true });
    } catch (error) {
      // Say where the attempt stopped and why, with the operator's log.
      const attempts = s ? (await s.attempts()).map((r) => ({ state: r.state, reason: r.reason, message: r.message, I3: r.invariants.find((i) => i.id === 'I3_replica_shortage') })) : [];
      throw new Error(`${(error as Error).message}\nattempts: ${JSON.stringify(attempts)}\n${s?.logs() ?? ''}`, { cause: error });
    } finally {
      for (const stop of stoppers.reverse()) await stop();
    }
  }, 240_000);
});
