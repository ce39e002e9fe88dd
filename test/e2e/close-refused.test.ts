// A close GitHub refuses for good (issue 19 §1), with the real operator on the
// simulators: the repository is archived while the rollback PR is open, then
// each of the three paths that close a PR before they move on is taken — the app
// Healthy again, a human reset of the aborted attempt (POST /reset), the
// Application moved to another repository (SourceChanged). The close is tried
// once, not every round of every reconcile; the attempt takes the transition it
// was waiting for with the failure recorded (status, a Warning Event), the PR is
// left open for a human, and the audit trail has one record of the refusal, not
// one per try.
import { join } from 'node:path';
import { CustomObjectsApi, EventsV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { readAuditDir } from '../../src/audit/jsonl-sink.ts';
import { attemptName } from '../../src/fsm/record.ts';
import type { ResetBody } from '../../src/server/reset.ts';
import { KEYS } from '../../src/store/attempt-store.ts';
import { EtcdKV } from '../../src/store/etcd.ts';
import { kubeConfig, kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { APP_PATH, deployment, givenRollbackScenario, REPO, type Scenario, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The ERROR audit records of a failed close of this attempt: one per distinct failure is the rule. */
async function closeRefusals(s: Scenario, correlationId: string) {
  return (await readAuditDir(join(s.dir, 'audit')))
    .filter((a) => a.correlationId === correlationId && a.level === 'ERROR' && /^closePullRequest failed: /.test(a.message));
}

/** The PullRequestNotClosed Warning Event on the Application (the operator's Event recorder batches its writes). */
async function notClosedEvent(s: Scenario, prNumber: number) {
  const events = kubeConfig(stack).makeApiClient(EventsV1Api);
  return eventually('the PullRequestNotClosed Event', async () => (await events.listNamespacedEvent({ namespace: s.namespace })).items
    .find((e) => e.reason === 'PullRequestNotClosed' && e.regarding?.kind === 'Application' && e.note?.includes(`could not close #${prNumber}`)), 15_000, 250);
}

async function attemptStatus(s: Scenario, name: string): Promise<{ phase?: string; reason?: string; message?: string } | undefined> {
  return JSON.parse(await kubectlOk(stack, ['get', 'rollbackattempts', '-n', s.namespace, '-o', 'json'])).items.find((o: { metadata: { name: string } }) => o.metadata.name === name)?.status;
}

async function postReset(port: number, correlationId: string, token: string): Promise<{ status: number; body: ResetBody }> {
  const res = await fetch(`http://127.0.0.1:${port}/reset/${correlationId}`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
  const body = await res.json() as ResetBody;
  console.info(`POST /reset/${correlationId} -> ${res.status} ${body.result}: ${body.message}`);
  return { status: res.status, body };
}

/** How the attempt stood when a wait ran out, for the failure message: state and refusals audited so far. */
async function stuck(s: Scenario, correlationId: string, started: number, error: Error): Promise<never> {
  const record = (await s.attempts()).find((r) => r.correlationId === correlationId);
  const message = `after ${((Date.now() - started) / 1000).toFixed(0)} s: state ${record?.state} (${record?.reason}), ${(await closeRefusals(s, correlationId)).length} ERROR audit records of the refused close`;
  console.info(message);
  throw new Error(`${error.message}; ${message}`);
}

describe('a close refused for good', () => {
  it('staging, PR open, repository archived, then Healthy: the attempt goes Idle with the refusal recorded once, the PR left open', async () => {
    // Given a staging app whose rollback PR is open, CI pending
    const s = await givenRollbackScenario(stack, 'close-refused', { environment: 'staging', env: { CI_WAIT_TIMEOUT: '600' } }, stoppers);
    await s.release('v2', true);
    const pr = await s.firstPull();
    const waiting = await s.inState('PRCreated');
    const commentsBefore = s.github.control.comments({ ...REPO, number: pr.number }).length;

    // When the repository is archived (every write answers 403) and the app is Healthy again
    s.github.control.archiveRepo(REPO);
    await s.release('v3', false);
    const started = Date.now();
    const refusals = async () => (await readAuditDir(join(s.dir, 'audit')))
      .filter((a) => a.correlationId === waiting.correlationId && a.level === 'ERROR' && /^closePullRequest failed: /.test(a.message));
    await eventually('the close refused', async () => (await refusals()).length > 0, 60_000, 250);

    // Then the attempt leaves PRCreated for Idle (health restored), saying the close was refused and what to do
    const left = await eventually('the attempt out of PRCreated', async () => (await s.attempts()).find((r) => r.correlationId === waiting.correlationId && r.state !== 'PRCreated'), 30_000, 250)
      .catch(async (error: Error) => {
        const stuck = (await s.attempts()).find((r) => r.correlationId === waiting.correlationId);
        console.info(`after ${((Date.now() - started) / 1000).toFixed(0)} s: state ${stuck?.state}, ${(await refusals()).length} ERROR audit records of the refused close`);
        throw error;
      });
    expect(left.state).toBe('Idle');
    expect(left.reason).toBe('HealthRestoredBeforeMerge');
    expect(left.message).toContain(`could not close #${pr.number}`);
    expect(left.message).toContain('Repository was archived so is read-only');
    expect(left.message).toContain('close it by hand');
    expect(left.pullRequest).toMatchObject({ number: pr.number, state: 'open' });
    // The PR is left open; an archived repository takes no comment, so none was tried after the refusal
    expect(s.github.control.pulls(REPO).find((p) => p.number === pr.number)?.state).toBe('open');
    expect(s.github.control.comments({ ...REPO, number: pr.number }).length).toBe(commentsBefore);
    // A Warning Event on the Application says it
    const events = kubeConfig(stack).makeApiClient(EventsV1Api);
    const refused = await eventually('the PullRequestNotClosed Event', async () => (await events.listNamespacedEvent({ namespace: s.namespace })).items
      .find((e) => e.reason === 'PullRequestNotClosed' && e.regarding?.kind === 'Application'), 15_000, 250);
    expect(refused.type).toBe('Warning');
    expect(refused.note).toContain(`could not close #${pr.number}`);
    // The RollbackAttempt's status carries the reason and the message
    await eventually('RollbackAttempt status', async () => {
      const status = JSON.parse(await kubectlOk(stack, ['get', 'rollbackattempts', '-n', s.namespace, '-o', 'json'])).items[0]?.status;
      return status?.reason === 'HealthRestoredBeforeMerge' && String(status.message).includes(`could not close #${pr.number}`);
    }, 15_000, 250);

    // And, 10 s later, the refusal is in the audit trail once: the close was not tried again
    await sleep(10_000);
    const records = await refusals();
    console.info(`after ${((Date.now() - started) / 1000).toFixed(0)} s: state ${left.state}, ${records.length} ERROR audit record(s) of the refused close`);
    expect(records).toHaveLength(1);
    expect(records[0]!.metadata).toMatchObject({ errorCode: 'PERMISSION_DENIED', call: 'closePullRequest', prNumber: pr.number });
    expect((await s.attempts()).find((r) => r.correlationId === waiting.correlationId)?.state).toBe('Idle');
  }, 150_000);

  it('aborted with its PR open, repository archived, then reset through POST /reset: Idle with the refusal recorded once, the PR left open', async () => {
    // Given a staging app whose rollback attempt aborted on a CI failure, its PR left open for a human,
    // and a ServiceAccount that may reset RollbackAttempts in the namespace
    const s = await givenRollbackScenario(stack, 'close-refused-reset', { environment: 'staging', startOperator: false }, stoppers);
    const operator = await s.startOperator();
    const ns = s.namespace;
    await kubectlOk(stack, ['create', 'serviceaccount', 'resetter', '-n', ns]);
    await kubectlOk(stack, ['create', 'role', 'rollbackattempt-resetter', '-n', ns, '--verb=update', '--resource=rollbackattempts.ai-operator.io']);
    await kubectlOk(stack, ['create', 'rolebinding', 'rollbackattempt-resetter', '-n', ns, '--role=rollbackattempt-resetter', `--serviceaccount=${ns}:resetter`]);
    const token = (await kubectlOk(stack, ['create', 'token', 'resetter', '-n', ns])).trim();
    await s.release('v2', true);
    const pr = await s.firstPull();
    const open = await s.inState('PRCreated');
    const cid = open.correlationId;
    s.ci(pr.headSha, 'failure');
    const aborted = await s.inState('Abort');
    expect(aborted.reason).toBe('CIFailure');
    expect(s.github.control.pulls(REPO).find((p) => p.number === pr.number)?.state).toBe('open');

    // When the repository is archived (every write answers 403), a fix forward lands (so no new attempt
    // follows the reset), and a human resets the attempt
    s.github.control.archiveRepo(REPO);
    await s.release('v3', false);
    const commentsBefore = s.github.control.comments({ ...REPO, number: pr.number }).length;
    await eventually('the operator serving HTTP', async () => (await fetch(`http://127.0.0.1:${operator.httpPort}/healthz`)).ok);
    const started = Date.now();
    const answer = await postReset(operator.httpPort, cid, token);

    // Then the reset is done, not "under way" for ever: Abort -> Idle, the refusal in the message
    const idle = await eventually('the attempt out of Abort', async () => (await s.attempts()).find((r) => r.correlationId === cid && r.state !== 'Abort'), 30_000, 250)
      .catch((error: Error) => stuck(s, cid, started, error));
    expect(answer).toMatchObject({ status: 200, body: { result: 'reset', state: 'Idle' } });
    expect(idle.state).toBe('Idle');
    expect(idle.reason).toBe('Reset');
    expect(idle.message).toContain(`reset by a human; could not close #${pr.number}`);
    expect(idle.message).toContain('Repository was archived so is read-only');
    expect(idle.message).toContain('close it by hand');
    expect(idle.pullRequest).toMatchObject({ number: pr.number, state: 'open' });
    // The PR is left open, and no comment was tried on the archived repository
    expect(s.github.control.pulls(REPO).find((p) => p.number === pr.number)?.state).toBe('open');
    expect(s.github.control.comments({ ...REPO, number: pr.number }).length).toBe(commentsBefore);
    // A Warning Event on the Application, and the RollbackAttempt's status, say it
    expect((await notClosedEvent(s, pr.number)).type).toBe('Warning');
    const name = attemptName(idle.app, cid);
    await eventually('RollbackAttempt status', async () => {
      const status = await attemptStatus(s, name);
      return status?.phase === 'Idle' && status.reason === 'Reset' && String(status.message).includes(`could not close #${pr.number}`);
    }, 15_000, 250);

    // And, 10 s later: a second reset is refused as the attempt has ended, and the refusal is audited once
    await sleep(10_000);
    expect(await postReset(operator.httpPort, cid, token)).toMatchObject({ status: 409, body: { result: 'not-aborted', state: 'Idle' } });
    const records = await closeRefusals(s, cid);
    console.info(`after ${((Date.now() - started) / 1000).toFixed(0)} s: state ${idle.state}, ${records.length} ERROR audit record(s) of the refused close`);
    expect(records).toHaveLength(1);
    expect(records[0]!.metadata).toMatchObject({ errorCode: 'PERMISSION_DENIED', call: 'closePullRequest', prNumber: pr.number });
    expect((await s.attempts()).find((r) => r.correlationId === cid)?.state).toBe('Idle');
  }, 150_000);

  it('PR open, repository archived, then the Application moved to another repository (SourceChanged): Abort with the refusal recorded once, the app released, the PR left open', async () => {
    // Given a staging app whose rollback PR is open, CI pending
    const s = await givenRollbackScenario(stack, 'close-refused-moved', { environment: 'staging', env: { CI_WAIT_TIMEOUT: '600' } }, stoppers);
    await s.release('v2', true);
    const pr = await s.firstPull();
    const waiting = await s.inState('PRCreated');
    const cid = waiting.correlationId;
    const commentsBefore = s.github.control.comments({ ...REPO, number: pr.number }).length;
    // And the repository it moves to, with a good release of the app, CI green
    const moved = { owner: REPO.owner, repo: 'gitops-moved' };
    const { sha: movedHead } = await s.github.control.createRepo({ ...moved, files: { 'README.md': 'x\n', [`${APP_PATH}/deployment.yaml`]: deployment(s.app, s.target, 'v3') }, message: 'moved here' });
    s.github.control.setStatus({ ...moved, sha: movedHead!, state: 'success', context: 'ci/build' });

    // When the old repository is archived (every write answers 403) and the Application's repoURL moves
    s.github.control.archiveRepo(REPO);
    const started = Date.now();
    const from = 'https://github.com/acme/gitops.git';
    const to = 'https://github.com/acme/gitops-moved.git';
    await kubeConfig(stack).makeApiClient(CustomObjectsApi).patchNamespacedCustomObject({
      group: 'argoproj.io', version: 'v1alpha1', namespace: s.namespace, plural: 'applications', name: s.app,
      body: { spec: { source: { repoURL: to } } },
    }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));

    // Then the attempt leaves PRCreated for Abort (SourceChanged), saying the close was refused and what to do
    const left = await eventually('the attempt out of PRCreated', async () => (await s.attempts()).find((r) => r.correlationId === cid && r.state !== 'PRCreated'), 60_000, 250)
      .catch((error: Error) => stuck(s, cid, started, error));
    expect(left.state).toBe('Abort');
    expect(left.reason).toBe('SourceChanged');
    expect(left.message).toContain(`repoURL ${from} -> ${to}`);
    expect(left.message).toContain(`could not close #${pr.number}`);
    expect(left.message).toContain('Repository was archived so is read-only');
    expect(left.message).toContain('close it by hand');
    expect(left.pullRequest).toMatchObject({ number: pr.number, state: 'open' });
    // The app is released: nothing holds its key, so the moved app can be rolled back again
    const kv = new EtcdKV([stack.etcd], { prefix: `/e2e/${s.namespace}` });
    try {
      expect(await kv.get(KEYS.active(`${s.namespace}_${s.app}`))).toBeUndefined();
    } finally {
      await kv.close();
    }
    // The PR is left open, and no comment was tried on the archived repository
    expect(s.github.control.pulls(REPO).find((p) => p.number === pr.number)?.state).toBe('open');
    expect(s.github.control.comments({ ...REPO, number: pr.number }).length).toBe(commentsBefore);
    expect((await notClosedEvent(s, pr.number)).type).toBe('Warning');
    const name = attemptName(left.app, cid);
    await eventually('RollbackAttempt status', async () => {
      const status = await attemptStatus(s, name);
      return status?.phase === 'Abort' && status.reason === 'SourceChanged' && String(status.message).includes(`could not close #${pr.number}`);
    }, 15_000, 250);

    // And, 10 s later, the refusal is in the audit trail once: the close was not tried again
    await sleep(10_000);
    const records = await closeRefusals(s, cid);
    console.info(`after ${((Date.now() - started) / 1000).toFixed(0)} s: state ${left.state}, ${records.length} ERROR audit record(s) of the refused close`);
    expect(records).toHaveLength(1);
    expect(records[0]!.metadata).toMatchObject({ errorCode: 'PERMISSION_DENIED', call: 'closePullRequest', prNumber: pr.number });
    expect((await s.attempts()).find((r) => r.correlationId === cid)).toMatchObject({ state: 'Abort', reason: 'SourceChanged' });
  }, 150_000);
});
