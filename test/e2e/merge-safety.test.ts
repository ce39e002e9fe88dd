// What is merged is exactly the rollback the operator built (issue 17 §1–§5), on
// the real stack with the GitHub simulator and the real operator process, as
// someone trying to get an unchecked change merged would go about it: push to the
// rollback branch, prepare a look-alike PR under its name, retarget the PR, take
// an approval back, approve while the operator is down, approve in a namespace the
// binding does not cover, and rely on a fast check while a required one is slow.
import { Octokit } from '@octokit/rest';
import { afterEach, describe, expect, inject, it } from 'vitest';
import type { AttemptRecord } from '../../src/fsm/record.ts';
import { installApprovalPolicy, grantPatch, namespaceBinding, shippedApprovalPolicy } from './support/approvals.ts';
import { kubectl, kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { givenRollbackScenario, REPO, type Scenario, type ScenarioOptions, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });
const given = (name: string, options: ScenarioOptions) => givenRollbackScenario(stack, name, options, stoppers);

const attemptName = (record: AttemptRecord) => `${record.app.name}-${record.correlationId.replace(/-/g, '').slice(0, 8)}`;
const branchOf = (record: AttemptRecord) => `ai-operator/rollback/${attemptName(record)}`;

/** Another user of the repository, with their own token, acting through GitHub's API. */
function mallory(s: Scenario): Octokit {
  const { token } = s.github.control.addUser({ login: 'mallory' });
  return new Octokit({ baseUrl: s.github.url, auth: token });
}

/** The attempt's record, once it is in `state` (or any later state). */
async function attempt(s: Scenario, state: AttemptRecord['state'], timeoutMs = 60_000): Promise<AttemptRecord> {
  return s.inState(state, timeoutMs);
}

/** It stays so for `ms`: nothing merged meanwhile. */
async function neverMerged(s: Scenario, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    expect(s.github.control.pulls(REPO).filter((p) => p.merged)).toEqual([]);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const prodPolicy = (namespace: string) => JSON.stringify({ apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name: 'prod', namespace },
  spec: { environment: 'production', detection: { intervalSeconds: 1, persistenceChecks: 3 }, healthRestorationSeconds: 3, merge: { approvers: { users: ['alice@example.com'] } } } });

/**
 * A production app under a policy naming alice as approver, degraded by a bad release, with its rollback
 * PR open. The shipped approval policy is bound to this namespace (or, with `binding`, by that binding),
 * and alice and mallory may patch RollbackAttempts here. The operator is started unless `start` is false.
 */
async function givenProductionPr(name: string, options: { binding?: Record<string, unknown>; start?: boolean; approvalTimeoutSeconds?: number } = {}) {
  const s = await given(name, { environment: 'production', startOperator: false, env: { MERGE_APPROVAL_TIMEOUT: String(options.approvalTimeoutSeconds ?? 600) } });
  let bindingName: string;
  if (options.binding) {
    const { policy } = shippedApprovalPolicy();
    await kubectlOk(stack, ['apply', '--server-side', '--force-conflicts', '--field-manager=e2e-approvals', '-f', '-'], JSON.stringify(policy));
    await kubectlOk(stack, ['apply', '--server-side', '--force-conflicts', '--field-manager=e2e-approvals', '-f', '-'], JSON.stringify(options.binding));
    bindingName = (options.binding.metadata as { name: string }).name;
  } else {
    bindingName = (await installApprovalPolicy(stack, s.namespace)).bindingName;
  }
  for (const user of ['alice@example.com', 'mallory']) await grantPatch(stack, s.namespace, user);
  await kubectlOk(stack, ['apply', '-f', '-'], prodPolicy(s.namespace));
  const env = { APPROVAL_POLICY_BINDING_NAME: bindingName };
  const operator = options.start === false ? undefined : await s.startOperator(env);
  await s.release('v2', true);
  return { s, env, operator };
}

const annotate = (s: Scenario, record: AttemptRecord, user: string, value = user) =>
  kubectl(stack, ['annotate', '--overwrite', `--as=${user}`, 'rollbackattempt', attemptName(record), '-n', s.namespace, `ai-operator.io/approve=${value}`]);

const approvedCondition = async (s: Scenario, record: AttemptRecord) => {
  const object = JSON.parse(await kubectlOk(stack, ['get', 'rollbackattempt', attemptName(record), '-n', s.namespace, '-o', 'json'])) as { status?: { conditions?: Array<{ type: string; status: string; reason: string; message: string }> } };
  return object.status?.conditions?.find((c) => c.type === 'Approved');
};

describe('§1 the pull request is bound to the operator\'s own commit', () => {
  it('staging: a commit pushed to the rollback branch by another user is never merged; the attempt aborts PullRequestChanged and the PR is left open with a comment', async () => {
    const s = await given('bound-staging', { environment: 'staging' });
    await s.release('v2', true);
    const pr = await s.firstPull();
    await attempt(s, 'PRCreated');

    // While CI is pending, mallory pushes a commit that edits another app's manifest; CI goes green on it
    s.github.control.addUser({ login: 'mallory' });
    const { sha: pushed } = await s.github.control.push({ ...REPO, branch: pr.head, files: { 'apps/other/config.yaml': 'keep: hijacked\n' }, message: 'Tweak other', author: 'mallory' });
    s.ci(pushed, 'success');
    s.ci(pr.headSha, 'success');

    const aborted = await attempt(s, 'Abort');
    expect(aborted.reason).toBe('PullRequestChanged');
    expect(aborted.message).toMatch(new RegExp(`the head of #${pr.number} is ${pushed.slice(0, 7)}, not the rollback commit ${pr.headSha.slice(0, 7)}; pushed by mallory`));
    expect(s.github.control.pulls(REPO)[0]).toMatchObject({ state: 'open', merged: false });
    await eventually('abort comment', async () => s.github.control.comments({ ...REPO, number: pr.number }).some((c) => c.body.includes('**PullRequestChanged**')));
    expect(aborted.rollbackCommit?.sha).toBe(pr.headSha);
    expect(s.github.violations()).toEqual([]);
  }, 120_000);

  it('production: an approval given as soon as the PR opened does not carry over to a commit pushed after it', async () => {
    const { s } = await givenProductionPr('bound-production');
    const pr = await s.firstPull();
    const record = await attempt(s, 'PRCreated');
    // The approver annotates at once (the PR body prints the command), CI still pending
    expect((await annotate(s, record, 'alice@example.com')).code).toBe(0);
    const { sha: pushed } = await s.github.control.push({ ...REPO, branch: pr.head, files: { 'apps/other/config.yaml': 'keep: hijacked\n' }, message: 'Tweak other', author: 'mallory' });
    s.ci(pushed, 'success');
    s.ci(pr.headSha, 'success');

    const aborted = await attempt(s, 'Abort');
    expect(aborted).toMatchObject({ reason: 'PullRequestChanged' });
    expect(aborted.approval).toBeUndefined();
    await neverMerged(s, 2000);
  }, 120_000);

  it('a look-alike PR opened by another user under the attempt\'s branch name is not adopted, and never merged', async () => {
    const s = await given('look-alike', { environment: 'staging', startOperator: false });
    // The operator's PR cannot be built for now (the trees API fails): the attempt waits in CandidateResolved, its name visible
    s.github.control.fail({ route: 'POST /repos/{owner}/{repo}/git/trees', status: 502, until: Date.now() + 120_000 });
    await s.startOperator();
    await s.release('v2', true);
    const record = await attempt(s, 'CandidateResolved');

    // Mallory prepares the attempt's branch with a change of her own and opens a PR on it; CI is green on it
    const gh = mallory(s);
    const main = (await s.github.control.resolve({ ...REPO, rev: 'main' })).sha!;
    await s.github.control.createBranch({ ...REPO, branch: branchOf(record), from: main });
    const { sha: hers } = await s.github.control.push({ ...REPO, branch: branchOf(record), files: { 'apps/other/config.yaml': 'keep: hijacked\n', 'apps/cart/deployment.yaml': 'kind: Nothing\n' }, message: 'Rollback cart', author: 'mallory' });
    const { data: lookAlike } = await gh.rest.pulls.create({ ...REPO, head: branchOf(record), base: 'main', title: `Rollback cart (staging) to ${s.good.slice(0, 7)}` });
    s.ci(hers, 'success');
    s.github.control.clearFaults();

    // Found before the operator tries to open its own (PullRequestChanged), or met by that try (Conflict): refused either way
    const aborted = await attempt(s, 'Abort');
    expect(['PullRequestChanged', 'Conflict']).toContain(aborted.reason);
    expect(aborted.message).toContain(`pull request #${lookAlike.number} of ${branchOf(record)} is not this attempt's rollback (it was opened by mallory, not by ai-operator-bot)`);
    await neverMerged(s, 2000);
    expect(s.github.control.pulls(REPO)).toHaveLength(1);
  }, 150_000);
});

describe('§2 the base branch is checked', () => {
  it('a PR retargeted to another branch is never merged there: PullRequestChanged', async () => {
    const s = await given('retarget', { environment: 'staging' });
    await s.github.control.createBranch({ ...REPO, branch: 'release', from: s.good });
    await s.release('v2', true);
    const pr = await s.firstPull();
    await attempt(s, 'PRCreated');
    // Mallory retargets the PR to release; GitHub follows; CI goes green
    const { data: retargeted } = await mallory(s).rest.pulls.update({ ...REPO, pull_number: pr.number, base: 'release' });
    expect(retargeted.base.ref).toBe('release');
    s.ci(pr.headSha, 'success');

    const aborted = await attempt(s, 'Abort');
    expect(aborted).toMatchObject({ reason: 'PullRequestChanged', message: `#${pr.number} was retargeted to release; cart deploys main: not merged` });
    await neverMerged(s, 2000);
    expect(s.github.violations()).toEqual([]);
  }, 120_000);
});

describe('§3 an approval is bound to what it approved, and can be withdrawn', () => {
  it('an approval removed before the merge is withdrawn: no merge, Approved=False/ApprovalWithdrawn, an Event', async () => {
    const { s } = await givenProductionPr('withdrawn');
    const pr = await s.firstPull();
    // GitHub is still computing mergeability: I8 is UNKNOWN, so nothing can merge yet
    s.github.control.setMergeable({ ...REPO, number: pr.number, mergeable: null });
    s.ci(pr.headSha, 'success');
    const waiting = await attempt(s, 'AwaitingMergeApproval');
    expect((await annotate(s, waiting, 'alice@example.com')).code).toBe(0);
    await eventually('approval recorded', async () => (await s.attempts())[0]?.approval?.approvedBy === 'alice@example.com');
    expect((await s.attempts())[0]!.approval!.commitSha).toBe(pr.headSha);

    // Alice changes her mind and removes her approval
    await kubectlOk(stack, ['annotate', '--as=alice@example.com', 'rollbackattempt', attemptName(waiting), '-n', s.namespace, 'ai-operator.io/approve-']);
    const withdrawn = await eventually('approval withdrawn', async () => { const r = (await s.attempts())[0]!; return r.approval === undefined && r.approvalWithdrawn ? r : undefined; });
    expect(withdrawn.approvalWithdrawn).toMatchObject({ approvedBy: 'alice@example.com', detail: 'its annotation was removed' });
    s.github.control.setMergeable({ ...REPO, number: pr.number, clear: true });
    await neverMerged(s, 4000);
    expect((await s.attempts())[0]!.state).toBe('AwaitingMergeApproval');
    expect(await eventually('condition', () => approvedCondition(s, waiting))).toMatchObject({ status: 'False', reason: 'ApprovalWithdrawn' });
    const events = JSON.parse(await kubectlOk(stack, ['get', 'events.events.k8s.io', '-n', s.namespace, '-o', 'json'])).items as Array<{ reason: string }>;
    expect(events.some((e) => e.reason === 'ApprovalWithdrawn')).toBe(true);
  }, 150_000);

  it('an approval the API server admitted while the operator was down is honoured after its restart', async () => {
    const { s, env, operator } = await givenProductionPr('restart-approval');
    const pr = await s.firstPull();
    s.ci(pr.headSha, 'success');
    const waiting = await attempt(s, 'AwaitingMergeApproval');
    // The operator stops; alice approves meanwhile (the API server checks her); it starts again
    operator!.child.kill('SIGKILL');
    await new Promise((r) => operator!.child.once('exit', r));
    expect((await annotate(s, waiting, 'alice@example.com')).code).toBe(0);
    await s.startOperator(env);

    const done = await attempt(s, 'RollbackComplete', 90_000);
    expect(done).toMatchObject({ approval: { approvedBy: 'alice@example.com', commitSha: pr.headSha } });
    expect(done.transitions.find((t) => t.to === 'RollbackMerged')?.reason).toBe('ApprovedAndMerged');
  }, 180_000);
});

describe('§4 enforcement must cover the attempt\'s namespace', () => {
  it('a binding scoped to other namespaces: an approval written by someone who is not the approver is not recorded, and the attempt says why', async () => {
    // The binding covers only namespaces labelled approvals=enforced; this one is not
    const binding = namespaceBinding('elsewhere', { name: `ai-operator-approvals-scoped-${Date.now()}` });
    (binding.spec as Record<string, unknown>).matchResources = { namespaceSelector: { matchLabels: { approvals: 'enforced' } } };
    const { s } = await givenProductionPr('scoped-binding', { binding });
    const pr = await s.firstPull();
    s.ci(pr.headSha, 'success');
    const waiting = await attempt(s, 'AwaitingMergeApproval');
    // Nothing stops mallory writing alice's name here
    expect((await annotate(s, waiting, 'mallory', 'alice@example.com')).code).toBe(0);

    const condition = await eventually('Approved condition', async () => { const c = await approvedCondition(s, waiting); return c?.reason === 'ApprovalNotEnforced' ? c : undefined; });
    expect(condition.message).toContain(`matchResources.namespaceSelector {matchLabels:{approvals:enforced}} does not select namespace ${s.namespace}`);
    await neverMerged(s, 4000);
    const record = (await s.attempts())[0]!;
    expect(record.approval).toBeUndefined();
    expect(record.state).toBe('AwaitingMergeApproval');
  }, 150_000);
});

describe('§5 CI means the checks the repository requires', () => {
  it('waits for every required check on the rollback commit: a fast one green is not enough; merges once the slow one passes', async () => {
    const s = await given('required-checks', { environment: 'staging', startOperator: false });
    s.github.control.setRequiredChecks({ ...REPO, branch: 'main', contexts: ['ci/build'] });
    s.github.control.setRequiredChecks({ ...REPO, branch: 'main', contexts: ['ci/test'], via: 'ruleset' });
    await s.startOperator();
    await s.release('v2', true);
    const pr = await s.firstPull();
    s.ci(pr.headSha, 'success');
    await new Promise((r) => setTimeout(r, 4000));
    // ci/test (a ruleset's) has not reported: CI is not success
    const pending = (await s.attempts())[0]!;
    expect(pending.state).toBe('PRCreated');
    expect(pending.transitions.map((t) => t.reason)).not.toContain('CISucceeded');

    s.github.control.setStatus({ ...REPO, sha: pr.headSha, state: 'success', context: 'ci/test' });
    const done = await attempt(s, 'RollbackComplete', 90_000);
    expect(done.transitions.find((t) => t.to === 'AwaitingMergeApproval')).toBeDefined();
    expect(done.message).toBeDefined();
    expect(s.github.violations()).toEqual([]);
  }, 150_000);

  it('a required check that fails aborts CIFailure, naming it', async () => {
    const s = await given('required-fails', { environment: 'staging', startOperator: false });
    s.github.control.setRequiredChecks({ ...REPO, branch: 'main', contexts: ['ci/build', 'ci/test'] });
    await s.startOperator();
    await s.release('v2', true);
    const pr = await s.firstPull();
    s.ci(pr.headSha, 'success');
    s.github.control.setStatus({ ...REPO, sha: pr.headSha, state: 'failure', context: 'ci/test' });
    const aborted = await attempt(s, 'Abort');
    expect(aborted).toMatchObject({ reason: 'CIFailure' });
    expect(aborted.message).toContain(`required check failed on ${pr.headSha.slice(0, 7)}: ci/test`);
    await neverMerged(s, 1000);
  }, 120_000);
});
