// What an ended attempt leaves behind (issue 19 §2), with the real operator
// process, etcd, NATS and API server; GitHub and Argo CD are the simulators:
// the rollback branch is deleted once its PR is merged, or closed by the
// operator; a branch whose head someone else moved is kept; after
// ATTEMPT_RETENTION the attempt's etcd keys and its RollbackAttempt object are
// gone, and so are the app's rollback keys (last-rollback, rolled-back-from/*).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { attemptName } from '../../src/fsm/record.ts';
import { KEYS } from '../../src/store/attempt-store.ts';
import { EtcdKV } from '../../src/store/etcd.ts';
import { kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { givenRollbackScenario, REPO, type Scenario, type ScenarioOptions, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });
const given = (name: string, options: ScenarioOptions) => givenRollbackScenario(stack, name, options, stoppers);
const ROLLBACK_BRANCHES = /^ai-operator\/rollback\//;
// The cleanup runs a few seconds after an attempt ends, and after each resync (30 s apart): what the operator does after an
// attempt ends is seen within about that, and the expiry of a record within a resync of it.
const SWEEP_MS = 75_000;

async function rollbackBranches(s: Scenario): Promise<Array<{ name: string; sha: string }>> {
  return (await s.github.control.branches(REPO)).filter((b) => ROLLBACK_BRANCHES.test(b.name));
}

async function attemptObjects(s: Scenario): Promise<Array<{ metadata: { name: string; annotations?: Record<string, string>; labels?: Record<string, string> } }>> {
  return JSON.parse(await kubectlOk(stack, ['get', 'rollbackattempts', '-n', s.namespace, '-o', 'json'])).items;
}

/** The keys of this scenario's installation an attempt writes: its record, index, and the app's keys. */
async function attemptKeys(s: Scenario): Promise<string[]> {
  const kv = new EtcdKV([stack.etcd], { prefix: `/e2e/${s.namespace}` });
  try {
    const all = await Promise.all([KEYS.rollbackPrefix, KEYS.attemptIndexPrefix, KEYS.appsPrefix].map((p) => kv.getPrefix(p)));
    return all.flat().map((k) => k.key);
  } finally {
    await kv.close();
  }
}

const branchNote = async (s: Scenario, name: string) => (await attemptObjects(s)).find((o) => o.metadata.name === name)?.metadata.annotations?.['ai-operator.io/branch'];

describe('the rollback branch of an ended attempt', () => {
  it('is deleted once the operator merged its PR; after the retention the record, the object and the app\'s keys are gone', async () => {
    // Given an operator that keeps ended attempts 20 s, with no cooldown (so nothing outlives the retention)
    // No cooldown and no bound on attempts an hour: the app's keys for them would outlive a 20 s retention by design.
    const s = await given('cleanup-merged', { environment: 'staging', env: { ATTEMPT_RETENTION: '20', ROLLBACK_COOLDOWN: '0', MAX_ATTEMPTS_PER_HOUR: '0' } });
    expect(await attemptKeys(s)).toEqual([]);
    // When a broken release is rolled back and the operator merges the PR
    await s.release('v2', true);
    const pr = await s.firstPull();
    s.ci(pr.headSha, 'success');
    const done = await s.inState('RollbackComplete', 90_000);
    const name = attemptName(done.app, done.correlationId);
    expect(done.pullRequest?.state).toBe('merged');

    expect((await attemptObjects(s)).map((o) => o.metadata.name)).toEqual([name]);
    // Then its branch is deleted (the retention is shorter than a resync here: the record may have expired
    // before the first sweep, and the branch is then cleaned up from the object's status)
    await eventually('the rollback branch deleted', async () => (await rollbackBranches(s)).length === 0, SWEEP_MS, 500)
      .catch(async (error: Error) => { throw new Error(`${error.message}; branches: ${JSON.stringify(await rollbackBranches(s))}\n${s.logs()}`); });

    // And after the retention: no record, no index key, no last-rollback or rolled-back-from key, no object
    await eventually('the attempt\'s keys expired', async () => (await attemptKeys(s)).length === 0, 60_000, 1000)
      .catch(async (error: Error) => { throw new Error(`${error.message}; keys: ${JSON.stringify(await attemptKeys(s))}`); });
    await eventually('the RollbackAttempt deleted', async () => (await attemptObjects(s)).length === 0, SWEEP_MS, 1000)
      .catch(async (error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    expect(s.github.violations()).toEqual([]);
  }, 300_000);

  it('is deleted once the operator closed its PR (health back before the merge)', async () => {
    const s = await given('cleanup-closed', { environment: 'staging' });
    await s.release('v2', true);
    const pr = await s.firstPull();
    await s.inState('PRCreated');
    // A fix forward lands; the operator closes its PR
    await s.release('v3', false);
    const idle = await s.inState('Idle');
    expect(idle.pullRequest).toMatchObject({ number: pr.number, state: 'closed' });
    expect((await rollbackBranches(s)).map((b) => b.name)).toEqual([pr.head]);

    await eventually('the rollback branch deleted', async () => (await rollbackBranches(s)).length === 0, SWEEP_MS, 500)
      .catch(async (error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    const name = attemptName(idle.app, idle.correlationId);
    await eventually('the outcome on the object', async () => branchNote(s, name), 10_000, 200);
    expect(await branchNote(s, name)).toBe(`deleted at ${idle.rollbackCommit!.sha}`);
    // The default retention: the object stays, labelled with the store that holds its record.
    const objects = await attemptObjects(s);
    expect(objects).toHaveLength(1);
    expect(objects[0]!.metadata.labels?.['ai-operator.io/store']).toMatch(/^[0-9a-f]{16}$/);
  }, 240_000);

  it('is kept when someone else moved its head, and the object says why', async () => {
    const s = await given('cleanup-moved', { environment: 'staging' });
    await s.release('v2', true);
    const pr = await s.firstPull();
    await s.inState('PRCreated');
    // Someone pushes their own commit onto the operator's branch: the attempt aborts (PullRequestChanged)
    const { sha: theirs } = await s.github.control.push({ ...REPO, branch: pr.head, files: { 'apps/cart/note.txt': 'mine\n' }, message: 'my fix', author: 'someone' });
    const aborted = await s.inState('Abort');
    expect(aborted.reason).toBe('PullRequestChanged');
    // A fix forward lands, and a human resets the attempt: the operator closes the PR, the attempt ends
    await s.release('v3', false);
    const name = attemptName(aborted.app, aborted.correlationId);
    await kubectlOk(stack, ['annotate', 'rollbackattempt', '-n', s.namespace, name, 'ai-operator.io/reset=true']);
    const idle = await s.inState('Idle', 90_000);
    expect(idle.pullRequest?.state).toBe('closed');

    const note = await eventually('what became of the branch', async () => branchNote(s, name), SWEEP_MS, 500)
      .catch(async (error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    expect(note).toMatch(/^kept: its head is [0-9a-f]{7}, not the rollback commit/);
    expect(await rollbackBranches(s)).toEqual([{ name: pr.head, sha: theirs }]);
  }, 240_000);

  it('is left to GitHub when the repository deletes head branches on merge: the operator sends no DELETE, and nothing fails', async () => {
    // Given a repository with "Automatically delete head branches" on (delete_branch_on_merge)
    const s = await given('cleanup-on-merge', { environment: 'staging' });
    s.github.control.setDeleteBranchOnMerge({ ...REPO, enabled: true });
    // When a broken release is rolled back and the operator merges the PR
    await s.release('v2', true);
    const pr = await s.firstPull();
    expect((await rollbackBranches(s)).map((b) => b.name)).toEqual([pr.head]);
    s.ci(pr.headSha, 'success');
    const done = await s.inState('RollbackComplete', 90_000);
    expect(done.pullRequest?.state).toBe('merged');
    // GitHub deleted the branch on the merge
    expect(await rollbackBranches(s)).toEqual([]);

    // Then the cleanup looks at it once, leaves it to GitHub and says so on the object
    const name = attemptName(done.app, done.correlationId);
    const note = await eventually('what became of the branch', async () => branchNote(s, name), SWEEP_MS, 500)
      .catch(async (error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    expect(note).toBe('kept: the repository deletes head branches on merge');
    // The operator never asked GitHub to delete a ref, nothing failed on the way, and GitHub saw no request it would refuse
    expect(s.github.control.counters()['DELETE /repos/{owner}/{repo}/git/refs/{ref}']).toBeUndefined();
    const log = readFileSync(join(s.dir, 'operator-1.log'), 'utf8');
    expect(log).toContain('"message":"Kept rollback branch"');
    expect(log).not.toMatch(/Could not clean up an ended attempt|"level":"ERROR"/);
    expect(s.github.violations()).toEqual([]);
  }, 240_000);
});
