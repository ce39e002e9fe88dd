// The application reconciler drives one app's rollback attempt through the state
// machine. Each reconcile: observe (the only reads) → decide (pure, fsm/machine)
// → commit the record, its events and app facts in one fenced etcd transaction
// → carry out the intents idempotently → observe again, a few rounds at most so
// an effect and the transition it enables land in one reconcile. The
// RollbackAttempt status is written once, at the end, even on error.
import { API_VERSION, KINDS } from '../api/group.ts';
import { recordEntry, type AuditOutboxEntry } from '../audit/outbox.ts';
import { sayDecision, sayIntent, sayStalled, type Said, type SaidEvent } from '../decide/record-keeping.ts';
import { appSubject, makeEvent, type CloudEvent } from '../events/types.ts';
import { decide, failSafe, mergeEnvironment, TransitionRefused, type Decision, type Facts, type Intent, type Preflight } from '../fsm/machine.ts';
import { affectsBeyondStaging, appKey, isUnder, noApproversNote, ROLLBACK_BRANCH_PREFIX, attemptBranch, attemptName, branchName, repoFromUrl, type AppRef, type AttemptRecord, type FailsEarly, type PullRequestRef, restoredPaths, type RollbackCommit, type Settings } from '../fsm/record.ts';
import { Reason, holdsApp, inProgress } from '../fsm/table.ts';
import { ciVerdict, evaluateInvariants, type CiVerdict, type InvariantFacts } from '../governance/merge-verdict.ts';
import { applicationRefusal, type RefusalReason } from '../governance/repository.ts';
import type { MonitoredApp } from '../policy/settings.ts';
import { blastRadius, SourceSetCache } from '../modules/blast-radius.ts';
import { resolveCandidate } from '../modules/candidate-resolver.ts';
import { failsEarly } from '../modules/pod-signals.ts';
import { resolveTargetBranch } from '../modules/target-branch.ts';
import { comments, openPullRequest } from '../modules/pr-generator.ts';
import type { Logger } from '../observability/log.ts';
import type { Metrics } from '../observability/metrics.ts';
import { annotateReconcile, inReconcile } from '../observability/tracing.ts';
import type { ApplicationView, ArgoCdPort } from '../ports/argocd.ts';
import { IntegrationError, TerminalError, terminalCause } from '../ports/errors.ts';
import type { AuditInput, AuditPort } from '../ports/audit.ts';
import type { GitHubPort, OpenedPullRequest, PullRequestInfo, RepoRef } from '../ports/github.ts';
import type { ApprovalEnforcementPort, AttemptObjectsPort, ClusterPort, EventRecorderPort } from '../ports/kubernetes.ts';
import type { MetricsHistoryPort } from '../ports/prometheus.ts';
import { CorruptRecord, type AppState, type AttemptStore, type StoredAttempt } from '../store/attempt-store.ts';
import { StoreUnavailable } from '../store/kv.ts';
import type { ReconcileResult } from './queue.ts';

/** The reconciler writes audit records outside a commit through the audit port. */
export type AuditSink = AuditPort;

export type { MonitoredApp } from '../policy/settings.ts';

/** The chain named in audit outbox entries when the audit log does not name its own. */
const LOCAL_CHAIN = 'local';

export interface ApplicationReconcilerDeps {
  store: AttemptStore;
  argocd: ArgoCdPort;
  github: GitHubPort;
  cluster: ClusterPort;
  history: MetricsHistoryPort;
  attempts: AttemptObjectsPort;
  monitoring: (app: ApplicationView) => MonitoredApp | undefined;
  audit: AuditSink;
  /** The audit log's chain (AuditLog.chainId): the one that records this replica's audit outbox entries. */
  auditChain?: string;
  metrics: Metrics;
  log: Logger;
  argocdNamespace: string;
  /**
   * Whether the app has state in etcd (an active attempt, or a degradation being
   * counted), from an index the operator keeps off the etcd watch; undefined when
   * unknown. Lets a quiet app (nothing stored, not Degraded) be checked from the
   * watch cache alone, with no etcd read.
   */
  hasStoredState?: (storeKey: string) => boolean | undefined;
  /** Kubernetes Events on the Application and the RollbackAttempt (best effort). */
  events?: EventRecorderPort;
  /** GITHUB_ORG: the owner of every repository the operator may open pull requests on. */
  allowedOwner?: string;
  /** The hosts of that GitHub's repositories (governance/repository.ts githubHosts): another host is refused. */
  githubHosts?: readonly string[];
  /** Whether the API server enforces who may approve; without it no production approval is ever recorded. */
  approvalEnforcement?: ApprovalEnforcementPort;
  /** Called after a commit that wrote events, so the outbox relay publishes them at once. */
  onEventsWritten?: () => void;
  clock?: () => Date;
  newId?: () => string;
}

/** Thrown when a write lost its compare-and-swap or fence: the reconcile is retried. */
export class WriteConflict extends Error {
  readonly reason: 'conflict' | 'fenced';
  constructor(reason: 'conflict' | 'fenced') {
    super(`etcd write refused: ${reason}`);
    this.name = 'WriteConflict';
    this.reason = reason;
  }
}

const MAX_ROUNDS = 4;

/** Who asked for a reset, and through what (`POST /reset`). */
export interface ResetRequested {
  username: string;
  via: string;
}

/** Why a staging attempt waits for an approver (its blast radius), and, when nobody may approve it, what then. */
function heldBack(record: Pick<AttemptRecord, 'affected' | 'environment' | 'settings'>): string | undefined {
  const beyond = affectsBeyondStaging(record);
  const nobody = beyond ? noApproversNote(record) : undefined;
  return beyond && nobody ? `${beyond} (${nobody})` : beyond;
}

interface RoundMemo {
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

interface Observed {
  facts: Facts;
  /** What the intents of earlier rounds of this reconcile did. */
  memo?: RoundMemo;
  app?: ApplicationView;
  state: AppState;
  stored?: StoredAttempt;
  /** The repository of the attempt's source (undefined before an attempt, or when the URL is not GitHub's). */
  repo?: RepoRef;
}

export class ApplicationReconciler {
  private readonly deps: ApplicationReconcilerDeps;
  private readonly clock: () => Date;
  private readonly newId: () => string;
  private identity?: Promise<string>;
  /** Other apps' source sets at their repository's head, for the blast radius of a burst of rollbacks. */
  private readonly sourceSets = new SourceSetCache();
  /** PR openings under way per repository and branch, with the paths each restores (exclusive()). */
  private readonly opening = new Map<string, Array<{ paths: string[]; done: Promise<void> }>>();
  /** What was said about a Degraded app that may not be rolled back, so it is said once per degradation. */
  private readonly waitingSaid = new Map<string, string>();
  /** Transition Events of the reconcile in progress, per app key, emitted once its RollbackAttempt is projected. */
  private readonly heldEvents = new Map<string, Array<{ event: SaidEvent; appUid: string | undefined }>>();
  /** Apps (`namespace/name`) whose targetRevision was last resolved to no branch, with what it was. */
  private readonly targetRefusals = new Map<string, { targetRevision: string; reason: RefusalReason; message: string }>();
  /**
   * The last intent failure audited per attempt: the same failure again (an outage that lasts) is not audited
   * again — one record per distinct failure, not per try. Forgotten at the attempt's next transition.
   */
  private readonly failureSaid = new Map<string, string>();
  /** Resets asked through POST /reset, by correlationId: read as the annotation is, until written or expired. */
  private readonly resetRequests = new Map<string, ResetRequested & { until: number }>();

  constructor(deps: ApplicationReconcilerDeps) {
    this.deps = deps;
    this.clock = deps.clock ?? (() => new Date());
    this.newId = deps.newId ?? (() => crypto.randomUUID());
  }

  /**
   * A reset asked for by someone other than the annotation (POST /reset): the
   * next observe of the attempt reads it as `facts.human.reset`, so it takes
   * exactly the annotation's path (its PR closed, then Abort -> Idle), and the
   * RESET audit record names `by`. It lapses after `ttlMs` unwritten (say the
   * replica lost leadership meanwhile), so an old request never fires late.
   */
  requestReset(correlationId: string, by: ResetRequested, ttlMs = 10 * 60_000): void {
    const now = this.clock().getTime();
    // Lapsed requests are dropped here too: one for an attempt that was never reconciled again would stay otherwise.
    for (const [id, asked] of this.resetRequests) if (asked.until <= now) this.resetRequests.delete(id);
    this.resetRequests.set(correlationId, { ...by, until: now + ttlMs });
  }

  /**
   * What this process remembers of an app with nothing stored and nothing to decide: dropped, so its memory
   * is bounded by the apps that are live (a deleted Application leaves no entry behind).
   */
  private forgetApp(ref: AppRef, storeKey: string, deleted: boolean): void {
    this.waitingSaid.delete(storeKey);
    if (deleted) this.targetRefusals.delete(`${ref.namespace}/${ref.name}`);
  }

  /** How many entries the per-app memories hold (tests show they return to where they were once apps are gone). */
  memorySizes(): Record<string, number> {
    return {
      opening: this.opening.size, waitingSaid: this.waitingSaid.size, heldEvents: this.heldEvents.size,
      targetRefusals: this.targetRefusals.size, resetRequests: this.resetRequests.size,
    };
  }

  /** The live reset request for this record; a lapsed one, or one for an attempt no longer aborted, is dropped. */
  private resetRequested(record: AttemptRecord, now: Date): ResetRequested | undefined {
    const asked = this.resetRequests.get(record.correlationId);
    if (asked && (record.state !== 'Abort' || asked.until <= now.getTime())) this.resetRequests.delete(record.correlationId);
    return record.state === 'Abort' && asked && asked.until > now.getTime() ? asked : undefined;
  }

  /** One reconcile, a span of its attempt's trace once the store has read which attempt that is (observability/tracing.ts). */
  reconcile(key: string): Promise<ReconcileResult> {
    return inReconcile(() => this.reconcileKey(key));
  }

  private async reconcileKey(key: string): Promise<ReconcileResult> {
    const ref = parseKey(key);
    const storeKey = appKey(ref, this.deps.argocdNamespace);
    let latest: AttemptRecord | undefined;
    /** Whether a write of this reconcile released the app: its attempt is then never projected again. */
    let released = false;
    let counting: Settings | undefined;
    let seen: ApplicationView | undefined;
    if (this.deps.hasStoredState?.(storeKey) === false) {
      const app = await this.deps.argocd.getApplication(ref);
      // Nothing stored and not Degraded (nor Progressing with its pods failing early): nothing to decide. The watch
      // wakes the app when it changes; a Progressing one is looked at again an interval later (its pods change unseen).
      const failingEarly = app?.health === 'Progressing' && await this.podSignal(app, this.deps.monitoring(app)?.settings, this.clock());
      if (!app || (app.health !== 'Degraded' && !failingEarly)) {
        this.forgetApp(ref, storeKey, app === undefined);
        return requeue(this.podCheckMs(app));
      }
    }
    try {
      const memo: RoundMemo = {};
      for (let round = 0; round < MAX_ROUNDS; round++) {
        const observed = await this.observe(ref, storeKey, memo);
        if (!observed) return {};
        seen = observed.app;
        latest = observed.facts.record ?? latest;
        let decision = decide(observed.facts);
        if (decision.needs) {
          // decide asked for what only a slower read can tell: read it, then decide again on the same facts.
          await this.observeNeeds(observed, decision.needs);
          decision = decide(observed.facts);
          // A bug, not an outage: the same facts would ask again on every retry.
          if (decision.needs) throw new TerminalError('DecisionIncomplete', `decide still needs ${decision.needs} after it was observed`);
        }
        const written = await this.write(storeKey, observed, decision);
        latest = written ?? latest;
        if (written && decision.release) released = true;
        // Still counting a degradation (written now, or stored and left as it is): check again an interval later.
        const stillCounting = decision.degradation === undefined ? observed.facts.pendingCorrelationId !== undefined && !decision.record : decision.degradation !== null;
        counting = stillCounting ? observed.facts.settings : undefined;
        if (decision.intents.length === 0) {
          // A transition may enable the next step at once (CandidateResolved → open the PR).
          if (!decision.transition || !inProgress(decision.transition.to)) break;
          continue;
        }
        Object.assign(memo, await this.execute(storeKey, decision.intents, written ?? observed.facts.record!, observed));
      }
      // A degradation being counted needs its next check an interval later, as an active attempt does.
      return requeue(this.nextCheckMs(latest) ?? (counting ? counting.intervalSeconds * 1000 : undefined) ?? this.podCheckMs(seen));
    } catch (error) {
      if (!isUnexpected(error)) throw error;
      // A record no retry can read: nothing to abort, a human repairs or deletes the key.
      if (error instanceof CorruptRecord) throw await this.stalled(ref, correlationIdIn(error.key), error);
      // Fail-safe (SPEC §14.5): an unexpected error ends the active attempt in Abort with a reason.
      const active = (await this.deps.store.loadApp(storeKey)).active?.record;
      if (!active || !inProgress(active.state)) {
        // Not in progress, so nothing to abort: a refused transition would be refused again on every retry.
        const terminal = error instanceof TransitionRefused ? new TerminalError('TransitionRefused', error.message, { cause: error }) : terminalCause(error);
        throw terminal ? await this.stalled(ref, active?.correlationId, terminal) : error;
      }
      latest = await this.failSafe(storeKey, active, error as Error) ?? active;
      return requeue(this.nextCheckMs(latest));
    } finally {
      if (latest) await this.project(latest, released);
      this.emitHeldEvents(storeKey);
    }
  }

  // ---- observe -------------------------------------------------------------

  private async observe(ref: AppRef, storeKey: string, memo: RoundMemo): Promise<Observed | undefined> {
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
      if (state.pending) await this.dropPending(storeKey, state.pending.modRevision);
      this.forgetApp(ref, storeKey, app === undefined);
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
      ...(requests.reset || this.resetRequested(record, now) ? { reset: true } : {}),
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
        const pr = await github.findPullRequest(repo, branchName(record.app, record.correlationId));
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
        const built = record.rollbackCommit;
        // CI is read on the commit the operator built, never on whatever the head is now.
        const { pr, ci } = await github.getPullRequestStatus(repo, record.pullRequest.number, built?.sha);
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
          facts.invariants = evaluateInvariants(await this.invariantFacts(facts, record, app, repo, { ...pr, ci: verdict, headIsRollbackCommit: true }), facts.now);
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
  private async competingPullRequests(record: AttemptRecord, app: ApplicationView | undefined, repo: RepoRef, base: string): Promise<Array<{ number: number; title: string }>> {
    const own = branchName(record.app, record.correlationId);
    const identity = await this.operatorLogin();
    return (await this.deps.github.listOpenPullRequests(repo, { base, paths: restoredPaths(record, app?.source) }))
      .filter((p) => p.branch !== own && p.branch.startsWith(ROLLBACK_BRANCH_PREFIX) && p.author === identity)
      .map((p) => ({ number: p.number, title: p.title }));
  }

  /**
   * Runs `work` once no other work of the same key whose paths overlap these is running: two apps rendering
   * one shared base, reconciled side by side, would otherwise both find no PR restoring it and both open one.
   * Apps whose sets are disjoint (most of a burst) open their PRs side by side.
   */
  private async exclusive<T>(key: string, paths: string[], work: () => Promise<T>): Promise<T> {
    const overlaps = (a: string[], b: string[]) => a.some((p) => b.some((q) => isUnder(p, q) || isUnder(q, p)));
    for (;;) {
      const busy = (this.opening.get(key) ?? []).filter((e) => overlaps(e.paths, paths));
      if (busy.length === 0) break;
      await Promise.all(busy.map((e) => e.done));
    }
    // No await between the last look and this: nobody else can register an overlapping work in between.
    let release!: () => void;
    const entry = { paths, done: new Promise<void>((resolve) => { release = resolve; }) };
    this.opening.set(key, [...(this.opening.get(key) ?? []), entry]);
    try {
      return await work();
    } finally {
      const rest = (this.opening.get(key) ?? []).filter((e) => e !== entry);
      if (rest.length > 0) this.opening.set(key, rest);
      else this.opening.delete(key);
      release();
    }
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
  private async observeNeeds(observed: Observed, needs: NonNullable<Decision['needs']>): Promise<void> {
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
        invariants: evaluateInvariants({ ...invariantFacts, ...(beyond ? { alsoChanges: beyond } : {}) }, facts.now), changedFiles: preview.changed, base,
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

  // ---- commit --------------------------------------------------------------

  /**
   * Commits a decision (its record or the degradation's count, its CloudEvents and the audit records it
   * must not lose, in one transaction), then says the rest of what is said about it (decide/record-keeping.ts).
   */
  private async write(storeKey: string, observed: Observed, decision: Decision): Promise<AttemptRecord | undefined> {
    const { facts } = observed;
    const events = this.cloudEvents(facts, decision);
    if (facts.health?.status !== 'Degraded' && !facts.health?.failsEarly) this.waitingSaid.delete(storeKey);
    const correlationId = (decision.record ?? facts.record)?.correlationId;
    const resetBy = decision.transition?.reason === Reason.Reset && correlationId ? this.resetRequests.get(correlationId) : undefined;
    const said = sayDecision(facts, decision, events.map((e) => e.id), {
      ...(resetBy ? { resetBy } : {}), ...(this.waitingSaid.has(storeKey) ? { waitingSaid: this.waitingSaid.get(storeKey)! } : {}),
    });
    const written = await this.commit(storeKey, observed, decision, events, said.committedAudit);
    if (decision.transition && correlationId) {
      // A failure seen again in the new state is news again.
      this.failureSaid.delete(correlationId);
      if (decision.transition.reason === Reason.Reset) this.resetRequests.delete(correlationId);
    }
    for (const note of decision.notes) if (note.kind === 'waiting') this.waitingSaid.set(storeKey, note.message);
    await this.say(storeKey, said, observed.app?.uid);
    return written;
  }

  private async commit(storeKey: string, observed: Observed, decision: Decision, events: CloudEvent[], audited: AuditInput[]): Promise<AttemptRecord | undefined> {
    const { facts } = observed;
    if (decision.degradation !== undefined) {
      const audit = this.auditEntry(audited, facts.now, events[0]?.id);
      const result = await this.deps.store.commitDegradation({
        appKey: storeKey, degradation: decision.degradation, expectedModRevision: observed.state.pending?.modRevision ?? null, events, ...(audit ? { audit } : {}),
      });
      if (!result.ok) throw new WriteConflict(result.reason);
      if (events.length > 0) this.deps.onEventsWritten?.();
      await this.recordCommitted(result, audit);
      return undefined;
    }
    if (!decision.record) return undefined;
    const record = decision.record;
    const audit = this.auditEntry(audited, facts.now, `${record.correlationId}-v${record.version}`);
    const result = await this.deps.store.commit({
      appKey: storeKey,
      record,
      ...(decision.checks ? { checks: decision.checks } : {}),
      // A new attempt takes over the health key its degradation was counted in.
      expectedModRevision: observed.stored?.modRevision ?? null,
      events,
      ...(decision.app ? { app: { ...decision.app, cooldownSeconds: record.settings.cooldownSeconds } } : {}),
      ...(decision.release ? { release: true } : {}),
      ...(audit ? { audit } : {}),
    });
    if (!result.ok) throw new WriteConflict(result.reason);
    if (events.length > 0) this.deps.onEventsWritten?.();
    await this.recordCommitted(result, audit);
    return record;
  }

  /** The CloudEvents of a decision that writes (its record, or the degradation's count); the ids its audit names. */
  private cloudEvents(facts: Facts, decision: Decision): CloudEvent[] {
    const correlationId = decision.degradation !== undefined ? decision.degradation?.correlationId ?? facts.pendingCorrelationId : decision.record?.correlationId;
    if (correlationId === undefined) return [];
    return decision.events.map((e) => makeEvent(e.type, { subject: appSubject(facts.app), correlationId: e.correlationId ?? correlationId, data: e.data as never, time: facts.now }));
  }

  /**
   * Says what the record-keeping derived, outside the commit: metrics, log lines and audit records now, the
   * Events once the reconcile has projected the RollbackAttempt (in `finally`): an Event written before the
   * object exists has no uid, and kubectl describe lists Events by it.
   */
  private async say(storeKey: string, said: Said, appUid: string | undefined): Promise<void> {
    annotateReconcile(said.span);
    for (const observation of said.metrics) this.deps.metrics.observe(observation);
    for (const line of said.logs) this.deps.log[line.level](line.message, line.fields);
    if (said.events.length > 0) {
      const held = this.heldEvents.get(storeKey) ?? [];
      held.push(...said.events.map((event) => ({ event, appUid })));
      this.heldEvents.set(storeKey, held);
    }
    for (const input of said.audit) await this.deps.audit.record(input);
  }

  /** The audit outbox entry of a write (audit/outbox.ts), or none when it has no records. */
  private auditEntry(records: AuditInput[], now: Date, id: string | undefined): { id: string; entry: AuditOutboxEntry } | undefined {
    if (records.length === 0 || id === undefined) return undefined;
    return { id, entry: { chainId: this.deps.auditChain ?? LOCAL_CHAIN, committedAt: now.toISOString(), records } };
  }

  /**
   * Records a committed write's audit records in the chain and deletes their
   * outbox entry. A failure leaves the entry: the chain's next drain records it
   * (the write itself stands, so the reconcile goes on).
   */
  private async recordCommitted(result: { modRevision: string; auditKey?: string }, audit: { entry: AuditOutboxEntry } | undefined): Promise<void> {
    if (!audit || !result.auditKey) return;
    try {
      await recordEntry(this.deps, { key: result.auditKey, modRevision: result.modRevision, entry: audit.entry });
    } catch (error) {
      this.deps.log.warn('Could not record the audit records of a committed write; the audit outbox keeps them', { key: result.auditKey, error: (error as Error).message });
    }
  }

  /** An app whose attempt-less degradation is no longer watched or monitored: its count is dropped. */
  private async dropPending(storeKey: string, modRevision: string): Promise<void> {
    const result = await this.deps.store.commitDegradation({ appKey: storeKey, degradation: null, expectedModRevision: modRevision, events: [] });
    if (!result.ok) throw new WriteConflict(result.reason);
  }

  /** The Events said in this reconcile, once its RollbackAttempt is projected (the queue serialises a key). */
  private emitHeldEvents(storeKey: string): void {
    const held = this.heldEvents.get(storeKey);
    this.heldEvents.delete(storeKey);
    for (const { event, appUid } of held ?? []) this.emitEvent(event, appUid);
  }

  /** An attempt's Event on the RollbackAttempt and on its Application alike, so Argo CD's UI shows it too. */
  private emitEvent({ record, app, ...event }: SaidEvent, appUid: string | undefined): void {
    const application = { apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', ...app, ...(appUid ? { uid: appUid } : {}) };
    if (!record) {
      this.deps.events?.emit({ ...event, regarding: application });
      return;
    }
    const attemptUid = this.deps.attempts.uidOf?.(record);
    const attempt = { apiVersion: API_VERSION, kind: KINDS.attempt, namespace: record.app.namespace, name: attemptName(record.app, record.correlationId), ...(attemptUid ? { uid: attemptUid } : {}) };
    this.deps.events?.emit({ ...event, regarding: attempt, related: application });
    this.deps.events?.emit({ ...event, regarding: application, related: attempt });
  }

  // ---- execute -------------------------------------------------------------

  // Intents only write: every fact they need was observed before the decision.
  private async execute(storeKey: string, intents: Intent[], record: AttemptRecord, observed: Observed): Promise<RoundMemo> {
    const memo: RoundMemo = {};
    for (const intent of intents) {
      try {
        const opened = await this.carryOut(intent, record, observed, memo);
        await this.say(storeKey, sayIntent(intent, record, opened ? { opened } : {}), observed.app?.uid);
      } catch (error) {
        if (!(error instanceof IntegrationError)) throw error;
        memo.failure = { code: error.code, message: error.message, call: error.call };
        const number = 'number' in intent ? intent.number : undefined;
        memo.intentFailure = { kind: intent.kind, ...(number !== undefined ? { number } : {}), code: error.code, message: error.message };
        const first = this.firstSaid(record.correlationId, `${intent.kind}#${number ?? ''} ${error.message}`);
        await this.say(storeKey, sayIntent(intent, record, { failure: { code: error.code, message: error.message, call: error.call, first } }), observed.app?.uid);
        break;
      }
    }
    return memo;
  }

  /** One intent's effect; the PR it opened, if it is one that opens. */
  private async carryOut(intent: Intent, record: AttemptRecord, observed: Observed, memo: RoundMemo): Promise<OpenedPullRequest | undefined> {
    const { github } = this.deps;
    const repo = observed.repo;
    if (!repo) throw new IntegrationError(intent.kind, 'INVALID_ARGUMENT', `the attempt's source has no GitHub repository URL`);
    switch (intent.kind) {
      case 'openPullRequest': {
        const { preflight } = intent;
        // Checked where the PR is opened, alone among the attempts restoring overlapping paths of the same branch:
        // another app's reconcile may be opening one restoring the same files right now.
        const pr = await this.exclusive(`${repo.owner}/${repo.repo}@${preflight.base}`, restoredPaths(record, observed.app?.source), async () => {
          const competing = await this.competingPullRequests(record, observed.app, repo, preflight.base);
          if (competing.length > 0) {
            memo.competing = competing;
            return undefined;
          }
          return openPullRequest(github, repo, {
            record, app: observed.app!, checks: observed.facts.checks, undone: record.candidate?.undone ?? [], invariants: preflight.invariants,
            files: preflight.files ?? [], affected: preflight.affected ?? [],
            ...(preflight.deployments ? { deployments: preflight.deployments } : {}),
          });
        });
        // Another attempt's PR restores these files now: the next round reads it and waits for it.
        if (pr) {
          memo.opened = pr;
          memo.preflight = preflight;
        }
        return pr;
      }
      case 'mergePullRequest':
        await github.mergePullRequest(repo, intent.number, { sha: intent.headSha, method: intent.method });
        return undefined;
      case 'closePullRequest':
        await github.closePullRequest(repo, intent.number, intent.comment);
        return undefined;
      case 'commentPullRequest':
        await github.commentPullRequest(repo, intent.number, intent.marker, intent.comment);
        return undefined;
      case 'removeApproval':
        await this.deps.attempts.removeApproval(record);
        return undefined;
      case 'requestApproval':
        await github.commentPullRequest(repo, intent.number, `approval-${record.correlationId}`, comments.approvalRequested(record));
        return undefined;
    }
  }

  /** Whether this failure of the attempt is new (not the one audited last); remembers it. Bounded. */
  private firstSaid(correlationId: string, failure: string): boolean {
    if (this.failureSaid.get(correlationId) === failure) return false;
    this.failureSaid.delete(correlationId);
    this.failureSaid.set(correlationId, failure);
    if (this.failureSaid.size > 1000) this.failureSaid.delete(this.failureSaid.keys().next().value!);
    return true;
  }

  // ---- status and fail-safe -------------------------------------------------

  /**
   * The queue stops retrying on a TerminalError: say so where a person looks — a
   * Warning Event on the Application, the attempt's Stalled condition, the audit
   * trail — and hand the error back to be thrown.
   */
  private async stalled(app: AppRef, correlationId: string | undefined, error: TerminalError): Promise<TerminalError> {
    const said = sayStalled(app, correlationId, error.reason, error.message);
    for (const event of said.events) this.emitEvent(event, undefined);
    await Promise.allSettled([
      correlationId ? this.deps.attempts.markStalled({ app, correlationId }, error.reason, said.events[0]!.note) : undefined,
      ...said.audit.map((input) => this.deps.audit.record(input)),
    ]);
    return error;
  }

  // `record` is what this reconcile read from etcd or wrote to it: no second read.
  // If a write lost its race, the next reconcile projects the winner's record.
  private async project(record: AttemptRecord, released: boolean): Promise<void> {
    try {
      await this.deps.attempts.project(record, { final: released || !holdsApp(record.state) });
    } catch (error) {
      // The projection is rebuilt from etcd on every reconcile and resync; log and go on.
      this.deps.log.warn('Could not write RollbackAttempt status', { correlationId: record.correlationId, error: (error as Error).message });
    }
  }

  private async failSafe(storeKey: string, record: AttemptRecord, error: Error): Promise<AttemptRecord | undefined> {
    this.deps.log.error('Unexpected error; aborting attempt', { correlationId: record.correlationId, error: error.stack ?? error.message });
    const stored = await this.deps.store.getAttempt(storeKey, record.correlationId);
    if (!stored || !inProgress(stored.record.state)) return stored?.record;
    const facts: Facts = {
      now: this.clock(), app: record.app, environment: record.environment, settings: record.settings, record: stored.record,
      checks: stored.checks, suspended: false, nextCorrelationId: this.newId(), human: {},
    };
    return this.write(storeKey, { facts, stored, state: { active: stored, rolledBackFrom: [], attemptStarts: [] } }, failSafe(facts, `unexpected error: ${error.message}`));
  }

  /** An active attempt is checked every interval; anything else waits for the watch or the resync. */
  private nextCheckMs(record: AttemptRecord | undefined): number | undefined {
    return record && inProgress(record.state) ? record.settings.intervalSeconds * 1000 : undefined;
  }

  /**
   * Issue 21: whether the current revision's pods fail early (modules/pod-signals.ts), read only while Argo CD
   * reports the app Progressing and its settings ask for it: a Healthy or Degraded app costs nothing here. A
   * read that fails is no signal (Argo CD's own health still stands), and is logged.
   */
  private async podSignal(app: ApplicationView | undefined, settings: Settings | undefined, now: Date): Promise<FailsEarly | undefined> {
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
  private podCheckMs(app: ApplicationView | undefined): number | undefined {
    const settings = app?.health === 'Progressing' ? this.deps.monitoring(app)?.settings : undefined;
    return settings?.podSignals?.enabled ? settings.intervalSeconds * 1000 : undefined;
  }
}

function refOf(pr: PullRequestInfo): PullRequestRef {
  return { number: pr.number, url: pr.url, branch: pr.branch, state: pr.merged ? 'merged' : pr.state };
}

function requeue(ms: number | undefined): ReconcileResult {
  return ms === undefined ? {} : { requeueAfterMs: ms };
}

function isUnexpected(error: unknown): boolean {
  // etcd being unreachable is retried with backoff: nothing could be written anyway.
  return !(error instanceof WriteConflict) && !(error instanceof IntegrationError) && !(error instanceof StoreUnavailable);
}

/** The correlationId in an etcd key of an attempt (`…/rollback/{app}/{correlationId}/…`), if it is one. */
function correlationIdIn(key: string): string | undefined {
  return /\/rollback\/[^/]+\/([^/]+)\//.exec(key)?.[1];
}

function storeKeyOf(record: AttemptRecord, argocdNamespace: string): string {
  return appKey(record.app, argocdNamespace);
}

export function parseKey(key: string): AppRef {
  const [namespace, name] = key.split('/');
  if (!namespace || !name) throw new TerminalError('InvalidKey', `bad reconcile key ${key}: expected namespace/name`);
  return { namespace, name };
}
