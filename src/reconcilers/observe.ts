// The reads of a reconcile (observe in observe → decide → commit → execute →
// project): every fact a decision is taken on is gathered here, and nothing else
// reads. What a decision asked for (a candidate search, what a PR would be opened
// on) is read by observeNeeds, then the same decision is taken again.
import { decide, mergeEnvironment, type Decision, type Facts, type Preflight } from '../decide/machine.ts';
import { affectsBeyondStaging, noApproversNote, ROLLBACK_BRANCH_PREFIX, attemptBranch, branchName, repoFromUrl, type AppRef, type AttemptRecord, type FailsEarly, type PullRequestRef, restoredPaths, type RollbackCommit, type Settings } from '../fsm/record.ts';
import { inProgress } from '../fsm/table.ts';
import { ciVerdict, type CiVerdict, type InvariantFacts } from '../governance/merge-verdict.ts';
import { applicationRefusal, type RefusalReason } from '../governance/repository.ts';
import { blastRadius, SourceSetCache } from '../modules/blast-radius.ts';
import { resolveCandidate } from '../modules/candidate-resolver.ts';
import { failsEarly } from '../modules/pod-signals.ts';
import { resolveTargetBranch } from '../modules/target-branch.ts';
import type { ApplicationView } from '../ports/argocd.ts';
import { IntegrationError } from '../ports/errors.ts';
import { OPENING_WRITES, type OpenedPullRequest, type PullRequestInfo, type RepoRef } from '../ports/github.ts';
import type { AppState, StoredAttempt } from '../ports/attempt-store.ts';
import type { ApplicationReconcilerDeps, ResetRequested } from './deps.ts';

/** Why a staging attempt waits for an approver (its blast radius), and, when nobody may approve it, what then. */
function heldBack(record: Pick<AttemptRecord, 'affected' | 'environment' | 'settings'>): string | undefined {
  const beyond = affectsBeyondStaging(record);
  const nobody = beyond ? noApproversNote(record) : undefined;
  return beyond && nobody ? `${beyond} (${nobody})` : beyond;
}

export interface RoundMemo {
  /** The PR an intent of this reconcile opened, with the rollback commit it built. */
  opened?: OpenedPullRequest;
  /** What that PR was opened on (its blast radius is kept with it). */
  preflight?: Preflight;
  /** Other attempts' open rollback PRs found where this one was about to open its own: it waits for them. */
  competing?: Array<{ number: number; title: string }>;
  failure?: Facts['failure'];
  /** The intent that failed, for intent-failure.ts's rule. */
  intentFailure?: Facts['intentFailure'];
}

export interface Observed {
  facts: Facts;
  /** What the intents of earlier rounds of this reconcile did. */
  memo?: RoundMemo;
  app?: ApplicationView;
  state: AppState;
  stored?: StoredAttempt;
  /** The repository of the attempt's source (undefined before an attempt, or when the URL is not GitHub's). */
  repo?: RepoRef;
}

/** What the observer asks of the reconciler that owns the app's memory and its writes. */
export interface ObserverHooks {
  resetRequested(record: AttemptRecord, now: Date): ResetRequested | undefined;
  dropPending(storeKey: string, modRevision: string): Promise<void>;
  forgetApp(ref: AppRef, storeKey: string, deleted: boolean): void;
}

export class Observer {
  private identity?: Promise<string>;
  /** Other apps' source sets at their repository's head, for the blast radius of a burst of rollbacks. */
  private readonly sourceSets = new SourceSetCache();
  /** Apps (`namespace/name`) whose targetRevision was last resolved to no branch, with what it was. */
  private readonly targetRefusals = new Map<string, { targetRevision: string; reason: RefusalReason; message: string }>();
  private readonly deps: ApplicationReconcilerDeps;
  private readonly clock: () => Date;
  private readonly newId: () => string;
  private readonly hooks: ObserverHooks;

  constructor(deps: ApplicationReconcilerDeps, clock: () => Date, newId: () => string, hooks: ObserverHooks) {
    this.deps = deps;
    this.clock = clock;
    this.newId = newId;
    this.hooks = hooks;
  }

  /** A deleted Application leaves no entry behind. */
  forget(ref: AppRef): void {
    this.targetRefusals.delete(`${ref.namespace}/${ref.name}`);
  }

  get refusalsKept(): number {
    return this.targetRefusals.size;
  }

  async observe(ref: AppRef, storeKey: string, memo: RoundMemo): Promise<Observed | undefined> {
    const now = this.clock();
    const [cached, state] = await Promise.all([this.deps.argocd.getApplication(ref), this.deps.store.loadApp(storeKey)]);
    const stored = state.active;
    const record = stored?.record;
    // Not in the watch cache: only an attempt needs to know whether the Application is really gone.
    // Held (in progress, or aborted until a reset): only an attempt needs to know whether its Application is gone.
    const holds = record !== undefined && (inProgress(record.state) || record.state === 'Abort');
    const app = cached ?? (holds ? await this.deps.argocd.readApplication(ref) : undefined);
    const monitored = app ? this.deps.monitoring(app) : undefined;
    if (!record && !monitored) {
      if (state.pending) await this.hooks.dropPending(storeKey, state.pending.modRevision);
      this.hooks.forgetApp(ref, storeKey, app === undefined);
      return undefined;
    }

    const settings = record?.settings ?? monitored!.settings;
    const early = await this.podSignal(app, settings, now);
    const health = app?.health ? {
      status: app.health,
      ...(app.syncRevision ? { revision: app.syncRevision } : {}),
      ...(app.degradedSince ? { degradedSince: app.degradedSince } : {}),
      ...(early ? { failsEarly: early } : {}),
    } : undefined;
    const policyRef = record?.policyRef ?? monitored?.policyRef;
    // Before any attempt: an attempt in progress keeps the settings it recorded, even if policies now conflict.
    let refused = !record && app ? monitored?.conflict?.message ?? applicationRefusal(app, this.deps.allowedOwner, this.deps.githubHosts)?.message : undefined;
    // The branch a new attempt would work on, read only for an app that may get one (Degraded, not refused):
    // a tag or a SHA is refused here, before any attempt. Cached by the GitHub port; an outage throws (retried).
    let branch: string | undefined;
    if (!record && (app?.health === 'Degraded' || early) && !refused && app?.source) {
      const target = await this.targetBranch(ref, app.source);
      if (target?.kind === 'refused') refused = target.message;
      else if (target) branch = target.branch;
    }
    const facts: Facts = {
      now,
      app: ref,
      environment: record?.environment ?? monitored!.environment,
      settings,
      ...(policyRef ? { policyRef } : {}),
      // An attempt in progress goes on with an Application created again under its name: the next write keeps the
      // new uid, so once it ends in Abort it is not taken for one whose Application went away.
      ...(record ? { record: record.appUid && app?.uid && app.uid !== record.appUid && inProgress(record.state) ? { ...record, appUid: app.uid } : record } : {}),
      checks: stored?.checks ?? state.pending?.checks ?? [],
      ...(state.pending ? { pendingCorrelationId: state.pending.correlationId } : {}),
      ...(health ? { health } : {}),
      ...(app?.source ? { source: app.source } : {}),
      ...(app?.uid ? { appUid: app.uid } : {}),
      ...(branch ? { branch } : {}),
      ...(monitored ? { liveEnvironment: monitored.environment } : {}),
      ...(refused ? { refused } : {}),
      suspended: monitored?.suspended ?? false,
      ...(state.lastRollbackAt ? { lastRollbackAt: state.lastRollbackAt } : {}),
      ...(state.attemptStarts.length > 0 ? { attemptStarts: state.attemptStarts } : {}),
      nextCorrelationId: this.newId(),
      human: {},
      ...(memo.failure ? { failure: memo.failure } : {}),
      ...(memo.intentFailure ? { intentFailure: memo.intentFailure } : {}),
    };
    const observed: Observed = { facts, memo, ...(app ? { app } : {}), state, ...(stored ? { stored } : {}) };
    if (!record) return observed;

    // Human requests are read whatever else can or cannot be: abort and reset always work.
    const requests = await this.deps.attempts.requests(record);
    facts.human = {
      ...(requests.abort !== undefined ? { abort: requests.abort } : {}),
      ...(requests.reset || this.hooks.resetRequested(record, now) ? { reset: true } : {}),
      ...(requests.approve !== undefined ? { approval: {
        username: requests.approve,
        ...(requests.approveWrittenAt ? { writtenAt: requests.approveWrittenAt } : {}),
        ...(requests.objectCreatedAt ? { objectCreatedAt: requests.objectCreatedAt } : {}),
      } } : {}),
    };
    // Judged for the attempt's own namespace: a binding scoped elsewhere checks nothing here.
    if (mergeEnvironment(record.environment, record) === 'production' && record.state === 'AwaitingMergeApproval') {
      facts.approvalEnforcement = this.deps.approvalEnforcement ? await this.deps.approvalEnforcement.forNamespace(record.app.namespace) : { enforced: false, problem: 'no approval enforcement check configured' };
    }
    // Gone; or, for an aborted attempt (which nobody resets once its Application is gone), deleted and created
    // again under the name while nobody watched (another uid). An attempt in progress goes on with the new one,
    // which deploys the same source (the lifecycle contract).
    const recreated = record.state === 'Abort' && app !== undefined && app.uid !== undefined && record.appUid !== undefined && app.uid !== record.appUid;
    if (holds && (!app || recreated)) facts.applicationGone = true;
    if (recreated) facts.recreated = true;
    const source = record.source ?? app?.source;
    const repo = source ? repoFromUrl(source.repoURL) : undefined;
    if (repo) observed.repo = repo;
    try {
      if (!repo) throw new IntegrationError('readRepositoryContent', 'INVALID_ARGUMENT', `Application ${ref.namespace}/${ref.name} has no GitHub repoURL in spec.source`);
      await this.observeForState(observed, record, repo);
      if (facts.pullRequest && record.state === 'CandidateResolved') {
        facts.pullRequestJustOpened = memo.opened?.number === facts.pullRequest.ref.number;
        if (facts.pullRequestJustOpened && memo.preflight) facts.preflight = memo.preflight;
      }
    } catch (error) {
      if (!(error instanceof IntegrationError)) throw error;
      facts.failure = { code: error.code, message: error.message, call: error.call };
    }
    return observed;
  }

  /** resolveTargetBranch for the app's source, remembering a refusal for the policy status (targetRefusal). */
  private async targetBranch(ref: AppRef, source: { repoURL: string; targetRevision?: string }) {
    const repo = repoFromUrl(source.repoURL);
    if (!repo) return undefined;
    const target = await resolveTargetBranch(this.deps.github, repo, source);
    const key = `${ref.namespace}/${ref.name}`;
    if (target.kind === 'refused') this.targetRefusals.set(key, { targetRevision: source.targetRevision ?? '', reason: target.reason, message: target.message });
    else this.targetRefusals.delete(key);
    return target;
  }

  /**
   * Why the app's targetRevision was refused when it was last resolved (it is resolved only while the app is
   * Degraded), as long as the app still names the same targetRevision: what a RollbackPolicy's status counts.
   */
  targetRefusal(app: { ref: AppRef; source?: { targetRevision?: string } }): { reason: RefusalReason; message: string } | undefined {
    const known = this.targetRefusals.get(`${app.ref.namespace}/${app.ref.name}`);
    return known && known.targetRevision === (app.source?.targetRevision ?? '') ? { reason: known.reason, message: known.message } : undefined;
  }

  private async observeForState(observed: Observed, record: AttemptRecord, repo: RepoRef): Promise<void> {
    const { github } = this.deps;
    const { facts, app, memo } = observed;
    // An attempt that aborted before it knew of its PR (the answer to its creation was lost): a reset
    // looks for it by the attempt's branch, so it is closed with the attempt and never left behind.
    const lookForPullRequest = record.state === 'CandidateResolved' || (record.state === 'Abort' && !record.pullRequest && facts.human.reset === true);
    switch (lookForPullRequest ? 'CandidateResolved' : record.state) {
      case 'CandidateResolved': {
        // Its turn among the attempts waiting to write to GitHub, before anything is read for the PR: an attempt
        // that waits for it (RATE_LIMITED, said in its status) costs no request. None is taken for a PR that
        // will not be opened (a dry run; health back, which ends the attempt), nor while waiting for another
        // attempt's PR, nor for the PR just opened.
        const opening = !memo?.opened && !record.waitingFor && !record.settings.dryRun && facts.health?.status !== 'Healthy';
        if (record.state === 'CandidateResolved' && opening) {
          await github.reserveWrites({ key: branchName(record.app, record.correlationId), writes: OPENING_WRITES, turn: { production: record.environment === 'production', since: record.createdAt } });
        }
        // The PR this reconcile opened is the one on the branch: no need to look it up again.
        const pr = memo?.opened ?? await github.findPullRequest(repo, branchName(record.app, record.correlationId));
        if (!pr) return;
        // Just built by this reconcile, or found by the branch's name: then its head must be checked to be the rollback.
        const opened = memo?.opened?.number === pr.number && memo.opened.rollbackCommit.sha === pr.headSha ? memo.opened.rollbackCommit : undefined;
        facts.pullRequest = { ref: refOf(pr), headSha: pr.headSha, base: pr.base, ...(opened ? { rollbackCommit: opened } : await this.checkHead(record, app, repo, pr)) };
        return;
      }
      case 'PRCreated':
      case 'AwaitingMergeApproval':
      case 'Abort': {
        if (!record.pullRequest) return;
        // An aborted attempt's PR matters only to what ends it (a reset closes it, a deleted app releases it): read
        // at every check, hundreds of aborted attempts in a burst read their PRs and CI for nothing.
        if (record.state === 'Abort' && !facts.human.reset && !facts.applicationGone) return;
        const built = record.rollbackCommit;
        // CI is read on the commit the operator built, never on whatever the head is now. While the PR waits for
        // CI (PRCreated) it is polled; what a merge is decided on (AwaitingMergeApproval) is read fresh.
        const { pr, ci } = await github.getPullRequestStatus(repo, record.pullRequest.number, built?.sha, record.state === 'PRCreated' ? { polling: true } : {});
        const identity = await this.operatorLogin();
        facts.pullRequest = {
          ref: refOf(pr),
          headSha: pr.headSha,
          base: pr.base,
          ...(pr.mergeCommitSha ? { mergeCommitSha: pr.mergeCommitSha } : {}),
          ...(pr.merged ? { mergedByOperator: pr.mergedBy === identity } : {}),
        };
        if (record.state === 'Abort' || pr.state !== 'open') return;
        // A record written before the rollback commit was kept: its head is checked once, then kept.
        const checked = built ? { rollbackCommit: built } : await this.checkHead(record, app, repo, pr);
        Object.assign(facts.pullRequest, checked);
        const expected = checked.rollbackCommit;
        if (!expected || expected.sha !== pr.headSha) {
          // Only to name who moved it: the abort stands without it, so an unreadable commit is logged, not retried.
          facts.pullRequest.headAuthor = await github.describeCommit(repo, pr.headSha).then((c) => c.author, (error: Error) => {
            this.deps.log.warn('Could not read who made a moved PR head', { correlationId: record.correlationId, sha: pr.headSha, error: error.message });
            return undefined;
          });
          return;
        }
        const base = attemptBranch(record, app?.source);
        const verdict = ciVerdict(ci.runs, { branch: await github.requiredChecks(repo, base), ...(record.settings.requiredChecks ? { policy: record.settings.requiredChecks } : {}) }, expected.sha);
        facts.ci = verdict.state;
        facts.ciDetail = verdict.detail;
        if (record.state === 'AwaitingMergeApproval' && app) {
          facts.invariantFacts = await this.invariantFacts(facts, record, app, repo, { ...pr, ci: verdict, headIsRollbackCommit: true });
        }
        return;
      }
      default:
        return;
    }
  }

  /**
   * Other attempts' open rollback PRs (the operator's, on its rollback branches) into `base` that change files
   * of this attempt's source set: a second PR restoring the same files is never opened beside one.
   */
  async competingPullRequests(record: AttemptRecord, app: ApplicationView | undefined, repo: RepoRef, base: string): Promise<Array<{ number: number; title: string }>> {
    const own = branchName(record.app, record.correlationId);
    const identity = await this.operatorLogin();
    // A list a few seconds old will do: this operator's own PRs (the only ones that count here) are in it as soon as opened.
    return (await this.deps.github.listOpenPullRequests(repo, { base, paths: restoredPaths(record, app?.source), openedBy: identity, branchPrefix: ROLLBACK_BRANCH_PREFIX }, { polling: true }))
      .filter((p) => p.branch !== own && p.branch.startsWith(ROLLBACK_BRANCH_PREFIX) && p.author === identity)
      .map((p) => ({ number: p.number, title: p.title }));
  }

  /** The operator's GitHub login: cached once known; a failed lookup is not cached, so it is asked again next time. */
  private operatorLogin(): Promise<string> {
    return this.identity ??= this.deps.github.identity().catch((error: unknown) => { this.identity = undefined; throw error; });
  }

  /** Whether a PR's head is the rollback commit this attempt builds (recomputed): what facts.pullRequest says of it. */
  private async checkHead(record: AttemptRecord, app: ApplicationView | undefined, repo: RepoRef, pr: PullRequestInfo): Promise<{ rollbackCommit?: RollbackCommit; notRollback?: string }> {
    if (!record.candidate) return { notRollback: 'the attempt has no rollback target to check it against' };
    const check = await this.deps.github.checkRollbackCommit(repo, pr.number, { paths: restoredPaths(record, app?.source), targetSha: record.candidate.revision });
    return check.ok ? { rollbackCommit: check.commit } : { notRollback: check.why };
  }

  /** The facts a decision asked for: a candidate search (persistence confirmed), or what a PR would be opened on. */
  async observeNeeds(observed: Observed, needs: NonNullable<Decision['needs']>): Promise<void> {
    const { facts, app, repo } = observed;
    const record = facts.record!;
    if (!app || !repo) throw new Error(`${needs} asked for without an Application or repository`);
    try {
      if (needs === 'candidate') {
        const started = Date.now();
        facts.candidate = await resolveCandidate(this.deps.github, this.deps.history, {
          app, repo, settings: record.settings, currentRevision: facts.health?.revision ?? record.currentRevision ?? '', excluded: observed.state.rolledBackFrom, now: facts.now, clock: this.clock,
        });
        this.deps.metrics.observeCandidateResolution(app.ref.name, (Date.now() - started) / 1000);
        return;
      }
      // What the PR would be opened on, read side by side: the diff and the invariants as they stand (their
      // facts include the Deployments' rollout, listed when readable). The commits undone came with the candidate.
      const base = attemptBranch(record, app.source);
      const [preview, invariantFacts] = await Promise.all([
        this.deps.github.previewRollback(repo, { paths: restoredPaths(record, app.source), branch: base, targetSha: record.candidate!.revision }),
        this.invariantFacts(facts, record, app, repo),
      ]);
      // Another attempt's open rollback PR restoring files of this set: waited for, never doubled. Read here for an
      // attempt that waits already (or was just refused one: the memo); for the others, where the PR is opened.
      const competing = observed.memo?.competing ?? (record.waitingFor ? await this.competingPullRequests(record, app, repo, base) : []);
      // Which other apps the same files deploy: read on the head the diff was measured on.
      const affected = await blastRadius(this.deps.github, {
        app, repo, branch: base, headSha: preview.headSha, files: preview.files, others: await this.deps.argocd.listApplications(),
        environmentOf: (other) => this.deps.monitoring(other)?.environment ?? 'ungoverned', cache: this.sourceSets,
      });
      const beyond = heldBack({ ...record, affected });
      facts.preflight = {
        invariantFacts: { ...invariantFacts, ...(beyond ? { alsoChanges: beyond } : {}) }, changedFiles: preview.changed, base,
        files: preview.files, affected, ...(competing.length > 0 ? { competing } : {}),
        ...(invariantFacts.deployments ? { deployments: invariantFacts.deployments } : {}),
      };
    } catch (error) {
      if (!(error instanceof IntegrationError)) throw error;
      if (needs === 'candidate') facts.candidate = { kind: 'error', code: error.code, message: error.message };
      else facts.failure = { code: error.code, message: error.message, call: error.call };
    }
  }

  /** Fresh reads for the invariants, just before a merge decision (SPEC §4, §7). */
  /** Without `pr` (before the PR opens): what only a PR can tell stays unread. */
  private async invariantFacts(facts: Facts, record: AttemptRecord, app: ApplicationView, repo: RepoRef, pr?: { number: number; mergeable: boolean | null; mergeableState: string; base: string; ci: CiVerdict; headIsRollbackCommit: boolean }): Promise<InvariantFacts> {
    // A fact that cannot be read becomes UNKNOWN (never PASS); say why in the log.
    const settle = <T>(what: string, p: Promise<T>) => p.then((v) => v, (error: Error) => {
      this.deps.log.warn('Could not read an invariant fact', { correlationId: record.correlationId, fact: what, error: error.message });
      return undefined;
    });
    const [health, deployments, open] = await Promise.all([
      // I2 is "Degraded now": read past the watch cache, one request per evaluation.
      settle('Argo CD health', this.deps.argocd.readApplicationHealth(record.app)),
      settle('Deployment status', this.deps.cluster.getDeploymentStatus(app)),
      pr ? settle('open pull requests', this.deps.github.listOpenPullRequests(repo, { base: pr.base, paths: restoredPaths(record, app.source) })) : undefined,
    ]);
    // Progressing now: I2 asks whether the current revision's pods still fail early, read now too.
    const early = health?.status === 'Progressing' ? await this.podSignal({ ...app, health: health.status }, record.settings, facts.now) : undefined;
    const candidate = record.candidate;
    const beyond = heldBack(record);
    return {
      ...(pr ? {} : { beforePullRequest: true }),
      environment: record.environment,
      ...(beyond ? { alsoChanges: beyond } : {}),
      ...(health ? { health: health.status } : {}),
      ...(early ? { failsEarly: early } : {}),
      ...(deployments ? { deployments } : {}),
      checks: facts.checks,
      persistenceChecks: record.settings.persistenceChecks,
      intervalSeconds: record.settings.intervalSeconds,
      ...(candidate ? { candidate: { uptime: candidate.uptime, minUptime: record.settings.minUptime, mode: candidate.mode, ciState: candidate.ciState, evidence: candidate.evidence } } : {}),
      ...(pr ? { ci: pr.ci, headIsRollbackCommit: pr.headIsRollbackCommit } : {}),
      ...(pr && open ? { otherOpenPullRequests: open.filter((p) => p.number !== pr.number).map((p) => ({ number: p.number, title: p.title })) } : {}),
      ...(pr ? { mergeability: { mergeable: pr.mergeable, mergeableState: pr.mergeableState } } : {}),
    };
  }

  /**
   * Issue 21: whether the current revision's pods fail early (modules/pod-signals.ts), read only while Argo CD
   * reports the app Progressing and its settings ask for it: a Healthy or Degraded app costs nothing here. A
   * read that fails is no signal (Argo CD's own health still stands), and is logged.
   */
  async podSignal(app: ApplicationView | undefined, settings: Settings | undefined, now: Date): Promise<FailsEarly | undefined> {
    if (app?.health !== 'Progressing' || !settings?.podSignals?.enabled) return undefined;
    try {
      return failsEarly(await this.deps.cluster.currentRevisionPods(app), settings.podSignals, now);
    } catch (error) {
      if (!(error instanceof IntegrationError)) throw error;
      this.deps.log.warn('Could not read the pods of the current revision', { app: `${app.ref.namespace}/${app.ref.name}`, error: error.message });
      return undefined;
    }
  }

  /** A monitored app Progressing with its pods' signal on is looked at again an interval later: its pods change unseen. */
  podCheckMs(app: ApplicationView | undefined): number | undefined {
    const settings = app?.health === 'Progressing' ? this.deps.monitoring(app)?.settings : undefined;
    return settings?.podSignals?.enabled ? settings.intervalSeconds * 1000 : undefined;
  }
}

function refOf(pr: PullRequestInfo): PullRequestRef {
  return { number: pr.number, url: pr.url, branch: pr.branch, state: pr.merged ? 'merged' : pr.state };
}
