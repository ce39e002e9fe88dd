// GitHubPort on GitHub's REST API (@octokit/rest), token or GitHub App auth,
// any GITHUB_API_URL (Enterprise included). Each port method is one `call`
// (SPEC §8): the timeout, retries with backoff and metrics are there, so Octokit
// itself never retries (no retry or throttling plugin — two retry layers would
// multiply attempts, and the throttling plugin's one-write-per-second queue
// would hold a burst of rollbacks past the call timeout). Creating a PR and
// merging look before they retry, so a retry never opens two PRs or merges twice.
//
// The rollback commit restores the app's path to its tree at the target: the
// files under the path at the base head that the target lacks are deleted, the
// ones that differ are set to the target's blobs, everything else is untouched —
// one tree (base_tree + changed entries), one commit, one branch, one PR.
// previewRollback computes the same entries the same way (and fills the same
// commit-tree cache), so asking "is there anything to roll back?" first costs
// the PR that follows no tree read.
//
// What a burst of rollbacks costs (issue 23 §3). Every request passes through the
// installation's budget (github-budget.ts): GitHub's secondary limits — requests in
// flight, points per endpoint, content-creating requests per minute and per hour —
// are kept by all attempts together, an opening's writes are set aside together and
// in turn (reserveWrites), and a secondary-rate-limit answer stops every write until
// its retry-after. Polling an open PR while its CI runs reads nothing per PR: the
// repository's open PRs are listed once for every attempt that polls (SharedRead,
// each page ETag'd), a PR the operator just opened is known without a read, and CI
// still pending is read again only every `ciPollMs`. What a merge is decided on —
// the PR, its mergeability, CI on the rollback commit, the other open PRs — is always
// read fresh (getPullRequestStatus and listOpenPullRequests without `polling`).
// Conditional requests everywhere a GET is repeated: the last ETag and what was read
// of the answer are kept per URL, and a 304 (which GitHub does not count against the
// rate limit) returns it. Reads many attempts make at once (a commit's tree, a
// branch's head for a few seconds, a branch's facts, a settled CI verdict of an old
// commit) are made once and shared.
//
// Files at a commit (readFileAt, listFilesAt: what modules/source-set.ts reads of an
// app's kustomizations and charts) come from the same per-commit tree cache, and a
// file's content from the blob API, kept by blob SHA: computing an app's source set
// again at a commit already read costs no request at all.
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import { createAppAuth } from '@octokit/auth-app';
import { Octokit } from '@octokit/rest';
import { isUnder, itemsUnder, type CheckRun, type CiState } from '../fsm/record.ts';
import { collapsePaths } from '../modules/source-set.ts';
import type { Logger } from '../observability/log.ts';
import { IntegrationError, NothingToRestoreError } from '../ports/errors.ts';
import {
  OPENING_WRITES, type BranchDeletion, type CiStatus, type CommitIdentity, type CommitInfo, type GitHubPort, type OpenedPullRequest, type PullRequestInfo, type RepoRef, type RollbackCommit,
  type RollbackCommitCheck, type RollbackPreview, type RollbackPullRequestSpec,
} from '../ports/github.ts';
import { call, classifyHttpError, type CallMetrics, type Classified } from './call.ts';
import { checkCommit, checkEach, checkJsonBody, checkPull, checkTree, need } from './github-answers.ts';
import { BudgetRefusal, GitHubBudget, type BudgetMetrics, type GitHubLimits, type WriteTurn } from './github-budget.ts';
import { SharedRead } from './shared-read.ts';

/** How the operator authenticates to GitHub: a token, or a GitHub App (GITHUB_APP_ID, SPEC §12). */
export type GitHubAuth =
  | { kind: 'token'; token: string }
  | { kind: 'app'; appId: number; privateKey: string; installationId?: number };

export interface GitHubClientOptions {
  /** GITHUB_API_URL, e.g. https://api.github.com or https://ghe.example.com/api/v3. */
  baseUrl: string;
  auth: GitHubAuth;
  /** GITHUB_ORG: where the App's installation is looked up when no installation id is configured. */
  org?: string;
  metrics?: CallMetrics;
  log?: Logger;
  timeoutMs?: number;
  /** Delays before retry 1, 2, 3 (default 1 s / 2 s / 4 s). */
  backoffMs?: readonly number[];
  sleep?: (ms: number) => Promise<void>;
  /** Conditional-request cache entries kept (one per polled URL: a PR, CI of a commit, a page of a list). */
  etagCacheSize?: number;
  /** GitHub's secondary limits this installation keeps (GITHUB_WRITES_PER_MINUTE, GITHUB_WRITES_PER_HOUR; GitHub's numbers by default). */
  limits?: Partial<GitHubLimits>;
  /** What the budget says of itself (ai_operator_github_write_wait_seconds, …). */
  budgetMetrics?: BudgetMetrics;
  /** How long a request may wait for its place in the budget before the call gives up for this interval (default 10 s). */
  budgetWaitMs?: number;
  /** While CI on a rollback commit is pending, a poll reads it again only this often (GITHUB_CI_POLL_SECONDS; default 60 s). */
  ciPollMs?: number;
  /** How old the shared list of a repository's open PRs may be for a poll (default 10 s). */
  pullListMaxAgeMs?: number;
  /** How long a branch's head, once read, is shared by the previews and PRs of other attempts (default 3 s). */
  headCacheMs?: number;
  /**
   * How long a repository's default branch, and whether a name is one of its branches, are trusted (5 min by
   * default): asked for every Degraded app before its attempt starts, they change rarely, but they do change.
   */
  branchCacheMs?: number;
  now?: () => number;
}

type Req = { request: { signal: AbortSignal } };

/** What a request is sent for: the budget reads it (a poll does not wait; an opening's writes use its places). */
interface RequestScope {
  call: string;
  /** The opening (its branch) whose places set aside this call's writes use. */
  reservation?: string;
  /** A poll while a PR waits: it has an answer to fall back on, so it never waits for the budget. */
  polling?: boolean;
}

/** A request that found no answer within the per-request timeout. */
const TIMED_OUT = Symbol('timed out');

/** GitHub's answer that a secondary rate limit was exceeded (403 or 429 saying so, or a 429 with retry-after). */
export function secondaryLimitOf(error: unknown): { retryAfterMs: number } | undefined {
  const e = error as { status?: unknown; message?: unknown; response?: { headers?: Record<string, string>; data?: { message?: unknown } } };
  if (e.status !== 403 && e.status !== 429) return undefined;
  const headers = e.response?.headers ?? {};
  const message = [e.message, e.response?.data?.message].filter((m) => typeof m === 'string').join(' ');
  const retryAfter = Number(headers['retry-after']);
  const says = /secondary rate limit/i.test(message);
  if (!says && !(e.status === 429 && Number.isFinite(retryAfter))) return undefined;
  // Without retry-after GitHub says to wait until x-ratelimit-reset when no request remains, else at least a minute.
  const reset = headers['x-ratelimit-remaining'] === '0' ? Number(headers['x-ratelimit-reset']) * 1000 - Date.now() : Number.NaN;
  return { retryAfterMs: Number.isFinite(retryAfter) ? retryAfter * 1000 : Number.isFinite(reset) && reset > 0 ? reset : 60_000 };
}

export interface TreeItem {
  path: string;
  mode: string;
  type: string;
  sha: string;
}

/** The pull-request fields both the list (simple) and the full object carry. */
interface PullLike {
  number: number;
  html_url: string;
  title: string;
  state: string;
  head: { ref: string; sha: string };
  base: { ref: string };
  user?: { login: string } | null;
  merged_at: string | null;
  merge_commit_sha: string | null;
  merged?: boolean;
  merged_by?: { login: string } | null;
  mergeable?: boolean | null;
  mergeable_state?: string;
}

const USER_AGENT = 'ai-operator/0.1.0';
const marker = (name: string) => `<!-- ai-operator:${name} -->`;

/** What is kept of a pull request read (a list's or the full object): the fields pullRequestInfo reads, no more. */
export function keptPull(p: PullLike): PullLike {
  return {
    number: p.number, html_url: p.html_url, title: p.title, state: p.state, head: { ref: p.head.ref, sha: p.head.sha }, base: { ref: p.base.ref },
    user: p.user ? { login: p.user.login } : null, merged_at: p.merged_at ?? null, merge_commit_sha: p.merge_commit_sha ?? null,
    ...(p.merged !== undefined ? { merged: p.merged } : {}), ...(p.merged_by ? { merged_by: { login: p.merged_by.login } } : {}),
    ...(p.mergeable !== undefined ? { mergeable: p.mergeable } : {}), ...(p.mergeable_state !== undefined ? { mergeable_state: p.mergeable_state } : {}),
  };
}

export function pullRequestInfo(p: PullLike, what = 'pull request'): PullRequestInfo {
  checkPull(p, what);
  // The list endpoint has no `merged`; merged_at says it there.
  const merged = p.merged ?? p.merged_at !== null;
  return {
    number: p.number, url: p.html_url, branch: p.head.ref, base: p.base.ref, title: p.title, author: p.user?.login ?? '',
    state: p.state === 'open' ? 'open' : 'closed', merged,
    ...(merged && p.merge_commit_sha ? { mergeCommitSha: p.merge_commit_sha } : {}),
    ...(p.merged_by ? { mergedBy: p.merged_by.login } : {}),
    headSha: p.head.sha, mergeable: p.mergeable ?? null, mergeableState: p.mergeable_state ?? 'unknown',
  };
}

function checkRunState(run: { status: string; conclusion: string | null }): CiState {
  if (run.status !== 'completed') return 'pending';
  return run.conclusion === 'success' || run.conclusion === 'neutral' || run.conclusion === 'skipped' ? 'success' : 'failure';
}

/** Commit statuses and check runs of one commit, as one CI verdict. */
export function ciStatus(statuses: Array<{ context: string; state: string }>, checkRuns: Array<{ name: string; status: string; conclusion: string | null }>): CiStatus {
  const runs: CheckRun[] = [
    ...statuses.map((s) => ({ name: s.context, state: (['success', 'failure', 'pending', 'error'].includes(s.state) ? s.state : 'pending') as CiState })),
    ...checkRuns.map((r) => ({ name: r.name, state: checkRunState(r) })),
  ];
  // GitHub's combined state says "pending" when there are no statuses at all; that is "none" here.
  if (runs.length === 0) return { state: 'none', runs };
  const state: CiState = runs.some((r) => r.state === 'failure') ? 'failure'
    : runs.some((r) => r.state === 'error') ? 'error'
      : runs.some((r) => r.state === 'pending') ? 'pending' : 'success';
  return { state, runs };
}

/** The tree entries that make `path` at `current` equal to `path` at `target` (sha null deletes). */
export function restoreEntries(current: TreeItem[], target: TreeItem[]): Array<{ path: string; mode: '100644' | '100755' | '040000' | '160000' | '120000'; type: 'blob' | 'tree' | 'commit'; sha: string | null }> {
  type Mode = '100644' | '100755' | '040000' | '160000' | '120000';
  const files = (items: TreeItem[]) => new Map(items.filter((e) => e.type !== 'tree').map((e) => [e.path, e]));
  const now = files(current);
  const then = files(target);
  const entries: ReturnType<typeof restoreEntries> = [];
  for (const [path, e] of now) if (!then.has(path)) entries.push({ path, mode: e.mode as Mode, type: e.type as 'blob' | 'commit', sha: null });
  for (const [path, e] of then) {
    const was = now.get(path);
    if (!was || was.sha !== e.sha || was.mode !== e.mode) entries.push({ path, mode: e.mode as Mode, type: e.type as 'blob' | 'commit', sha: e.sha });
  }
  return entries.sort((a, b) => a.path.localeCompare(b.path));
}

/** `path` as a tree prefix: '' for the whole repository. */
export function normalisePath(path: string): string {
  const p = path.replace(/^\.?\/+/, '').replace(/\/+$/, '');
  return p === '.' ? '' : p;
}

/** Whether `file` lies under the tree prefix (fsm/record.ts isUnder). */
export const under = isUnder;

/** The entries of a path-sorted tree at or under `prefix` (fsm/record.ts itemsUnder). */
export function entriesUnder(sorted: TreeItem[], prefix: string): TreeItem[] {
  return itemsUnder(sorted, prefix, (e) => e.path);
}

/** The collapsed set of tree prefixes a rollback restores ('' is the whole repository). */
export function normalisePaths(paths: readonly string[]): string[] {
  return collapsePaths(paths.map(normalisePath));
}

/** How a commit message and a PR name the restored paths: one, or the first few and a count. */
export function describePaths(prefixes: readonly string[]): string {
  if (prefixes.length === 0) return 'nothing';
  const named = prefixes.slice(0, 5).map((p) => p || 'the repository').join(', ');
  return prefixes.length > 5 ? `${named} and ${prefixes.length - 5} more path(s)` : named;
}

function statusOf(error: unknown): number | undefined {
  const status = (error as { status?: unknown }).status;
  return typeof status === 'number' ? status : undefined;
}

/** The messages of a 422's `errors` list (GitHub puts "A pull request already exists…" there). */
function validationMessages(error: unknown): string[] {
  const data = (error as { response?: { data?: { message?: unknown; errors?: Array<{ message?: unknown }> } } }).response?.data;
  return [data?.message, ...(data?.errors ?? []).map((e) => e.message)].filter((m): m is string => typeof m === 'string');
}

/** Merge refusals are conflicts with the PR's state, not bad arguments: 405 (not mergeable) and 409 (head moved). */
function classifyMerge(error: unknown): Classified {
  const classified = classifyHttpError(error);
  return statusOf(error) === 405 ? { ...classified, code: 'CONFLICT' } : classified;
}

// Whole-repository trees can be large; a few dozen commits cover a burst of rollbacks.
const COMMIT_TREE_CACHE_SIZE = 64;
/** How long a branch's required checks are taken as read. */
const REQUIRED_CHECKS_TTL_MS = 15_000;
// File lists of open PRs (a PR head each): small, and as many as PRs are open at once.
const PULL_FILES_CACHE_SIZE = 2000;
// File contents by blob SHA (kustomizations, Chart.yaml files: small, and shared by every commit that keeps them).
const BLOB_CACHE_SIZE = 2000;
// What is kept per conditional GET is small (a PR's fields, a commit's CI, a page of a list): a PR, its CI and
// its check runs for thousands of PRs in flight fit, so a poll is never answered 200 for want of room.
const ETAG_CACHE_SIZE = 12_000;
/** Commits whose pending CI a poll may reuse: as many as PRs wait at once. */
const CI_SEEN_SIZE = 5000;
/** How long a settled CI verdict of a commit (a rollback target's) is shared by the attempts that ask. */
const SETTLED_CI_TTL_MS = 60_000;
/** How long a PR the operator opened is remembered for the lists of open PRs. */
const OWN_PULL_MS = 60_000;
/** A list that began this soon after a PR the operator opened may not show it yet (GitHub's lists lag). */
const LIST_LAG_MS = 10_000;
/** How long "this branch has no PR" read by findPullRequest stands in for createPullRequest's look before creating. */
const ABSENT_MS = 30_000;
/** Repositories and (repository, name) pairs whose branch facts are kept. */
const BRANCH_CACHE_SIZE = 5000;

/** Map order is insertion order: re-inserting marks an entry recent; past `limit` the oldest goes. */
function rememberBounded<V>(map: Map<string, V>, key: string, value: V, limit: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > limit) map.delete(map.keys().next().value!);
}

/** `read`'s answer, shared by every caller asking for `key` while it is under way (`reads` holds those). */
function sharedWhileUnderWay<T>(reads: Map<string, Promise<T>>, key: string, read: () => Promise<T>): Promise<T> {
  const pending = reads.get(key);
  if (pending) return pending;
  const reading = read().finally(() => reads.delete(key));
  reads.set(key, reading);
  return reading;
}

export class GitHubClient implements GitHubPort {
  private readonly options: GitHubClientOptions;
  private client: Promise<Octokit> | undefined;
  private login: Promise<string> | undefined;
  private readonly etags = new Map<string, { etag: string; data: unknown }>();
  private readonly pullFiles = new Map<string, string[]>();
  /** A PR's files being read, by the same key: the attempts weighing the open PRs at once (a burst, a new leader) read each once. */
  private readonly pullFilesReads = new Map<string, Promise<string[]>>();
  private readonly commitTrees = new Map<string, { sha: string; files: TreeItem[] }>();
  /** Tree reads under way, by commit: apps reading the same commit at once share one. */
  private readonly treeReads = new Map<string, Promise<{ sha: string; files: TreeItem[] | undefined }>>();
  /** The installation's share of GitHub's secondary limits, kept by every request. */
  readonly budget: GitHubBudget;
  private readonly scope = new AsyncLocalStorage<RequestScope>();
  /** Per repository: its open PRs, listed once for every attempt that polls. */
  private readonly openPullLists = new Map<string, SharedRead<{ pulls: PullLike[]; startedAt: number }>>();
  /** PRs this process opened, per repository, added to the lists for a while (GitHub's list may lag). */
  private readonly ownPulls = new Map<string, Map<number, { pull: PullLike; at: number }>>();
  /** CI last read as pending per commit, and when a poll reads it again. */
  private readonly ciSeen = new Map<string, { ci: CiStatus; nextReadAt: number }>();
  /** Settled CI verdicts (success, failure) of commits, shared for a minute; and reads under way. */
  private readonly settledCi = new Map<string, { ci: CiStatus; at: number }>();
  private readonly ciReads = new Map<string, Promise<CiStatus>>();
  /** A branch's head, shared for `headCacheMs` by the attempts previewing and opening on it. */
  private readonly heads = new Map<string, { at: number; sha: Promise<string> }>();
  /** Branches findPullRequest found without any PR, and when. */
  private readonly absent = new Map<string, number>();
  private readonly blobs = new Map<string, string>();
  private readonly requiredChecksCache = new Map<string, { at: number; contexts: string[] }>();
  private readonly requiredChecksReads = new Map<string, Promise<string[]>>();
  /** Default branches per repository, and branch-or-not per (repository, name), each until its expiry. */
  private readonly branches = new Map<string, { value: string | boolean; until: number }>();
  private readonly branchReads = new Map<string, Promise<string | boolean>>();

  constructor(options: GitHubClientOptions) {
    this.options = options;
    this.budget = new GitHubBudget({ ...(options.limits ? { limits: options.limits } : {}), ...(options.budgetMetrics ? { metrics: options.budgetMetrics } : {}), ...(options.now ? { now: options.now } : {}) });
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  private get ciPollMs(): number {
    return this.options.ciPollMs ?? 60_000;
  }

  private get timeoutMs(): number {
    return this.options.timeoutMs ?? 15_000;
  }

  // ---- plumbing ---------------------------------------------------------------

  private newOctokit(auth: { token: string } | { appId: number; privateKey: string; installationId?: number }): Octokit {
    const log = this.options.log;
    const octokit = new Octokit({
      baseUrl: this.options.baseUrl.replace(/\/+$/, ''),
      userAgent: USER_AGENT,
      ...('token' in auth ? { auth: auth.token } : { authStrategy: createAppAuth, auth }),
      // Failed requests are classified and retried by `call`; Octokit's own error line would be noise.
      log: { debug: () => {}, info: () => {}, warn: (m: string) => log?.warn(m), error: (m: string) => log?.debug(m) },
    });
    // Every answer the client reads is JSON: a body cut short or an HTML page in a 200 is said here, by its route.
    octokit.hook.after('request', (response, options) => checkJsonBody(response as Parameters<typeof checkJsonBody>[0], options.method));
    // Every request waits for its place in the installation's budget, then has timeoutMs to be answered.
    octokit.hook.wrap('request', async (request, options) => {
      const method = String(options.method).toUpperCase();
      const url = String(options.url);
      // An App's installation token is no content: it is a request like a read.
      const write = !['GET', 'HEAD', 'OPTIONS'].includes(method) && !url.startsWith('/app/');
      const scope = this.scope.getStore();
      const outer = (options.request as { signal?: AbortSignal } | undefined)?.signal;
      const release = await this.budget.admit({
        write, route: `${method} ${url}`, ...(scope?.reservation ? { reservation: scope.reservation } : {}),
        maxWaitMs: scope?.polling && !write ? 0 : this.options.budgetWaitMs ?? 10_000, ...(outer ? { signal: outer } : {}),
      });
      const timeout = AbortSignal.timeout(this.timeoutMs);
      // Octokit's hooks are bound to this options object: the signal is set on it, not on a copy.
      options.request = { ...options.request, signal: outer ? AbortSignal.any([outer, timeout]) : timeout };
      try {
        return await request(options);
      } catch (error) {
        const limited = secondaryLimitOf(error);
        if (limited) {
          this.budget.secondaryLimit(write, limited.retryAfterMs);
          this.options.log?.warn('GitHub answered that a secondary rate limit was exceeded', { route: `${method} ${url}`, retryAfterSeconds: Math.round(limited.retryAfterMs / 1000) });
        }
        if (timeout.aborted && !outer?.aborted) throw new IntegrationError(scope?.call ?? 'github', 'TIMEOUT', `${method} ${url}: no answer within ${this.timeoutMs} ms`, { cause: TIMED_OUT });
        throw error;
      } finally {
        release();
      }
    });
    return octokit;
  }

  /** The Octokit to use: token, or the App's installation (found through GITHUB_ORG when no id is configured). */
  private octokit(signal: AbortSignal): Promise<Octokit> {
    const auth = this.options.auth;
    if (auth.kind === 'token') return this.client ??= Promise.resolve(this.newOctokit({ token: auth.token }));
    if (auth.installationId !== undefined) {
      return this.client ??= Promise.resolve(this.newOctokit({ appId: auth.appId, privateKey: auth.privateKey, installationId: auth.installationId }));
    }
    const org = this.options.org;
    if (!org) return Promise.reject(new IntegrationError('github', 'INVALID_ARGUMENT', 'GitHub App auth without an installation id needs GITHUB_ORG to find the installation'));
    if (!this.client) {
      this.client = (async () => {
        const app = this.newOctokit({ appId: auth.appId, privateKey: auth.privateKey });
        const { data } = await app.rest.apps.getUserInstallation({ username: org, request: { signal } });
        return this.newOctokit({ appId: auth.appId, privateKey: auth.privateKey, installationId: data.id });
      })();
      // A failed lookup is not remembered: the next call tries again.
      this.client.catch(() => { this.client = undefined; });
    }
    return this.client;
  }

  /**
   * One port call (SPEC §8) in its request scope. The timeout is each request's, counted once the budget lets it
   * out (a request that waits for its place is not timed out for waiting); the try as a whole has a generous
   * bound of its own. A request the budget refused is not retried within the call: the attempt waits an interval.
   */
  private run<T>(name: string, work: (o: Octokit, req: Req) => Promise<T>, extra: { lookBeforeRetry?: (o: Octokit, req: Req) => Promise<T | undefined>; classify?: (error: unknown) => Classified; scope?: Omit<RequestScope, 'call'> } = {}): Promise<T> {
    const scope: RequestScope = { call: name, ...extra.scope };
    const classify = extra.classify ?? classifyHttpError;
    return this.scope.run(scope, () => call(name, async (signal) => work(await this.octokit(signal), { request: { signal } }), {
      classify: (error) => (error instanceof BudgetRefusal ? { code: 'RATE_LIMITED', message: error.message } : classify(error)),
      isFinal: (error) => error instanceof BudgetRefusal,
      ...(this.options.metrics ? { metrics: this.options.metrics } : {}),
      timeoutMs: 8 * this.timeoutMs + (this.options.budgetWaitMs ?? 10_000),
      ...(this.options.backoffMs ? { backoffMs: this.options.backoffMs } : {}),
      ...(this.options.sleep ? { sleep: this.options.sleep } : {}),
      ...(extra.lookBeforeRetry
        ? {
          lookBeforeRetry: async () => {
            // The look has its own deadline: it runs outside the call's.
            const signal = AbortSignal.timeout(2 * this.timeoutMs);
            return extra.lookBeforeRetry!(await this.octokit(signal), { request: { signal } });
          },
        }
        : {}),
    }));
  }

  /**
   * A GET that sends the ETag of the last answer for the same URL; a 304 means
   * unchanged and returns the remembered body (and costs no rate limit).
   */
  private async conditional<T, V>(key: string, get: (headers: Record<string, string>) => Promise<{ data: T; headers: { etag?: string } }>, check: (data: T) => void, keep: (data: T) => V): Promise<V> {
    const cached = this.etags.get(key);
    try {
      const response = await get(cached ? { 'if-none-match': cached.etag } : {});
      // Checked before it is kept: a malformed body remembered under its ETag would come back with every 304.
      check(response.data);
      // Only what is read of it is kept: thousands of PRs and commits are polled at once.
      const kept = keep(response.data);
      if (response.headers.etag) this.remember(key, response.headers.etag, kept);
      return kept;
    } catch (error) {
      if (statusOf(error) === 304 && cached) {
        this.remember(key, cached.etag, cached.data);
        return cached.data as V;
      }
      throw error;
    }
  }

  private remember(key: string, etag: string, data: unknown): void {
    rememberBounded(this.etags, key, { etag, data }, this.options.etagCacheSize ?? ETAG_CACHE_SIZE);
  }

  /**
   * The open PRs of a repository from one listing (every page ETag'd) that started at or after `notBefore`,
   * shared by every caller, with the PRs this process opened since added: GitHub's list may not show them yet.
   */
  private async openPulls(repo: RepoRef, notBefore: number): Promise<PullLike[]> {
    const key = `${repo.owner}/${repo.repo}`.toLowerCase();
    let shared = this.openPullLists.get(key);
    if (!shared) {
      shared = new SharedRead(() => this.scope.run({ call: 'listOpenPullRequests' }, () => this.listOpen(repo)), () => this.now());
      this.openPullLists.set(key, shared);
    }
    const { pulls, startedAt } = await shared.get(notBefore);
    const own = this.ownPulls.get(key);
    if (!own || own.size === 0) return pulls;
    const now = this.now();
    for (const [number, entry] of own) if (entry.at < now - OWN_PULL_MS) own.delete(number);
    const listed = new Set(pulls.map((p) => p.number));
    // Opened after the listing began, or so shortly before that the list may not show it yet.
    const added = [...own.values()].filter((e) => !listed.has(e.pull.number) && e.at >= startedAt - LIST_LAG_MS).map((e) => e.pull);
    return added.length > 0 ? [...pulls, ...added] : pulls;
  }

  private async listOpen(repo: RepoRef): Promise<{ pulls: PullLike[]; startedAt: number }> {
    const startedAt = this.now();
    const signal = AbortSignal.timeout(8 * this.timeoutMs);
    const o = await this.octokit(signal);
    const pulls: PullLike[] = [];
    for (let page = 1; ; page++) {
      const items = await this.conditional(`${repo.owner}/${repo.repo} open pulls page ${page}`,
        (headers) => o.rest.pulls.list({ ...repo, state: 'open', per_page: 100, page, headers, request: { signal } }),
        (data) => checkEach(data, `open pull requests, page ${page}`, checkPull), (data) => data.map(keptPull));
      pulls.push(...items);
      if (items.length < 100) break;
    }
    return { pulls, startedAt };
  }

  /** A PR this process opened: in every list from now on, and its files known, without reading either. */
  private rememberOpened(repo: RepoRef, pull: PullLike, files: string[]): void {
    const key = `${repo.owner}/${repo.repo}`.toLowerCase();
    let own = this.ownPulls.get(key);
    if (!own) this.ownPulls.set(key, own = new Map());
    own.set(pull.number, { pull: keptPull(pull), at: this.now() });
    rememberBounded(this.pullFiles, `${repo.owner}/${repo.repo}#${pull.number}@${pull.head.sha}..${pull.base.ref}`, files, PULL_FILES_CACHE_SIZE);
  }

  /** A PR this process closed or merged leaves the lists at once. */
  private forgetOpened(repo: RepoRef, number: number): void {
    this.ownPulls.get(`${repo.owner}/${repo.repo}`.toLowerCase())?.delete(number);
  }

  /** The paths a PR changes; they change only with its head (or a retargeted base), so they are read once per pair. */
  private async filesOf(o: Octokit, repo: RepoRef, pull: { number: number; head: { sha: string }; base: { ref: string } }): Promise<string[]> {
    const key = `${repo.owner}/${repo.repo}#${pull.number}@${pull.head.sha}..${pull.base.ref}`;
    const known = this.pullFiles.get(key);
    if (known) return known;
    return sharedWhileUnderWay(this.pullFilesReads, key, async () => {
      // Not bound to this caller's call (like a shared tree read): the others waiting for it must not fail with it.
      const files = await o.paginate(o.rest.pulls.listFiles, { ...repo, pull_number: pull.number, per_page: 100, request: { signal: AbortSignal.timeout(2 * this.timeoutMs) } });
      checkEach(files, `files of #${pull.number}`, (f, at) => need(f, 'filename', 'string', at));
      const paths = files.flatMap((f) => (f.previous_filename !== undefined ? [f.filename, f.previous_filename] : [f.filename]));
      rememberBounded(this.pullFiles, key, paths, PULL_FILES_CACHE_SIZE);
      return paths;
    });
  }

  // ---- GitHubPort --------------------------------------------------------------

  identity(): Promise<string> {
    if (this.login) return this.login;
    this.login = this.run('identity', async (o, req) => {
      if (this.options.auth.kind === 'app') {
        // An App acts as its bot user; /app is called with the App's JWT (auth-app does that).
        const { data } = await o.rest.apps.getAuthenticated(req);
        if (!data?.slug) throw new IntegrationError('identity', 'INVALID_ARGUMENT', 'GET /app returned no slug');
        return `${data.slug}[bot]`;
      }
      const { data } = await o.rest.users.getAuthenticated(req);
      need(data, 'login', 'string', 'GET /user');
      return data.login;
    });
    this.login.catch(() => { this.login = undefined; });
    return this.login;
  }

  /**
   * A cached answer, or `read`'s (remembered until branchCacheMs from now; callers asking meanwhile share the
   * read); a failure is not remembered.
   */
  private branchFact<T extends string | boolean>(key: string, read: () => Promise<T>): Promise<T> {
    const known = this.branches.get(key);
    if (known && known.until > this.now()) return Promise.resolve(known.value as T);
    return sharedWhileUnderWay(this.branchReads, key, () => read().then((value) => {
      rememberBounded(this.branches, key, { value, until: this.now() + (this.options.branchCacheMs ?? 5 * 60_000) }, BRANCH_CACHE_SIZE);
      return value;
    })) as Promise<T>;
  }

  defaultBranch(repo: RepoRef): Promise<string> {
    return this.branchFact(`${repo.owner}/${repo.repo}`.toLowerCase(), () => this.run('defaultBranch', async (o, req) => {
      const { data } = await o.rest.repos.get({ ...repo, ...req });
      need(data, 'default_branch', 'string', `GET /repos/${repo.owner}/${repo.repo}`);
      return data.default_branch;
    }));
  }

  isBranch(repo: RepoRef, name: string): Promise<boolean> {
    return this.branchFact(`${repo.owner}/${repo.repo}`.toLowerCase() + `\0${name}`, () => this.run('isBranch', async (o, req) => {
      try {
        const { data } = await o.rest.repos.getBranch({ ...repo, branch: name, ...req });
        need(data, 'name', 'string', `branch ${name}`);
        return true;
      } catch (error) {
        // "Branch not found": a tag, a commit SHA, or no such name (a missing repository answers 404 too).
        if (statusOf(error) === 404) return false;
        throw error;
      }
    }));
  }

  readRepositoryContent(repo: RepoRef, path: string, branch: string, limit: number): Promise<CommitInfo[]> {
    return this.run('readRepositoryContent', async (o, req) => {
      const prefix = normalisePath(path);
      const commits: CommitInfo[] = [];
      for (let page = 1; commits.length < limit; page++) {
        const perPage = Math.min(limit, 100);
        const { data } = await o.rest.repos.listCommits({ ...repo, sha: branch, ...(prefix ? { path: prefix } : {}), per_page: perPage, page, ...req });
        checkEach(data, `commits of ${prefix || 'the repository'} on ${branch}`, checkCommit);
        for (const c of data) {
          commits.push({
            sha: c.sha, message: c.commit.message, author: c.author?.login ?? c.commit.author?.name ?? 'unknown',
            date: c.commit.author?.date ?? c.commit.committer?.date ?? '', url: c.html_url,
          });
        }
        if (data.length < perPage) break;
      }
      return commits.slice(0, limit);
    });
  }

  private async ciOf(o: Octokit, repo: RepoRef, sha: string, req: Req): Promise<CiStatus> {
    const [statuses, checkRuns] = await Promise.all([
      this.conditional(`${repo.owner}/${repo.repo} status ${sha}`, (headers) => o.rest.repos.getCombinedStatusForRef({ ...repo, ref: sha, per_page: 100, headers, ...req }),
        (data) => checkEach(data.statuses, `statuses of ${sha}`, (s, at) => { need(s, 'context', 'string', at); need(s, 'state', 'string', at); }),
        (data) => data.statuses.map((s) => ({ context: s.context, state: s.state }))),
      this.conditional(`${repo.owner}/${repo.repo} check-runs ${sha}`, (headers) => o.rest.checks.listForRef({ ...repo, ref: sha, per_page: 100, headers, ...req }),
        (data) => checkEach(data.check_runs, `check runs of ${sha}`, (r, at) => { need(r, 'name', 'string', at); need(r, 'status', 'string', at); }),
        (data) => data.check_runs.map((r) => ({ name: r.name, status: r.status, conclusion: r.conclusion ?? null }))),
    ]);
    return ciStatus(statuses, checkRuns);
  }

  /**
   * CI of a commit (a rollback target's, for the candidate search). A settled verdict is shared for a minute by
   * every attempt that asks (a burst of apps rolling back to one release asks about one commit), and attempts
   * asking at once share one read; a pending one is read again each time.
   */
  getCommitStatus(repo: RepoRef, sha: string): Promise<CiStatus> {
    const key = `${repo.owner}/${repo.repo}@${sha}`.toLowerCase();
    const settled = this.settledCi.get(key);
    if (settled && settled.at > this.now() - SETTLED_CI_TTL_MS) return Promise.resolve(settled.ci);
    return sharedWhileUnderWay(this.ciReads, key, () => this.run('getCommitStatus', (o, req) => this.ciOf(o, repo, sha, req)).then((ci) => {
      if (ci.state === 'success' || ci.state === 'failure' || ci.state === 'error') rememberBounded(this.settledCi, key, { ci, at: this.now() }, CI_SEEN_SIZE);
      return ci;
    }));
  }

  private async findOpenOrLatest(o: Octokit, repo: RepoRef, branch: string, req: Req): Promise<PullRequestInfo | undefined> {
    const { data } = await o.rest.pulls.list({ ...repo, head: `${repo.owner}:${branch}`, state: 'all', per_page: 100, ...req });
    checkEach(data, `pull requests of ${branch}`, checkPull);
    const pull = data.find((p) => p.state === 'open') ?? data[0];
    return pull ? pullRequestInfo(pull) : undefined;
  }

  findPullRequest(repo: RepoRef, branch: string): Promise<PullRequestInfo | undefined> {
    return this.run('findPullRequest', async (o, req) => {
      const found = await this.findOpenOrLatest(o, repo, branch, req);
      // No PR on the branch, read just now: createPullRequest need not look again before it creates one.
      if (!found) rememberBounded(this.absent, `${repo.owner}/${repo.repo}:${branch}`, this.now(), BRANCH_CACHE_SIZE);
      else this.absent.delete(`${repo.owner}/${repo.repo}:${branch}`);
      return found;
    });
  }

  /**
   * Sets aside the writes of opening the PR of `key` (its branch) in the installation's budget, in turn
   * (production first, then the earliest attempt); RATE_LIMITED, without any request, while its turn has not
   * come. Asked before the attempt reads what it would open the PR on: an attempt waiting for its turn costs
   * no request.
   */
  reserveWrites(ask: { key: string; writes: number; turn: WriteTurn }): Promise<void> {
    try {
      this.budget.reserve(ask.key, ask.writes, ask.turn);
      return Promise.resolve();
    } catch (error) {
      if (!(error instanceof BudgetRefusal)) throw error;
      return Promise.reject(new IntegrationError('createPullRequest', 'RATE_LIMITED', error.message, { cause: error }));
    }
  }

  /** Files of `path` in a commit's tree: one recursive read, or a walk down to the path when GitHub truncates. */
  private async filesAt(o: Octokit, repo: RepoRef, commitSha: string, prefix: string, req: Req, callName: string): Promise<{ rootTree: string; files: TreeItem[] }> {
    // A commit's tree never changes: read once per commit, however many apps roll back to or from it.
    const key = `${repo.owner}/${repo.repo}@${commitSha}`;
    const known = this.commitTrees.get(key);
    if (known) return { rootTree: known.sha, files: entriesUnder(known.files, prefix) };
    // Apps reading the same commit at once (a burst of rollbacks in one monorepo) share one read.
    const whole = await sharedWhileUnderWay(this.treeReads, key, async () => {
      // Not bound to this caller's call: the others waiting for it must not fail with it.
      const { data } = await o.rest.git.getTree({ ...repo, tree_sha: commitSha, recursive: 'true', request: { signal: AbortSignal.timeout(2 * this.timeoutMs) } });
      checkTree(data, `the tree of ${commitSha}`);
      if (data.truncated) return { sha: data.sha, files: undefined };
      const files = data.tree.map((e) => ({ path: e.path!, mode: e.mode!, type: e.type!, sha: e.sha! }))
        .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      rememberBounded(this.commitTrees, key, { sha: data.sha, files }, COMMIT_TREE_CACHE_SIZE);
      return { sha: data.sha, files };
    });
    if (whole.files) return { rootTree: whole.sha, files: entriesUnder(whole.files, prefix) };
    let treeSha = whole.sha;
    for (const segment of prefix === '' ? [] : prefix.split('/')) {
      const level = await o.rest.git.getTree({ ...repo, tree_sha: treeSha, ...req });
      checkTree(level.data, `the tree ${treeSha}`);
      const next = level.data.tree.find((e) => e.path === segment);
      if (!next) return { rootTree: whole.sha, files: [] };
      if (next.type !== 'tree') return { rootTree: whole.sha, files: [{ path: prefix, mode: next.mode!, type: next.type!, sha: next.sha! }] };
      treeSha = next.sha!;
    }
    const sub = await o.rest.git.getTree({ ...repo, tree_sha: treeSha, recursive: 'true', ...req });
    checkTree(sub.data, `the tree of ${prefix}`);
    if (sub.data.truncated) throw new IntegrationError(callName, 'INVALID_ARGUMENT', `the tree of ${prefix || 'the repository'} is too large for GitHub to list`);
    const base = prefix === '' ? '' : `${prefix}/`;
    return { rootTree: whole.sha, files: sub.data.tree.map((e) => ({ path: `${base}${e.path!}`, mode: e.mode!, type: e.type!, sha: e.sha! })) };
  }

  readFileAt(repo: RepoRef, sha: string, path: string): Promise<string | undefined> {
    return this.run('readFileAt', async (o, req) => {
      const file = normalisePath(path);
      const { files } = await this.filesAt(o, repo, sha, file, req, 'readFileAt');
      // Only a blob at exactly that path is a file: under it means a directory, a submodule has no content here.
      const entry = files.find((e) => e.path === file && e.type === 'blob');
      if (!entry) return undefined;
      // A blob SHA names its content: kept for good, whichever commit or repository asks again.
      const known = this.blobs.get(entry.sha);
      if (known !== undefined) return known;
      const { data } = await o.rest.git.getBlob({ ...repo, file_sha: entry.sha, ...req });
      need(data, 'content', 'string', `the blob of ${file} at ${sha.slice(0, 7)}`);
      need(data, 'encoding', 'string', `the blob of ${file} at ${sha.slice(0, 7)}`);
      // GitHub answers base64 (line-wrapped) for every blob; 'utf-8' is what it would say for text it sent as is.
      if (data.encoding !== 'base64' && data.encoding !== 'utf-8') throw new IntegrationError('readFileAt', 'INVALID_ARGUMENT', `the blob of ${file} at ${sha.slice(0, 7)} came in encoding ${data.encoding}`);
      const content = data.encoding === 'base64' ? Buffer.from(data.content, 'base64').toString('utf8') : data.content;
      rememberBounded(this.blobs, entry.sha, content, BLOB_CACHE_SIZE);
      return content;
    });
  }

  listFilesAt(repo: RepoRef, sha: string, prefix: string): Promise<string[]> {
    return this.run('listFilesAt', async (o, req) => {
      const { files } = await this.filesAt(o, repo, sha, normalisePath(prefix), req, 'listFilesAt');
      return files.filter((e) => e.type !== 'tree').map((e) => e.path).sort();
    });
  }

  /** The files under several (collapsed) prefixes at one commit, together. */
  private async filesUnder(o: Octokit, repo: RepoRef, commitSha: string, prefixes: string[], req: Req, callName: string): Promise<{ rootTree: string; files: TreeItem[] }> {
    const parts = await Promise.all(prefixes.map((p) => this.filesAt(o, repo, commitSha, p, req, callName)));
    if (parts.length === 0) return { rootTree: (await this.filesAt(o, repo, commitSha, '', req, callName)).rootTree, files: [] };
    return { rootTree: parts[0]!.rootTree, files: parts.flatMap((p) => p.files) };
  }

  /** The branch's head and the tree entries that restore `prefixes` there to their trees at `targetSha`. */
  private async restoration(o: Octokit, repo: RepoRef, branch: string, targetSha: string, prefixes: string[], req: Req, callName: string) {
    const headSha = await this.headOf(o, repo, branch);
    const [now, then] = await Promise.all([this.filesUnder(o, repo, headSha, prefixes, req, callName), this.filesUnder(o, repo, targetSha, prefixes, req, callName)]);
    return { headSha, rootTree: now.rootTree, entries: restoreEntries(now.files, then.files) };
  }

  /**
   * A branch's head, read afresh (a ref moves) but shared for `headCacheMs` by the attempts that ask meanwhile:
   * a burst of rollbacks in one monorepo previews and opens on one head instead of reading it twice each. A
   * PR is opened on the head its preview measured, when both come within that time.
   */
  private headOf(o: Octokit, repo: RepoRef, branch: string): Promise<string> {
    const key = `${repo.owner}/${repo.repo}@${branch}`.toLowerCase();
    const known = this.heads.get(key);
    if (known && known.at > this.now() - (this.options.headCacheMs ?? 3000)) return known.sha;
    const sha = (async () => {
      const head = await o.rest.git.getRef({ ...repo, ref: `heads/${branch}`, request: { signal: AbortSignal.timeout(2 * this.timeoutMs) } });
      need(head.data, 'object.sha', 'string', `the ref heads/${branch}`);
      return head.data.object.sha;
    })();
    rememberBounded(this.heads, key, { at: this.now(), sha }, BRANCH_CACHE_SIZE);
    // A failed read is not shared past its callers.
    sha.catch(() => { if (this.heads.get(key)?.sha === sha) this.heads.delete(key); });
    return sha;
  }

  /** Every branch head of the repository this process shares, read afresh from now on. */
  private forgetHeads(repo: RepoRef): void {
    const prefix = `${repo.owner}/${repo.repo}@`.toLowerCase();
    for (const key of this.heads.keys()) if (key.startsWith(prefix)) this.heads.delete(key);
  }

  previewRollback(repo: RepoRef, query: { paths: string[]; branch: string; targetSha: string }): Promise<RollbackPreview> {
    return this.run('previewRollback', async (o, req) => {
      // The head is read afresh (shared a few seconds), the trees come from the cache when known (a commit's never does).
      const { headSha, entries } = await this.restoration(o, repo, query.branch, query.targetSha, normalisePaths(query.paths), req, 'previewRollback');
      return { changed: entries.length, headSha, files: entries.map((e) => ({ path: e.path, change: e.sha === null ? 'deleted' as const : 'restored' as const })) };
    });
  }

  contentDigest(repo: RepoRef, sha: string, paths: string[]): Promise<string> {
    return this.run('contentDigest', async (o, req) => {
      const { files } = await this.filesUnder(o, repo, sha, normalisePaths(paths), req, 'contentDigest');
      const hash = createHash('sha256');
      for (const e of [...files].filter((f) => f.type !== 'tree').sort((a, b) => (a.path < b.path ? -1 : 1))) hash.update(`${e.mode} ${e.sha} ${e.path}\n`);
      return hash.digest('hex');
    });
  }

  /**
   * The open PR of this attempt's branch, when an earlier try opened it: adopted only when its head is the
   * rollback commit the operator builds (checkRollback). One someone else prepared under the branch's name,
   * or whose head was pushed to, is refused (CONFLICT): it is left for a human, never merged as the rollback.
   */
  private async adopt(o: Octokit, repo: RepoRef, spec: RollbackPullRequestSpec, req: Req): Promise<OpenedPullRequest | undefined> {
    const { data } = await o.rest.pulls.list({ ...repo, head: `${repo.owner}:${spec.branch}`, state: 'open', per_page: 100, ...req });
    checkEach(data, `open pull requests of ${spec.branch}`, checkPull);
    const pull = data.find((p) => p.base.ref === spec.base);
    if (!pull) {
      const other = data[0];
      if (other) throw new IntegrationError('createPullRequest', 'CONFLICT', `pull request #${other.number} of ${spec.branch} targets ${other.base.ref}, not ${spec.base}: not adopted`);
      return undefined;
    }
    const check = await this.checkRollback(o, repo, pull.number, spec, req);
    if (!check.ok) throw new IntegrationError('createPullRequest', 'CONFLICT', `pull request #${pull.number} of ${spec.branch} is not this attempt's rollback (${check.why}): not adopted, left for a human`);
    // An earlier try may have opened the PR and died before labelling it; adding labels is idempotent.
    if (spec.labels.length > 0 && !spec.labels.every((l) => pull.labels.some((x) => x.name === l))) {
      await o.rest.issues.addLabels({ ...repo, issue_number: pull.number, labels: spec.labels, ...req });
    }
    return { ...pullRequestInfo(pull), rollbackCommit: check.commit };
  }

  /** The login as a git author: the rollback commit is authored by it, so a head someone else made says so. */
  private async author(): Promise<{ name: string; email: string }> {
    const login = await this.identity();
    return { name: login, email: `${login}@users.noreply.github.com` };
  }

  /** The tree of `parent` with `prefixes` restored to their trees at `targetSha`: what a rollback commit on `parent` holds. */
  private async rollbackTree(o: Octokit, repo: RepoRef, parent: string, targetSha: string, prefixes: string[], req: Req, callName: string): Promise<string> {
    const [now, then] = await Promise.all([this.filesUnder(o, repo, parent, prefixes, req, callName), this.filesUnder(o, repo, targetSha, prefixes, req, callName)]);
    const entries = restoreEntries(now.files, then.files);
    if (entries.length === 0) return now.rootTree;
    // Git objects are content-addressed: the same entries on the same base give the same tree, however often asked.
    const tree = await o.rest.git.createTree({ ...repo, base_tree: now.rootTree, tree: entries, ...req });
    need(tree.data, 'sha', 'string', 'the created tree');
    return tree.data.sha;
  }

  private async checkRollback(o: Octokit, repo: RepoRef, number: number, spec: { paths: string[]; targetSha: string }, req: Req): Promise<RollbackCommitCheck> {
    const identity = await this.identity();
    const { data: pull } = await o.rest.pulls.get({ ...repo, pull_number: number, ...req });
    checkPull(pull, `pull request #${number}`);
    const opener = pull.user?.login ?? 'an unknown user';
    if (opener !== identity) return { ok: false, why: `it was opened by ${opener}, not by ${identity}` };
    if (pull.commits !== 1) return { ok: false, why: `it carries ${pull.commits} commits, not the one rollback commit` };
    const { data: head } = await o.rest.git.getCommit({ ...repo, commit_sha: pull.head.sha, ...req });
    need(head, 'tree.sha', 'string', `the commit ${pull.head.sha}`);
    need(head, 'parents', 'array', `the commit ${pull.head.sha}`);
    if (head.author?.name !== identity) return { ok: false, why: `its head ${pull.head.sha.slice(0, 7)} was authored by ${head.author?.name ?? 'nobody'}, not ${identity}` };
    if (head.parents.length !== 1) return { ok: false, why: `its head ${pull.head.sha.slice(0, 7)} has ${head.parents.length} parents` };
    const parent = head.parents[0]!.sha;
    const prefixes = normalisePaths(spec.paths);
    const expected = await this.rollbackTree(o, repo, parent, spec.targetSha, prefixes, req, 'checkRollbackCommit');
    if (expected !== head.tree.sha) {
      return { ok: false, why: `its head ${pull.head.sha.slice(0, 7)} changes more or other than restoring ${describePaths(prefixes)} to ${spec.targetSha.slice(0, 7)}` };
    }
    return { ok: true, commit: { sha: pull.head.sha, tree: head.tree.sha, parent } };
  }

  checkRollbackCommit(repo: RepoRef, number: number, spec: { paths: string[]; targetSha: string }): Promise<RollbackCommitCheck> {
    return this.run('checkRollbackCommit', (o, req) => this.checkRollback(o, repo, number, spec, req));
  }

  describeCommit(repo: RepoRef, sha: string): Promise<CommitIdentity> {
    return this.run('describeCommit', async (o, req) => {
      const { data } = await o.rest.git.getCommit({ ...repo, commit_sha: sha, ...req });
      const who = data.author ? `${data.author.name} <${data.author.email}>` : 'an unknown author';
      return { sha, author: who, message: (data.message ?? '').split('\n')[0]!.slice(0, 200) };
    });
  }

  requiredChecks(repo: RepoRef, branch: string): Promise<string[]> {
    // A branch's required checks change rarely: read at most every REQUIRED_CHECKS_TTL_MS per branch, so
    // polling a hundred PRs on one branch costs two requests, not two hundred. A check made required
    // meanwhile still blocks the merge: GitHub reports the PR `blocked` (I8) until it passes.
    const cacheKey = `${repo.owner}/${repo.repo}@${branch}`;
    const cached = this.requiredChecksCache.get(cacheKey);
    if (cached && this.now() - cached.at < REQUIRED_CHECKS_TTL_MS) return Promise.resolve(cached.contexts);
    // The attempts asking at once share one read.
    return sharedWhileUnderWay(this.requiredChecksReads, cacheKey, () => this.run('requiredChecks', async (o, req) => {
      const key = `${repo.owner}/${repo.repo}`;
      const [protection, rules] = await Promise.all([
        this.conditional(`${key} protection ${branch}`, (headers) => o.rest.repos.getBranchProtection({ ...repo, branch, headers, ...req }), () => {},
          (data) => ({ required_status_checks: data.required_status_checks }))
          .catch(async (error: unknown) => {
            // Not protected: no classic rule. Not allowed to read it (it needs admin): the branch summary, which read access sees.
            if (statusOf(error) === 404) return undefined;
            if (statusOf(error) !== 403) throw error;
            const { data } = await o.rest.repos.getBranch({ ...repo, branch, ...req });
            return data.protection;
          }),
        this.conditional(`${key} rules ${branch}`, (headers) => o.rest.repos.getBranchRules({ ...repo, branch, per_page: 100, headers, ...req }),
          (data) => checkEach(data, `rules of ${branch}`, (r, at) => need(r, 'type', 'string', at)), (data) => data),
      ]);
      const contexts = new Set<string>();
      const classic = protection?.required_status_checks;
      for (const c of classic?.contexts ?? []) contexts.add(c);
      for (const c of (classic as { checks?: Array<{ context: string }> } | undefined)?.checks ?? []) contexts.add(c.context);
      for (const rule of rules as Array<{ type: string; parameters?: { required_status_checks?: Array<{ context: string }> } }>) {
        if (rule.type !== 'required_status_checks') continue;
        for (const c of rule.parameters?.required_status_checks ?? []) contexts.add(c.context);
      }
      const sorted = [...contexts].sort();
      rememberBounded(this.requiredChecksCache, cacheKey, { at: this.now(), contexts: sorted }, PULL_FILES_CACHE_SIZE);
      return sorted;
    }));
  }

  createPullRequest(repo: RepoRef, spec: RollbackPullRequestSpec): Promise<OpenedPullRequest> {
    return this.run('createPullRequest', async (o, req) => {
      // Its writes go out together: set aside now, unless the attempt did (reserveWrites) before its preflight.
      if (!this.budget.holding(spec.branch)) this.budget.reserve(spec.branch, OPENING_WRITES, { production: false, since: new Date(this.now()).toISOString() });
      // Look before creating (SPEC §6.4): an open PR of this attempt's branch is adopted as it is when its
      // head is the rollback commit — rebuilding would move its head and restart its CI. findPullRequest
      // found none on the branch moments ago (the attempt looks before it decides to open): that look stands.
      const absentSince = this.absent.get(`${repo.owner}/${repo.repo}:${spec.branch}`);
      const open = absentSince !== undefined && absentSince > this.now() - ABSENT_MS ? undefined : await this.adopt(o, repo, spec, req);
      if (open) return open;
      const prefixes = normalisePaths(spec.paths);
      const { headSha: baseSha, rootTree, entries } = await this.restoration(o, repo, spec.base, spec.targetSha, prefixes, req, 'createPullRequest');
      if (entries.length === 0) {
        throw new NothingToRestoreError('createPullRequest', `${spec.base} at ${baseSha.slice(0, 7)} already holds ${describePaths(prefixes)} as at ${spec.targetSha.slice(0, 7)}: it moved since the rollback was measured, so no pull request is opened`);
      }
      const tree = await o.rest.git.createTree({ ...repo, base_tree: rootTree, tree: entries, ...req });
      need(tree.data, 'sha', 'string', 'the created tree');
      // Authored by the operator's own login, so a commit on the branch that is not its own is told apart.
      const author = await this.author();
      const commit = await o.rest.git.createCommit({
        ...repo, tree: tree.data.sha, parents: [baseSha], author, committer: author,
        message: `${spec.title}\n\nRestores ${prefixes.length === 1 ? prefixes[0] || 'the repository' : `${prefixes.length} paths (${describePaths(prefixes)})`} to ${prefixes.length === 1 ? 'its tree' : 'their trees'} at ${spec.targetSha}.`, ...req,
      });
      need(commit.data, 'sha', 'string', 'the created commit');
      const rollbackCommit: RollbackCommit = { sha: commit.data.sha, tree: tree.data.sha, parent: baseSha };
      const pointed = await this.pointBranch(o, repo, spec.branch, rollbackCommit, req);
      let pull: PullRequestInfo;
      let kept: PullLike;
      try {
        const { data } = await o.rest.pulls.create({ ...repo, head: spec.branch, base: spec.base, title: spec.title, body: spec.body, maintainer_can_modify: false, ...req });
        pull = pullRequestInfo(data, 'the created pull request');
        kept = keptPull(data);
      } catch (error) {
        // Opened by an earlier try whose answer was lost: adopt it.
        if (statusOf(error) !== 422 || !validationMessages(error).some((m) => m.includes('A pull request already exists'))) throw error;
        const existing = await this.adopt(o, repo, spec, req);
        if (!existing) throw error;
        return existing;
      }
      this.absent.delete(`${repo.owner}/${repo.repo}:${spec.branch}`);
      if (spec.labels.length > 0) await o.rest.issues.addLabels({ ...repo, issue_number: pull.number, labels: spec.labels, ...req });
      // Known without reading it back: the PR in the lists of open PRs, the files it changes, and its CI, which
      // cannot have reported on a commit made a moment ago (a poll reads it once ciPollMs have passed).
      this.rememberOpened(repo, kept, entries.map((e) => e.path));
      rememberBounded(this.ciSeen, `${repo.owner}/${repo.repo}@${pointed.sha}`.toLowerCase(), { ci: { state: 'none', runs: [] }, nextReadAt: this.now() + this.ciPollMs }, CI_SEEN_SIZE);
      return { ...pull, rollbackCommit: pointed };
    }, { lookBeforeRetry: (o, req) => this.adopt(o, repo, spec, req), scope: { reservation: spec.branch } });
  }

  /**
   * Creates the branch at the rollback commit, and returns the commit it points at. A branch an earlier
   * try left is kept when it already holds the same change on the same base, made by the operator (an
   * open PR on it keeps its head and CI), and moved to the new commit when the operator made it on an
   * older base. A branch of that name someone else made is never overwritten (CONFLICT).
   */
  private async pointBranch(o: Octokit, repo: RepoRef, branch: string, commit: RollbackCommit, req: Req): Promise<RollbackCommit> {
    try {
      await o.rest.git.createRef({ ...repo, ref: `refs/heads/${branch}`, sha: commit.sha, ...req });
      return commit;
    } catch (error) {
      if (statusOf(error) !== 422 || !validationMessages(error).some((m) => m.includes('Reference already exists'))) throw error;
      const { data: ref } = await o.rest.git.getRef({ ...repo, ref: `heads/${branch}`, ...req });
      const { data: existing } = await o.rest.git.getCommit({ ...repo, commit_sha: ref.object.sha, ...req });
      const identity = await this.identity();
      if (existing.author?.name !== identity || existing.parents.length !== 1) {
        throw new IntegrationError('createPullRequest', 'CONFLICT', `branch ${branch} already exists at ${ref.object.sha.slice(0, 7)}, a commit by ${existing.author?.name ?? 'an unknown author'}, not the operator's: left as it is`);
      }
      if (existing.tree.sha === commit.tree && existing.parents[0]!.sha === commit.parent) return { sha: existing.sha, tree: existing.tree.sha, parent: commit.parent };
      await o.rest.git.updateRef({ ...repo, ref: `heads/${branch}`, sha: commit.sha, force: true, ...req });
      return commit;
    }
  }

  private get pullListMaxAgeMs(): number {
    return this.options.pullListMaxAgeMs ?? 10_000;
  }

  /**
   * The PR and CI on `ciSha`. Fresh unless `polling`: a poll while the PR waits takes the PR from the
   * repository's shared list of open PRs when it is there, open, with `ciSha` as its head (anything else is
   * read from the PR itself), and CI still pending as it was read up to ciPollMs ago — or, when the budget has
   * no place for the read now, as it was read last.
   */
  getPullRequestStatus(repo: RepoRef, number: number, ciSha?: string, options: { polling?: boolean } = {}): Promise<{ pr: PullRequestInfo; ci: CiStatus }> {
    const polling = options.polling === true && ciSha !== undefined;
    return this.run('getPullRequestStatus', async (o, req) => {
      let data: PullLike | undefined;
      if (polling) {
        const open = await this.openPulls(repo, this.now() - this.pullListMaxAgeMs).catch((error: unknown) => {
          if (error instanceof BudgetRefusal) return [];
          throw error;
        });
        data = open.find((p) => p.number === number && p.head.sha === ciSha);
      }
      data ??= await this.conditional(`${repo.owner}/${repo.repo} pull ${number}`, (headers) => o.rest.pulls.get({ ...repo, pull_number: number, headers, ...req }),
        (pull) => checkPull(pull, `pull request #${number}`), keptPull);
      const pr = pullRequestInfo(data, `pull request #${number}`);
      // CI is read on the operator's own commit: checks that passed on a head someone pushed say nothing of it.
      return { pr, ci: await this.ciFor(o, repo, ciSha ?? pr.headSha, req, polling) };
    }, polling ? { scope: { polling: true } } : {});
  }

  /** CI of a PR's commit: read now, or for a poll, pending CI as read up to ciPollMs ago. */
  private async ciFor(o: Octokit, repo: RepoRef, sha: string, req: Req, polling: boolean): Promise<CiStatus> {
    const key = `${repo.owner}/${repo.repo}@${sha}`.toLowerCase();
    const seen = this.ciSeen.get(key);
    if (polling && seen && seen.nextReadAt > this.now()) return seen.ci;
    let ci: CiStatus;
    try {
      ci = await this.ciOf(o, repo, sha, req);
    } catch (error) {
      if (polling && seen && error instanceof BudgetRefusal) return seen.ci;
      throw error;
    }
    // Only an answer that cannot end the wait is reused: success or failure is read again whenever asked.
    if (ci.state === 'pending' || ci.state === 'none') rememberBounded(this.ciSeen, key, { ci, nextReadAt: this.now() + this.ciPollMs }, CI_SEEN_SIZE);
    else this.ciSeen.delete(key);
    return ci;
  }

  /**
   * Open PRs into `base` that change a file at or under any of `paths` (opened by `openedBy`, on a branch
   * starting with `branchPrefix`, when given: the files of no other PR are read). From a listing of the
   * repository's open PRs that started after the call (shared with the calls made meanwhile), or with
   * `polling`, one up to pullListMaxAgeMs old; the PRs this process opened are in it either way.
   */
  listOpenPullRequests(repo: RepoRef, filter: { base: string; paths: string[]; openedBy?: string; branchPrefix?: string }, options: { polling?: boolean } = {}): Promise<PullRequestInfo[]> {
    return this.run('listOpenPullRequests', async (o, req) => {
      const prefixes = normalisePaths(filter.paths);
      const open = (await this.openPulls(repo, this.now() - (options.polling ? this.pullListMaxAgeMs : 0)))
        .filter((p) => p.base.ref === filter.base && (filter.openedBy === undefined || p.user?.login === filter.openedBy)
          && (filter.branchPrefix === undefined || p.head.ref.startsWith(filter.branchPrefix)));
      const touching = await Promise.all(open.map(async (p) => prefixes.includes('') || (await this.filesOf(o, repo, p)).some((f) => prefixes.some((prefix) => under(prefix, f)))));
      return open.filter((_, i) => touching[i]).map((p) => pullRequestInfo(p));
    });
  }

  mergePullRequest(repo: RepoRef, number: number, options: { sha: string; method: 'squash' | 'merge' | 'rebase' }): Promise<{ sha: string }> {
    return this.run('mergePullRequest', async (o, req) => {
      const { data } = await o.rest.pulls.merge({ ...repo, pull_number: number, sha: options.sha, merge_method: options.method, ...req });
      need(data, 'sha', 'string', `the merge of #${number}`);
      this.forgetOpened(repo, number);
      // The merge moved its base: an attempt waiting for this PR must measure its own diff on the new head, or it
      // finds the files it waited for still to restore and opens a second PR restoring them.
      this.forgetHeads(repo);
      return { sha: data.sha };
    }, {
      classify: classifyMerge,
      // An earlier try may have merged and lost the answer: merged now means done.
      lookBeforeRetry: async (o, req) => {
        const { data } = await o.rest.pulls.get({ ...repo, pull_number: number, ...req });
        return data.merged && data.merge_commit_sha ? { sha: data.merge_commit_sha } : undefined;
      },
    });
  }

  private async commentOnce(o: Octokit, repo: RepoRef, number: number, name: string, body: string, req: Req): Promise<void> {
    const tag = marker(name);
    const comments = await o.paginate(o.rest.issues.listComments, { ...repo, issue_number: number, per_page: 100, ...req });
    if (comments.some((c) => c.body?.includes(tag))) return;
    await o.rest.issues.createComment({ ...repo, issue_number: number, body: `${tag}\n${body}`, ...req });
  }

  commentPullRequest(repo: RepoRef, number: number, name: string, body: string): Promise<void> {
    return this.run('commentPullRequest', (o, req) => this.commentOnce(o, repo, number, name, body, req));
  }

  deleteBranch(repo: RepoRef, branch: string, expectedSha: string, options: { merged: boolean }): Promise<BranchDeletion> {
    return this.run('deleteBranch', async (o, req): Promise<BranchDeletion> => {
      if (options.merged) {
        const { data } = await o.rest.repos.get({ ...repo, ...req });
        // GitHub deleted it on the merge (or will, for a merge in flight): nothing for the operator to do.
        if (data.delete_branch_on_merge === true) return { outcome: 'kept', why: 'the repository deletes head branches on merge' };
      }
      let head: string;
      try {
        const { data } = await o.rest.git.getRef({ ...repo, ref: `heads/${branch}`, ...req });
        need(data.object, 'sha', 'string', `ref heads/${branch}`);
        head = data.object.sha;
      } catch (error) {
        if (statusOf(error) === 404) return { outcome: 'gone' };
        throw error;
      }
      if (head !== expectedSha) return { outcome: 'kept', why: `its head is ${head.slice(0, 7)}, not the rollback commit ${expectedSha.slice(0, 7)}: someone else moved it` };
      const open = await o.rest.pulls.list({ ...repo, head: `${repo.owner}:${branch}`, state: 'open', per_page: 1, ...req });
      if (open.data.length > 0) return { outcome: 'kept', why: `open pull request #${open.data[0]!.number} uses it` };
      try {
        await o.rest.git.deleteRef({ ...repo, ref: `heads/${branch}`, ...req });
      } catch (error) {
        // Deleted between the read and the DELETE (GitHub's own deletion on merge, a person, an earlier try).
        if (statusOf(error) === 422 || statusOf(error) === 404) return { outcome: 'gone' };
        throw error;
      }
      return { outcome: 'deleted', sha: head };
    });
  }

  closePullRequest(repo: RepoRef, number: number, comment: string): Promise<void> {
    return this.run('closePullRequest', async (o, req) => {
      const { data } = await o.rest.pulls.get({ ...repo, pull_number: number, ...req });
      if (data.state === 'closed') return;
      // Say why first: a PR closed without its comment would leave readers guessing.
      await this.commentOnce(o, repo, number, 'closed', comment, req);
      await o.rest.pulls.update({ ...repo, pull_number: number, state: 'closed', ...req });
      this.forgetOpened(repo, number);
    });
  }
}
