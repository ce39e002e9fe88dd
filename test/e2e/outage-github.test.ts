// GitHub goes away mid-attempt — 5xx, hung connections, resets — for longer than
// every retry budget (each call: 3 retries at 1 s / 2 s / 4 s, a 15 s timeout per
// try). Each scenario's GitHub simulator is its own, so its outage touches no
// other test. The outage starts at the step that matters: once the operator has
// begun to open the PR, or has sent the merge.
//
// Outcome (SPEC §4: an integration error after retries aborts): the attempt ends
// in Abort with reason IntegrationError and a message naming the GitHub call.
// When the write being retried had in fact landed (its answer lost), the attempt
// must still know about it: an Abort that leaves an open PR nobody tracks, or
// says "not merged" about a merged PR, loses a write.
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
  it('502 on every call for 35 s once the PR is being opened: Abort (IntegrationError) naming the call, no PR, no retry of its own afterwards', async () => {
    const { s, operator, pid, watch } = await given('outage-gh-create');
    // The rollback commit's tree (createPullRequest's first write) is slowed, and the outage begins meanwhile
    s.github.control.fail({ route: CREATE_TREE, latencyMs: 1500 });
    await s.release('v2', true);
    await requested(s, CREATE_TREE);
    const outage = githubOutage(s.github, '5xx', 35_000);

    const aborted = await s.inState('Abort', 60_000).catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    const abortedAfterMs = Date.now() - outage.startedAt;
    expect(aborted.reason).toBe('IntegrationError');
    // The create failed after its retries; the look for its PR that follows fails too, whichever names the abort.
    expect(aborted.message).toMatch(/^(createPullRequest|findPullRequest) failed: .*UNAVAILABLE: HTTP 502/);
    const calls = (await readAuditDir(join(s.dir, 'audit'))).filter((a) => a.actionType === 'MCP_CALL' && a.correlationId === aborted.correlationId);
    expect(calls.map((a) => a.message)).toContainEqual(expect.stringMatching(/^openPullRequest failed: createPullRequest: UNAVAILABLE: HTTP 502/));
    expect(aborted.transitions.map((t) => t.to)).toEqual(['DegradationDetected', 'CandidateResolved', 'Abort']);
    await outage.over();

    // After GitHub is back the aborted attempt stays as it is (a human resets it), and no PR appeared
    await new Promise((r) => setTimeout(r, 3000));
    expect((await s.attempts()).map((r) => [r.state, r.version])).toEqual([['Abort', aborted.version]]);
    expect(s.github.control.pulls(REPO)).toEqual([]);
    const lost = await nothingLost(s, aborted, stack.nats);
    expect(lost.problems).toEqual([]);
    await watch.stop();
    // Readiness is not GitHub's to fail: no restart or unready pod brings GitHub back.
    expect(watch.samples.filter((x) => x.status !== 200)).toEqual([]);
    expect(stillRunning(operator, pid)).toBeUndefined();
    console.log(`[outage-github] PR creation, 502 for 35 s: Abort ${abortedAfterMs} ms into the outage`);
  }, 150_000);

  // KNOWN BUG (reported; the decision lives in src/fsm): the PR is created, its
  // answer lost (connection reset), and GitHub stays down past the retries. The
  // attempt aborts without knowing of the PR: the PR stays open, tracked by no
  // attempt, with no comment — and its open PR for the path then fails I7 for
  // every later attempt of the app. Flip `it.fails` to `it` with the fix.
  it.fails('the PR lands but its answer is reset, then 35 s of resets: the attempt knows its PR (adopts it and completes)', async () => {
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
  it('every call hangs for 75 s from the merge on: Abort (IntegrationError) naming the merge, the PR open and unmerged, then nothing more', async () => {
    const { s, operator, pid, watch } = await given('outage-gh-merge');
    await s.release('v2', true);
    const pr = await s.firstPull();
    await s.inState('PRCreated');
    // The merge request itself is slowed; the outage begins while it is on its way
    s.github.control.fail({ route: MERGE, latencyMs: 1500, status: 502 });
    s.ci(pr.headSha, 'success');
    await requested(s, MERGE);
    const outage = githubOutage(s.github, 'timeout', 75_000);

    const aborted = await s.inState('Abort', 100_000).catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    const abortedAfterMs = Date.now() - outage.startedAt;
    expect(aborted.reason).toBe('IntegrationError');
    expect(aborted.message).toMatch(/^mergePullRequest failed: /);
    expect(aborted.transitions.map((t) => t.to)).toEqual(['DegradationDetected', 'CandidateResolved', 'PRCreated', 'AwaitingMergeApproval', 'Abort']);
    await outage.over();
    await new Promise((r) => setTimeout(r, 3000));
    expect(s.github.control.pulls(REPO)).toMatchObject([{ number: pr.number, state: 'open', merged: false }]);
    expect((await s.attempts()).map((r) => r.state)).toEqual(['Abort']);
    const lost = await nothingLost(s, aborted, stack.nats);
    expect(lost.problems).toEqual([]);
    await watch.stop();
    expect(watch.samples.filter((x) => x.status !== 200)).toEqual([]);
    expect(stillRunning(operator, pid)).toBeUndefined();
    console.log(`[outage-github] merge, hung for 75 s: Abort ${abortedAfterMs} ms into the outage`);
  }, 180_000);

  // KNOWN BUG (reported; the audit records are written in src/reconcilers/application.ts):
  // the merge lands, its answer is reset, and GitHub stays down past the retries.
  // Argo CD deploys the merge, health comes back, and the operator — unable to
  // read the PR — takes it for "Healthy before the merge" and closes the PR:
  // closePullRequest finds it closed (merged) and returns, and the audit trail
  // says "Closed rollback pull request #1". Once GitHub answers, the merge is
  // seen and the attempt completes (AutoMerged), but no PR_MERGED record is ever
  // written: the one action that mattered is missing from the audit trail, and
  // a false one is in it. Flip `it.fails` to `it` with the fix.
  it.fails('the merge lands but its answer is reset, then 35 s of 502s: the attempt completes and the audit trail records the merge, not a close', async () => {
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
