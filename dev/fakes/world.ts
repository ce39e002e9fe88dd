// A scripted outside world for engine tests: Argo CD, GitHub, the cluster and
// Prometheus behind the engine's ports, with its state kept in a KV — in memory
// for unit tests, in the real etcd when an operator process is killed and
// restarted (the world must outlive it). Merging a PR plays Argo CD's part:
// the app syncs the merge commit and turns Healthy.
import { createHash } from 'node:crypto';
import type { AppRef, AttemptRecord, HealthStatus } from '../../src/fsm/record.ts';
import type { DeploymentReplicas, RevisionPods } from '../../src/fsm/record.ts';
import type { ApplicationView, ArgoCdPort } from '../../src/ports/argocd.ts';
import { IntegrationError, NothingToRestoreError, type ErrorCode } from '../../src/ports/errors.ts';
import type {
  BranchDeletion, CiStatus, CommitIdentity, CommitInfo, GitHubPort, OpenedPullRequest, PullRequestInfo, RepoRef, RollbackCommitCheck, RollbackPreview, RollbackPullRequestSpec,
} from '../../src/ports/github.ts';
import type { ApprovalEnforcement, ApprovalEnforcementPort, AttemptObjectsPort, ClusterPort, HumanRequests, PodSummary } from '../../src/ports/kubernetes.ts';
import type { MetricsHistoryPort } from '../../src/ports/prometheus.ts';
import type { KV } from '../../src/store/kv.ts';

export const OPERATOR_LOGIN = 'ai-operator[bot]';

export interface FakeApp extends ApplicationView {
  deployments: DeploymentReplicas[];
  /** Healthy fraction per revision, answered to uptime queries over its window. */
  uptime: Record<string, number>;
  /** What Argo CD reports after syncing a merged rollback. */
  healthAfterMerge: HealthStatus;
  /** The pods of the current revision of its workloads (setRevisionPods); none unless scripted. */
  revisionPods?: RevisionPods[];
}

export interface FakePullRequest extends PullRequestInfo {
  spec: RollbackPullRequestSpec;
  comments: string[];
  labels: string[];
}

const P = '/fake-world/';
/** The one file of a fake app's directory. */
const MANIFEST = 'manifest.yaml';

/** The fake app path a rollback restores: its manifest's directory (or the path itself, for a spec naming the directory). */
export function appPathOf(paths: readonly string[]): string {
  const first = paths[0] ?? '.';
  return first.endsWith(`/${MANIFEST}`) ? first.slice(0, -MANIFEST.length - 1) : first;
}

const K = {
  app: (ref: AppRef) => `${P}apps/${ref.namespace}/${ref.name}`,
  commits: (path: string) => `${P}commits/${encodeURIComponent(path)}`,
  ci: (sha: string) => `${P}ci/${sha}`,
  pr: (n: number) => `${P}prs/${String(n).padStart(6, '0')}`,
  prCounter: `${P}pr-counter`,
  failure: (call: string) => `${P}failures/${call}`,
  prometheusDown: `${P}prometheus-down`,
  requests: (name: string) => `${P}requests/${name}`,
  projection: (name: string) => `${P}projections/${name}`,
  stalled: (name: string) => `${P}stalled/${name}`,
  calls: (call: string) => `${P}calls/${call}`,
  delay: (call: string) => `${P}delays/${call}`,
  mergeable: `${P}mergeable`,
  tags: `${P}tags`,
  defaultBranch: `${P}default-branch`,
  filesAt: (sha: string) => `${P}files-at/${sha}`,
  restoredTo: (path: string) => `${P}restored-to/${encodeURIComponent(path)}`,
  deletedBranch: (branch: string) => `${P}deleted-branches/${encodeURIComponent(branch)}`,
};

export function fakeSha(seed: string): string {
  return createHash('sha1').update(seed).digest('hex');
}

export class FakeWorld implements ArgoCdPort, GitHubPort, ClusterPort, MetricsHistoryPort, AttemptObjectsPort, ApprovalEnforcementPort {
  readonly kv: KV;
  /** A world whose API server enforces who may approve, since before any attempt (this process only). */
  approvalEnforcement: ApprovalEnforcement = { enforced: true };
  constructor(kv: KV) { this.kv = kv; }

  current(): ApprovalEnforcement { return this.approvalEnforcement; }

  async forNamespace(): Promise<ApprovalEnforcement> { return this.approvalEnforcement; }

  // ---- state helpers -------------------------------------------------------

  private async read<T>(key: string): Promise<T | undefined> {
    const kv = await this.kv.get(key);
    return kv ? (JSON.parse(kv.value) as T) : undefined;
  }

  /** Read-modify-write with compare-and-swap, retried on a race with the other process. */
  async update<T>(key: string, change: (current: T | undefined) => T): Promise<T> {
    for (;;) {
      const current = await this.kv.get(key);
      const next = change(current ? (JSON.parse(current.value) as T) : undefined);
      const result = await this.kv.txn({
        compares: [current ? { key, target: 'mod', equals: current.modRevision } : { key, target: 'absent' }],
        puts: [{ key, value: JSON.stringify(next) }],
        deletes: [],
      });
      if (result.succeeded) return next;
    }
  }

  private async put(key: string, value: unknown): Promise<void> {
    await this.kv.txn({ compares: [], puts: [{ key, value: JSON.stringify(value) }], deletes: [] });
  }

  /** A pause after the call's effect: a window in which to kill the operator between effect and record. */
  private async pauseAfter(name: string): Promise<void> {
    const ms = await this.read<number>(K.delay(name));
    if (ms) await new Promise((r) => setTimeout(r, ms));
  }

  private async call(name: string): Promise<void> {
    await this.update<number>(K.calls(name), (n) => (n ?? 0) + 1);
    const failure = await this.read<{ code: ErrorCode; times: number }>(K.failure(name));
    if (failure && failure.times !== 0) {
      if (failure.times > 0) await this.put(K.failure(name), { ...failure, times: failure.times - 1 });
      throw new IntegrationError(name, failure.code, `injected ${failure.code}`);
    }
  }

  // ---- scripting (tests) ---------------------------------------------------

  async addApp(app: FakeApp): Promise<void> { await this.put(K.app(app.ref), app); }
  /** The Application is deleted (kubectl delete application). */
  async removeApp(ref: AppRef): Promise<void> { await this.kv.txn({ compares: [], puts: [], deletes: [K.app(ref)] }); }
  async app(ref: AppRef): Promise<FakeApp | undefined> { return this.read<FakeApp>(K.app(ref)); }
  /** Without `deployments`, a Degraded app's Deployments fall short as a stuck rollout leaves them (one new pod, never ready). */
  async setHealth(ref: AppRef, health: HealthStatus, deployments?: DeploymentReplicas[]): Promise<void> {
    await this.update<FakeApp>(K.app(ref), (app) => ({
      ...app!,
      health,
      deployments: deployments ?? (health === 'Degraded'
        ? app!.deployments.map((d) => ({ ...d, updated: Math.min(1, d.desired), available: d.desired, unavailable: Math.min(1, d.desired), progressDeadlineExceeded: true }))
        : app!.deployments),
    }));
  }
  /** The pods of the current revision of the app's workloads, as the cluster port would read them. */
  async setRevisionPods(ref: AppRef, revisionPods: RevisionPods[]): Promise<void> {
    await this.update<FakeApp>(K.app(ref), (app) => ({ ...app!, revisionPods }));
  }
  async setCommits(path: string, commits: CommitInfo[]): Promise<void> { await this.put(K.commits(path), commits); }
  async setCi(sha: string, ci: CiStatus): Promise<void> { await this.put(K.ci(sha), ci); }
  async setPrometheusDown(down: boolean): Promise<void> { await this.put(K.prometheusDown, down); }
  /** The next `times` calls of `call` fail with `code` (-1: every call). */
  async failNext(call: string, code: ErrorCode, times = 1): Promise<void> { await this.put(K.failure(call), { code, times }); }
  async setRequests(attemptName: string, requests: HumanRequests): Promise<void> { await this.put(K.requests(attemptName), requests); }
  async setDelayAfter(call: string, ms: number): Promise<void> { await this.put(K.delay(call), ms); }
  /** GitHub's mergeable flag for every PR (null: still computing, so I8 is UNKNOWN). */
  async setMergeable(mergeable: boolean | null): Promise<void> { await this.put(K.mergeable, mergeable); }
  /** A human pushed a revert: `path` on the branch now holds its tree at `sha` again, in a new head commit. */
  async restorePath(path: string, sha: string): Promise<void> {
    await this.put(K.restoredTo(path), { sha, headSha: fakeSha(`revert:${path}:${sha}`) });
  }
  async callCount(call: string): Promise<number> { return (await this.read<number>(K.calls(call))) ?? 0; }
  async pullRequests(): Promise<FakePullRequest[]> {
    return (await this.kv.getPrefix(`${P}prs/`)).map((kv) => JSON.parse(kv.value) as FakePullRequest);
  }
  async projection(attemptName: string): Promise<AttemptRecord | undefined> { return this.read<AttemptRecord>(K.projection(attemptName)); }
  /** CI of every open PR's head turns to `state`. */
  async setCiOfOpenPullRequests(state: CiStatus['state']): Promise<void> {
    for (const pr of await this.pullRequests()) {
      if (pr.state === 'open') await this.setCi(pr.headSha, { state, runs: state === 'none' ? [] : [{ name: 'ci/build', state }] });
    }
  }

  // ---- ArgoCdPort ------------------------------------------------------------

  async getApplication(ref: AppRef): Promise<ApplicationView | undefined> {
    return this.read<FakeApp>(K.app(ref));
  }
  async readApplication(ref: AppRef): Promise<ApplicationView | undefined> {
    await this.call('getApplication');
    return this.read<FakeApp>(K.app(ref));
  }
  async getApplicationHealth(ref: AppRef): Promise<{ status: HealthStatus; revision?: string } | undefined> {
    await this.call('getApplicationHealth');
    const app = await this.read<FakeApp>(K.app(ref));
    return app?.health ? { status: app.health, ...(app.syncRevision ? { revision: app.syncRevision } : {}) } : undefined;
  }
  async readApplicationHealth(ref: AppRef): Promise<{ status: HealthStatus; revision?: string } | undefined> {
    await this.call('readApplicationHealth');
    const app = await this.read<FakeApp>(K.app(ref));
    return app?.health ? { status: app.health, ...(app.syncRevision ? { revision: app.syncRevision } : {}) } : undefined;
  }
  async getApplicationSyncStatus(ref: AppRef): Promise<{ status: string; revision?: string } | undefined> {
    const app = await this.read<FakeApp>(K.app(ref));
    return app ? { status: 'Synced', ...(app.syncRevision ? { revision: app.syncRevision } : {}) } : undefined;
  }
  async listApplications(): Promise<ApplicationView[]> {
    return (await this.kv.getPrefix(`${P}apps/`)).map((kv) => JSON.parse(kv.value) as FakeApp);
  }

  // ---- ClusterPort ---------------------------------------------------------

  async getDeploymentStatus(app: ApplicationView): Promise<DeploymentReplicas[]> {
    await this.call('getDeploymentStatus');
    return (await this.read<FakeApp>(K.app(app.ref)))?.deployments ?? [];
  }
  async listPods(): Promise<PodSummary[]> { return []; }
  async currentRevisionPods(app: ApplicationView): Promise<RevisionPods[]> {
    await this.call('currentRevisionPods');
    return (await this.read<FakeApp>(K.app(app.ref)))?.revisionPods ?? [];
  }

  // ---- MetricsHistoryPort --------------------------------------------------

  async uptime(query: string, at: number): Promise<number | undefined> {
    if (await this.read<boolean>(K.prometheusDown)) throw new IntegrationError('prometheusQuery', 'UNAVAILABLE', 'connect ECONNREFUSED');
    const name = /name="((?:[^"\\]|\\.)*)"/.exec(query)?.[1];
    const app = (await this.listApplications() as FakeApp[]).find((a) => a.ref.name === name);
    if (!app) return undefined;
    // The revision whose deployed window ends at `at`: the one before the next deployment then.
    const history = [...app.history].sort((a, b) => a.id - b.id);
    const index = history.findIndex((h) => Math.abs(Date.parse(h.deployedAt) / 1000 - at) < 1);
    const revision = index > 0 ? history[index - 1]!.revision : history.at(-1)?.revision;
    return revision === undefined ? undefined : app.uptime[revision];
  }

  // ---- GitHubPort ----------------------------------------------------------

  async identity(): Promise<string> { return OPERATOR_LOGIN; }

  // Every repository's default branch is main unless scripted, and every name but a scripted tag is a branch.
  async defaultBranch(): Promise<string> {
    await this.call('defaultBranch');
    return (await this.read<string>(K.defaultBranch)) ?? 'main';
  }

  async setDefaultBranch(name: string): Promise<void> { await this.put(K.defaultBranch, name); }

  async isBranch(_repo: RepoRef, name: string): Promise<boolean> {
    await this.call('isBranch');
    return !((await this.read<string[]>(K.tags)) ?? []).includes(name);
  }

  /** `name` is a tag of every repository, not a branch. */
  async addTag(name: string): Promise<void> { await this.update<string[]>(K.tags, (tags) => [...tags ?? [], name]); }

  async getCommitStatus(_repo: RepoRef, sha: string): Promise<CiStatus> {
    await this.call('getCommitStatus');
    return (await this.read<CiStatus>(K.ci(sha))) ?? { state: 'none', runs: [] };
  }

  /** The fake has no write budget: every opening's turn has come. */
  async reserveWrites(): Promise<void> {}

  async findPullRequest(_repo: RepoRef, branch: string): Promise<PullRequestInfo | undefined> {
    await this.call('findPullRequest');
    const prs = await this.pullRequests();
    return prs.find((pr) => pr.branch === branch && pr.state === 'open') ?? prs.find((pr) => pr.branch === branch);
  }

  /**
   * The files of commit `sha` (path → content), for source-set reads. A commit not scripted holds one file per
   * path with scripted commits, `<path>/manifest.yaml`: every fake app is a directory of one manifest.
   */
  async setFilesAt(sha: string, files: Record<string, string>): Promise<void> { await this.put(K.filesAt(sha), files); }

  private async scriptedPaths(): Promise<string[]> {
    return (await this.kv.getPrefix(`${P}commits/`)).map((kv) => decodeURIComponent(kv.key.slice(`${P}commits/`.length)));
  }

  async readFileAt(_repo: RepoRef, sha: string, path: string): Promise<string | undefined> {
    await this.call('readFileAt');
    const scripted = await this.read<Record<string, string>>(K.filesAt(sha));
    if (scripted) return scripted[path];
    return path.endsWith(`/${MANIFEST}`) && (await this.scriptedPaths()).includes(appPathOf([path])) ? `# ${path} at ${sha}\n` : undefined;
  }

  async listFilesAt(_repo: RepoRef, sha: string, prefix: string): Promise<string[]> {
    await this.call('listFilesAt');
    const scripted = await this.read<Record<string, string>>(K.filesAt(sha));
    const files = scripted ? Object.keys(scripted) : (await this.scriptedPaths()).map((p) => `${p}/${MANIFEST}`);
    return files.filter((f) => prefix === '' || f === prefix || f.startsWith(`${prefix}/`)).sort();
  }

  /** What a fake app path held at `sha`: the commit of its list (or the target a merged rollback restored it to). */
  async contentDigest(_repo: RepoRef, sha: string, paths: string[]): Promise<string> {
    await this.call('contentDigest');
    const scripted = await this.read<Record<string, string>>(K.filesAt(sha));
    const ids = await Promise.all(paths.map(async (path) => {
      if (scripted) return Object.entries(scripted).filter(([f]) => f === path || f.startsWith(`${path}/`)).map(([f, c]) => `${f}=${c}`).join(',');
      const app = appPathOf([path]);
      const restored = await this.read<{ sha: string; headSha: string }>(K.restoredTo(app));
      if (restored?.headSha === sha) return restored.sha;
      return ((await this.read<CommitInfo[]>(K.commits(app))) ?? []).some((c) => c.sha === sha) ? sha : `unknown:${sha}`;
    }));
    return ids.join(';');
  }

  async readRepositoryContent(_repo: RepoRef, path: string, ref: string, limit: number): Promise<CommitInfo[]> {
    await this.call('readRepositoryContent');
    await this.pauseAfter('readRepositoryContent');
    const commits = (await this.read<CommitInfo[]>(K.commits(path))) ?? [];
    // What is reachable from `ref`: from it when it is one of the path's commits; when it is another path's
    // commit, the path's commits no newer than it (the fake's history is linear); else the whole list (a branch).
    const at = commits.findIndex((c) => c.sha === ref);
    if (at >= 0) return commits.slice(at, at + limit);
    const lists = await Promise.all((await this.scriptedPaths()).map((p) => this.read<CommitInfo[]>(K.commits(p))));
    const date = lists.flatMap((l) => l ?? []).find((c) => c.sha === ref)?.date;
    return (date ? commits.filter((c) => Date.parse(c.date) <= Date.parse(date)) : commits).slice(0, limit);
  }

  // The fake keeps no files: a path differs from every target but the one it was last restored to
  // (by a merged rollback or a human's revert), and then by one file.
  async previewRollback(_repo: RepoRef, query: { paths: string[]; branch: string; targetSha: string }): Promise<RollbackPreview> {
    await this.call('previewRollback');
    const path = appPathOf(query.paths);
    const restored = await this.read<{ sha: string; headSha: string }>(K.restoredTo(path));
    const headSha = restored?.headSha ?? (await this.read<CommitInfo[]>(K.commits(path)))?.[0]?.sha ?? fakeSha(`head:${query.branch}`);
    const changed = restored?.sha === query.targetSha ? 0 : 1;
    await this.pauseAfter('previewRollback');
    return { changed, headSha, files: changed ? [{ path: `${path}/${MANIFEST}`, change: 'restored' }] : [] };
  }

  /** The rollback commit the fake builds for a spec: its SHA is fixed by the branch and the target. */
  static rollbackCommitOf(spec: Pick<RollbackPullRequestSpec, 'branch' | 'base' | 'paths' | 'targetSha'>) {
    return { sha: fakeSha(`${spec.branch}:${spec.targetSha}`), tree: fakeSha(`tree:${spec.paths.join(',')}:${spec.targetSha}`), parent: fakeSha(`head:${spec.base}`) };
  }

  async createPullRequest(_repo: RepoRef, spec: RollbackPullRequestSpec): Promise<OpenedPullRequest> {
    await this.call('createPullRequest');
    // As the client: a branch that already holds the target there (a merge or a revert since the preview) gets no PR.
    const restored = await this.read<{ sha: string; headSha: string }>(K.restoredTo(appPathOf(spec.paths)));
    if (restored?.sha === spec.targetSha) throw new NothingToRestoreError('createPullRequest', `${spec.base} at ${restored.headSha.slice(0, 7)} already holds ${appPathOf(spec.paths)} as at ${spec.targetSha.slice(0, 7)}`);
    const number = await this.update<number>(K.prCounter, (n) => (n ?? 0) + 1);
    const rollbackCommit = FakeWorld.rollbackCommitOf(spec);
    const pr: FakePullRequest = {
      number, url: `https://github.example/acme/gitops/pull/${number}`, branch: spec.branch, base: spec.base, title: spec.title, author: OPERATOR_LOGIN,
      state: 'open', merged: false, headSha: rollbackCommit.sha, mergeable: true, mergeableState: 'clean',
      spec, comments: [], labels: spec.labels,
    };
    await this.put(K.pr(number), pr);
    await this.pauseAfter('createPullRequest');
    return { ...pr, rollbackCommit };
  }

  async checkRollbackCommit(_repo: RepoRef, number: number, spec: { paths: string[]; targetSha: string }): Promise<RollbackCommitCheck> {
    await this.call('checkRollbackCommit');
    const pr = await this.read<FakePullRequest>(K.pr(number));
    if (!pr) throw new IntegrationError('checkRollbackCommit', 'NOT_FOUND', `pull request #${number} not found`);
    const expected = FakeWorld.rollbackCommitOf({ ...pr.spec, paths: spec.paths, targetSha: spec.targetSha });
    if (pr.author !== OPERATOR_LOGIN) return { ok: false, why: `it was opened by ${pr.author}` };
    return pr.headSha === expected.sha ? { ok: true, commit: expected } : { ok: false, why: `its head ${pr.headSha.slice(0, 7)} is not the rollback commit` };
  }

  async describeCommit(_repo: RepoRef, sha: string): Promise<CommitIdentity> {
    await this.call('describeCommit');
    return { sha, author: 'someone <someone@example.com>', message: '' };
  }

  async requiredChecks(): Promise<string[]> {
    await this.call('requiredChecks');
    return [];
  }

  async getPullRequestStatus(_repo: RepoRef, number: number, ciSha?: string): Promise<{ pr: PullRequestInfo; ci: CiStatus }> {
    await this.call('getPullRequestStatus');
    const stored = await this.read<FakePullRequest>(K.pr(number));
    if (!stored) throw new IntegrationError('getPullRequestStatus', 'NOT_FOUND', `pull request #${number} not found`);
    const mergeable = await this.read<boolean | null>(K.mergeable);
    const pr = mergeable === undefined ? stored : { ...stored, mergeable, mergeableState: mergeable === null ? 'unknown' : mergeable ? 'clean' : 'dirty' };
    return { pr, ci: (await this.read<CiStatus>(K.ci(ciSha ?? pr.headSha))) ?? { state: 'none', runs: [] } };
  }

  async listOpenPullRequests(_repo: RepoRef, filter: { base: string; paths: string[] }): Promise<PullRequestInfo[]> {
    await this.call('listOpenPullRequests');
    return (await this.pullRequests()).filter((pr) => pr.state === 'open' && pr.base === filter.base && appPathOf(pr.spec.paths) === appPathOf(filter.paths));
  }

  async mergePullRequest(_repo: RepoRef, number: number, options: { sha: string }): Promise<{ sha: string }> {
    await this.call('mergePullRequest');
    const { pr: merged, again } = await this.mergeAndSync(number, (pr) => {
      if (pr.state !== 'open') throw new IntegrationError('mergePullRequest', 'CONFLICT', 'pull request is closed');
      if (pr.headSha !== options.sha) throw new IntegrationError('mergePullRequest', 'CONFLICT', 'head moved');
      return { ...pr, state: 'closed', merged: true, mergedBy: OPERATOR_LOGIN, mergeCommitSha: fakeSha(`merge:${number}`) };
    });
    // GitHub would refuse it (405): a merge asked for twice is what SPEC §14.7 forbids, counted to be seen.
    if (again) await this.update<number>(K.calls('mergePullRequest:already-merged'), (n) => (n ?? 0) + 1);
    await this.pauseAfter('mergePullRequest');
    return { sha: merged.mergeCommitSha! };
  }

  /** A human merges on GitHub. */
  async mergeAsHuman(number: number, login = 'alice'): Promise<void> {
    await this.mergeAndSync(number, (pr) => ({ ...pr, state: 'closed', merged: true, mergedBy: login, mergeCommitSha: fakeSha(`merge:${number}`) }));
  }

  /**
   * The merge and Argo CD's part — auto-sync deploys the merge commit, which
   * restores the app — in one transaction. Argo CD is not in the operator's
   * process: an operator killed right after the merge must not take the sync
   * with it (two writes left a merged PR whose app never synced, RollbackMerged
   * until the recovery timeout). An already merged PR is left as it is.
   */
  private async mergeAndSync(number: number, merge: (pr: FakePullRequest) => FakePullRequest): Promise<{ pr: FakePullRequest; again: boolean }> {
    for (;;) {
      const stored = await this.kv.get(K.pr(number));
      if (!stored) throw new IntegrationError('mergePullRequest', 'NOT_FOUND', `pull request #${number} not found`);
      const current = JSON.parse(stored.value) as FakePullRequest;
      if (current.merged) return { pr: current, again: true };
      const pr = merge(current);
      const path = appPathOf(pr.spec.paths);
      const app = (await this.kv.getPrefix(`${P}apps/`)).find((kv) => (JSON.parse(kv.value) as FakeApp).source?.path === path);
      const puts = [{ key: K.pr(number), value: JSON.stringify(pr) }, { key: K.restoredTo(path), value: JSON.stringify({ sha: pr.spec.targetSha, headSha: pr.mergeCommitSha! }) }];
      if (app) {
        const was = JSON.parse(app.value) as FakeApp;
        puts.push({ key: app.key, value: JSON.stringify({
          ...was,
          syncRevision: pr.mergeCommitSha!,
          health: was.healthAfterMerge,
          history: [...was.history, { id: was.history.length, revision: pr.mergeCommitSha!, deployedAt: new Date().toISOString() }],
          deployments: was.deployments.map((d) => ({ ...d, updated: d.desired, available: d.desired, unavailable: 0, progressDeadlineExceeded: false })),
        } satisfies FakeApp) });
      }
      const result = await this.kv.txn({
        compares: [{ key: K.pr(number), target: 'mod', equals: stored.modRevision }, ...(app ? [{ key: app.key, target: 'mod' as const, equals: app.modRevision }] : [])],
        puts, deletes: [],
      });
      if (result.succeeded) return { pr, again: false };
    }
  }

  async commentPullRequest(_repo: RepoRef, number: number, marker: string, body: string): Promise<void> {
    await this.call('commentPullRequest');
    const tagged = `<!-- ai-operator:${marker} -->\n${body}`;
    await this.update<FakePullRequest>(K.pr(number), (pr) => pr!.comments.some((c) => c.startsWith(`<!-- ai-operator:${marker} -->`)) ? pr! : { ...pr!, comments: [...pr!.comments, tagged] });
  }

  /** A rollback branch is the head of its PRs: deleted once, and only while the PR's head is still `expectedSha`. */
  async deleteBranch(_repo: RepoRef, branch: string, expectedSha: string): Promise<BranchDeletion> {
    await this.call('deleteBranch');
    if (await this.read(K.deletedBranch(branch))) return { outcome: 'gone' };
    const prs = (await this.pullRequests()).filter((pr) => pr.branch === branch);
    if (prs.length === 0) return { outcome: 'gone' };
    if (prs.some((pr) => pr.state === 'open')) return { outcome: 'kept', why: 'an open pull request uses it' };
    const head = prs[prs.length - 1]!.headSha;
    if (head !== expectedSha) return { outcome: 'kept', why: `its head is ${head.slice(0, 7)}, not the rollback commit` };
    await this.put(K.deletedBranch(branch), { sha: head });
    return { outcome: 'deleted', sha: head };
  }

  /** The rollback branches deleteBranch deleted. */
  async deletedBranches(): Promise<string[]> {
    return (await this.kv.getPrefix(`${P}deleted-branches/`)).map((kv) => decodeURIComponent(kv.key.slice(`${P}deleted-branches/`.length)));
  }

  async closePullRequest(_repo: RepoRef, number: number, comment: string): Promise<void> {
    await this.call('closePullRequest');
    await this.update<FakePullRequest>(K.pr(number), (pr) => pr!.state === 'closed' ? pr! : { ...pr!, state: 'closed', comments: [...pr!.comments, comment] });
  }

  // ---- AttemptObjectsPort (unit tests; e2e uses the real API server) --------

  async project(record: AttemptRecord): Promise<void> {
    await this.put(K.projection(`${record.app.name}-${record.correlationId.replace(/-/g, '').slice(0, 8)}`), record);
  }
  async requests(record: AttemptRecord): Promise<HumanRequests> {
    return (await this.read<HumanRequests>(K.requests(`${record.app.name}-${record.correlationId.replace(/-/g, '').slice(0, 8)}`))) ?? {};
  }
  async markStalled(target: { app: AppRef; correlationId: string }, reason: string, message: string): Promise<void> {
    await this.put(K.stalled(`${target.app.name}-${target.correlationId.replace(/-/g, '').slice(0, 8)}`), { reason, message });
  }
  /** The Stalled condition markStalled set on an attempt's object, if any. */
  async stalled(app: AppRef, correlationId: string): Promise<{ reason: string; message: string } | undefined> {
    return this.read(K.stalled(`${app.name}-${correlationId.replace(/-/g, '').slice(0, 8)}`));
  }
  async removeApproval(record: AttemptRecord): Promise<void> {
    await this.call('removeApproval');
    await this.update<HumanRequests>(K.requests(`${record.app.name}-${record.correlationId.replace(/-/g, '').slice(0, 8)}`), (current) => {
      const { approve: _removed, approveWrittenAt: _at, ...rest } = current ?? {};
      return rest;
    });
  }
}

/** A staging or production app with a good history: three healthy revisions, then a bad one deployed now. */
export function scenarioApp(name: string, environment: 'staging' | 'production', now = Date.now()): { app: FakeApp; commits: CommitInfo[]; good: string; bad: string } {
  const path = `apps/${name}`;
  const hours = (h: number) => new Date(now - h * 3600_000).toISOString();
  const shas = ['v1', 'v2', 'v3', 'bad'].map((v) => fakeSha(`${name}:${v}`));
  const commits: CommitInfo[] = shas.map((sha, i) => ({
    sha, message: i === 3 ? 'Bump image to a broken build' : `Release v${i + 1}`, author: i === 3 ? 'bob' : 'carol',
    date: hours(72 - i * 24), url: `https://github.example/acme/gitops/commit/${sha}`,
  })).reverse();
  const app: FakeApp = {
    ref: { namespace: 'argocd', name },
    labels: { 'ai-operator.enabled': 'true', environment },
    health: 'Healthy',
    syncRevision: shas[3]!,
    history: shas.map((revision, id) => ({ id, revision, deployedAt: hours(72 - id * 24) })),
    resources: [{ kind: 'Deployment', name, namespace: name }],
    source: { repoURL: 'https://github.com/acme/gitops.git', path, targetRevision: 'main' },
    deployments: [{ name, desired: 3, updated: 3, available: 3, unavailable: 0, progressDeadlineExceeded: false }],
    uptime: { [shas[0]!]: 0.999, [shas[1]!]: 0.95, [shas[2]!]: 0.997 },
    healthAfterMerge: 'Healthy',
  };
  return { app, commits, good: shas[2]!, bad: shas[3]! };
}
