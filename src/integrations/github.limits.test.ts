// The GitHub client against the simulator: what a poll reads and what a merge
// decision reads (fresh), the budget's hold on every request (a secondary-rate-limit
// answer stops every write of the installation until its retry-after), and the
// per-request timeout counted once the budget let the request out.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startGitHubSim, type GitHubSim } from '../../dev/github-sim/index.ts';
import { Metrics } from '../observability/metrics.ts';
import type { RepoRef } from '../ports/github.ts';
import type { IntegrationError } from '../ports/errors.ts';
import { GitHubClient } from './github.ts';

const REPO: RepoRef = { owner: 'acme', repo: 'limits' };
const PULL = 'GET /repos/{owner}/{repo}/pulls/{pull_number}';
const PULLS = 'GET /repos/{owner}/{repo}/pulls';
const STATUS = 'GET /repos/{owner}/{repo}/commits/{ref}/status';
const CHECKS = 'GET /repos/{owner}/{repo}/commits/{ref}/check-runs';
const TREES = 'POST /repos/{owner}/{repo}/git/trees';
const COMMENTS = 'POST /repos/{owner}/{repo}/issues/{issue_number}/comments';

describe('GitHubClient: polls, fresh reads and the budget', () => {
  let sim: GitHubSim;
  let token: string;
  let v1: string;
  let branches = 0;
  beforeAll(async () => {
    sim = await startGitHubSim({ validate: true });
    ({ token } = sim.control.addUser({ login: 'ai-operator-bot' }));
    await sim.control.createRepo({ ...REPO, files: { 'README.md': 'x\n' } });
    const files = (tag: string) => Object.fromEntries(['a', 'b', 'c', 'd'].map((app) => [`apps/${app}/deployment.yaml`, `image: ${tag}\n`]));
    ({ sha: v1 } = await sim.control.push({ ...REPO, files: files('v1'), message: 'v1' }));
    await sim.control.push({ ...REPO, files: files('v2'), message: 'v2' });
  });
  beforeEach(() => {
    sim.control.clearFaults();
    sim.control.resetCounters();
  });
  afterAll(async () => {
    expect(sim.violations()).toEqual([]);
    await sim.stop();
  });
  const spec = (app: string) => ({ branch: `ai-operator/rollback/${app}-${++branches}`, base: 'main', paths: [`apps/${app}`], targetSha: v1, title: `Rollback ${app}`, body: 'why', labels: ['ai-operator'] });
  const count = (route: string) => sim.control.counters()[route] ?? 0;

  it('polls open PRs from one list of the repository, and CI just opened without reading it; a merge decision reads both fresh', async () => {
    let now = Date.now();
    const gh = new GitHubClient({ baseUrl: sim.url, auth: { kind: 'token', token }, now: () => now, ciPollMs: 60_000, pullListMaxAgeMs: 10_000 });
    const opened = await Promise.all(['a', 'b', 'c'].map((app) => gh.createPullRequest(REPO, spec(app))));
    sim.control.resetCounters();
    for (const pr of opened) {
      const { pr: read, ci } = await gh.getPullRequestStatus(REPO, pr.number, pr.rollbackCommit.sha, { polling: true });
      expect(read).toMatchObject({ number: pr.number, state: 'open', headSha: pr.rollbackCommit.sha, base: 'main' });
      expect(ci).toEqual({ state: 'none', runs: [] });
    }
    // One list for the three (it pages; the PRs just opened are in it either way), no PR, no CI.
    expect([count(PULLS), count(PULL), count(STATUS), count(CHECKS)]).toEqual([1, 0, 0, 0]);

    // CI reports: a poll sees it once ciPollMs have passed since the PR opened; success is never reused.
    sim.control.setStatus({ ...REPO, sha: opened[0]!.rollbackCommit.sha, state: 'success', context: 'ci/build' });
    expect((await gh.getPullRequestStatus(REPO, opened[0]!.number, opened[0]!.rollbackCommit.sha, { polling: true })).ci.state).toBe('none');
    now += 61_000;
    expect((await gh.getPullRequestStatus(REPO, opened[0]!.number, opened[0]!.rollbackCommit.sha, { polling: true })).ci.state).toBe('success');
    expect([count(STATUS), count(CHECKS)]).toEqual([1, 1]);
    // Still pending on b: read once, then reused for a minute.
    await gh.getPullRequestStatus(REPO, opened[1]!.number, opened[1]!.rollbackCommit.sha, { polling: true });
    await gh.getPullRequestStatus(REPO, opened[1]!.number, opened[1]!.rollbackCommit.sha, { polling: true });
    expect([count(STATUS), count(CHECKS)]).toEqual([2, 2]);

    // What a merge is decided on: the PR itself (mergeability is only there) and CI, each read now.
    const fresh = await gh.getPullRequestStatus(REPO, opened[0]!.number, opened[0]!.rollbackCommit.sha);
    expect(fresh.pr.mergeableState).not.toBe('unknown');
    expect(fresh.ci.state).toBe('success');
    expect([count(PULL), count(STATUS), count(CHECKS)]).toEqual([1, 3, 3]);

    // A PR closed by a human leaves the list: the poll reads the PR itself and sees it closed.
    await fetch(`${sim.url}/repos/${REPO.owner}/${REPO.repo}/pulls/${opened[2]!.number}`, { method: 'PATCH', headers: { authorization: `token ${token}` }, body: JSON.stringify({ state: 'closed' }) });
    now += 61_000;
    expect((await gh.getPullRequestStatus(REPO, opened[2]!.number, opened[2]!.rollbackCommit.sha, { polling: true })).pr.state).toBe('closed');
  });

  it('lists the other open PRs fresh for the invariants, and from the shared list for a poll', async () => {
    let now = Date.now();
    const gh = new GitHubClient({ baseUrl: sim.url, auth: { kind: 'token', token }, now: () => now });
    await gh.listOpenPullRequests(REPO, { base: 'main', paths: ['apps/d'] }, { polling: true });
    now += 1000;
    await gh.listOpenPullRequests(REPO, { base: 'main', paths: ['apps/d'] }, { polling: true });
    expect(count(PULLS)).toBe(1);
    now += 1;
    await gh.listOpenPullRequests(REPO, { base: 'main', paths: ['apps/d'] });
    expect(count(PULLS)).toBe(2);
  });

  it('a merge it made moves the head it shares: the next preview on the base measures the merged head, not the one read a moment ago', async () => {
    const now = Date.now();
    const gh = new GitHubClient({ baseUrl: sim.url, auth: { kind: 'token', token }, now: () => now });
    // Two attempts restore apps/c to v1: one opens its PR, the other previews on the same head (shared) and waits
    const pr = await gh.createPullRequest(REPO, spec('c'));
    const before = await gh.previewRollback(REPO, { paths: ['apps/c'], branch: 'main', targetSha: v1 });
    expect(before.changed).toBe(1);
    const merged = await gh.mergePullRequest(REPO, pr.number, { sha: pr.rollbackCommit.sha, method: 'squash' });
    // The clock has not moved: without the merge forgetting it, the head read before would be shared still
    const after = await gh.previewRollback(REPO, { paths: ['apps/c'], branch: 'main', targetSha: v1 });
    expect(after).toMatchObject({ headSha: merged.sha, changed: 0 });
    // Opened anyway (measured before the merge, opened after it): nothing is left to restore, so nothing is written
    sim.control.resetCounters();
    const late = await gh.createPullRequest(REPO, spec('c')).then(() => undefined, (error: IntegrationError) => error);
    expect(late).toMatchObject({ name: 'NothingToRestoreError', code: 'CONFLICT', message: expect.stringContaining(`main at ${merged.sha.slice(0, 7)} already holds apps/c as at ${v1.slice(0, 7)}`) });
    expect(Object.keys(sim.control.counters()).filter((route) => !route.startsWith('GET '))).toEqual([]);
  });

  it('a new leader weighing the open PRs for many attempts at once reads each PR\'s files once', async () => {
    const opener = new GitHubClient({ baseUrl: sim.url, auth: { kind: 'token', token } });
    await Promise.all(['a', 'b'].map((app) => opener.createPullRequest(REPO, spec(app))));
    const open = (await opener.listOpenPullRequests(REPO, { base: 'main', paths: [''] })).length;
    sim.control.resetCounters();
    // Another process: it did not open them, so it knows none of their files
    const leader = new GitHubClient({ baseUrl: sim.url, auth: { kind: 'token', token } });
    const weighed = await Promise.all(['a', 'b', 'c', 'd', 'a', 'b'].map((app) => leader.listOpenPullRequests(REPO, { base: 'main', paths: [`apps/${app}`] })));
    expect(weighed.map((prs) => prs.length > 0)).toEqual([true, true, false, false, true, true]);
    expect(count('GET /repos/{owner}/{repo}/pulls/{pull_number}/files')).toBe(open);
  });

  it('after a secondary-rate-limit answer, holds every write of the installation until its retry-after has passed', async () => {
    const metrics = new Metrics();
    const gh = new GitHubClient({ baseUrl: sim.url, auth: { kind: 'token', token }, budgetMetrics: metrics, sleep: async () => {} });
    const pr = await gh.createPullRequest(REPO, spec('d'));
    sim.control.fail({ route: TREES, status: 403, retryAfterSeconds: 2 });
    const started = Date.now();
    // Two attempts write at once: one opening gets the answer, the other's comment waits out the retry-after too.
    const [opened] = await Promise.all([
      gh.createPullRequest(REPO, spec('a')),
      (async () => {
        await new Promise((r) => setTimeout(r, 300));
        await gh.commentPullRequest(REPO, pr.number, 'note', 'a comment');
        return Date.now() - started;
      })().then((ms) => expect(ms).toBeGreaterThanOrEqual(1900)),
    ]);
    expect(opened.state).toBe('open');
    expect(Date.now() - started).toBeGreaterThanOrEqual(2000);
    expect(count(TREES)).toBe(3);
    expect(count(COMMENTS)).toBe(1);
    expect(await metrics.registry.metrics()).toMatch(/^ai_operator_github_secondary_rate_limits_total 1$/m);
  });

  it('refuses an opening while its turn has not come, without a request: RATE_LIMITED, not retried', async () => {
    const gh = new GitHubClient({ baseUrl: sim.url, auth: { kind: 'token', token }, limits: { writesPerMinute: 5 }, sleep: async () => {} });
    await gh.createPullRequest(REPO, spec('b'));
    const before = sim.control.counters();
    await expect(gh.createPullRequest(REPO, spec('c'))).rejects.toMatchObject({ code: 'RATE_LIMITED', message: /^createPullRequest: RATE_LIMITED: GitHub's write budget of this installation \(5 per minute, 500 per hour\)/ });
    await expect(gh.reserveWrites({ key: 'ai-operator/rollback/x', writes: 5, turn: { production: true, since: new Date().toISOString() } })).rejects.toMatchObject({ code: 'RATE_LIMITED' });
    expect(sim.control.counters()).toEqual(before);
  });

  it('times a request out once the budget let it out, not while it waited for its place', async () => {
    const gh = new GitHubClient({ baseUrl: sim.url, auth: { kind: 'token', token }, timeoutMs: 1000, limits: { maxInFlight: 1 }, sleep: async () => {} });
    sim.control.fail({ route: 'GET /repos/{owner}/{repo}/commits', latencyMs: 700, times: 2 });
    // Two reads, one place in flight: the second waits 700 ms, then has its own second.
    const reads = await Promise.all([gh.readRepositoryContent(REPO, 'apps/a', 'main', 1), gh.readRepositoryContent(REPO, 'apps/b', 'main', 1)]);
    expect(reads.map((r) => r.length)).toEqual([1, 1]);
    sim.control.fail({ route: 'GET /repos/{owner}/{repo}/commits', latencyMs: 1500, times: 1 });
    const metrics = new Metrics();
    const timed = new GitHubClient({ baseUrl: sim.url, auth: { kind: 'token', token }, timeoutMs: 1000, metrics, sleep: async () => {} });
    expect(await timed.readRepositoryContent(REPO, 'apps/a', 'main', 1)).toHaveLength(1);
    expect(await metrics.registry.metrics()).toMatch(/ai_operator_mcp_call_errors_total\{call_name="readRepositoryContent",error_code="TIMEOUT"\} 1/);
  });
});
