// An Application deleted while its rollback is under way (issue 8 §4), with the
// real operator on the simulators: the attempt ends with a reason that says so,
// its PR is closed, the app's name is free again, and nothing on the way throws.
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { KEYS } from '../../src/store/attempt-store.ts';
import { EtcdKV } from '../../src/store/etcd.ts';
import { kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { givenRollbackScenario, REPO, type Scenario, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

async function thenTheAttemptEndsForGood(s: Scenario, log: string, prNumber: number) {
  const aborted = await s.inState('Abort', 30_000);
  expect(aborted.reason).toBe('ApplicationDeleted');
  expect(aborted.message).toBe(`Application ${s.namespace}/${s.app} was deleted`);
  // Its PR is closed with a comment that says why
  const pull = await eventually('PR closed', async () => (s.github.control.pulls(REPO).find((p) => p.number === prNumber && p.state === 'closed')));
  expect(pull.merged).toBe(false);
  expect(s.github.control.comments({ ...REPO, number: prNumber }).map((c) => c.body).join('\n')).toContain('ApplicationDeleted');
  // The app's active key is released, so an Application created again under the name starts afresh
  const kv = new EtcdKV([stack.etcd], { prefix: `/e2e/${s.namespace}` });
  try {
    expect(await kv.get(KEYS.active(`${s.namespace}_${s.app}`))).toBeUndefined();
  } finally {
    await kv.close();
  }
  // The RollbackAttempt says so too
  await eventually('RollbackAttempt in Abort', async () => JSON.parse(await kubectlOk(stack, ['get', 'rollbackattempts', '-n', s.namespace, '-o', 'json'])).items[0]?.status?.reason === 'ApplicationDeleted');
  // And nothing on the way threw
  expect(readFileSync(log, 'utf8')).not.toMatch(/TypeError|Cannot read properties|Reconcile failed/);
}

describe('an Application deleted mid-attempt', () => {
  it('staging, PR open: Abort ApplicationDeleted at once (not CITimeout), PR closed, app released', async () => {
    const s = await givenRollbackScenario(stack, 'deleted-staging', { environment: 'staging', startOperator: false, env: { CI_WAIT_TIMEOUT: '600' } }, stoppers);
    const operator = await s.startOperator();
    await s.release('v2', true);
    const pr = await s.firstPull();
    await s.inState('PRCreated');

    await kubectlOk(stack, ['delete', 'application', s.app, '-n', s.namespace]);
    await thenTheAttemptEndsForGood(s, operator.log, pr.number);
  }, 120_000);

  it('production, waiting for an approval: Abort ApplicationDeleted, well before the approval timeout', async () => {
    const s = await givenRollbackScenario(stack, 'deleted-production', { environment: 'production', startOperator: false, env: { MERGE_APPROVAL_TIMEOUT: '3600' } }, stoppers);
    await kubectlOk(stack, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name: 'prod', namespace: s.namespace },
      spec: { environment: 'production', detection: { intervalSeconds: 1, persistenceChecks: 3 }, merge: { approvers: { users: ['alice@example.com'] } } } }));
    const operator = await s.startOperator();
    await s.release('v2', true);
    const pr = await s.firstPull();
    s.ci(pr.headSha, 'success');
    await s.inState('AwaitingMergeApproval');

    await kubectlOk(stack, ['delete', 'application', s.app, '-n', s.namespace]);
    await thenTheAttemptEndsForGood(s, operator.log, pr.number);
  }, 120_000);
});
