// GitHub answers outside its API description (issue 12 §4), made by the GitHub
// simulator from its real answers (dev/github-sim/malformed.ts): a truncated
// JSON body, a 200 with an HTML page, fields of the wrong type or missing, and a
// PR whose head moved before the merge. Each ends as one IntegrationError naming
// the route or the field — never a TypeError, never a wrong value passed on — or,
// where the request took effect and only its answer is bad, in the effect being
// found (one PR, one merge), not repeated.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGitHubSim, type CorruptRule, type FaultRule, type GitHubSim } from '../../dev/github-sim/index.ts';
import type { ErrorCode } from '../ports/errors.ts';
import type { RepoRef } from '../ports/github.ts';
import { GitHubClient } from './github.ts';

const REPO: RepoRef = { owner: 'acme', repo: 'gitops' };
const PATH = 'apps/cart';

interface World {
  sim: GitHubSim;
  gh: GitHubClient;
  v1: string;
  v2: string;
  /** A fresh rollback PR of `PATH` to v1, on a branch of its own. */
  openPull(): Promise<{ number: number; headSha: string; branch: string }>;
}

interface Case {
  name: string;
  /** The malformed answers, as simulator rules. */
  corrupt?: Array<CorruptRule>;
  fail?: Array<FaultRule>;
  /** Runs the client call; what it returns is compared with `expect.result`. */
  act(w: World, pull: { number: number; headSha: string; branch: string } | undefined): Promise<unknown>;
  /** The case needs an open PR first (its number goes into the rules' route). */
  needsPull?: boolean;
  expect: { code: ErrorCode; message: RegExp } | { result: (value: unknown, w: World) => void | Promise<void> };
  /** How many requests the route got (the retries). */
  requests?: [route: string, count: number];
}

const COMMITS = 'GET /repos/{owner}/{repo}/commits';
const PULL = 'GET /repos/{owner}/{repo}/pulls/{pull_number}';
const PULLS = 'POST /repos/{owner}/{repo}/pulls';
const MERGE = 'PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge';
const CHECKS = 'GET /repos/{owner}/{repo}/commits/{ref}/check-runs';
const STATUS = 'GET /repos/{owner}/{repo}/commits/{ref}/status';
const TREES = 'GET /repos/{owner}/{repo}/git/trees/{tree_sha}';
const HTML = '<!DOCTYPE html><html><head><title>Unicorn!</title></head><body>No server is currently available</body></html>';
const spec = (branch: string, v1: string) => ({ branch, base: 'main', paths: [PATH], targetSha: v1, title: `Rollback cart to ${v1.slice(0, 7)} (${branch})`, body: 'why', labels: ['ai-operator'] });
let branches = 0;

const CASES: Case[] = [
  { name: 'a 200 with an HTML body (commits)', corrupt: [{ route: COMMITS, times: 4, text: HTML }],
    act: (w) => w.gh.readRepositoryContent(REPO, PATH, 'main', 10),
    expect: { code: 'UNAVAILABLE', message: /^readRepositoryContent: UNAVAILABLE: GET \/repos\/acme\/gitops\/commits answered 200 with a body that is not JSON \(content-type text\/html; charset=utf-8, 109 bytes, starting "<!DOCTYPE html>/ },
    requests: [COMMITS, 4] },
  { name: 'truncated JSON (commits), every try', corrupt: [{ route: COMMITS, times: 4, truncate: 100 }],
    act: (w) => w.gh.readRepositoryContent(REPO, PATH, 'main', 10),
    expect: { code: 'UNAVAILABLE', message: /GET \/repos\/acme\/gitops\/commits answered 200 with a body that is not JSON \(content-type application\/json; charset=utf-8, 100 bytes/ },
    requests: [COMMITS, 4] },
  { name: 'truncated JSON once: the retry reads the whole answer', corrupt: [{ route: COMMITS, times: 1, truncate: 10 }],
    act: (w) => w.gh.readRepositoryContent(REPO, PATH, 'main', 10),
    expect: { result: (commits, w) => { expect((commits as Array<{ sha: string }>).map((c) => c.sha)).toEqual([w.v2, w.v1]); } },
    requests: [COMMITS, 2] },
  { name: 'a commit without its sha', corrupt: [{ route: COMMITS, times: 4, drop: 'sha' }],
    act: (w) => w.gh.readRepositoryContent(REPO, PATH, 'main', 10),
    expect: { code: 'UNAVAILABLE', message: /commits of apps\/cart on main\[0\]: sha is missing, not a string \(outside GitHub's API description\)/ } },
  { name: 'a list answered with an object (commits)', fail: [{ route: COMMITS, times: 4, status: 200, body: { message: 'ok' } }],
    act: (w) => w.gh.readRepositoryContent(REPO, PATH, 'main', 10),
    expect: { code: 'UNAVAILABLE', message: /commits of apps\/cart on main is \{"message":"ok"\}, not a list/ } },
  { name: 'a PR number that is a string', needsPull: true, corrupt: [{ route: PULL, times: 4, set: { number: '42' } }],
    act: (w, pull) => w.gh.getPullRequestStatus(REPO, pull!.number),
    expect: { code: 'UNAVAILABLE', message: /pull request #\d+: number is "42", not an integer/ } },
  { name: 'a PR head sha that is a number', needsPull: true, corrupt: [{ route: PULL, times: 4, set: { 'head.sha': 42 } }],
    act: (w, pull) => w.gh.getPullRequestStatus(REPO, pull!.number),
    expect: { code: 'UNAVAILABLE', message: /pull request #\d+: head\.sha is 42, not a string/ } },
  { name: 'a malformed PR answer with an ETag is not remembered for the next 304', needsPull: true, corrupt: [{ route: PULL, times: 1, set: { 'head.sha': null } }],
    act: (w, pull) => w.gh.getPullRequestStatus(REPO, pull!.number),
    expect: { result: (status) => { expect((status as { pr: { headSha: string } }).pr.headSha).toMatch(/^[0-9a-f]{40}$/); } },
    requests: [PULL, 2] },
  { name: 'check runs that are not a list', needsPull: true, corrupt: [{ route: CHECKS, times: 4, set: { check_runs: { total: 1 } } }],
    act: (w, pull) => w.gh.getPullRequestStatus(REPO, pull!.number),
    expect: { code: 'UNAVAILABLE', message: /check runs of [0-9a-f]{40} is \{"total":1\}, not a list/ } },
  { name: 'a commit status whose state is a number', corrupt: [{ route: STATUS, times: 4, set: { 'statuses.0.state': 1 } }],
    act: (w) => w.gh.getCommitStatus(REPO, w.v1),
    expect: { code: 'UNAVAILABLE', message: /statuses of [0-9a-f]{40}\[0\]: state is 1, not a string/ } },
  { name: 'a tree whose entries are not a list', corrupt: [],
    act: async (w) => {
      // A head no earlier case read: a commit's tree is read once and then kept.
      await w.sim.control.push({ ...REPO, files: { 'apps/other/config.yaml': `at: ${Date.now()}\n` }, message: 'Another app changes' });
      w.sim.control.corrupt({ route: TREES, times: 4, set: { tree: 'apps/cart' } });
      return w.gh.previewRollback(REPO, { paths: [PATH], branch: 'main', targetSha: w.v1 });
    },
    expect: { code: 'UNAVAILABLE', message: /the tree of [0-9a-f]{40}: tree is "apps\/cart", not an array/ } },
  { name: 'GET /user without a login', corrupt: [{ route: 'GET /user', times: 4, drop: 'login' }],
    act: async (w) => new GitHubClient({ baseUrl: w.sim.url, auth: { kind: 'token', token: w.sim.control.addUser({ login: 'other-bot' }).token }, backoffMs: [1, 1, 1] }).identity(),
    expect: { code: 'UNAVAILABLE', message: /GET \/user: login is missing, not a string/ } },
  // The request took effect, its answer is garbage: the retry looks first and adopts what it made.
  { name: 'an HTML body for a PR that was opened', corrupt: [{ route: PULLS, times: 1, text: HTML }],
    act: async (w) => w.gh.createPullRequest(REPO, spec(`ai-operator/rollback/html-${++branches}`, w.v1)),
    expect: { result: (pr, w) => {
      const opened = w.sim.control.pulls(REPO).filter((p) => p.head === (pr as { branch: string }).branch);
      expect(opened.map((p) => p.number)).toEqual([(pr as { number: number }).number]);
    } },
    requests: [PULLS, 1] },
  { name: 'a PR number that is a string for a PR that was opened', corrupt: [{ route: PULLS, times: 1, set: { number: 'forty-two' } }],
    act: async (w) => w.gh.createPullRequest(REPO, spec(`ai-operator/rollback/type-${++branches}`, w.v1)),
    expect: { result: (pr, w) => {
      expect(typeof (pr as { number: unknown }).number).toBe('number');
      expect(w.sim.control.pulls(REPO).filter((p) => p.head === (pr as { branch: string }).branch)).toHaveLength(1);
    } },
    requests: [PULLS, 1] },
  { name: 'a merge answer without its sha, for a merge that happened', needsPull: true, corrupt: [{ route: MERGE, times: 1, drop: 'sha' }],
    act: (w, pull) => w.gh.mergePullRequest(REPO, pull!.number, { sha: pull!.headSha, method: 'squash' }),
    expect: { result: (merged, w) => {
      const main = w.sim.control.pulls(REPO).find((p) => p.mergeCommitSha === (merged as { sha: string }).sha);
      expect(main?.merged).toBe(true);
    } },
    requests: [MERGE, 1] },
  { name: 'a PR whose head moved before the merge', needsPull: true,
    act: async (w, pull) => {
      await w.sim.control.push({ ...REPO, branch: pull!.branch, files: { [`${PATH}/extra.yaml`]: 'pushed: by someone else\n' }, message: 'A push onto the rollback branch' });
      return w.gh.mergePullRequest(REPO, pull!.number, { sha: pull!.headSha, method: 'squash' });
    },
    expect: { code: 'CONFLICT', message: /^mergePullRequest: CONFLICT: HTTP 409: Head branch was modified/ },
    requests: [MERGE, 1] },
];

describe('GitHub answers outside its API description', () => {
  const w = {} as World;
  beforeAll(async () => {
    w.sim = await startGitHubSim({ validate: true });
    const { token } = w.sim.control.addUser({ login: 'ai-operator-bot' });
    await w.sim.control.createRepo({ ...REPO, files: { 'README.md': 'x\n' }, message: 'init' });
    w.v1 = (await w.sim.control.push({ ...REPO, files: { [`${PATH}/deployment.yaml`]: 'image: v1\n' }, message: 'Release v1' })).sha;
    w.sim.control.setStatus({ ...REPO, sha: w.v1, state: 'success', context: 'ci/build' });
    w.v2 = (await w.sim.control.push({ ...REPO, files: { [`${PATH}/deployment.yaml`]: 'image: v2\n' }, message: 'Release v2' })).sha;
    // The cases push between calls and mean the next call to read the branch's head again: none shared.
    w.gh = new GitHubClient({ baseUrl: w.sim.url, auth: { kind: 'token', token }, backoffMs: [1, 1, 1], headCacheMs: 0 });
    w.openPull = async () => {
      // A bad release on main each time: a case that merged restored v1 there, and a PR restoring nothing is never opened.
      await w.sim.control.push({ ...REPO, files: { [`${PATH}/deployment.yaml`]: `image: v2-${branches + 1}\n` }, message: 'Release v2 again' });
      const pr = await w.gh.createPullRequest(REPO, spec(`ai-operator/rollback/cart-${++branches}`, w.v1));
      return { number: pr.number, headSha: pr.headSha, branch: pr.branch };
    };
  });
  afterAll(() => w.sim.stop());

  it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const pull = c.needsPull ? await w.openPull() : undefined;
    w.sim.control.clearViolations();
    w.sim.control.resetCounters();
    for (const rule of c.corrupt ?? []) w.sim.control.corrupt(rule);
    for (const rule of c.fail ?? []) w.sim.control.fail(rule);
    const outcome = await c.act(w, pull).then((value) => ({ value }), (error: unknown) => ({ error }));
    w.sim.control.clearFaults();
    if ('code' in c.expect) {
      expect(outcome).toHaveProperty('error');
      const error = (outcome as { error: Error & { code?: string } }).error;
      expect(error.name).toBe('IntegrationError');
      expect(error.code).toBe(c.expect.code);
      expect(error.message).toMatch(c.expect.message);
    } else {
      if ('error' in outcome) throw outcome.error;
      await c.expect.result(outcome.value, w);
    }
    if (c.requests) expect(w.sim.control.counters()[c.requests[0]]).toBe(c.requests[1]);
    // Every answer outside the description was the case's own doing, and the simulator saw it as such.
    if (c.corrupt) expect(w.sim.violations().length).toBeGreaterThan(0);
    else if (!c.fail) expect(w.sim.violations()).toEqual([]);
  }, 20_000);
});
