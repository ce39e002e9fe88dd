// The application reconciler drives one app's rollback attempt through the state
// machine. Each reconcile: observe (the only reads) → decide (pure, fsm/machine)
// → commit the record, its events and app facts in one fenced etcd transaction
// → carry out the intents idempotently → observe again, a few rounds at most so
// an effect and the transition it enables land in one reconcile. The
// RollbackAttempt status is written once, at the end, even on error.
import type { AuditInput } from '../audit/record.ts';
import { appSubject, makeEvent, type CloudEvent } from '../events/types.ts';
import { decide, failSafe, nextChecks, type Decision, type Facts, type Intent, type PendingEvent } from '../fsm/machine.ts';
import { appKey, branchName, type AppRef, type AttemptRecord, type Environment, type Settings } from '../fsm/record.ts';
import { Reason, isActive, type State } from '../fsm/table.ts';
import { evaluateInvariants, persistence, summary, type InvariantFacts } from '../governance/invariants.ts';
import { resolveCandidate } from '../modules/candidate-resolver.ts';
import { approveCommand, openPullRequest } from '../modules/pr-generator.ts';
import type { Logger } from '../observability/log.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { ApplicationView, ArgoCdPort } from '../ports/argocd.ts';
import { IntegrationError } from '../ports/errors.ts';
import { repoFromUrl, type GitHubPort, type RepoRef } from '../ports/github.ts';
import type { AttemptObjectsPort, ClusterPort } from '../ports/kubernetes.ts';
import type { MetricsHistoryPort } from '../ports/prometheus.ts';
import type { AttemptStore, StoredAttempt } from '../store/attempt-store.ts';
import { StoreUnavailable } from '../store/kv.ts';
import type { ReconcileResult } from './queue.ts';

export interface AuditSink {
  record(input: AuditInput): Promise<unknown>;
}

/** How an Application is monitored: undefined when no label, list or policy selects it. */
export interface MonitoredApp {
  settings: Settings;
  environment: Environment;
  policyRef?: { name: string; namespace: string };
  suspended: boolean;
}

export interface ApplicationReconcilerDeps {
  store: AttemptStore;
  argocd: ArgoCdPort;
  github: GitHubPort;
  cluster: ClusterPort;
  history: MetricsHistoryPort;
  attempts: AttemptObjectsPort;
  monitoring: (app: ApplicationView) => MonitoredApp | undefined;
  audit: AuditSink;
  metrics: Metrics;
  log: Logger;
  argocdNamespace: string;
  /**
   * Whether the app has an active attempt, from an index the operator keeps off
   * the etcd watch; undefined when unknown. Lets a quiet app (no attempt, not
   * Degraded) be checked from the watch cache alone, with no etcd read.
   */
  hasActiveAttempt?: (storeKey: string) => boolean | undefined;
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

interface RoundMemo {
  opened?: boolean;
  failure?: Facts['failure'];
}

export class ApplicationReconciler {
  private readonly deps: ApplicationReconcilerDeps;
  private readonly clock: () => Date;
  private readonly newId: () => string;
  private identity?: Promise<string>;

  constructor(deps: ApplicationReconcilerDeps) {
    this.deps = deps;
    this.clock = deps.clock ?? (() => new Date());
    this.newId = deps.newId ?? (() => crypto.randomUUID());
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const ref = parseKey(key);
    const storeKey = appKey(ref, this.deps.argocdNamespace);
    let latest: AttemptRecord | undefined;
    if (this.deps.hasActiveAttempt?.(storeKey) === false) {
      const app = await this.deps.argocd.getApplication(ref);
      // Healthy and no attempt: nothing to decide. The watch wakes the app when it changes.
      if (!app || app.health !== 'Degraded') return {};
    }
    try {
      const memo: RoundMemo = {};
      for (let round = 0; round < MAX_ROUNDS; round++) {
        const facts = await this.observe(ref, storeKey, memo);
        if (!facts) return {};
        latest = facts.facts.record ?? latest;
        const decision = decide(facts.facts);
        const written = await this.commit(storeKey, facts, decision);
        latest = written ?? latest;
        await this.recordNotes(facts.facts, decision);
        if (decision.intents.length === 0) {
          // A transition may enable the next step at once (CandidateResolved → open the PR).
          if (!decision.transition || !isActive(decision.transition.to)) break;
          continue;
        }
        Object.assign(memo, await this.execute(decision.intents, written ?? facts.facts.record!, facts));
      }
      return requeue(this.nextCheckMs(latest));
    } catch (error) {
      if (!isUnexpected(error)) throw error;
      // Fail-safe (SPEC §14.5): an unexpected error ends the active attempt in Abort with a reason.
      const active = (await this.deps.store.loadApp(storeKey)).active?.record;
      if (!active || !isActive(active.state)) throw error;
      latest = await this.failSafe(storeKey, active, error as Error) ?? active;
      return requeue(this.nextCheckMs(latest));
    } finally {
      if (latest) await this.project(latest);
    }
  }

  // ---- observe -------------------------------------------------------------

  private async observe(ref: AppRef, storeKey: string, memo: RoundMemo): Promise<{ facts: Facts; app?: ApplicationView; stored?: StoredAttempt } | undefined> {
    const now = this.clock();
    const [app, state] = await Promise.all([this.deps.argocd.getApplication(ref), this.deps.store.loadApp(storeKey)]);
    const stored = state.active;
    const record = stored?.record;
    const monitored = app ? this.deps.monitoring(app) : undefined;
    if (!record && !monitored) return undefined;

    const settings = record?.settings ?? monitored!.settings;
    const health = app?.health ? { status: app.health, ...(app.syncRevision ? { revision: app.syncRevision } : {}) } : undefined;
    const cooldownUntil = state.lastRollbackAt
      ? new Date(Date.parse(state.lastRollbackAt) + settings.cooldownSeconds * 1000).toISOString()
      : undefined;
    const facts: Facts = {
      now,
      app: ref,
      environment: record?.environment ?? monitored!.environment,
      settings,
      ...(record?.policyRef ?? monitored?.policyRef ? { policyRef: (record?.policyRef ?? monitored?.policyRef)! } : {}),
      ...(record ? { record } : {}),
      checks: stored?.checks ?? [],
      ...(health ? { health } : {}),
      suspended: monitored?.suspended ?? false,
      ...(cooldownUntil ? { cooldownUntil } : {}),
      nextCorrelationId: this.newId(),
      human: {},
      ...(memo.failure ? { failure: memo.failure } : {}),
    };
    if (!record || !app) return { facts, ...(app ? { app } : {}), ...(stored ? { stored } : {}) };

    const requests = await this.deps.attempts.requests(record);
    facts.human = {
      ...(requests.abort !== undefined ? { abort: requests.abort } : {}),
      ...(requests.reset ? { reset: true } : {}),
      ...(requests.approve ? { approval: { username: requests.approve } } : {}),
    };
    const repo = repoOf(app);
    try {
      await this.observeForState(facts, record, app, repo, state.rolledBackFrom, memo);
    } catch (error) {
      if (!(error instanceof IntegrationError)) throw error;
      facts.failure = { code: error.code, message: error.message, call: error.call };
      if (record.state === 'DegradationDetected') facts.candidate = { kind: 'error', code: error.code, message: error.message };
    }
    return { facts, app, stored: stored! };
  }

  private async observeForState(facts: Facts, record: AttemptRecord, app: ApplicationView, repo: RepoRef, excluded: string[], memo: RoundMemo): Promise<void> {
    const { github } = this.deps;
    switch (record.state) {
      case 'DegradationDetected': {
        // Search for a candidate only once this check confirms persistence (I4).
        if (facts.health?.status !== 'Degraded') return;
        const last = facts.checks.at(-1);
        if (last && (facts.now.getTime() - Date.parse(last.at)) / 1000 < record.settings.intervalSeconds * 0.9) return;
        const checks = nextChecks(facts.checks, { at: facts.now.toISOString(), status: 'Degraded', ...(facts.health.revision ? { revision: facts.health.revision } : {}) }, record.settings);
        if (persistence(checks, record.settings.persistenceChecks, record.settings.intervalSeconds)[0] !== 'PASS') return;
        const started = Date.now();
        facts.checks = checks;
        facts.candidate = await resolveCandidate(github, this.deps.history, {
          app, repo, settings: record.settings, currentRevision: facts.health.revision ?? record.currentRevision ?? '', excluded, now: facts.now,
        });
        this.deps.metrics.observeCandidateResolution(app.ref.name, (Date.now() - started) / 1000);
        return;
      }
      case 'CandidateResolved': {
        const pr = await github.findPullRequest(repo, branchName(record.app, record.correlationId));
        if (pr) {
          facts.pullRequest = { ref: { number: pr.number, url: pr.url, branch: pr.branch, state: pr.merged ? 'merged' : pr.state }, headSha: pr.headSha };
          facts.pullRequestJustOpened = memo.opened === true;
        }
        return;
      }
      case 'PRCreated':
      case 'AwaitingMergeApproval':
      case 'Abort': {
        if (!record.pullRequest) return;
        const { pr, ci } = await github.getPullRequestStatus(repo, record.pullRequest!.number);
        // Cached once known; a failed lookup is not cached, so it is asked again next time.
        const identity = await (this.identity ??= github.identity().catch((error: unknown) => { this.identity = undefined; throw error; }));
        facts.pullRequest = {
          ref: { number: pr.number, url: pr.url, branch: pr.branch, state: pr.merged ? 'merged' : pr.state },
          headSha: pr.headSha,
          ...(pr.mergeCommitSha ? { mergeCommitSha: pr.mergeCommitSha } : {}),
          ...(pr.merged ? { mergedByOperator: pr.mergedBy === identity } : {}),
        };
        facts.ci = ci.state === 'none' ? 'pending' : ci.state;
        if (record.state === 'AwaitingMergeApproval' && pr.state === 'open') {
          facts.invariants = evaluateInvariants(await this.invariantFacts(facts, record, app, repo, { ...pr, runs: ci.runs }), facts.now);
        }
        return;
      }
      default:
        return;
    }
  }

  /** Fresh reads for the invariants, just before a merge decision (SPEC §4, §7). */
  /** Without `pr` (for the body of a PR about to open): what only a PR can tell stays unread. */
  private async invariantFacts(facts: Facts, record: AttemptRecord, app: ApplicationView, repo: RepoRef, pr?: { number: number; mergeable: boolean | null; mergeableState: string; base: string; runs: InvariantFacts['prChecks'] }): Promise<InvariantFacts> {
    // A fact that cannot be read becomes UNKNOWN (never PASS); say why in the log.
    const settle = <T>(what: string, p: Promise<T>) => p.then((v) => v, (error: Error) => {
      this.deps.log.warn('Could not read an invariant fact', { correlationId: record.correlationId, fact: what, error: error.message });
      return undefined;
    });
    const [health, deployments, open] = await Promise.all([
      settle('Argo CD health', this.deps.argocd.getApplicationHealth(record.app)),
      settle('Deployment status', this.deps.cluster.getDeploymentStatus(app)),
      pr ? settle('open pull requests', this.deps.github.listOpenPullRequests(repo, { base: pr.base, path: app.source?.path ?? '.' })) : undefined,
    ]);
    const candidate = record.candidate;
    return {
      ...(pr ? {} : { beforePullRequest: true }),
      environment: record.environment,
      ...(health ? { health: health.status } : {}),
      ...(deployments ? { deployments } : {}),
      checks: facts.checks,
      persistenceChecks: record.settings.persistenceChecks,
      intervalSeconds: record.settings.intervalSeconds,
      ...(candidate ? { candidate: { uptime: candidate.uptime, minUptime: record.settings.minUptime, mode: candidate.mode, ciState: candidate.ciState, evidence: candidate.evidence } } : {}),
      ...(pr?.runs ? { prChecks: pr.runs } : {}),
      ...(pr && open ? { otherOpenPullRequests: open.filter((p) => p.number !== pr.number).map((p) => ({ number: p.number, title: p.title })) } : {}),
      ...(pr ? { mergeability: { mergeable: pr.mergeable, mergeableState: pr.mergeableState, requiredChecksPass: (pr.runs ?? []).every((r) => r.state === 'success') } } : {}),
    };
  }

  // ---- commit --------------------------------------------------------------

  private async commit(storeKey: string, observed: { facts: Facts; stored?: StoredAttempt }, decision: Decision): Promise<AttemptRecord | undefined> {
    if (!decision.record) return undefined;
    const { facts } = observed;
    const record = decision.record;
    const events = decision.events.map((e) => this.toCloudEvent(e, record, facts.now));
    const result = await this.deps.store.commit({
      appKey: storeKey,
      record,
      ...(decision.checks ? { checks: decision.checks } : {}),
      expectedModRevision: observed.stored?.modRevision ?? null,
      events,
      ...(decision.app ? { app: decision.app } : {}),
    });
    if (!result.ok) throw new WriteConflict(result.reason);
    if (events.length > 0) this.deps.onEventsWritten?.();
    if (decision.transition) await this.afterTransition(record, decision.transition, facts);
    return record;
  }

  private toCloudEvent(pending: PendingEvent, record: AttemptRecord, now: Date): CloudEvent {
    return makeEvent(pending.type, { subject: appSubject(record.app), correlationId: record.correlationId, data: pending.data as never, time: now });
  }

  private async afterTransition(record: AttemptRecord, t: { from: State; to: State; reason: Reason }, facts: Facts): Promise<void> {
    const { metrics, log, audit } = this.deps;
    const app = record.app.name;
    const env = record.environment;
    metrics.setFsmState(app, t.to);
    if (t.from === 'Idle' && t.to === 'DegradationDetected') metrics.degradationDetected(app, env);
    if (t.to === 'PRCreated') metrics.rollbackProposed(app, env, true);
    if (t.to === 'RollbackMerged') metrics.rollbackMerged(app, env, record.merge?.auto ?? false);
    if (t.to === 'Abort') metrics.rollbackAborted(app, env, t.reason);
    if (t.to === 'RollbackComplete') metrics.observeRecovery(app, env, (facts.now.getTime() - Date.parse(record.degradation.firstSeenAt)) / 1000);
    log.info('Transitioned attempt', { correlationId: record.correlationId, app, from: t.from, to: t.to, reason: t.reason, detail: record.message });
    await audit.record({
      level: t.to === 'Abort' ? 'WARN' : 'INFO',
      module: moduleFor(t.to),
      correlationId: record.correlationId,
      actionType: actionFor(t.to, t.reason),
      message: `${t.from} -> ${t.to} (${t.reason})`,
      reasoning: record.message,
      ...(record.invariants.length > 0 ? { invariantsChecked: summary(record.invariants) } : {}),
      metadata: { appName: app, environment: env, from: t.from, to: t.to, reason: t.reason, version: record.version, ...(record.pullRequest ? { prNumber: record.pullRequest.number } : {}) },
      eventId: `${record.correlationId}-v${record.version}`,
    });
  }

  private async recordNotes(facts: Facts, decision: Decision): Promise<void> {
    const record = decision.record ?? facts.record;
    if (!record) return;
    for (const note of decision.notes) {
      if (note.kind === 'waiting') continue;
      if (note.kind === 'invariants') {
        for (const r of record.invariants) if (r.result === 'FAIL') this.deps.metrics.invariantViolated(r.id);
      }
      await this.deps.audit.record({
        level: note.kind === 'approval-refused' ? 'WARN' : 'INFO',
        module: 'MergeController',
        correlationId: record.correlationId,
        actionType: note.kind === 'invariants' ? 'INVARIANT_CHECK' : 'APPROVAL',
        message: note.kind === 'invariants' ? `Evaluated invariants in ${record.state}` : note.message,
        reasoning: note.kind === 'invariants' ? record.invariants.map((i) => `${i.id}=${i.result}: ${i.detail}`).join('; ') : note.message,
        ...(note.kind === 'invariants' ? { invariantsChecked: summary(record.invariants) } : {}),
        metadata: { appName: record.app.name, environment: record.environment, ...(record.pullRequest ? { prNumber: record.pullRequest.number } : {}) },
      });
    }
  }

  // ---- execute -------------------------------------------------------------

  private async execute(intents: Intent[], record: AttemptRecord, observed: { facts: Facts; app?: ApplicationView }): Promise<RoundMemo> {
    const app = observed.app!;
    const repo = repoOf(app);
    const { github, audit } = this.deps;
    const memo: RoundMemo = {};
    const meta = { appName: record.app.name, environment: record.environment };
    for (const intent of intents) {
      try {
        switch (intent.kind) {
          case 'openPullRequest': {
            // What the PR body shows, read side by side: the commits undone, and the invariants
            // as they stand (their facts include the Deployments' replicas, listed when readable).
            const [undone, facts] = await Promise.all([
              github.readRepositoryContent(repo, app.source?.path ?? '.', app.source?.targetRevision ?? 'main', record.settings.maxCommits)
                .then((commits) => commits.slice(0, Math.max(0, commits.findIndex((c) => c.sha === record.candidate?.revision)))),
              this.invariantFacts(observed.facts, record, app, repo),
            ]);
            const invariants = evaluateInvariants(facts, observed.facts.now);
            const pr = await openPullRequest(github, repo, { record, app, checks: observed.facts.checks, undone, invariants, ...(facts.deployments ? { deployments: facts.deployments } : {}) });
            memo.opened = true;
            await audit.record({ module: 'PRGenerator', correlationId: record.correlationId, actionType: 'PR_CREATED',
              message: `Opened rollback pull request #${pr.number}`, metadata: { ...meta, prNumber: pr.number, url: pr.url, branch: pr.branch },
              eventId: `${record.correlationId}-pr-${pr.number}` });
            break;
          }
          case 'mergePullRequest': {
            const merged = await github.mergePullRequest(repo, intent.number, { sha: intent.headSha, method: intent.method });
            await audit.record({ module: 'MergeController', correlationId: record.correlationId, actionType: 'PR_MERGED',
              message: `Merged rollback pull request #${intent.number}`, invariantsChecked: summary(record.invariants),
              reasoning: record.environment === 'staging' ? 'staging: all eight invariants PASS on fresh reads' : `production: approved by ${record.approval?.approvedBy}; I2–I8 PASS`,
              metadata: { ...meta, prNumber: intent.number, mergeCommitSha: merged.sha }, eventId: `${record.correlationId}-merge-${intent.number}` });
            break;
          }
          case 'closePullRequest':
            await github.closePullRequest(repo, intent.number, intent.comment);
            await audit.record({ module: 'MergeController', correlationId: record.correlationId, actionType: 'PR_CLOSED',
              message: `Closed rollback pull request #${intent.number}`, reasoning: intent.comment, metadata: { ...meta, prNumber: intent.number } });
            break;
          case 'commentPullRequest':
            await github.commentPullRequest(repo, intent.number, intent.marker, intent.comment);
            break;
          case 'requestApproval':
            await github.commentPullRequest(repo, intent.number, `approval-${record.correlationId}`,
              `CI is green. This production rollback waits for an authorized approver:\n\n\`\`\`sh\n${approveCommand(record)}\n\`\`\``);
            break;
        }
      } catch (error) {
        if (!(error instanceof IntegrationError)) throw error;
        memo.failure = { code: error.code, message: error.message, call: error.call };
        await audit.record({ level: 'ERROR', module: 'Reconciler', correlationId: record.correlationId, actionType: 'MCP_CALL',
          message: `${intent.kind} failed: ${error.message}`, metadata: { ...meta, errorCode: error.code, call: error.call } });
        break;
      }
    }
    return memo;
  }

  // ---- status and fail-safe -------------------------------------------------

  // `record` is what this reconcile read from etcd or wrote to it: no second read.
  // If a write lost its race, the next reconcile projects the winner's record.
  private async project(record: AttemptRecord): Promise<void> {
    try {
      await this.deps.attempts.project(record);
    } catch (error) {
      // The projection is rebuilt from etcd on every reconcile and resync; log and go on.
      this.deps.log.warn('Could not write RollbackAttempt status', { correlationId: record.correlationId, error: (error as Error).message });
    }
  }

  private async failSafe(storeKey: string, record: AttemptRecord, error: Error): Promise<AttemptRecord | undefined> {
    this.deps.log.error('Unexpected error; aborting attempt', { correlationId: record.correlationId, error: error.stack ?? error.message });
    const stored = await this.deps.store.getAttempt(storeKey, record.correlationId);
    if (!stored || !isActive(stored.record.state)) return stored?.record;
    const facts: Facts = {
      now: this.clock(), app: record.app, environment: record.environment, settings: record.settings, record: stored.record,
      checks: stored.checks, suspended: false, nextCorrelationId: this.newId(), human: {},
    };
    return this.commit(storeKey, { facts, stored }, failSafe(facts, `unexpected error: ${error.message}`));
  }

  /** An active attempt is checked every interval; anything else waits for the watch or the resync. */
  private nextCheckMs(record: AttemptRecord | undefined): number | undefined {
    return record && isActive(record.state) ? record.settings.intervalSeconds * 1000 : undefined;
  }
}

function requeue(ms: number | undefined): ReconcileResult {
  return ms === undefined ? {} : { requeueAfterMs: ms };
}

function isUnexpected(error: unknown): boolean {
  // etcd being unreachable is retried with backoff: nothing could be written anyway.
  return !(error instanceof WriteConflict) && !(error instanceof IntegrationError) && !(error instanceof StoreUnavailable);
}

export function parseKey(key: string): AppRef {
  const [namespace, name] = key.split('/');
  if (!namespace || !name) throw new Error(`bad reconcile key ${key}: expected namespace/name`);
  return { namespace, name };
}

function repoOf(app: ApplicationView): RepoRef {
  const repo = app.source ? repoFromUrl(app.source.repoURL) : undefined;
  if (!repo) throw new IntegrationError('readRepositoryContent', 'INVALID_ARGUMENT', `Application ${app.ref.namespace}/${app.ref.name} has no GitHub repoURL in spec.source`);
  return repo;
}

function moduleFor(state: State): AuditInput['module'] {
  switch (state) {
    case 'DegradationDetected': return 'DegradationDetector';
    case 'CandidateResolved': return 'RollbackCandidateResolver';
    case 'PRCreated': return 'PRGenerator';
    case 'AwaitingMergeApproval':
    case 'RollbackMerged': return 'MergeController';
    case 'RollbackComplete': return 'HealthMonitor';
    default: return 'Reconciler';
  }
}

function actionFor(to: State, reason: Reason): AuditInput['actionType'] {
  if (to === 'Abort') return 'ABORT';
  if (reason === Reason.Reset) return 'RESET';
  return 'FSM_TRANSITION';
}

