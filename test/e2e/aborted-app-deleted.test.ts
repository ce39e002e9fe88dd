// An attempt already in Abort when its Application is deleted (issue 19 §2), with
// the real operator on the simulators. Nobody would reset it once its Application
// is gone, so it is released (its PR closed first) and an Application created
// again under the name can be rolled back. When the new Application is there
// before the operator saw the old one go (another uid, the operator away), the
// aborted attempt is released all the same and the new Application is told with
// a PreviousAttemptReleased Event.
import { EventsV1Api, type EventsV1Event } from '@kubernetes/client-node';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { KEYS } from '../../src/store/attempt-store.ts';
import { EtcdKV } from '../../src/store/etcd.ts';
import { kubeConfig, kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { givenRollbackScenario, REPO, type OperatorHandle, type Scenario, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

async function activeKey(s: Scenario): Promise<string | undefined> {
  const kv = new EtcdKV([stack.etcd], { prefix: `/e2e/${s.namespace}` });
  try {
    return (await kv.get(KEYS.active(`${s.namespace}_${s.app}`)))?.value;
  } finally {
    await kv.close();
  }
}

async function applicationEvents(s: Scenario, reason: string): Promise<EventsV1Event[]> {
  const events = kubeConfig(stack).makeApiClient(EventsV1Api);
  return (await events.listNamespacedEvent({ namespace: s.namespace })).items.filter((e) => e.reason === reason && e.regarding?.kind === 'Application');
}

/** A broken release, its rollback PR, CI failing on it: the attempt aborts (CIFailure) with its PR left open. */
async function abortedWithPrOpen(s: Scenario, image: string, prNumber?: number) {
  await s.release(image, true);
  const pr = await eventually('a new rollback PR', async () => s.github.control.pulls(REPO).find((p) => p.state === 'open' && (prNumber === undefined || p.number > prNumber)), 60_000, 100);
  const open = await eventually('the attempt in PRCreated', async () => (await s.attempts()).find((r) => r.state === 'PRCreated' && r.pullRequest?.number === pr.number), 60_000, 250);
  s.ci(pr.headSha, 'failure');
  const aborted = await eventually('the attempt in Abort', async () => (await s.attempts()).find((r) => r.correlationId === open.correlationId && r.state === 'Abort'), 60_000, 250);
  expect(aborted.reason).toBe('CIFailure');
  expect(await activeKey(s)).toBe(aborted.correlationId);
  return { pr, aborted };
}

async function stopOperator(operator: OperatorHandle): Promise<void> {
  if (operator.child.exitCode !== null || operator.child.signalCode !== null) return;
  const exited = new Promise((resolve) => operator.child.once('exit', resolve));
  operator.child.kill('SIGTERM');
  await exited;
}

describe('an aborted attempt whose Application is deleted', () => {
  it('is released with its PR closed, and the Application created again under the name gets a new attempt', async () => {
    // Given a staging app whose attempt aborted on a CI failure, its PR left open for a human
    const s = await givenRollbackScenario(stack, 'aborted-deleted', { environment: 'staging' }, stoppers);
    const { pr, aborted } = await abortedWithPrOpen(s, 'v2');

    // When the Application is deleted
    await kubectlOk(stack, ['delete', 'application', s.app, '-n', s.namespace]);

    // Then the attempt is released: its PR closed with a comment that says why, the app's key free
    const closed = await eventually('the PR closed', async () => s.github.control.pulls(REPO).find((p) => p.number === pr.number && p.state === 'closed'), 30_000, 250)
      .catch(async (error: Error) => {
        const record = (await s.attempts()).find((r) => r.correlationId === aborted.correlationId);
        throw new Error(`${error.message}; the attempt: ${record?.state} (${record?.reason}) "${record?.message}", active key ${await activeKey(s)}`);
      });
    expect(closed.merged).toBe(false);
    expect(s.github.control.comments({ ...REPO, number: pr.number }).map((c) => c.body).join('\n')).toContain('ApplicationDeleted');
    await eventually('the app released', async () => (await activeKey(s)) === undefined, 15_000, 250);
    const released = (await s.attempts()).find((r) => r.correlationId === aborted.correlationId)!;
    expect(released).toMatchObject({ state: 'Abort', reason: 'CIFailure' });
    expect(released.message).toContain(`Application ${s.namespace}/${s.app} was deleted while this attempt was aborted (CIFailure): the app is released`);

    // And when it is created again under the name (another uid), still Degraded on the broken release,
    // it gets a new attempt and a new PR; nothing of the old one was left for it to be told about
    const uid = await s.createApplication();
    const next = await eventually('a new attempt of the new Application', async () => (await s.attempts()).find((r) => r.correlationId !== aborted.correlationId && r.pullRequest?.number !== undefined), 90_000, 250)
      .catch(async (error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    expect(next.appUid).toBe(uid);
    expect(next.pullRequest!.number).toBeGreaterThan(pr.number);
    expect(await activeKey(s)).toBe(next.correlationId);
    expect(await applicationEvents(s, 'PreviousAttemptReleased')).toEqual([]);
  }, 240_000);

  it('deleted and created again while the operator was away: released, its PR closed, the new Application told with a PreviousAttemptReleased Event and rolled back', async () => {
    // Given a staging app whose attempt aborted on a CI failure, its PR left open for a human
    const s = await givenRollbackScenario(stack, 'aborted-recreated', { environment: 'staging', startOperator: false }, stoppers);
    const first = await s.startOperator();
    const { pr, aborted } = await abortedWithPrOpen(s, 'v2');
    const oldUid = JSON.parse(await kubectlOk(stack, ['get', 'application', s.app, '-n', s.namespace, '-o', 'json'])).metadata.uid as string;

    // When, while the operator is away, the Application is deleted and created again under the name
    await stopOperator(first);
    await kubectlOk(stack, ['delete', 'application', s.app, '-n', s.namespace]);
    const newUid = await s.createApplication();
    expect(newUid).not.toBe(oldUid);
    await s.startOperator();

    // Then the aborted attempt is released, its PR closed first
    const closed = await eventually('the PR closed', async () => s.github.control.pulls(REPO).find((p) => p.number === pr.number && p.state === 'closed'), 60_000, 250)
      .catch(async (error: Error) => {
        const record = (await s.attempts()).find((r) => r.correlationId === aborted.correlationId);
        throw new Error(`${error.message}; the attempt: ${record?.state} (${record?.reason}) "${record?.message}", active key ${await activeKey(s)}\n${s.logs()}`);
      });
    expect(closed.merged).toBe(false);
    // The PR is closed by the release's intent; the record saying so is projected onto the object just after.
    const releasedSaid = (r: { message?: string }) => r.message?.includes('was deleted while this attempt was aborted (CIFailure): the app is released') === true;
    const released = await eventually('the release said on the attempt', async () => (await s.attempts()).find((r) => r.correlationId === aborted.correlationId && releasedSaid(r)), 15_000, 250)
      .catch(async () => (await s.attempts()).find((r) => r.correlationId === aborted.correlationId)!);
    expect(released.message).toContain('was deleted while this attempt was aborted (CIFailure): the app is released');

    // And the new Application is told, by an Event regarding it (its uid), what became of the old attempt
    const told = await eventually('the PreviousAttemptReleased Event', async () => (await applicationEvents(s, 'PreviousAttemptReleased'))[0], 30_000, 250);
    expect(told.regarding).toMatchObject({ kind: 'Application', name: s.app, uid: newUid });
    expect(told.note).toContain(`an aborted rollback attempt (${aborted.correlationId}) of the Application deleted under this name was released`);

    // And it gets a new attempt of its own, with a new PR
    const next = await eventually('a new attempt of the new Application', async () => (await s.attempts()).find((r) => r.correlationId !== aborted.correlationId && r.pullRequest?.number !== undefined), 90_000, 250)
      .catch(async (error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    expect(next.appUid).toBe(newUid);
    expect(await activeKey(s)).toBe(next.correlationId);
    expect(s.github.control.pulls(REPO).filter((p) => p.state === 'open').map((p) => p.number)).toEqual([next.pullRequest!.number]);
  }, 240_000);
});
