// GitHub goes away mid-attempt — 5xx, hung connections, resets — for longer than
// every retry budget (each call: 3 retries at 1 s / 2 s / 4 s, a 15 s timeout per
// try). Each scenario's GitHub simulator is its own, so its outage touches no
// other test. The outage starts at the step that matters: once the operator has
// begun to open the PR, or has sent the merge.
//
// Outcome: an outage (UNAVAILABLE, TIMEOUT, RATE_LIMITED after call()'s retries)
// is waited out, never concluded from — the attempt stays in its state, its
// message names the failing call, and once GitHub answers it goes on: the PR whose
// creation may have landed is adopted, a merge that landed is seen. Aborting
// instead would leave an open PR nobody tracks, or say "not merged" about a
// merged PR. Answers no retry changes (403, 409, 422) still abort (SPEC §4), and
// deadlines count only observed time, so the outage costs none of them.
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { readAuditDir } from '../../src/audit/jsonl-sink.ts';
import { githubOutage } from './support/faults.ts';
import { eventually } from './support/operator.ts';
import { nothingLost, readyz, ReadinessWatch, stillRunning } from './support/outage-checks.ts';
import { givenRollbackScenario, REPO, type Scenario, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

const CREATE_TREE = 'POST /repos/{owner}/{repo}/git/trees';
const CREATE_PULL = 'POST /repos/{owner}/{repo}/pulls';
const MERGE = 'PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge';

/** Resolves once `route` has been requested (the simulator's counters). */
const requested = (s: Scenario, route: string) => eventually(route, async () => (s.github.control.counters()[route] ?? 0) > 0, 60_000, 20);

async function given(name: string) {
  const s = await givenRollbackScenario(stack, name, { environment: 'staging', startOperator: false }, stoppers);
  const operator = await s.startOperator();
  await eventually('operator ready', async () => (await readyz(operator.httpPort)).status === 200, 60_000, 250);
  const watch = new ReadinessWatch(operator.httpPort);
  stoppers.push(() => watch.stop());
  return { s, operator, pid: operator.child.pid!, watch };
}

describe('GitHub down during PR creation', () => {
  it('502 on every call for 35 s once the PR is being opened: the attempt waits, naming the call, then opens one PR and completes', async () => {
    const { s, operator, pid, watch } = await given('outage-gh-create');
    // The rollback commit's tree (createPullRequest's first write) is slowed, and the outage begins meanwhile
    s.github.control.fail({ route: CREATE_TREE, latencyMs: 1500 });
    await s.release('v2', true);
    await requested(s, CREATE_TREE);
    const outage = githubOutage(s.github, '5xx', 35_000);

    // While GitHub is down the attempt stays in CandidateResolved and says why
    const waiting = await eventually('waiting on GitHub', async () => {
      const [record] = await s.attempts();
      return record?.state === 'CandidateResolved' && /^(createPullRequest|findPullRequest) failed \(UNAVAILABLE\), retrying every interval: /.test(record.message) ? record : undefined;
    }, 60_000);
    const calls = (await readAuditDir(join(s.dir, 'audit'))).filter((a) => a.actionType === 'MCP_CALL' && a.correlationId === waiting.correlationId);
    expect(calls.map((a) => a.message)).toContainEqual(expect.stringMatching(/^openPullRequest failed: createPullRequest: UNAVAILABLE: HTTP 502/));
    await outage.over();

    // Once GitHub is back: one PR, CI, the merge, health — complete, nothing lost or doubled
    const pr = await s.firstPull();
    await s.inState('PRCreated', 60_000);
    s.ci(pr.headSha, 'success');
    const done = await s.inState('RollbackComplete', 90_000).catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    const resumedAfterMs = Date.now() - outage.startedAt;
    expect(done.transitions.map((t) => t.to)).toEqual(['DegradationDetected', 'CandidateResolved', 'PRCreated', 'AwaitingMergeApproval', 'RollbackMerged', 'RollbackComplete']);
    expect(s.github.control.pulls(REPO)).toHaveLength(1);
    const lost = await nothingLost(s, done, stack.nats);
    expect(lost.problems).toEqual([]);
    await watch.stop();
    // Readiness is not GitHub's to fail: no restart or unready pod brings GitHub back.
    expect(watch.samples.filter((x) => x.status !== 200)).toEqual([]);
    expect(stillRunning(operator, pid)).toBeUndefined();
    console.log(`[outage-github] PR creation, 502 for 35 s: waited, RollbackComplete ${resumedAfterMs} ms after the outage began`);
  }, 180_000);

  // The PR is created, its answer lost (connection reset), and GitHub stays down
  // past the retries: the attempt waits instead of aborting, and adopts the PR.
  it('the PR lands but its answer is reset, then 35 s of resets: the attempt knows its PR (adopts it and completes)', async () => {
    const { s, operator, pid } = await given('outage-gh-create-landed');
    s.github.control.fail({ route: CREATE_PULL, afterEffect: true, latencyMs: 1500, connection: 'reset' });
    await s.release('v2', true);
    await requested(s, CREATE_PULL);
    const outage = githubOutage(s.github, 'reset', 35_000);
    await outage.over();

    const pr = await s.firstPull();
    const adopted = await s.inState('PRCreated', 60_000);
    expect(adopted.pullRequest?.number).toBe(pr.number);
    s.ci(pr.headSha, 'success');
    const done = await s.inState('RollbackComplete', 60_000);
    expect((await nothingLost(s, done, stack.nats)).problems).toEqual([]);
    expect(stillRunning(operator, pid)).toBeUndefined();
  }, 150_000);
});

describe('GitHub down during the merge', () => {
  it('every call hangs for 75 s from the merge on: the attempt waits in AwaitingMergeApproval, naming the call, then merges once and completes', async () => {
    const { s, operator, pid, watch } = await given('outage-gh-merge');
    await s.release('v2', true);
    const pr = await s.firstPull();
    await s.inState('PRCreated');
    // The merge request itself is slowed; the outage begins while it is on its way
    s.github.control.fail({ route: MERGE, latencyMs: 1500, status: 502 });
    s.ci(pr.headSha, 'success');
    await requested(s, MERGE);
    const outage = githubOutage(s.github, 'timeout', 75_000);

    // While every call hangs, each try waits out its timeout: the attempt stays in AwaitingMergeApproval, never Abort
    // (how long the "retrying" message shows depends on where the hung calls fall, so the state is what is checked).
    await eventually('the merge failed after its retries', async () => (await readAuditDir(join(s.dir, 'audit')))
      .some((a) => a.actionType === 'MCP_CALL' && /^mergePullRequest failed: /.test(a.message)), 100_000);
    const [during] = await s.attempts();
    expect(during!.transitions.map((t) => t.to)).toEqual(['DegradationDetected', 'CandidateResolved', 'PRCreated', 'AwaitingMergeApproval']);
    // A hung call never reached GitHub: the PR is still open and unmerged while the outage lasts.
    expect(s.github.control.pulls(REPO)).toMatchObject([{ number: pr.number, state: 'open', merged: false }]);
    await outage.over();

    const done = await s.inState('RollbackComplete', 90_000).catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    const resumedAfterMs = Date.now() - outage.startedAt;
    expect(s.github.control.pulls(REPO)).toMatchObject([{ number: pr.number, merged: true }]);
    expect(done.reason).toBe('HealthRestored');
    const lost = await nothingLost(s, done, stack.nats);
    expect(lost.problems).toEqual([]);
    await watch.stop();
    expect(watch.samples.filter((x) => x.status !== 200)).toEqual([]);
    expect(stillRunning(operator, pid)).toBeUndefined();
    console.log(`[outage-github] merge, hung for 75 s: waited, RollbackComplete ${resumedAfterMs} ms after the outage began`);
  }, 240_000);

  // The merge lands, its answer is reset, and GitHub stays down past the retries.
  // Argo CD deploys the merge and health comes back while the PR cannot be read:
  // that Healthy may be our own merge, so nothing is closed; once GitHub answers the
  // merge is seen, and PR_MERGED is audited with the transition, not the answer.
  it('the merge lands but its answer is reset, then 35 s of 502s: the attempt completes and the audit trail records the merge, not a close', async () => {
    const { s, operator, pid } = await given('outage-gh-merge-landed');
    await s.release('v2', true);
    const pr = await s.firstPull();
    await s.inState('PRCreated');
    s.github.control.fail({ route: MERGE, afterEffect: true, latencyMs: 1500, connection: 'reset' });
    s.ci(pr.headSha, 'success');
    await requested(s, MERGE);
    const outage = githubOutage(s.github, '5xx', 35_000);
    await outage.over();

    const done = await s.inState('RollbackComplete', 60_000);
    expect(done.merge).toBeDefined();
    expect(stillRunning(operator, pid)).toBeUndefined();
    const lost = await nothingLost(s, done, stack.nats);
    expect(lost.audit.filter((a) => a.correlationId === done.correlationId && a.actionType === 'PR_CLOSED')).toEqual([]);
    expect(lost.problems).toEqual([]);
  }, 150_000);
});
