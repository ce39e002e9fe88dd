// What the simulated GitHub knows: accounts, apps and tokens, repositories (each
// a bare git repository under `${root}/${owner}/${repo}.git`), pull requests,
// commit statuses, check runs, comments and labels. Git data lives in git; the
// rest lives here, in memory. The domain rules (mergeability, the three merge
// methods) are here too, so the HTTP routes stay thin.
import { randomBytes, type KeyObject } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ApiError, notFound, unprocessable } from './api-error.ts';
import { GitRepo, ZERO_SHA, type ChangedFile, type Signature, type TreeEdit } from './git.ts';

export type AccountType = 'User' | 'Organization' | 'Bot';

export interface SimAccount {
  id: number;
  login: string;
  type: AccountType;
  name: string;
  email: string;
  createdAt: string;
}

export interface SimApp {
  id: number;
  slug: string;
  name: string;
  owner: string;
  publicKey: KeyObject;
  createdAt: string;
}

export interface SimInstallation {
  id: number;
  appId: number;
  account: string;
  createdAt: string;
}

/** Who a request acts as. */
export type Principal =
  | { kind: 'user'; login: string }
  | { kind: 'installation'; installationId: number; login: string }
  | { kind: 'app'; appId: number };

export interface SimLabel {
  id: number;
  name: string;
  color: string;
  description: string | null;
}

export interface SimRepo {
  id: number;
  owner: string;
  name: string;
  git: GitRepo;
  defaultBranch: string;
  createdAt: string;
  /** Required status contexts (statuses or check-run names) per protected branch: branch protection's. */
  requiredChecks: Map<string, string[]>;
  /** Required status contexts per branch from a repository ruleset's `required_status_checks` rule. */
  rulesetChecks: Map<string, string[]>;
  labels: Map<string, SimLabel>;
  nextNumber: number;
  /** Archived: read-only, every write through the API answers 403 (SimControl.archiveRepo). */
  archived?: boolean;
  /** "Automatically delete head branches": a merge deletes the PR's head branch (`delete_branch_on_merge`). */
  deleteBranchOnMerge?: boolean;
}

export interface SimPull {
  id: number;
  number: number;
  title: string;
  body: string | null;
  head: string;
  base: string;
  /** The head commit: followed from the branch while open, frozen once closed. */
  headSha: string;
  /** Base head when last looked at (what the PR object reports as base.sha). */
  baseSha: string;
  state: 'open' | 'closed';
  merged: boolean;
  mergedAt: string | null;
  mergedBy: string | null;
  mergeCommitSha: string | null;
  user: string;
  createdAt: string;
  updatedAt: string;
  closedAt: string | null;
  labels: string[];
  /** Set by a test: what GitHub reports instead of the computed mergeability. */
  mergeableOverride?: { mergeable: boolean | null; state: string };
}

export interface SimStatus {
  id: number;
  sha: string;
  state: 'error' | 'failure' | 'pending' | 'success';
  context: string;
  description: string | null;
  targetUrl: string | null;
  creator: string;
  createdAt: string;
  updatedAt: string;
}

export interface SimCheckRun {
  id: number;
  sha: string;
  name: string;
  status: 'queued' | 'in_progress' | 'completed';
  conclusion: 'success' | 'failure' | 'neutral' | 'cancelled' | 'skipped' | 'timed_out' | 'action_required' | null;
  startedAt: string | null;
  completedAt: string | null;
  externalId: string | null;
  detailsUrl: string | null;
  output: { title: string | null; summary: string | null; text: string | null };
  appId: number | null;
}

export interface SimComment {
  id: number;
  body: string;
  user: string;
  createdAt: string;
  updatedAt: string;
}

export interface Mergeability {
  mergeable: boolean | null;
  state: 'clean' | 'unstable' | 'dirty' | 'blocked' | 'unknown' | string;
  /** Why a merge would be refused, in GitHub's words. */
  refusal?: string;
}

export type MergeMethod = 'merge' | 'squash' | 'rebase';

/** GitHub's timestamps: seconds precision, UTC. */
export function timestamp(date = new Date()): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const GITHUB_COMMITTER = { name: 'GitHub', email: 'noreply@github.com' };

export class World {
  readonly root: string;
  readonly accounts = new Map<string, SimAccount>();
  readonly apps = new Map<number, SimApp>();
  readonly installations = new Map<number, SimInstallation>();
  readonly tokens = new Map<string, Principal>();
  readonly repos = new Map<string, SimRepo>();
  readonly pulls = new Map<string, SimPull[]>();
  readonly statuses = new Map<string, SimStatus[]>();
  readonly checkRuns = new Map<number, SimCheckRun & { repoId: number }>();
  readonly comments = new Map<string, SimComment[]>();
  /** GET trees answers `truncated: true` past this many entries (GitHub: 100,000). */
  treeEntryLimit = 100_000;
  private nextId = 1000;
  private readonly locks = new Map<number, Promise<unknown>>();

  constructor(root: string) {
    this.root = root;
  }

  /** Stops the per-repository git readers. */
  close(): void {
    for (const repo of this.repos.values()) repo.git.close();
  }

  id(): number {
    return this.nextId++;
  }

  // ---- accounts and credentials ---------------------------------------------

  account(login: string, type: AccountType = 'User', name?: string): SimAccount {
    let account = this.accounts.get(login.toLowerCase());
    if (!account) {
      const id = this.id();
      account = {
        id, login, type, name: name ?? login,
        email: `${id}+${login}@users.noreply.github.com`,
        createdAt: timestamp(),
      };
      this.accounts.set(login.toLowerCase(), account);
    }
    return account;
  }

  accountByEmail(email: string): SimAccount | undefined {
    for (const a of this.accounts.values()) if (a.email.toLowerCase() === email.toLowerCase()) return a;
    return undefined;
  }

  /** A personal access token acting as `login` (created if it does not exist). */
  issueToken(login: string, token = `ghp_${randomBytes(18).toString('hex')}`): string {
    this.account(login);
    this.tokens.set(token, { kind: 'user', login });
    return token;
  }

  registerApp(options: { slug: string; owner: string; publicKey: KeyObject; name?: string }): SimApp {
    const app: SimApp = { id: this.id(), slug: options.slug, name: options.name ?? options.slug, owner: options.owner, publicKey: options.publicKey, createdAt: timestamp() };
    this.apps.set(app.id, app);
    this.account(options.owner, 'Organization');
    // The app acts on GitHub as its bot user, "<slug>[bot]".
    this.account(`${app.slug}[bot]`, 'Bot');
    return app;
  }

  install(appId: number, account: string): SimInstallation {
    const installation: SimInstallation = { id: this.id(), appId, account, createdAt: timestamp() };
    this.installations.set(installation.id, installation);
    this.account(account, 'Organization');
    return installation;
  }

  installationToken(installationId: number): { token: string; expiresAt: string } {
    const installation = this.installations.get(installationId);
    if (!installation) throw notFound();
    const app = this.apps.get(installation.appId)!;
    const token = `ghs_${randomBytes(18).toString('hex')}`;
    this.tokens.set(token, { kind: 'installation', installationId, login: `${app.slug}[bot]` });
    return { token, expiresAt: timestamp(new Date(Date.now() + 3600_000)) };
  }

  // ---- repositories ---------------------------------------------------------

  repoDir(owner: string, name: string): string {
    return join(this.root, owner, `${name}.git`);
  }

  repo(owner: string, name: string): SimRepo {
    const repo = this.repos.get(`${owner}/${name}`.toLowerCase());
    if (!repo) throw notFound();
    return repo;
  }

  /** The repository, or undefined when there is none (no 404 thrown). */
  findRepo(owner: string, name: string): SimRepo | undefined {
    return this.repos.get(`${owner}/${name}`.toLowerCase());
  }

  async createRepo(owner: string, name: string, defaultBranch = 'main'): Promise<SimRepo> {
    if (this.repos.has(`${owner}/${name}`.toLowerCase())) throw unprocessable('Repository creation failed.', [{ resource: 'Repository', code: 'custom', field: 'name', message: 'name already exists on this account' }]);
    const dir = this.repoDir(owner, name);
    await mkdir(join(this.root, owner), { recursive: true });
    const git = new GitRepo(dir);
    await git.init(defaultBranch);
    if (!this.accounts.has(owner.toLowerCase())) this.account(owner, 'Organization');
    const repo: SimRepo = { id: this.id(), owner, name, git, defaultBranch, createdAt: timestamp(), requiredChecks: new Map(), rulesetChecks: new Map(), labels: new Map(), nextNumber: 1 };
    this.repos.set(`${owner}/${name}`.toLowerCase(), repo);
    return repo;
  }

  /** Runs `work` alone on this repository: git ref moves and PR state changes never interleave. */
  async locked<T>(repo: SimRepo, work: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(repo.id) ?? Promise.resolve();
    const next = previous.then(work, work);
    this.locks.set(repo.id, next.then(() => undefined, () => undefined));
    return next;
  }

  signature(login: string, date = timestamp()): Signature {
    const account = this.account(login);
    return { name: account.name, email: account.email, date };
  }

  /** A commit of `files` (content, or null to delete) on top of `branch`, as `author` pushing it. */
  async pushFiles(repo: SimRepo, options: { branch: string; files: Record<string, string | null>; message: string; author: string; date?: string }): Promise<string> {
    return this.locked(repo, async () => {
      const ref = `refs/heads/${options.branch}`;
      const parent = await repo.git.resolveCommit(ref);
      const edits: TreeEdit[] = [];
      for (const [path, content] of Object.entries(options.files)) {
        edits.push({ path, mode: '100644', type: 'blob', sha: content === null ? null : await repo.git.hashObject(content) });
      }
      const tree = await repo.git.writeTree(parent, edits);
      const signature = this.signature(options.author, options.date);
      const sha = await repo.git.commitTree(tree, parent ? [parent] : [], options.message, signature);
      await repo.git.updateRef(ref, sha, parent ?? ZERO_SHA);
      return sha;
    });
  }

  // ---- pull requests --------------------------------------------------------

  pullsOf(repo: SimRepo): SimPull[] {
    let list = this.pulls.get(String(repo.id));
    if (!list) this.pulls.set(String(repo.id), list = []);
    return list;
  }

  pull(repo: SimRepo, number: number): SimPull {
    const pull = this.pullsOf(repo).find((p) => p.number === number);
    if (!pull) throw notFound();
    return pull;
  }

  /** Follows the head and base branches of an open pull request (GitHub does on every push). */
  async refresh(repo: SimRepo, pull: SimPull): Promise<SimPull> {
    if (pull.state === 'open') {
      pull.headSha = (await repo.git.resolveCommit(`refs/heads/${pull.head}`)) ?? pull.headSha;
      pull.baseSha = (await repo.git.resolveCommit(`refs/heads/${pull.base}`)) ?? pull.baseSha;
    }
    return pull;
  }

  async openPull(repo: SimRepo, options: { title: string; head: string; base: string; body: string | null; user: string }): Promise<SimPull> {
    return this.locked(repo, async () => {
      const head = options.head.includes(':') ? options.head.split(':')[1]! : options.head;
      const headSha = await repo.git.resolveCommit(`refs/heads/${head}`);
      const baseSha = await repo.git.resolveCommit(`refs/heads/${options.base}`);
      if (!headSha) throw unprocessable('Validation Failed', [{ resource: 'PullRequest', field: 'head', code: 'invalid' }]);
      if (!baseSha) throw unprocessable('Validation Failed', [{ resource: 'PullRequest', field: 'base', code: 'invalid' }]);
      const existing = this.pullsOf(repo).find((p) => p.state === 'open' && p.head === head && p.base === options.base);
      if (existing) {
        throw unprocessable('Validation Failed', [{ resource: 'PullRequest', code: 'custom', message: `A pull request already exists for ${repo.owner}:${head}.` }]);
      }
      if (await repo.git.countCommits(headSha, baseSha) === 0) {
        throw unprocessable('Validation Failed', [{ resource: 'PullRequest', code: 'custom', message: `No commits between ${options.base} and ${head}` }]);
      }
      const now = timestamp();
      const pull: SimPull = {
        id: this.id(), number: repo.nextNumber++, title: options.title, body: options.body, head, base: options.base,
        headSha, baseSha, state: 'open', merged: false, mergedAt: null, mergedBy: null, mergeCommitSha: null,
        user: options.user, createdAt: now, updatedAt: now, closedAt: null, labels: [],
      };
      this.pullsOf(repo).push(pull);
      return pull;
    });
  }

  /** GitHub's `mergeable` / `mergeable_state`, computed from a real trial merge and the head's CI. */
  async mergeability(repo: SimRepo, pull: SimPull): Promise<Mergeability> {
    if (pull.mergeableOverride) return pull.mergeableOverride;
    if (pull.state !== 'open') return { mergeable: null, state: 'unknown' };
    await this.refresh(repo, pull);
    const trial = await repo.git.mergeTree(pull.baseSha, pull.headSha);
    if (!trial.clean) return { mergeable: false, state: 'dirty', refusal: 'Pull Request is not mergeable' };
    const results = this.ciResults(repo, pull.headSha);
    const required = this.requiredContexts(repo, pull.base);
    for (const context of required) {
      const result = results.get(context);
      if (result !== 'success') {
        return { mergeable: true, state: 'blocked', refusal: `Required status check "${context}" is ${result === undefined || result === 'pending' ? 'expected' : 'failing'}.` };
      }
    }
    const others = [...results].filter(([context]) => !required.includes(context));
    if (others.some(([, state]) => state !== 'success')) return { mergeable: true, state: 'unstable' };
    return { mergeable: true, state: 'clean' };
  }

  /** What a merge into `branch` requires: branch protection's contexts and the rulesets', together (as GitHub applies both). */
  requiredContexts(repo: SimRepo, branch: string): string[] {
    return [...new Set([...(repo.requiredChecks.get(branch) ?? []), ...(repo.rulesetChecks.get(branch) ?? [])])];
  }

  /** Latest result per context: commit statuses and check runs together, as branch protection sees them. */
  ciResults(repo: SimRepo, sha: string): Map<string, 'success' | 'failure' | 'pending'> {
    const results = new Map<string, 'success' | 'failure' | 'pending'>();
    for (const status of this.latestStatuses(repo, sha)) {
      results.set(status.context, status.state === 'success' ? 'success' : status.state === 'pending' ? 'pending' : 'failure');
    }
    for (const run of this.latestCheckRuns(repo, sha)) {
      const state = run.status !== 'completed' ? 'pending'
        : run.conclusion === 'success' || run.conclusion === 'neutral' || run.conclusion === 'skipped' ? 'success' : 'failure';
      results.set(run.name, state);
    }
    return results;
  }

  /** Merges an open pull request into its base with a real commit, as `by`. */
  async merge(repo: SimRepo, pull: SimPull, options: { method: MergeMethod; sha?: string; by: string; title?: string; message?: string }): Promise<string> {
    return this.locked(repo, async () => {
      if (pull.state !== 'open') throw new ApiError(405, 'Pull Request is not mergeable');
      await this.refresh(repo, pull);
      const mergeability = await this.mergeability(repo, pull);
      if (options.sha !== undefined && options.sha !== pull.headSha) throw new ApiError(409, 'Head branch was modified. Review and try the merge again.');
      if (mergeability.mergeable === false || mergeability.state === 'blocked' || mergeability.state === 'dirty') {
        throw new ApiError(405, mergeability.refusal ?? 'Pull Request is not mergeable');
      }
      const base = pull.baseSha;
      const now = timestamp();
      const merger = this.signature(options.by, now);
      const committer = { ...GITHUB_COMMITTER, date: now };
      let sha: string;
      if (options.method === 'rebase') {
        sha = base;
        const commits = (await repo.git.log(pull.headSha, { exclude: base })).reverse();
        for (const commit of commits) {
          const picked = await repo.git.cherryPickTree(commit, sha);
          if (!picked.clean) throw new ApiError(405, 'This branch can\'t be rebased');
          sha = await repo.git.commitTree(picked.tree, [sha], commit.message, commit.author, committer);
        }
      } else {
        const trial = await repo.git.mergeTree(base, pull.headSha);
        if (!trial.clean) throw new ApiError(405, 'Pull Request is not mergeable');
        if (options.method === 'merge') {
          const title = options.title ?? `Merge pull request #${pull.number} from ${repo.owner}/${pull.head}`;
          sha = await repo.git.commitTree(trial.tree, [base, pull.headSha], `${title}\n\n${options.message ?? pull.title}`, merger, committer);
        } else {
          const commits = await repo.git.log(pull.headSha, { exclude: base });
          const title = options.title ?? `${pull.title} (#${pull.number})`;
          const message = options.message ?? commits.map((c) => `* ${c.message.split('\n')[0]}`).reverse().join('\n');
          sha = await repo.git.commitTree(trial.tree, [base], `${title}\n\n${message}`, this.signature(pull.user, now), committer);
        }
      }
      await repo.git.updateRef(`refs/heads/${pull.base}`, sha, base);
      Object.assign(pull, { state: 'closed', merged: true, mergedAt: now, mergedBy: options.by, mergeCommitSha: sha, closedAt: now, updatedAt: now });
      if (repo.deleteBranchOnMerge && await repo.git.refExists(`refs/heads/${pull.head}`)) await repo.git.deleteRef(`refs/heads/${pull.head}`, pull.headSha);
      return sha;
    });
  }

  async changedFiles(repo: SimRepo, pull: SimPull): Promise<ChangedFile[]> {
    await this.refresh(repo, pull);
    // After a merge the base contains the head: compare with the base it was merged into.
    if (pull.merged) return repo.git.diff((await repo.git.commit(pull.mergeCommitSha!))?.parents[0] ?? pull.baseSha, pull.headSha);
    return repo.git.diff(pull.baseSha, pull.headSha, true);
  }

  // ---- statuses and check runs ----------------------------------------------

  private statusKey(repo: SimRepo, sha: string): string {
    return `${repo.id}/${sha}`;
  }

  addStatus(repo: SimRepo, sha: string, input: { state: SimStatus['state']; context: string; description: string | null; targetUrl: string | null; creator: string }): SimStatus {
    const now = timestamp();
    const status: SimStatus = { id: this.id(), sha, ...input, createdAt: now, updatedAt: now };
    const key = this.statusKey(repo, sha);
    this.statuses.set(key, [...(this.statuses.get(key) ?? []), status]);
    return status;
  }

  /** The latest status per context, newest first. */
  latestStatuses(repo: SimRepo, sha: string): SimStatus[] {
    const seen = new Set<string>();
    return [...(this.statuses.get(this.statusKey(repo, sha)) ?? [])].reverse().filter((s) => !seen.has(s.context) && seen.add(s.context));
  }

  checkRunsOf(repo: SimRepo, sha: string): Array<SimCheckRun & { repoId: number }> {
    return [...this.checkRuns.values()].filter((r) => r.repoId === repo.id && r.sha === sha).reverse();
  }

  latestCheckRuns(repo: SimRepo, sha: string): SimCheckRun[] {
    const seen = new Set<string>();
    return this.checkRunsOf(repo, sha).filter((r) => !seen.has(r.name) && seen.add(r.name));
  }

  // ---- comments and labels --------------------------------------------------

  commentsOf(repo: SimRepo, number: number): SimComment[] {
    const key = `${repo.id}#${number}`;
    let list = this.comments.get(key);
    if (!list) this.comments.set(key, list = []);
    return list;
  }

  label(repo: SimRepo, name: string): SimLabel {
    let label = repo.labels.get(name.toLowerCase());
    if (!label) {
      // "" rather than null: the labels inside a pull request must carry a string description.
      label = { id: this.id(), name, color: 'ededed', description: '' };
      repo.labels.set(name.toLowerCase(), label);
    }
    return label;
  }
}
