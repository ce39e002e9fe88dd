// Issue 17 §6: every attempt has its RollbackAttempt, whatever its Application's name.
// ApplicationSets make names longer than the 63 characters a label value may have;
// the attempt's object (through which a human approves or aborts) must still exist,
// findable by its label, with the full name in spec. The real operator process, the
// real API server and its approval admission policy, the Argo CD and GitHub simulators.
import { afterEach, describe, expect, inject, it } from 'vitest';
import { attemptName, labelValue } from '../../src/fsm/record.ts';
import { grantPatch, installApprovalPolicy } from './support/approvals.ts';
import { kubectl, kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { givenRollbackScenario, REPO, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

// 70 characters, as an ApplicationSet's `{{cluster}}-{{path.basename}}-…` template makes them.
const LONG = 'checkout-service-eu-west-1-production-cluster-blue-generated-by-appset';

describe('an Application whose name is longer than a label value', () => {
  it('gets its RollbackAttempt, found by its label, approved by a human, and is rolled back', async () => {
    expect(LONG.length).toBeGreaterThan(63);
    // Given a production app of that name (its Deployment is `web`), under a policy naming alice as approver
    const s = await givenRollbackScenario(stack, 'long-names', { environment: 'production', app: LONG, workload: 'web', startOperator: false }, stoppers);
    const { bindingName } = await installApprovalPolicy(stack, s.namespace);
    await grantPatch(stack, s.namespace, 'alice@example.com');
    await kubectlOk(stack, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name: 'prod', namespace: s.namespace },
      spec: { environment: 'production', detection: { intervalSeconds: 1, persistenceChecks: 3 }, healthRestorationSeconds: 3, merge: { approvers: { users: ['alice@example.com'] } } } }));
    await s.startOperator({ APPROVAL_POLICY_BINDING_NAME: bindingName });

    // When a bad release degrades it and the rollback PR's CI is green
    await s.release('v2', true);
    const pr = await s.firstPull();
    s.ci(pr.headSha, 'success');
    const waiting = await s.inState('AwaitingMergeApproval');

    // Then its RollbackAttempt exists, with the full name in spec and a label value the API server accepts
    const name = attemptName(waiting.app, waiting.correlationId);
    const object = await eventually('the RollbackAttempt', async () => {
      const got = await kubectl(stack, ['get', 'rollbackattempt', name, '-n', s.namespace, '-o', 'json']);
      return got.code === 0 ? JSON.parse(got.stdout) as Record<string, any> : undefined;
    }, 30_000).catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    expect(object.spec.application).toEqual({ name: LONG, namespace: s.namespace });
    expect(object.metadata.labels['ai-operator.io/application']).toBe(labelValue(LONG));
    expect(object.metadata.labels['ai-operator.io/application'].length).toBeLessThanOrEqual(63);
    // And it is found by that label, as the runbooks select attempts
    const listed = JSON.parse(await kubectlOk(stack, ['get', 'rollbackattempts', '-n', s.namespace, '-l', `ai-operator.io/application=${labelValue(LONG)}`, '-o', 'json'])) as { items: Array<{ metadata: { name: string } }> };
    expect(listed.items.map((i) => i.metadata.name)).toEqual([name]);
    expect(pr.head).toBe(`ai-operator/rollback/${name}`);

    // When alice approves on it
    const approved = await kubectl(stack, ['annotate', '--overwrite', '--as=alice@example.com', 'rollbackattempt', name, '-n', s.namespace, 'ai-operator.io/approve=alice@example.com']);
    expect({ code: approved.code, stderr: approved.stderr }).toEqual({ code: 0, stderr: '' });
    // Then the rollback is merged and completes
    const done = await s.inState('RollbackComplete', 90_000);
    expect(done).toMatchObject({ approval: { approvedBy: 'alice@example.com' }, candidate: { revision: s.good } });
    expect(s.github.control.pulls(REPO)[0]).toMatchObject({ merged: true });
  }, 240_000);
});
