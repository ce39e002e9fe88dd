// What a test or the demo does to the simulated GitHub that the REST API does
// not offer (or that GitHub does on its own): create repositories and push
// commits as a user, register apps, protect branches, set CI, force a PR's
// mergeability, inject faults, read counters and violations. The same methods
// are served over HTTP as POST /_sim/<name> with the argument as JSON body.
import { createPublicKey } from 'node:crypto';
import { ApiError } from './api-error.ts';
import { GITHUB_SECONDARY_LIMITS, type SecondaryLimits } from './secondary.ts';
import type { Answers, CorruptRule, FaultRule, SimServer } from './server.ts';
import type { SimCheckRun, SimComment, SimPull, SimStatus } from './world.ts';

export interface RepoArg {
  owner: string;
  repo: string;
}

export class SimControl {
  private readonly server: SimServer;

  constructor(server: SimServer) {
    this.server = server;
  }

  private get world() {
    return this.server.world;
  }

  /** A user with a personal access token (the token is made up unless given). */
  addUser(arg: { login: string; name?: string; token?: string }): { token: string } {
    const account = this.world.account(arg.login, 'User', arg.name);
    if (arg.name) account.name = arg.name;
    return { token: this.world.issueToken(arg.login, arg.token) };
  }

  /** A GitHub App (public key in PEM), installed on the given accounts. */
  registerApp(arg: { slug: string; owner: string; publicKeyPem: string; installOn?: string[] }): { appId: number; installations: Record<string, number> } {
    const app = this.world.registerApp({ slug: arg.slug, owner: arg.owner, publicKey: createPublicKey(arg.publicKeyPem) });
    const installations: Record<string, number> = {};
    for (const account of arg.installOn ?? []) installations[account] = this.world.install(app.id, account).id;
    return { appId: app.id, installations };
  }

  /** A repository, with a first commit of `files` when given. The bare repo is at `dir`. */
  async createRepo(arg: RepoArg & { defaultBranch?: string; files?: Record<string, string>; message?: string; author?: string }): Promise<{ dir: string; sha?: string }> {
    const repo = await this.world.createRepo(arg.owner, arg.repo, arg.defaultBranch);
    if (!arg.files) return { dir: repo.git.dir };
    const sha = await this.world.pushFiles(repo, { branch: repo.defaultBranch, files: arg.files, message: arg.message ?? 'Initial commit', author: arg.author ?? arg.owner });
    return { dir: repo.git.dir, sha };
  }

  /** A commit on `branch` (default: the default branch) as `author` pushed it; `null` deletes a file. */
  async push(arg: RepoArg & { branch?: string; files: Record<string, string | null>; message: string; author?: string; date?: string }): Promise<{ sha: string }> {
    const repo = this.world.repo(arg.owner, arg.repo);
    const sha = await this.world.pushFiles(repo, {
      branch: arg.branch ?? repo.defaultBranch, files: arg.files, message: arg.message, author: arg.author ?? arg.owner,
      ...(arg.date ? { date: arg.date } : {}),
    });
    return { sha };
  }

  async createBranch(arg: RepoArg & { branch: string; from: string }): Promise<{ sha: string }> {
    const repo = this.world.repo(arg.owner, arg.repo);
    const sha = await repo.git.resolveCommit(arg.from);
    if (!sha) throw new ApiError(404, `no commit ${arg.from}`);
    await repo.git.updateRef(`refs/heads/${arg.branch}`, sha);
    return { sha };
  }

  async resolve(arg: RepoArg & { rev: string }): Promise<{ sha: string | null }> {
    return { sha: (await this.world.repo(arg.owner, arg.repo).git.resolveCommit(arg.rev)) ?? null };
  }

  /**
   * These contexts (statuses or check-run names) must succeed before a merge into `branch`: through branch
   * protection (the default) or a repository ruleset's `required_status_checks` rule. An empty list removes them.
   */
  setRequiredChecks(arg: RepoArg & { branch: string; contexts: string[]; via?: 'protection' | 'ruleset' }): void {
    const repo = this.world.repo(arg.owner, arg.repo);
    const map = arg.via === 'ruleset' ? repo.rulesetChecks : repo.requiredChecks;
    if (arg.contexts.length === 0) map.delete(arg.branch);
    else map.set(arg.branch, arg.contexts);
  }

  setStatus(arg: RepoArg & { sha: string; state: SimStatus['state']; context: string; description?: string; creator?: string }): { id: number } {
    const repo = this.world.repo(arg.owner, arg.repo);
    return { id: this.world.addStatus(repo, arg.sha, { state: arg.state, context: arg.context, description: arg.description ?? null, targetUrl: null, creator: arg.creator ?? arg.owner }).id };
  }

  setCheckRun(arg: RepoArg & { sha: string; name: string; status?: SimCheckRun['status']; conclusion?: SimCheckRun['conclusion'] }): { id: number } {
    const repo = this.world.repo(arg.owner, arg.repo);
    const status = arg.status ?? (arg.conclusion ? 'completed' : 'queued');
    const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    const run = {
      id: this.world.id(), repoId: repo.id, sha: arg.sha, name: arg.name, status, conclusion: arg.conclusion ?? null,
      startedAt: now, completedAt: status === 'completed' ? now : null, externalId: null, detailsUrl: null,
      output: { title: null, summary: null, text: null }, appId: null,
    };
    this.world.checkRuns.set(run.id, run);
    return { id: run.id };
  }

  /** What GitHub reports as mergeable / mergeable_state for a PR; `clear` goes back to computing it. */
  setMergeable(arg: RepoArg & { number: number; mergeable?: boolean | null; state?: string; clear?: boolean }): void {
    const pull = this.world.pull(this.world.repo(arg.owner, arg.repo), arg.number);
    if (arg.clear) delete pull.mergeableOverride;
    else pull.mergeableOverride = { mergeable: arg.mergeable ?? null, state: arg.state ?? (arg.mergeable === null ? 'unknown' : arg.mergeable ? 'clean' : 'dirty') };
  }

  /** Archives the repository (or unarchives it): reads go on, every write answers 403 "Repository was archived so is read-only.". */
  archiveRepo(arg: RepoArg & { archived?: boolean }): void {
    this.world.repo(arg.owner, arg.repo).archived = arg.archived ?? true;
  }

  /** The repository's branches and the commit each points at. */
  async branches(arg: RepoArg): Promise<Array<{ name: string; sha: string }>> {
    return this.world.repo(arg.owner, arg.repo).git.branches();
  }

  /** The repository setting "Automatically delete head branches" (`delete_branch_on_merge`). */
  setDeleteBranchOnMerge(arg: RepoArg & { enabled: boolean }): void {
    this.world.repo(arg.owner, arg.repo).deleteBranchOnMerge = arg.enabled;
  }

  pulls(arg: RepoArg): SimPull[] {
    return this.world.pullsOf(this.world.repo(arg.owner, arg.repo)).map((p) => ({ ...p }));
  }

  comments(arg: RepoArg & { number: number }): SimComment[] {
    return [...this.world.commentsOf(this.world.repo(arg.owner, arg.repo), arg.number)];
  }

  fail(rule: FaultRule): void {
    this.server.faults.push({ ...rule, remaining: rule.times ?? 1 });
  }

  corrupt(rule: CorruptRule): void {
    this.server.corruptions.push({ ...rule, remaining: rule.times ?? 1 });
  }

  clearFaults(): void {
    this.server.faults.splice(0);
    this.server.corruptions.splice(0);
  }

  /** Requests per route ("METHOD /template"), faulted and 304 answers included. */
  counters(): Record<string, number> {
    return Object.fromEntries(this.server.counters);
  }

  resetCounters(): void {
    this.server.counters.clear();
  }

  /** Every API answer sent since the start (or resetAnswers), by status; 304s and secondary-rate-limit refusals among them. */
  answers(): Answers {
    const a = this.server.answers;
    return { byStatus: { ...a.byStatus }, notModified: a.notModified, secondaryRateLimited: a.secondaryRateLimited };
  }

  resetAnswers(): void {
    this.server.answers = { byStatus: {}, notModified: 0, secondaryRateLimited: 0 };
  }

  /**
   * GitHub's secondary limits, enforced per login from now on (`{}` turns them off); the windows start afresh.
   * `github: true` sets GitHub's documented numbers, any other field overrides one of them.
   */
  setSecondaryLimits(arg: SecondaryLimits & { github?: boolean }): SecondaryLimits {
    const { github, ...limits } = arg ?? {};
    this.server.secondary.limits = { ...(github ? GITHUB_SECONDARY_LIMITS : {}), ...limits };
    this.server.secondary.reset();
    return this.server.secondary.limits;
  }

  rateLimit(arg: { login: string }): { limit: number; remaining: number; used: number; reset: number } {
    return this.server.quota(arg.login);
  }

  setRateLimitUsed(arg: { login: string; used: number }): void {
    this.server.setUsed(arg.login, arg.used);
  }

  /** GET trees reports `truncated: true` past this many entries. */
  setTreeEntryLimit(arg: { limit: number }): void {
    this.world.treeEntryLimit = arg.limit;
  }

  violations(): string[] {
    return [...this.server.violations];
  }

  clearViolations(): void {
    this.server.violations.splice(0);
  }

  /** The control API over HTTP: POST /_sim/<method> with the argument as JSON. */
  async dispatch(_method: string, name: string, arg: unknown): Promise<unknown> {
    const methods: Record<string, (a: never) => unknown> = {
      addUser: this.addUser, registerApp: this.registerApp, createRepo: this.createRepo, push: this.push, createBranch: this.createBranch,
      resolve: this.resolve, setRequiredChecks: this.setRequiredChecks, setStatus: this.setStatus, setCheckRun: this.setCheckRun,
      setMergeable: this.setMergeable, archiveRepo: this.archiveRepo, branches: this.branches, setDeleteBranchOnMerge: this.setDeleteBranchOnMerge,
      pulls: this.pulls, comments: this.comments, fail: this.fail, corrupt: this.corrupt,
      clearFaults: this.clearFaults, counters: this.counters, resetCounters: this.resetCounters, answers: this.answers, resetAnswers: this.resetAnswers,
      setSecondaryLimits: this.setSecondaryLimits, rateLimit: this.rateLimit,
      setRateLimitUsed: this.setRateLimitUsed, setTreeEntryLimit: this.setTreeEntryLimit, violations: this.violations, clearViolations: this.clearViolations,
    };
    const method = Object.hasOwn(methods, name) ? methods[name] : undefined;
    if (!method) throw new ApiError(404, `no control method ${name}`);
    return method.call(this, arg as never);
  }
}
