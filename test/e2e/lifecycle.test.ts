// An Application's life goes on while its rollback is under way (issue 12 §5):
// renamed, recreated under its name, its opt-in label removed, its
// RollbackPolicy deleted or changed, its repository or path changed, its
// namespace deleted. The real operator (src/main.ts) on the simulators; deletion
// mid-attempt is application-deleted.test.ts.
//
// The rule these scenarios show: an attempt is governed by what held when it
// started — its environment, settings, approvers (copied into the immutable
// spec.approvers the API server checks) and source are written on the record —
// and a change applies to the app's next attempt. A person who wants the
// attempt in flight stopped annotates it ai-operator.io/abort. Two exceptions
// are made where that rule is unsafe (the rule in each): a
// change to production, and a change of source. Whatever happens, no PR is left
// open and no active key is left behind without an attempt that owns them.
import { readFileSync } from 'node:fs';
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { describe, expect, inject, it, type TestContext } from 'vitest';
import type { AttemptRecord } from '../../src/fsm/record.ts';
import { KEYS } from '../../src/store/attempt-store.ts';
import { EtcdKV } from '../../src/store/etcd.ts';
import { grantPatch, installApprovalPolicy } from './support/approvals.ts';
import { kubeConfig, kubectl, kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { APP_PATH, deployment, givenRollbackScenario, REPO, type OperatorHandle, type Scenario, type ScenarioOptions, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const GROUP = { group: 'argoproj.io', version: 'v1alpha1', plural: 'applications' } as const;
const OTHER_PATH = 'apps/cart-next';

async function given(context: TestContext, name: string, options: ScenarioOptions): Promise<Scenario> {
  const stoppers: Stopper[] = [];
  context.onTestFinished(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });
  return givenRollbackScenario(stack, name, { ...options, startOperator: false, env: { CI_WAIT_TIMEOUT: '600', MERGE_APPROVAL_TIMEOUT: '600', ...options.env } }, stoppers);
}

/** The Application as the scenario created it, under another name or the same one. */
async function createApplication(s: Scenario, name: string, environment: 'staging' | 'production' = 'staging'): Promise<void> {
  await kubeConfig(stack).makeApiClient(CustomObjectsApi).createNamespacedCustomObject({ ...GROUP, namespace: s.namespace, body: {
    apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name, namespace: s.namespace, labels: { 'ai-operator.enabled': 'true', environment } },
    spec: { project: 'default', source: { repoURL: 'https://github.com/acme/gitops.git', path: APP_PATH, targetRevision: 'main' }, destination: { namespace: s.target } },
  } });
}

async function patchApplication(s: Scenario, body: object): Promise<void> {
  await kubeConfig(stack).makeApiClient(CustomObjectsApi).patchNamespacedCustomObject({ ...GROUP, namespace: s.namespace, name: s.app, body },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
}

/** The scenario's app degraded by a bad release, its attempt waiting for CI on the rollback PR. */
async function attemptWaitingForCi(s: Scenario, extraFiles: Record<string, string> = {}) {
  await s.release('v2', true, extraFiles);
  const pr = await s.firstPull();
  const record = await s.inState('PRCreated');
  return { pr, record };
}

const pulls = (s: Scenario) => s.github.control.pulls(REPO);

/** The app's active key (undefined when released). */
async function activeKey(s: Scenario, app = s.app): Promise<string | undefined> {
  const kv = new EtcdKV([stack.etcd], { prefix: `/e2e/${s.namespace}` });
  try {
    return (await kv.get(KEYS.active(`${s.namespace}_${app}`)))?.value;
  } finally {
    await kv.close();
  }
}

async function attemptOf(s: Scenario, correlationId: string): Promise<AttemptRecord> {
  return (await s.attempts()).find((r) => r.correlationId === correlationId)!;
}

async function ended(s: Scenario, correlationId: string, timeoutMs = 45_000): Promise<AttemptRecord> {
  return eventually(`attempt ${correlationId} ended`, async () => {
    const r = await attemptOf(s, correlationId);
    return r && ['Idle', 'RollbackComplete', 'Abort'].includes(r.state) ? r : undefined;
  }, timeoutMs, 250);
}

/** Waits until the PR is merged or the attempt has ended, whichever comes first; the attempt then. */
async function mergedOrEnded(s: Scenario, correlationId: string, prNumber: number): Promise<AttemptRecord> {
  return eventually('merged or ended', async () => {
    const r = await attemptOf(s, correlationId);
    const merged = pulls(s).find((p) => p.number === prNumber)?.merged === true;
    return merged || ['Idle', 'RollbackComplete', 'Abort'].includes(r.state) ? r : undefined;
  }, 45_000, 250);
}

/** Nothing orphaned: every open rollback PR belongs to an attempt in progress or in Abort, every active key to an attempt that holds it. */
async function nothingOrphaned(s: Scenario, apps: string[]): Promise<void> {
  const attempts = await s.attempts();
  for (const pr of pulls(s).filter((p) => p.state === 'open')) {
    const owner = attempts.find((r) => r.pullRequest?.number === pr.number);
    expect(owner && !['Idle', 'RollbackComplete'].includes(owner.state), `open PR #${pr.number} owned by ${owner?.state ?? 'no attempt'}`).toBe(true);
  }
  for (const app of apps) {
    const id = await activeKey(s, app);
    if (id === undefined) continue;
    const owner = attempts.find((r) => r.correlationId === id);
    expect(owner && !['Idle', 'RollbackComplete'].includes(owner.state), `active key of ${app} -> ${id} (${owner?.state ?? 'no attempt'})`).toBe(true);
  }
}

function noCrash(operator: OperatorHandle): void {
  expect(operator.child.exitCode, 'the operator exited').toBeNull();
  expect(readFileSync(operator.log, 'utf8')).not.toMatch(/TypeError|Cannot read properties|Reconcile failed|Unexpected error/);
}

describe.concurrent('an Application renamed or recreated mid-attempt', () => {
  // Kubernetes cannot rename: a rename is a delete and a create. The old name's attempt ends as a deletion
  // does (its PR closed, its key released); the new name is a new app, degraded, so it gets its own attempt.
  it('renamed (PR open): the old attempt ends ApplicationDeleted with its PR closed; the new name rolls back on its own', async (context) => {
    const s = await given(context, 'lifecycle-renamed', { environment: 'staging' });
    const operator = await s.startOperator();
    const { pr, record } = await attemptWaitingForCi(s);

    await kubectlOk(stack, ['delete', 'application', s.app, '-n', s.namespace]);
    await createApplication(s, 'cart-v2');

    const old = await ended(s, record.correlationId);
    expect(old).toMatchObject({ state: 'Abort', reason: 'ApplicationDeleted' });
    expect(await activeKey(s)).toBeUndefined();
    const renamed = await eventually('an attempt for cart-v2 with its PR', async () => (await s.attempts()).find((r) => r.app.name === 'cart-v2' && r.pullRequest), 60_000, 250);
    // The old PR was closed before the new one was opened: never two open for one path.
    expect(pulls(s).find((p) => p.number === pr.number)).toMatchObject({ state: 'closed', merged: false });
    s.ci(pulls(s).find((p) => p.number === renamed.pullRequest!.number)!.headSha, 'success');
    expect(await ended(s, renamed.correlationId, 60_000)).toMatchObject({ state: 'RollbackComplete' });
    expect(pulls(s).map((p) => [p.number, p.state, p.merged])).toEqual([[pr.number, 'closed', false], [renamed.pullRequest!.number, 'closed', true]]);
    await nothingOrphaned(s, ['cart', 'cart-v2']);
    noCrash(operator);
  }, 180_000);

  // The operator saw the name free: the first attempt ended as a deletion, the recreated app starts afresh.
  it('recreated under the same name while the operator watches: ApplicationDeleted, then a fresh attempt completes', async (context) => {
    const s = await given(context, 'lifecycle-recreated', { environment: 'staging' });
    const operator = await s.startOperator();
    const { pr, record } = await attemptWaitingForCi(s);

    await kubectlOk(stack, ['delete', 'application', s.app, '-n', s.namespace]);
    expect(await ended(s, record.correlationId)).toMatchObject({ state: 'Abort', reason: 'ApplicationDeleted' });
    await createApplication(s, s.app);

    const again = await eventually('a second attempt with its PR', async () => (await s.attempts()).find((r) => r.correlationId !== record.correlationId && r.pullRequest), 60_000, 250);
    s.ci(pulls(s).find((p) => p.number === again.pullRequest!.number)!.headSha, 'success');
    expect(await ended(s, again.correlationId, 60_000)).toMatchObject({ state: 'RollbackComplete' });
    expect(pulls(s).map((p) => [p.number, p.state, p.merged])).toEqual([[pr.number, 'closed', false], [again.pullRequest!.number, 'closed', true]]);
    await nothingOrphaned(s, [s.app]);
    noCrash(operator);
  }, 180_000);

  // Recreated while no operator ran: nothing could see a gap. The operator knows an Application by
  // namespace and name, as Argo CD's API, the etcd keys and the runbook do, and the new object has the
  // same source: the attempt goes on with its PR. (Seen or not, no PR or key is orphaned; see the report.)
  it('recreated under the same name while the operator was down: the attempt goes on with its PR and completes', async (context) => {
    const s = await given(context, 'lifecycle-recreated-down', { environment: 'staging' });
    const first = await s.startOperator();
    const { pr, record } = await attemptWaitingForCi(s);
    first.child.kill('SIGKILL');
    await new Promise((resolve) => first.child.once('exit', resolve));

    await kubectlOk(stack, ['delete', 'application', s.app, '-n', s.namespace]);
    await createApplication(s, s.app);
    // The simulator syncs the new object (first sight: the broken head) before the operator is back.
    await eventually('recreated app Degraded', async () => JSON.parse(await kubectlOk(stack, ['get', 'application', s.app, '-n', s.namespace, '-o', 'json'])).status?.health?.status === 'Degraded');
    const second = await s.startOperator();
    s.ci(pr.headSha, 'success');

    expect(await ended(s, record.correlationId, 60_000)).toMatchObject({ state: 'RollbackComplete' });
    expect((await s.attempts())).toHaveLength(1);
    expect(pulls(s).map((p) => [p.number, p.merged])).toEqual([[pr.number, true]]);
    await nothingOrphaned(s, [s.app]);
    noCrash(second);
  }, 180_000);
});

describe.concurrent('an Application that stops opting in mid-attempt', () => {
  // The label selects apps for new attempts; the attempt in flight finishes (an SRE who wants it stopped
  // annotates abort). After that the app is no longer watched: a new degradation starts nothing.
  it('label removed (PR open): the attempt completes; the next degradation starts no attempt', async (context) => {
    const s = await given(context, 'lifecycle-unlabelled', { environment: 'staging' });
    const operator = await s.startOperator();
    const { pr, record } = await attemptWaitingForCi(s);

    await patchApplication(s, { metadata: { labels: { 'ai-operator.enabled': null } } });
    s.ci(pr.headSha, 'success');
    expect(await ended(s, record.correlationId, 60_000)).toMatchObject({ state: 'RollbackComplete' });

    await s.release('v3', true);
    await eventually('v3 Degraded', async () => JSON.parse(await kubectlOk(stack, ['get', 'application', s.app, '-n', s.namespace, '-o', 'json'])).status?.health?.status === 'Degraded');
    await new Promise((r) => setTimeout(r, 6000)); // three checks' worth and more
    expect(await s.attempts()).toHaveLength(1);
    expect(pulls(s)).toHaveLength(1);
    await nothingOrphaned(s, [s.app]);
    noCrash(operator);
  }, 180_000);
});

describe.concurrent('its RollbackPolicy deleted or changed mid-attempt', () => {
  /** A staging-labelled app that a policy makes production with alice as approver, waiting for her. */
  async function productionWaiting(context: TestContext, name: string) {
    const s = await given(context, name, { environment: 'staging' });
    await kubectlOk(stack, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name: 'prod', namespace: s.namespace },
      spec: { environment: 'production', detection: { intervalSeconds: 1, persistenceChecks: 3 }, healthRestorationSeconds: 3, merge: { approvers: { users: ['alice'] } } } }));
    const { bindingName } = await installApprovalPolicy(stack, s.namespace);
    for (const user of ['alice', 'bob']) await grantPatch(stack, s.namespace, user);
    const operator = await s.startOperator({ APPROVAL_POLICY_BINDING_NAME: bindingName });
    const { pr, record } = await attemptWaitingForCi(s);
    expect(record.environment).toBe('production');
    s.ci(pr.headSha, 'success');
    const waiting = await s.inState('AwaitingMergeApproval');
    const objectName = (await eventually('RollbackAttempt', async () => JSON.parse(await kubectlOk(stack, ['get', 'rollbackattempts', '-n', s.namespace, '-o', 'json'])).items[0]?.metadata?.name as string | undefined));
    const approve = (user: string) => kubectl(stack, ['annotate', '--overwrite', `--as=${user}`, 'rollbackattempt', objectName, '-n', s.namespace, `ai-operator.io/approve=${user}`]);
    return { s, operator, pr, record: waiting, approve };
  }

  // Deleting the policy does not make the attempt staging (its label says so): it stays production, waits for
  // an approver, and merges only when alice approves.
  it('policy deleted (production, awaiting approval): still production, merged only on alice\'s approval', async (context) => {
    const { s, operator, pr, record, approve } = await productionWaiting(context, 'lifecycle-policy-deleted');
    await kubectlOk(stack, ['delete', 'rollbackpolicy', 'prod', '-n', s.namespace]);
    await new Promise((r) => setTimeout(r, 5000));
    expect(await attemptOf(s, record.correlationId)).toMatchObject({ state: 'AwaitingMergeApproval', environment: 'production' });
    expect(pulls(s)[0]!.merged).toBe(false);

    expect((await approve('alice')).code).toBe(0);
    expect(await ended(s, record.correlationId, 60_000)).toMatchObject({ state: 'RollbackComplete', approval: { approvedBy: 'alice' } });
    expect(pulls(s).map((p) => [p.number, p.merged])).toEqual([[pr.number, true]]);
    await nothingOrphaned(s, [s.app]);
    noCrash(operator);
  }, 180_000);

  // Approvers are the attempt's spec.approvers, copied when it was created and immutable: the API server
  // refuses the newly named bob and admits alice, whom the policy no longer names. Revoking someone mid-attempt
  // takes their RBAC, or an abort of the attempt (see the report).
  it('approvers changed (alice replaced by bob): the attempt keeps its approvers — bob refused, alice admitted and merged', async (context) => {
    const { s, operator, pr, record, approve } = await productionWaiting(context, 'lifecycle-approvers');
    await kubectlOk(stack, ['patch', 'rollbackpolicy', 'prod', '-n', s.namespace, '--type=merge', '-p', JSON.stringify({ spec: { merge: { approvers: { users: ['bob'] } } } })]);
    const bob = await approve('bob');
    expect(bob.code).not.toBe(0);
    expect(bob.stderr).toContain('bob is not an approver of this RollbackAttempt (spec.approvers)');
    expect((await approve('alice')).code).toBe(0);
    expect(await ended(s, record.correlationId, 60_000)).toMatchObject({ state: 'RollbackComplete', approval: { approvedBy: 'alice' } });
    expect(pulls(s).map((p) => [p.number, p.merged])).toEqual([[pr.number, true]]);
    await nothingOrphaned(s, [s.app]);
    noCrash(operator);
  }, 180_000);

  // A change to production ends the staging attempt in Abort (EnvironmentChanged) before any merge, its PR
  // closed and its key released, so a fresh attempt starts at once under production rules and approvers (SPEC §14.1).
  it('policy makes the staging app production (PR open): not merged by the operator', async (context) => {
    const s = await given(context, 'lifecycle-to-production', { environment: 'staging' });
    const operator = await s.startOperator();
    const { pr, record } = await attemptWaitingForCi(s);
    await kubectlOk(stack, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name: 'prod', namespace: s.namespace },
      spec: { environment: 'production', merge: { approvers: { users: ['alice'] } } } }));
    await eventually('policy counts the app', async () => JSON.parse(await kubectlOk(stack, ['get', 'rollbackpolicy', 'prod', '-n', s.namespace, '-o', 'json'])).status?.matchedApplications === 1);
    s.ci(pr.headSha, 'success');

    const first = await mergedOrEnded(s, record.correlationId, pr.number);
    expect(pulls(s).find((p) => p.number === pr.number)?.merged, 'merged by the operator').toBe(false);
    expect(first).toMatchObject({ state: 'Abort' });
    await nothingOrphaned(s, [s.app]);
    noCrash(operator);
  }, 180_000);
});

describe.concurrent('its source changed mid-attempt', () => {
  // The attempt was built for the old source, so it ends — its PR closed unmerged, its key released; the
  // healthy app starts none. The same whether the operator sees the new source before Argo CD has synced it
  // (still Degraded) or after (Healthy again): the source change decides, not the race.
  it('path changed to a healthy one (PR open): Abort SourceChanged, PR closed unmerged, key released', async (context) => {
    const s = await given(context, 'lifecycle-path-healthy', { environment: 'staging' });
    const operator = await s.startOperator();
    const { pr, record } = await attemptWaitingForCi(s, { [`${OTHER_PATH}/deployment.yaml`]: deployment('cart', s.target, 'v3', false) });
    await patchApplication(s, { spec: { source: { path: OTHER_PATH } } });

    expect(await ended(s, record.correlationId)).toMatchObject({ state: 'Abort', reason: 'SourceChanged' });
    expect(pulls(s).map((p) => [p.number, p.state, p.merged])).toEqual([[pr.number, 'closed', false]]);
    expect(await activeKey(s)).toBeUndefined();
    await nothingOrphaned(s, [s.app]);
    noCrash(operator);
  }, 180_000);

  // The attempt's PR restores apps/cart, but the app now deploys from another path (or repository) that is
  // still broken: merging it could not help. The attempt ends as a deletion does — Abort (SourceChanged, naming
  // both), PR closed with a comment, active key released — so the app starts a fresh attempt on its new source.
  it('path changed to another broken one (PR open): not merged; Abort, PR closed, key released', async (context) => {
    const s = await given(context, 'lifecycle-path-broken', { environment: 'staging' });
    const operator = await s.startOperator();
    const { pr, record } = await attemptWaitingForCi(s, { [`${OTHER_PATH}/deployment.yaml`]: deployment('cart', s.target, 'v3', true) });
    await patchApplication(s, { spec: { source: { path: OTHER_PATH } } });
    s.ci(pr.headSha, 'success');

    const first = await mergedOrEnded(s, record.correlationId, pr.number);
    expect(pulls(s).find((p) => p.number === pr.number)?.merged, 'merged a PR on the old path').toBe(false);
    expect(first).toMatchObject({ state: 'Abort' });
    expect(pulls(s).find((p) => p.number === pr.number)?.state).toBe('closed');
    expect(await activeKey(s)).not.toBe(record.correlationId);
    noCrash(operator);
  }, 180_000);

  it('repo URL changed (PR open): not merged; Abort, PR closed, key released', async (context) => {
    const s = await given(context, 'lifecycle-repo', { environment: 'staging' });
    const operator = await s.startOperator();
    const { pr, record } = await attemptWaitingForCi(s);
    // Another repository (not one the simulators serve: the app is left Degraded as it was).
    await patchApplication(s, { spec: { source: { repoURL: 'https://github.com/acme/gitops-next.git' } } });
    s.ci(pr.headSha, 'success');

    const first = await mergedOrEnded(s, record.correlationId, pr.number);
    expect(pulls(s).find((p) => p.number === pr.number)?.merged, 'merged a PR on the old repository').toBe(false);
    expect(first).toMatchObject({ state: 'Abort' });
    expect(pulls(s).find((p) => p.number === pr.number)?.state).toBe('closed');
    noCrash(operator);
  }, 180_000);
});

describe.concurrent('its namespace deleted mid-attempt', () => {
  // No controller-manager runs here, so the test does the namespace controller's work: the namespace is
  // marked for deletion (no new object may be created in it), its objects are deleted, then it is finalized.
  // The Application is gone: the attempt ends as a deletion does; its RollbackAttempt went with the namespace.
  it('namespace deleted (PR open): Abort ApplicationDeleted in etcd, PR closed, key released, the operator carries on', async (context) => {
    const s = await given(context, 'lifecycle-namespace', { environment: 'staging' });
    const operator = await s.startOperator();
    const { pr, record } = await attemptWaitingForCi(s);

    await kubectlOk(stack, ['delete', 'namespace', s.namespace, '--wait=false']);
    for (const kind of ['applications.argoproj.io', 'rollbackattempts.ai-operator.io', 'rollbackpolicies.ai-operator.io']) {
      await kubectlOk(stack, ['delete', kind, '--all', '-n', s.namespace, '--wait=false']);
    }
    const ns = JSON.parse(await kubectlOk(stack, ['get', 'namespace', s.namespace, '-o', 'json'])) as { spec: { finalizers?: string[] } };
    await kubectlOk(stack, ['replace', '--raw', `/api/v1/namespaces/${s.namespace}/finalize`, '-f', '-'], JSON.stringify({ ...ns, spec: { finalizers: [] } }));
    await eventually('namespace gone', async () => (await kubectl(stack, ['get', 'namespace', s.namespace])).code !== 0);

    expect(await ended(s, record.correlationId)).toMatchObject({ state: 'Abort', reason: 'ApplicationDeleted' });
    const closed = await eventually('PR closed', async () => pulls(s).find((p) => p.number === pr.number && p.state === 'closed'));
    expect(closed.merged).toBe(false);
    expect(await activeKey(s)).toBeUndefined();
    // Still alive and answering after the namespace it watched went away.
    await new Promise((r) => setTimeout(r, 3000));
    expect((await fetch(`http://127.0.0.1:${operator.httpPort}/healthz`)).status).toBe(200);
    noCrash(operator);
  }, 180_000);
});
