// The GitHub adapter against the GitHub simulator, with real git underneath:
// the rollback PR restores exactly the app's path (checked with git in the bare
// repository), retries never open a second PR or merge twice, merges make real
// commits, conflicts are real conflicts, CI polling with ETags costs no rate
// limit, and failures come back as typed errors after counted retries. Every
// answer the simulator gives is checked against GitHub's OpenAPI description;
// a test that provoked an answer GitHub would not send fails.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startGitHubSim, type GitHubSim } from '../../dev/github-sim/index.ts';
import { GitHubClient } from '../../src/integrations/github.ts';
import { METRIC, Metrics } from '../../src/observability/metrics.ts';
import { IntegrationError, type ErrorCode } from '../../src/ports/errors.ts';
import type { RepoRef, RollbackPullRequestSpec } from '../../src/ports/github.ts';

const OPERATOR = 'ai-operator-bot';
const repo: RepoRef = { owner: 'acme', repo: 'gitops' };

let sim: GitHubSim;
let token: string;
let aliceToken: string;
/** Commits of the GitOps history, by name. */
const c: Record<string, string> = {};

/** A client as the operator builds it, with instant (recorded) backoff. */
function client(options: { metrics?: Metrics; delays?: number[]; now?: () => number } = {}) {
  return new GitHubClient({
    baseUrl: sim.url, auth: { kind: 'token', token }, timeoutMs: 10_000,
    ...(options.metrics ? { metrics: options.metrics } : {}),
    ...(options.now ? { now: options.now } : {}),
    sleep: async (ms) => { options.delays?.push(ms); },
  });
}

/** git in the simulator's bare repository: what Argo CD would read. */
function git(...args: string[]): string {
  return execFileSync('git', ['--git-dir', `${sim.root}/acme/gitops.git`, ...args], { encoding: 'utf8' }).trim();
}

async function errorsCounted(metrics: Metrics, callName: string, code: ErrorCode): Promise<number> {
  const metric = await metrics.registry.getSingleMetric(METRIC.mcpCallErrors)!.get();
  return metric.values.find((v) => v.labels.call_name === callName && v.labels.error_code === code)?.value ?? 0;
}

function spec(name: string, targetSha: string, path = 'apps/payment'): RollbackPullRequestSpec {
  return {
    branch: `ai-operator/rollback/${name}`, base: 'main', paths: [path], targetSha,
    title: `Rollback payment (staging) to ${targetSha.slice(0, 7)}`, body: `## Why\n\nTest rollback ${name}.`,
    labels: ['ai-operator', 'rollback', 'staging'],
  };
}

async function expectError(promise: Promise<unknown>, code: ErrorCode): Promise<IntegrationError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(IntegrationError);
  expect((error as IntegrationError).code).toBe(code);
  return error as IntegrationError;
}

const deployment = (image: string) => `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: payment\nspec:\n  replicas: 3\n  template:\n    spec:\n      containers:\n        - name: payment\n          image: ${image}\n`;

beforeAll(async () => {
  sim = await startGitHubSim({ validate: true });
  token = sim.control.addUser({ login: OPERATOR }).token;
  aliceToken = sim.control.addUser({ login: 'alice', name: 'Alice' }).token;
  // A GitOps history: payment v1 → v2 (good) → v3 (bad, adds a ConfigMap), with other apps and docs in between.
  c.v1 = (await sim.control.createRepo({
    ...repo, author: 'alice', message: 'payment v1',
    files: { 'apps/payment/deployment.yaml': deployment('payment:1'), 'apps/payment/service.yaml': 'kind: Service\n', 'apps/other/deployment.yaml': 'image: other:1\n', 'README.md': '# gitops\n' },
  })).sha!;
  c.other1 = (await sim.control.push({ ...repo, files: { 'apps/other/deployment.yaml': 'image: other:2\n' }, message: 'other: bump', author: 'alice' })).sha;
  c.v2 = (await sim.control.push({ ...repo, files: { 'apps/payment/deployment.yaml': deployment('payment:2') }, message: 'payment v2', author: 'alice' })).sha;
  c.other2 = (await sim.control.push({ ...repo, files: { 'apps/other/deployment.yaml': 'image: other:3\n' }, message: 'other: bump again', author: 'alice' })).sha;
  c.v3 = (await sim.control.push({ ...repo, files: { 'apps/payment/deployment.yaml': deployment('payment:3-broken'), 'apps/payment/configmap.yaml': 'kind: ConfigMap\n' }, message: 'payment v3', author: 'alice' })).sha;
  c.docs = (await sim.control.push({ ...repo, files: { 'README.md': '# gitops\n\nDocs.\n' }, message: 'docs', author: 'alice' })).sha;
});

afterEach(() => {
  // Every answer in this file must be one GitHub could have sent; each test answers for its own.
  const violations = sim.violations();
  sim.control.clearViolations();
  expect(violations).toEqual([]);
});

afterAll(async () => {
  await sim?.stop();
});

describe('reading history', () => {
  it('lists only the commits that touch the app path, newest first', async () => {
    const commits = await client().readRepositoryContent(repo, 'apps/payment', 'main', 10);
    expect(commits.map((x) => x.sha)).toEqual([c.v3, c.v2, c.v1]);
    expect(commits[0]).toMatchObject({ message: 'payment v3', author: 'alice' });
    expect(commits[0]!.url).toContain(`/acme/gitops/commit/${c.v3}`);
    expect((await client().readRepositoryContent(repo, 'apps/payment', 'main', 2)).map((x) => x.sha)).toEqual([c.v3, c.v2]);
  });

  it('tells who the operator is', async () => {
    expect(await client().identity()).toBe(OPERATOR);
  });
});

describe('branches as Argo CD resolves them (issue 18 §5)', () => {
  it('reads the default branch from GET /repos/{owner}/{repo}, once per repository while cached', async () => {
    await sim.control.createRepo({ owner: 'acme', repo: 'on-master', defaultBranch: 'master', files: { 'a.yaml': 'a: 1\n' } });
    const github = client();
    const before = sim.control.counters()['GET /repos/{owner}/{repo}'] ?? 0;
    expect(await github.defaultBranch({ owner: 'acme', repo: 'on-master' })).toBe('master');
    expect(await github.defaultBranch({ owner: 'acme', repo: 'on-master' })).toBe('master');
    expect(await github.defaultBranch(repo)).toBe('main');
    expect((sim.control.counters()['GET /repos/{owner}/{repo}'] ?? 0) - before).toBe(2);
    await expectError(github.defaultBranch({ owner: 'acme', repo: 'nope' }), 'NOT_FOUND');
  });

  it('tells a branch from a tag, a commit SHA and a name that is nothing', async () => {
    git('tag', 'v1.1.0', c.v1!);
    await sim.control.createBranch({ ...repo, branch: 'release/1.x', from: c.v2! });
    const github = client();
    expect(await github.isBranch(repo, 'main')).toBe(true);
    expect(await github.isBranch(repo, 'release/1.x')).toBe(true);
    expect(await github.isBranch(repo, 'v1.1.0')).toBe(false);
    expect(await github.isBranch(repo, c.v1!)).toBe(false);
    expect(await github.isBranch(repo, 'no-such-thing')).toBe(false);
  });
});

describe('the rollback pull request', () => {
  it('restores exactly the app path to the target tree, in one commit on top of main', async () => {
    // Given payment is degraded at v3, when the operator rolls back to v2
    const pr = await client().createPullRequest(repo, spec('payment-aaaa0001', c.v2!));
    // Then one PR, labelled, on its own branch, one commit ahead of main
    expect(pr).toMatchObject({ branch: 'ai-operator/rollback/payment-aaaa0001', base: 'main', state: 'open', merged: false });
    expect(git('rev-list', `main..${pr.headSha}`).split('\n')).toHaveLength(1);
    expect(git('rev-parse', `${pr.headSha}^`)).toBe(c.docs);
    // and git itself says: the ConfigMap added since v2 is deleted, the Deployment restored, nothing else touched
    expect(git('diff', '--name-status', 'main', pr.headSha).split('\n').sort()).toEqual(['D\tapps/payment/configmap.yaml', 'M\tapps/payment/deployment.yaml']);
    expect(git('diff', '--stat', c.v2!, pr.headSha, '--', 'apps/payment')).toBe('');
    expect(git('rev-parse', `${pr.headSha}:apps/payment`)).toBe(git('rev-parse', `${c.v2}:apps/payment`));
    expect(git('show', `${pr.headSha}:README.md`)).toContain('Docs.');
    expect(git('show', `${pr.headSha}:apps/other/deployment.yaml`)).toBe('image: other:3');
    const [stored] = sim.control.pulls(repo).filter((p) => p.number === pr.number);
    expect(stored!.labels).toEqual(['ai-operator', 'rollback', 'staging']);
  });

  it('is adopted after a restart, never opened twice', async () => {
    const s = spec('payment-aaaa0001', c.v2!);
    // Given the operator crashed after opening the PR and before writing its status
    const restarted = client();
    // When it looks for the attempt's branch, it finds the same PR
    const found = await restarted.findPullRequest(repo, s.branch);
    const opened = sim.control.pulls(repo).filter((p) => p.head === s.branch);
    expect(opened).toHaveLength(1);
    expect(found).toMatchObject({ number: opened[0]!.number, state: 'open', branch: s.branch });
    // and even asked to create it again, it adopts the open PR
    const again = await restarted.createPullRequest(repo, s);
    expect(again.number).toBe(opened[0]!.number);
    expect(sim.control.pulls(repo).filter((p) => p.head === s.branch)).toHaveLength(1);
  });

  it('adopts the PR when a stale list hid it and GitHub says it already exists', async () => {
    const s = spec('payment-aaaa0001', c.v2!);
    const { number, headSha } = sim.control.pulls(repo).find((p) => p.head === s.branch)!;
    // Given GitHub's PR list lags behind (the look before creating sees nothing)
    sim.control.fail({ route: 'GET /repos/{owner}/{repo}/pulls', status: 200, body: [] });
    // When the operator creates the PR, GitHub answers 422 "A pull request already exists" — and the PR is adopted
    expect((await client().createPullRequest(repo, s)).number).toBe(number);
    expect(sim.control.pulls(repo).filter((p) => p.head === s.branch)).toHaveLength(1);
    // and its branch still holds the same commit: same change on the same base, so its CI stands
    expect(git('rev-parse', `refs/heads/${s.branch}`)).toBe(headSha);
  });

  it('survives a lost answer: the retry looks first and adopts the PR the first try opened', async () => {
    const metrics = new Metrics();
    const s = spec('payment-aaaa0002', c.v2!);
    // Given GitHub opens the PR but the answer is lost (502 after the write)
    sim.control.fail({ route: 'POST /repos/{owner}/{repo}/pulls', status: 502, afterEffect: true });
    const pr = await client({ metrics }).createPullRequest(repo, s);
    // Then exactly one PR exists, labelled, and the failed try is counted
    const opened = sim.control.pulls(repo).filter((p) => p.head === s.branch);
    expect(opened).toHaveLength(1);
    expect(pr.number).toBe(opened[0]!.number);
    expect(opened[0]!.labels).toEqual(s.labels);
    expect(await errorsCounted(metrics, 'createPullRequest', 'UNAVAILABLE')).toBe(1);
    expect(sim.control.counters()['POST /repos/{owner}/{repo}/pulls']).toBeGreaterThanOrEqual(1);
  });

  it('reuses a branch an earlier try left behind', async () => {
    const s = spec('payment-aaaa0003', c.v2!);
    // Given an earlier try built its commit on an older base, pointed the branch at it and died before the PR
    await sim.control.createBranch({ ...repo, branch: s.branch, from: c.v1! });
    await sim.control.push({ ...repo, branch: s.branch, files: { 'apps/payment/deployment.yaml': 'image: stale-try\n' }, message: 'Rollback payment', author: OPERATOR });
    const pr = await client().createPullRequest(repo, s);
    expect(git('rev-parse', `${pr.headSha}:apps/payment`)).toBe(git('rev-parse', `${c.v2}:apps/payment`));
    expect(git('rev-parse', `${pr.headSha}^`)).toBe(git('rev-parse', 'main'));
    expect(pr.rollbackCommit).toEqual({ sha: pr.headSha, tree: git('rev-parse', `${pr.headSha}^{tree}`), parent: git('rev-parse', 'main') });
  });

  it('never overwrites a branch of the attempt\'s name that someone else made', async () => {
    const s = spec('payment-aaaa0005', c.v2!);
    await sim.control.createBranch({ ...repo, branch: s.branch, from: c.v1! });
    const before = git('rev-parse', s.branch);
    const error = await expectError(client().createPullRequest(repo, s), 'CONFLICT');
    expect(error.message).toMatch(/branch ai-operator\/rollback\/payment-aaaa0005 already exists at [0-9a-f]{7}, a commit by .*, not the operator's: left as it is/);
    expect(git('rev-parse', s.branch)).toBe(before);
    expect(sim.control.pulls(repo).filter((p) => p.head === s.branch)).toEqual([]);
  });

  it('reads a commit\'s tree once, however many apps roll back from or to it', async () => {
    const gh = client();
    const trees = 'GET /repos/{owner}/{repo}/git/trees/{tree_sha}';
    sim.control.resetCounters();
    const payment = await gh.createPullRequest(repo, spec('payment-cccc0001', c.v2!));
    expect(sim.control.counters()[trees]).toBe(2); // main's tree and the target's
    const other = await gh.createPullRequest(repo, spec('other-cccc0002', c.v2!, 'apps/other'));
    expect(sim.control.counters()[trees]).toBe(2);
    expect(git('rev-parse', `${payment.headSha}:apps/payment`)).toBe(git('rev-parse', `${c.v2}:apps/payment`));
    expect(git('rev-parse', `${other.headSha}:apps/other`)).toBe(git('rev-parse', `${c.v2}:apps/other`));
    expect(git('diff', '--name-only', 'main', other.headSha)).toBe('apps/other/deployment.yaml');
    // Out of the way of the tests that list the open rollback PRs of apps/payment
    await gh.closePullRequest(repo, other.number, 'Test done.');
  });

  it('still restores the path when GitHub truncates the recursive tree', async () => {
    // The whole tree has 8 entries, the app's subtree 3: the first read is cut, the walk is not.
    sim.control.setTreeEntryLimit({ limit: 4 });
    try {
      const pr = await client().createPullRequest(repo, spec('payment-aaaa0004', c.v1!));
      expect(git('rev-parse', `${pr.headSha}:apps/payment`)).toBe(git('rev-parse', `${c.v1}:apps/payment`));
      expect(git('diff', '--name-only', 'main', pr.headSha, '--', '.', ':!apps/payment')).toBe('');
    } finally {
      sim.control.setTreeEntryLimit({ limit: 100_000 });
    }
  });

  it('lists the open PRs that touch the path, and only those', async () => {
    // Given alice opened a PR on another app
    await sim.control.createBranch({ ...repo, branch: 'alice/other', from: 'main' });
    await sim.control.push({ ...repo, branch: 'alice/other', files: { 'apps/other/deployment.yaml': 'image: other:4\n' }, message: 'other v4', author: 'alice' });
    const res = await fetch(`${sim.url}/repos/acme/gitops/pulls`, { method: 'POST', headers: { authorization: `token ${aliceToken}` }, body: JSON.stringify({ title: 'other v4', head: 'alice/other', base: 'main' }) });
    expect(res.status).toBe(201);
    const alices = (await res.json() as { number: number }).number;
    const open = await client().listOpenPullRequests(repo, { base: 'main', paths: ['apps/payment'] });
    const rollbacks = sim.control.pulls(repo).filter((p) => p.head.startsWith('ai-operator/') && p.state === 'open').map((p) => p.number);
    expect(open.map((p) => p.number).sort()).toEqual(rollbacks.sort());
    expect(open.map((p) => p.number)).not.toContain(alices);
    expect((await client().listOpenPullRequests(repo, { base: 'main', paths: ['apps/other'] })).map((p) => p.number)).toEqual([alices]);
  });

  it('reads a PR\'s file list once per head commit, however often the PRs are listed', async () => {
    const gh = client();
    const files = 'GET /repos/{owner}/{repo}/pulls/{pull_number}/files';
    await gh.listOpenPullRequests(repo, { base: 'main', paths: ['apps/payment'] });
    const openCount = sim.control.pulls(repo).filter((p) => p.state === 'open').length;
    sim.control.resetCounters();
    await gh.listOpenPullRequests(repo, { base: 'main', paths: ['apps/payment'] });
    await gh.listOpenPullRequests(repo, { base: 'main', paths: ['apps/other'] });
    expect(sim.control.counters()[files]).toBeUndefined();

    // A new commit on alice's branch is a new head: its list is read again, the others' are not.
    await sim.control.push({ ...repo, branch: 'alice/other', files: { 'apps/payment/oops.yaml': 'x: 1\n' }, message: 'touch payment too', author: 'alice' });
    const touching = await gh.listOpenPullRequests(repo, { base: 'main', paths: ['apps/payment'] });
    expect(sim.control.counters()[files]).toBe(1);
    expect(touching.some((p) => p.branch === 'alice/other')).toBe(true);
    expect(openCount).toBeGreaterThan(1);
  });
});

describe('comments and closing', () => {
  it('comments once per marker and closes with a comment, idempotently', async () => {
    const pr = await client().createPullRequest(repo, spec('payment-bbbb0001', c.v2!));
    const gh = client();
    await gh.commentPullRequest(repo, pr.number, 'approval-request', 'Approve with kubectl annotate …');
    await gh.commentPullRequest(repo, pr.number, 'approval-request', 'Approve with kubectl annotate …');
    await gh.commentPullRequest(repo, pr.number, 'other', 'Another note');
    expect(sim.control.comments({ ...repo, number: pr.number }).map((x) => x.body.split('\n')[0])).toEqual(['<!-- ai-operator:approval-request -->', '<!-- ai-operator:other -->']);
    await gh.closePullRequest(repo, pr.number, 'Health restored before merge; closing.');
    await gh.closePullRequest(repo, pr.number, 'Health restored before merge; closing.');
    expect(sim.control.comments({ ...repo, number: pr.number })).toHaveLength(3);
    const { pr: closed } = await gh.getPullRequestStatus(repo, pr.number);
    expect(closed).toMatchObject({ state: 'closed', merged: false });
  });
});

describe('CI and merging', () => {
  it('polls CI with ETags: an unchanged answer is a 304 that costs no rate limit; a settled verdict is shared for a minute', async () => {
    let now = Date.now();
    const gh = client({ now: () => now });
    const statusRoute = 'GET /repos/{owner}/{repo}/commits/{ref}/status';
    sim.control.setStatus({ ...repo, sha: c.v2!, state: 'success', context: 'ci/build' });
    sim.control.setCheckRun({ ...repo, sha: c.v2!, name: 'unit-tests', conclusion: 'success' });
    expect(await gh.getCommitStatus(repo, c.v2!)).toEqual({ state: 'success', runs: [{ name: 'ci/build', state: 'success' }, { name: 'unit-tests', state: 'success' }] });
    const before = sim.control.rateLimit({ login: OPERATOR }).remaining;
    const requests = sim.control.counters()[statusRoute]!;
    // Asked again within the minute (another app rolling back to the same commit): no request at all
    expect((await gh.getCommitStatus(repo, c.v2!)).state).toBe('success');
    expect(sim.control.counters()[statusRoute]).toBe(requests);
    // When the same poll runs again a minute later and nothing changed
    now += 61_000;
    expect((await gh.getCommitStatus(repo, c.v2!)).state).toBe('success');
    // Then both requests went out, answered 304, and the quota did not move
    expect(sim.control.counters()[statusRoute]).toBe(requests + 1);
    expect(sim.control.rateLimit({ login: OPERATOR }).remaining).toBe(before);
    // And a change is seen (a new ETag, a full answer that costs one request)
    sim.control.setStatus({ ...repo, sha: c.v2!, state: 'failure', context: 'ci/build' });
    now += 61_000;
    expect((await gh.getCommitStatus(repo, c.v2!)).state).toBe('failure');
    expect(sim.control.rateLimit({ login: OPERATOR }).remaining).toBe(before - 1);
  });

  it('reports no CI as none, and a running check as pending', async () => {
    const gh = client();
    expect(await gh.getCommitStatus(repo, c.other1!)).toEqual({ state: 'none', runs: [] });
    sim.control.setCheckRun({ ...repo, sha: c.other1!, name: 'e2e', status: 'in_progress' });
    expect(await gh.getCommitStatus(repo, c.other1!)).toEqual({ state: 'pending', runs: [{ name: 'e2e', state: 'pending' }] });
  });

  it('merges with a real commit on main, merged by the operator', async () => {
    const gh = client();
    sim.control.setRequiredChecks({ ...repo, branch: 'main', contexts: ['ci/build'] });
    const pr = await gh.createPullRequest(repo, spec('payment-cccc0001', c.v2!));
    // Given a required check that has not reported: blocked
    expect((await gh.getPullRequestStatus(repo, pr.number)).pr).toMatchObject({ mergeable: true, mergeableState: 'blocked' });
    await expectError(gh.mergePullRequest(repo, pr.number, { sha: pr.headSha, method: 'squash' }), 'CONFLICT');
    // When CI is green
    sim.control.setStatus({ ...repo, sha: pr.headSha, state: 'success', context: 'ci/build' });
    const { pr: ready, ci } = await gh.getPullRequestStatus(repo, pr.number);
    expect(ready).toMatchObject({ mergeable: true, mergeableState: 'clean' });
    expect(ci.state).toBe('success');
    const mainBefore = git('rev-parse', 'main');
    const { sha } = await gh.mergePullRequest(repo, pr.number, { sha: pr.headSha, method: 'squash' });
    // Then main moved to a real squash commit whose app path is the target's tree
    expect(git('rev-parse', 'main')).toBe(sha);
    expect(git('rev-parse', `${sha}^`)).toBe(mainBefore);
    expect(git('rev-parse', `${sha}:apps/payment`)).toBe(git('rev-parse', `${c.v2}:apps/payment`));
    const { pr: merged } = await gh.getPullRequestStatus(repo, pr.number);
    expect(merged).toMatchObject({ state: 'closed', merged: true, mergeCommitSha: sha, mergedBy: await gh.identity() });
    sim.control.setRequiredChecks({ ...repo, branch: 'main', contexts: [] });
  });

  it('never merges twice: a lost merge answer is found merged on retry', async () => {
    const metrics = new Metrics();
    const gh = client({ metrics });
    const pr = await gh.createPullRequest(repo, spec('payment-cccc0002', c.v1!));
    const merges = sim.control.counters()['PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge'] ?? 0;
    sim.control.fail({ route: 'PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge', status: 502, afterEffect: true });
    const { sha } = await gh.mergePullRequest(repo, pr.number, { sha: pr.headSha, method: 'merge' });
    expect(git('rev-parse', 'main')).toBe(sha);
    // A merge commit: two parents, the second the PR head
    expect(git('rev-list', '--parents', '-n', '1', sha).split(' ').slice(1)[1]).toBe(pr.headSha);
    expect(sim.control.counters()['PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge']).toBe(merges + 1);
    expect(await errorsCounted(metrics, 'mergePullRequest', 'UNAVAILABLE')).toBe(1);
  });

  it('rebase-merges as a linear history', async () => {
    const gh = client();
    const pr = await gh.createPullRequest(repo, spec('payment-cccc0003', c.v2!));
    const mainBefore = git('rev-parse', 'main');
    const { sha } = await gh.mergePullRequest(repo, pr.number, { sha: pr.headSha, method: 'rebase' });
    expect(git('rev-parse', `${sha}^`)).toBe(mainBefore);
    expect(git('rev-list', '--parents', '-n', '1', sha).split(' ')).toHaveLength(2);
    expect(git('rev-parse', `${sha}:apps/payment`)).toBe(git('rev-parse', `${c.v2}:apps/payment`));
  });

  it('reports a real conflict as dirty, and refuses the merge with CONFLICT', async () => {
    const gh = client();
    // Given a rollback PR that changes the image line back
    const pr = await gh.createPullRequest(repo, spec('payment-dddd0001', c.v1!));
    // When someone changes the same line on main
    await sim.control.push({ ...repo, files: { 'apps/payment/deployment.yaml': deployment('payment:4-hotfix') }, message: 'payment hotfix', author: 'alice' });
    // Then git cannot merge them: not mergeable, and the merge is refused
    expect((await gh.getPullRequestStatus(repo, pr.number)).pr).toMatchObject({ mergeable: false, mergeableState: 'dirty' });
    await expectError(gh.mergePullRequest(repo, pr.number, { sha: pr.headSha, method: 'squash' }), 'CONFLICT');
    // And a head that moved since it was checked is a conflict too
    await expectError(gh.mergePullRequest(repo, pr.number, { sha: c.v1!, method: 'squash' }), 'CONFLICT');
  });
});

describe('failures and retries', () => {
  it('retries 502s and succeeds, counting each failure', async () => {
    const metrics = new Metrics();
    const delays: number[] = [];
    sim.control.fail({ route: 'GET /repos/{owner}/{repo}/commits', status: 502, times: 2 });
    const commits = await client({ metrics, delays }).readRepositoryContent(repo, 'apps/payment', 'main', 3);
    expect(commits).toHaveLength(3);
    expect(delays).toHaveLength(2);
    expect(await errorsCounted(metrics, 'readRepositoryContent', 'UNAVAILABLE')).toBe(2);
  });

  it('honours retry-after on 429, counting RATE_LIMITED', async () => {
    const metrics = new Metrics();
    const delays: number[] = [];
    sim.control.fail({ route: 'GET /repos/{owner}/{repo}/commits/{ref}/check-runs', status: 429, retryAfterSeconds: 7 });
    expect((await client({ metrics, delays }).getCommitStatus(repo, c.v1!)).state).toBeDefined();
    expect(delays).toEqual([7000]);
    expect(await errorsCounted(metrics, 'getCommitStatus', 'RATE_LIMITED')).toBe(1);
  });

  it('treats an exhausted quota as RATE_LIMITED', async () => {
    const used = sim.control.rateLimit({ login: OPERATOR }).used;
    sim.control.setRateLimitUsed({ login: OPERATOR, used: 5000 });
    try {
      await expectError(client().readRepositoryContent(repo, 'apps/payment', 'main', 1), 'RATE_LIMITED');
    } finally {
      sim.control.setRateLimitUsed({ login: OPERATOR, used });
    }
  });

  it('fails a 403 at once with PERMISSION_DENIED, without retrying', async () => {
    const metrics = new Metrics();
    const delays: number[] = [];
    const route = 'GET /repos/{owner}/{repo}/commits';
    const before = sim.control.counters()[route] ?? 0;
    sim.control.fail({ route, status: 403 });
    await expectError(client({ metrics, delays }).readRepositoryContent(repo, 'apps/payment', 'main', 3), 'PERMISSION_DENIED');
    expect(sim.control.counters()[route]).toBe(before + 1);
    expect(delays).toEqual([]);
    expect(await errorsCounted(metrics, 'readRepositoryContent', 'PERMISSION_DENIED')).toBe(1);
  });

  it('gives up after three retries with UNAVAILABLE', async () => {
    const delays: number[] = [];
    sim.control.fail({ route: 'GET /repos/{owner}/{repo}/pulls', status: 500, times: 4 });
    await expectError(client({ delays }).findPullRequest(repo, 'ai-operator/rollback/none'), 'UNAVAILABLE');
    expect(delays).toHaveLength(3);
  });

  it('times out a slow answer and retries it', async () => {
    const metrics = new Metrics();
    const gh = new GitHubClient({ baseUrl: sim.url, auth: { kind: 'token', token }, timeoutMs: 1000, metrics, sleep: async () => {} });
    sim.control.fail({ route: 'GET /repos/{owner}/{repo}/commits', latencyMs: 2500 });
    expect(await gh.readRepositoryContent(repo, 'apps/payment', 'main', 1)).toHaveLength(1);
    expect(await errorsCounted(metrics, 'readRepositoryContent', 'TIMEOUT')).toBe(1);
  });

  it('maps an unknown repository to NOT_FOUND', async () => {
    await expectError(client().readRepositoryContent({ owner: 'acme', repo: 'missing' }, 'apps', 'main', 1), 'NOT_FOUND');
  });
});

describe('GitHub App auth', () => {
  it('finds its installation, acts as its bot and merges as it', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const { appId, installations } = sim.control.registerApp({
      slug: 'ai-operator', owner: 'acme', installOn: ['acme'],
      publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    });
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    // Without an installation id: looked up through GITHUB_ORG
    const app = new GitHubClient({ baseUrl: sim.url, auth: { kind: 'app', appId, privateKey: pem }, org: 'acme', sleep: async () => {} });
    expect(await app.identity()).toBe('ai-operator[bot]');
    expect((await app.readRepositoryContent(repo, 'apps/payment', 'main', 1))).toHaveLength(1);
    // With one: used directly
    const direct = new GitHubClient({ baseUrl: sim.url, auth: { kind: 'app', appId, privateKey: pem, installationId: installations.acme! }, sleep: async () => {} });
    const pr = await direct.createPullRequest(repo, spec('payment-eeee0001', c.v2!));
    await direct.mergePullRequest(repo, pr.number, { sha: pr.headSha, method: 'squash' });
    expect((await direct.getPullRequestStatus(repo, pr.number)).pr.mergedBy).toBe('ai-operator[bot]');
  });
});

describe('the repository underneath', () => {
  it('is sound git after everything above (fsck)', () => {
    expect(() => git('fsck', '--strict', '--no-dangling')).not.toThrow();
  });
});

describe('the OpenAPI check itself', () => {
  it('reports a response GitHub would not send', async () => {
    const other = await startGitHubSim({ validate: true });
    try {
      const t = other.control.addUser({ login: 'someone' }).token;
      other.control.corrupt({ route: 'GET /user', drop: 'login' });
      const gh = new GitHubClient({ baseUrl: other.url, auth: { kind: 'token', token: t }, sleep: async () => {} });
      await gh.identity().catch(() => undefined);
      expect(other.violations()).toEqual([expect.stringMatching(/GET \/user → 200: .*login/)]);
    } finally {
      await other.stop();
    }
  });

  it('answers 500 in strict mode instead of the bad response', async () => {
    const other = await startGitHubSim({ validate: true, strict: true });
    try {
      const t = other.control.addUser({ login: 'someone' }).token;
      other.control.corrupt({ route: 'GET /user', drop: 'login', times: 4 });
      const gh = new GitHubClient({ baseUrl: other.url, auth: { kind: 'token', token: t }, sleep: async () => {} });
      await expectError(gh.identity(), 'UNAVAILABLE');
      expect(other.violations()).toHaveLength(4);
    } finally {
      await other.stop();
    }
  });
});

describe('is there anything to roll back?', () => {
  // A repository of its own: the tests above move acme/gitops's main.
  const gitops: RepoRef = { owner: 'acme', repo: 'restored' };
  const h: Record<string, string> = {};
  const gitIn = (...args: string[]) => execFileSync('git', ['--git-dir', `${sim.root}/acme/restored.git`, ...args], { encoding: 'utf8' }).trim();
  const total = () => Object.values(sim.control.counters()).reduce((a, b) => a + b, 0);
  const trees = 'GET /repos/{owner}/{repo}/git/trees/{tree_sha}';
  const ref = 'GET /repos/{owner}/{repo}/git/ref/{ref}';

  beforeAll(async () => {
    // web, web-canary (a sibling whose name starts like web's) and api, all good; then one bad release touching all three.
    h.good = (await sim.control.createRepo({
      ...gitops, author: 'alice', message: 'good',
      files: { 'apps/web/deployment.yaml': deployment('web:1'), 'apps/web/service.yaml': 'kind: Service\n', 'apps/web-canary/deployment.yaml': 'image: web:1\n', 'apps/api/deployment.yaml': 'image: api:1\n' },
    })).sha!;
    h.bad = (await sim.control.push({
      ...gitops, author: 'bob', message: 'bad release',
      files: { 'apps/web/deployment.yaml': deployment('web:2-broken'), 'apps/web/configmap.yaml': 'kind: ConfigMap\n', 'apps/web-canary/deployment.yaml': 'image: web:2\n', 'apps/api/deployment.yaml': 'image: api:2\n' },
    })).sha;
  });

  it('counts the files the rollback commit would add, change or delete under the path, and only there', async () => {
    // Given web is degraded at the bad release, when the operator asks what rolling back to good would change
    const preview = await client().previewRollback(gitops, { paths: ['apps/web'], branch: 'main', targetSha: h.good! });
    // Then two files: the Deployment restored and the ConfigMap deleted — not web-canary's or api's, though the same commit changed them
    expect(preview).toEqual({ changed: 2, headSha: h.bad, files: [{ path: 'apps/web/configmap.yaml', change: 'deleted' }, { path: 'apps/web/deployment.yaml', change: 'restored' }] });
    expect(gitIn('diff', '--name-only', h.good!, 'main', '--', 'apps/web').split('\n')).toHaveLength(2);
    expect(await client().previewRollback(gitops, { paths: ['apps/api/'], branch: 'main', targetSha: h.good! })).toMatchObject({ changed: 1, headSha: h.bad });
    expect((await client().previewRollback(gitops, { paths: ['apps/none'], branch: 'main', targetSha: h.good! })).changed).toBe(0);
  });

  it('is 0 when a human already restored the path on the branch', async () => {
    // Given a human reverted web by hand (same content, so the same blobs) and left the rest
    h.revert = (await sim.control.push({ ...gitops, author: 'alice', message: 'Revert web', files: { 'apps/web/deployment.yaml': deployment('web:1'), 'apps/web/configmap.yaml': null } })).sha;
    expect(gitIn('rev-parse', 'main:apps/web')).toBe(gitIn('rev-parse', `${h.good}:apps/web`));
    // Then there is nothing to roll back for web, measured on the revert
    expect(await client().previewRollback(gitops, { paths: ['apps/web'], branch: 'main', targetSha: h.good! })).toMatchObject({ changed: 0, headSha: h.revert });
    // while web-canary, next to it, still has its one file to restore
    expect((await client().previewRollback(gitops, { paths: ['apps/web-canary'], branch: 'main', targetSha: h.good! })).changed).toBe(1);
  });

  it('costs the PR that follows no tree read and no ref read: the preview\'s head, read a moment ago, is the PR\'s base', async () => {
    const spec = (app: string, name: string): RollbackPullRequestSpec => ({
      branch: `ai-operator/rollback/${name}`, base: 'main', paths: [`apps/${app}`], targetSha: h.good!,
      title: `Rollback ${app} (staging)`, body: '## Why\n\nTest.', labels: ['ai-operator', 'rollback', 'staging'],
    });
    // The PR alone, on a client that has read no tree yet
    sim.control.resetCounters();
    const alone = await client().createPullRequest(gitops, spec('web-canary', 'web-canary-ffff0001'));
    const aloneRequests = total();
    expect(sim.control.counters()[trees]).toBe(2); // the head's tree and the target's

    // The preview, then the PR, on one client
    const gh = client();
    sim.control.resetCounters();
    const preview = await gh.previewRollback(gitops, { paths: ['apps/api'], branch: 'main', targetSha: h.good! });
    expect(preview.changed).toBe(1);
    expect(sim.control.counters()).toEqual({ [ref]: 1, [trees]: 2 });
    const pr = await gh.createPullRequest(gitops, spec('api', 'api-ffff0002'));
    // The PR read no tree (both came from the preview's reads), nor the branch head: read 3 s ago at most, it is shared
    expect(sim.control.counters()[trees]).toBe(2);
    expect(sim.control.counters()[ref]).toBe(1);
    expect(total()).toBe(aloneRequests);
    // and it is the commit the preview described, on the head it measured
    expect(gitIn('rev-parse', `${pr.headSha}^`)).toBe(preview.headSha);
    expect(gitIn('diff', '--name-only', 'main', pr.headSha).split('\n')).toHaveLength(preview.changed);
    expect(gitIn('rev-parse', `${pr.headSha}:apps/api`)).toBe(gitIn('rev-parse', `${h.good}:apps/api`));
    expect(gitIn('rev-parse', `${alone.headSha}:apps/web-canary`)).toBe(gitIn('rev-parse', `${h.good}:apps/web-canary`));
  });
});
