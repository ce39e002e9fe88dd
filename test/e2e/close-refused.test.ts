// A close GitHub refuses for good (issue 19 §1), with the real operator on the
// simulators: the repository is archived while the rollback PR is open, then the
// app is Healthy again. The close is tried once, not every round of every
// reconcile; the attempt takes the transition it was waiting for with the
// failure recorded (status, a Warning Event), the PR is left open for a human,
// and the audit trail has one record of the refusal, not one per try.
import { join } from 'node:path';
import { EventsV1Api } from '@kubernetes/client-node';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { readAuditDir } from '../../src/audit/jsonl-sink.ts';
import { kubeConfig, kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { givenRollbackScenario, REPO, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

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
});
