// The one pure decision of the engine: given the current record, the facts
// gathered for it and the clock, the next record, the events to publish and the
// intents to carry out. Every transition goes through `transition()`, which
// refuses anything the table does not allow.
//
// Side effects whose outcome a transition depends on (opening, closing or
// merging a PR) are emitted as intents *without* a transition; the transition is
// taken on a later decision, once the facts show the effect. That makes every
// step idempotent across crashes: a restarted operator re-observes and adopts.
import { authorizeApproval, type Enforcement } from '../governance/approval.ts';
import {
  approvalTimedOut, ciTimedOut, evaluateInvariants, failingCheck, mergeVerdict, persistence, PRE_PULL_REQUEST_INVARIANTS, recoveryTimedOut, restorationHeld, summary, violations, type DeploymentReplicas, type InvariantFacts,
} from '../governance/merge-verdict.ts';
import { comments } from '../modules/pr-generator.ts';
import type { ErrorCode } from '../ports/errors.ts';
import { events as ev, type PendingEvent } from '../fsm/event-payloads.ts';
import { commentPossible, leftUndone, onIntentFailure, TRANSIENT, type IntentFailure } from '../fsm/intent-failure.ts';
import { formatDuration } from '../fsm/format.ts';
import { checkDue, checksOfCurrentRun, nextChecks } from '../fsm/persistence.ts';
import type { ChangedFile } from '../ports/github.ts';
import {
  affectsBeyondStaging, attemptBranch, restoredPaths, shortSha, type AffectedApp, type AppRef, type AttemptRecord, type Candidate, type CandidateOutcome, type CiState, type Environment, type FailsEarly, type HealthCheck, type HealthStatus,
  type InvariantResult, type PullRequestRef, type RollbackCommit, type Settings, type SourceRef,
} from '../fsm/record.ts';
import { Reason, cooldownEnds, inProgress, isAllowed, type State } from '../fsm/table.ts';

export { nextChecks } from '../fsm/persistence.ts';

export type { CandidateOutcome } from '../fsm/record.ts';

export interface PullRequestFacts {
  ref: PullRequestRef;
  headSha: string;
  /** The branch the PR merges into, as GitHub reports it now. */
  base?: string;
  mergeCommitSha?: string;
  /** The merge was made by the operator's own identity. */
  mergedByOperator?: boolean;
  /**
   * Checked this reconcile: the head is the operator's rollback commit (just built, or recomputed and
   * matched for a PR found by the branch name or a record that did not keep it yet).
   */
  rollbackCommit?: RollbackCommit;
  /** Checked this reconcile: the PR is not the operator's rollback, and why. */
  notRollback?: string;
  /** Who made the head, when it is not the rollback commit. */
  headAuthor?: string;
}

export interface Facts {
  now: Date;
  app: AppRef;
  environment: Environment;
  settings: Settings;
  policyRef?: { name: string; namespace: string };
  /** The app's active attempt (an aborted one stays active until reset). */
  record?: AttemptRecord;
  /** Degraded checks so far: the active attempt's, or, before any attempt, those of the app's health key. */
  checks: HealthCheck[];
  /** The id the degradation being counted was given before any attempt exists. */
  pendingCorrelationId?: string;
  /**
   * Argo CD health from the watch cache; undefined when it could not be read.
   * `degradedSince`: when the watch saw the current run of Degraded begin (see persistence.ts).
   * `failsEarly`: read while Progressing, the current revision's pods fail early (modules/pod-signals.ts):
   * such a check counts as a Degraded one (SPEC §7 I2).
   */
  health?: { status: HealthStatus; revision?: string; degradedSince?: string; failsEarly?: FailsEarly };
  /** The app's source as it is now: a new attempt's record keeps it; an attempt in progress compares it. */
  source?: SourceRef;
  /** The environment the governing policy (or the labels) give the app now; the attempt keeps the one it started in. */
  liveEnvironment?: Environment;
  /**
   * The Application is gone: absent from the watch and a fresh read said NotFound — or, `recreated`, one of
   * the same name with another uid stands in its place (deleted and created again while nobody watched).
   */
  applicationGone?: boolean;
  recreated?: boolean;
  /** The Application's metadata.uid: a new attempt keeps it, to tell the Application from one created again under its name. */
  appUid?: string;
  /** Why this app is refused (its repository is outside GITHUB_ORG, its targetRevision is a tag, …): no attempt starts. */
  refused?: string;
  /** The branch the app deploys, resolved from its targetRevision before any attempt: a new attempt keeps it. */
  branch?: string;
  suspended: boolean;
  /** When a rollback of this app last merged: a new attempt waits out the cooldown after it. */
  lastRollbackAt?: string;
  /** When the app's attempts of the last hour started (the bound of maxAttemptsPerHour counts them). */
  attemptStarts?: string[];
  /** The id a new attempt would get (generated by the caller, so this stays pure). */
  nextCorrelationId: string;
  human: { abort?: string; reset?: boolean; approval?: { username: string; writtenAt?: string; objectCreatedAt?: string } };
  /** Whether the API server enforces who may approve (production only; absent: not known to be). */
  approvalEnforcement?: Enforcement;
  candidate?: CandidateOutcome;
  /** What is known before a PR opens; read when a decision asked for it. */
  preflight?: Preflight;
  pullRequest?: PullRequestFacts;
  /** The PR was opened by an intent of this very reconcile, not found from before. */
  pullRequestJustOpened?: boolean;
  /** CI on the rollback commit, judged against the required checks (merge-verdict.ts ciVerdict). */
  ci?: CiState;
  /** What the CI verdict says, naming the checks. */
  ciDetail?: string;
  /** The raw facts of the eight invariants, read fresh just before a merge decision: decide() evaluates them. */
  invariantFacts?: InvariantFacts;
  /** The invariants as evaluated (by decide() from `invariantFacts`; tests of the machine's logic may give results). */
  invariants?: InvariantResult[];
  /** An integration call of this attempt failed after its retries. */
  failure?: { code: ErrorCode; message: string; call: string };
  /** An intent of this reconcile failed after its retries: what it means is intent-failure.ts's to say. */
  intentFailure?: IntentFailure;
}

/** The facts a rollback PR is opened on: read once, shown in its body. */
export interface Preflight {
  /** The raw facts of I1–I5 as observed: decide() evaluates them into `invariants`. */
  invariantFacts?: InvariantFacts;
  /** I1–I5 as they stand; I6–I8 are UNKNOWN until the PR exists. Set by decide() from `invariantFacts`. */
  invariants?: InvariantResult[];
  /** Files the rollback commit would add, change or delete in the app's source set. */
  changedFiles: number;
  /** Those files (the PR body lists them per path of the set). */
  files?: ChangedFile[];
  /** The other Applications whose source sets those files are in (the blast radius). */
  affected?: AffectedApp[];
  /**
   * Open rollback PRs of other attempts that change files of this set (a shared base two degraded apps
   * render): this attempt waits for them instead of opening a second PR restoring the same files.
   */
  competing?: Array<{ number: number; title: string }>;
  /** The branch the PR would target, and its head the comparison was made on. */
  base: string;
  deployments?: DeploymentReplicas[];
}

export type Intent =
  | { kind: 'openPullRequest'; preflight: Preflight }
  | { kind: 'mergePullRequest'; number: number; headSha: string; method: Settings['mergeMethod'] }
  | { kind: 'closePullRequest'; number: number; comment: string }
  | { kind: 'commentPullRequest'; number: number; marker: string; comment: string }
  | { kind: 'requestApproval'; number: number }
  /** Remove an approve annotation no API server check stands behind, so only a checked one can ever count. */
  | { kind: 'removeApproval'; reason: string };

export type { PendingEvent } from '../fsm/event-payloads.ts';

export interface Note {
  /**
   * `waiting`: Degraded but no attempt may start (suspended, cooldown, refused) — said once per degradation.
   * `left-undone`: the attempt moved on without an effect refused for good (intent-failure.ts) — a Warning Event.
   */
  kind: 'approval-refused' | 'approval-recorded' | 'approval-withdrawn' | 'invariants' | 'waiting' | 'left-undone';
  message: string;
  /** CamelCase, for the Kubernetes Event of a `waiting` or `approval-refused` note. */
  reason?: string;
}

export interface Decision {
  /** The record to write; undefined when nothing changed. */
  record?: AttemptRecord;
  /** The health history to keep with it. */
  checks?: HealthCheck[];
  /**
   * Before any attempt exists: the app's health key alone — the degradation being
   * counted, or null to clear it (health left Degraded).
   */
  degradation?: { correlationId: string; checks: HealthCheck[] } | null;
  /** The attempt ended for good though it is in Abort (its Application is gone): release the app's active key. */
  release?: true;
  /** Facts the decision needs first: observe them, then decide again. Nothing else is set then. */
  needs?: 'candidate' | 'preflight';
  transition?: { from: State; to: State; reason: Reason };
  events: PendingEvent[];
  intents: Intent[];
  notes: Note[];
  /** App-level facts to persist with the write; `attemptStarts: []` forgets the count (a reset). */
  app?: { rolledBackFrom?: string; lastRollbackAt?: string; attemptStarts?: string[] };
}

export class TransitionRefused extends Error {
  constructor(from: State, to: State, reason: Reason) {
    super(`transition ${from} -> ${to} (${reason}) is not in the transition table`);
    this.name = 'TransitionRefused';
  }
}

/** Moves a record to `to`, or throws TransitionRefused. Pure. */
export function transition(record: AttemptRecord, to: State, reason: Reason, now: Date, message: string): AttemptRecord {
  if (!isAllowed(record.state, to, reason)) throw new TransitionRefused(record.state, to, reason);
  const at = now.toISOString();
  return {
    ...record,
    state: to,
    reason,
    message,
    since: at,
    version: record.version + 1,
    observed: { seconds: 0, at },
    retrying: undefined,
    transitions: [...record.transitions, { from: record.state, to, at, reason }].slice(-64),
  };
}

const nothing = (): Decision => ({ events: [], intents: [], notes: [] });

/** The check this reconcile reads (Degraded, or Progressing with its pods' signal), when it counts towards persistence. */
function failingNow(facts: Facts): HealthCheck | undefined {
  const health = facts.health;
  if (!health) return undefined;
  const check: HealthCheck = {
    at: facts.now.toISOString(), status: health.status, ...(health.revision ? { revision: health.revision } : {}),
    ...(health.status === 'Progressing' && health.failsEarly ? { signal: health.failsEarly.signal } : {}),
  };
  return failingCheck(check) ? check : undefined;
}

function base(facts: Facts): { app: AppRef; environment: Environment } {
  return { app: facts.app, environment: facts.environment };
}

/** A transition plus its fsm.transition event and the type-specific ones. */
function move(facts: Facts, record: AttemptRecord, to: State, reason: Reason, message: string, extra: PendingEvent[] = [], patch: Partial<AttemptRecord> = {}): Decision {
  const next = { ...transition(record, to, reason, facts.now, message), ...patch };
  const events: PendingEvent[] = [...extra, ev.transition(base(facts), record.state, to, reason, next.version)];
  if (to === 'Abort') events.push(ev.aborted(base(facts), record.state, reason, message));
  return { record: next, transition: { from: record.state, to, reason }, events, intents: [], notes: [] };
}

/** A write of the record without a transition. */
function update(record: AttemptRecord, patch: Partial<AttemptRecord>): AttemptRecord {
  return { ...record, ...patch, version: record.version + 1 };
}

function sameResults(a: InvariantResult[], b: InvariantResult[]): boolean {
  return a.length === b.length && a.every((r, i) => r.id === b[i]!.id && r.result === b[i]!.result && r.detail === b[i]!.detail);
}

/**
 * The time observed in the current state once this reconcile read the fact its
 * deadline is about: the gap since the last observation counts, up to two
 * intervals (a late reconcile), never an outage.
 */
function observedTime(record: AttemptRecord, now: Date): { seconds: number; at: string } {
  const last = record.observed ?? { seconds: 0, at: record.since };
  const gap = Math.max(0, (now.getTime() - Date.parse(last.at)) / 1000);
  return { seconds: last.seconds + Math.min(gap, 2 * record.settings.intervalSeconds), at: now.toISOString() };
}

/** After call()'s retries, an outage: what was asked may or may not have happened, so nothing is concluded. */
function isTransient(code: ErrorCode): boolean {
  return TRANSIENT.includes(code);
}

/**
 * An integration is down: the attempt stays where it is and the next reconcile
 * observes again — a PR whose creation or merge may have landed is adopted or
 * seen merged then, never orphaned by an abort. Deadlines do not run meanwhile.
 */
function waitForIntegration(record: AttemptRecord, failure: NonNullable<Facts['failure']>): Decision {
  const message = `${failure.call} failed (${failure.code}), retrying every interval: ${failure.message}`;
  return record.message === message ? nothing() : { ...nothing(), record: update(record, { message, retrying: true }) };
}

/**
 * A write of the observed time. The clock of a deadline is not a new version of
 * the attempt: no version bump. A message that said an integration was down is
 * replaced (a new version): it answers again.
 */
function observedWrite(record: AttemptRecord, observed: { seconds: number; at: string }, message: string): AttemptRecord {
  return record.retrying ? update(record, { observed, message, retrying: undefined }) : { ...record, observed };
}

function failureReason(code: ErrorCode): Reason {
  if (code === 'PERMISSION_DENIED') return Reason.PermissionDenied;
  if (code === 'CONFLICT') return Reason.Conflict;
  return Reason.IntegrationError;
}

function abortComment(record: AttemptRecord, reason: Reason, message: string): Intent[] {
  const pr = record.pullRequest;
  if (!pr || pr.state !== 'open') return [];
  return [{ kind: 'commentPullRequest', number: pr.number, marker: `abort-${record.correlationId}`, comment: comments.aborted(record.correlationId, reason, message) }];
}

function withIntents(decision: Decision, intents: Intent[]): Decision {
  return { ...decision, intents: [...decision.intents, ...intents] };
}

/**
 * The close of PR `number` this decision waits for, as this reconcile left it (intent-failure.ts): not
 * tried or not failed (undefined), failed on an outage (`hold`: tried again next interval, not next round),
 * or refused for good (`refused`: the waiting transition is taken without it).
 */
function closeOutcome(facts: Facts, record: AttemptRecord, number: number): { hold: Decision } | { refused: IntentFailure } | undefined {
  const failed = facts.intentFailure;
  if (failed?.kind !== 'closePullRequest' || failed.number !== number) return undefined;
  if (onIntentFailure(failed) === 'hold') return { hold: waitForIntegration(record, { code: failed.code, message: failed.message, call: failed.kind }) };
  return { refused: failed };
}

/** The close intent, or what the transition says instead when the close was refused for good. */
function closeFirst(facts: Facts, record: AttemptRecord, number: number, comment: string, then: (undone?: string) => Decision): Decision {
  const outcome = closeOutcome(facts, record, number);
  if (!outcome) return { ...nothing(), intents: [{ kind: 'closePullRequest', number, comment }] };
  if ('hold' in outcome) return outcome.hold;
  const undone = leftUndone(outcome.refused, 'close', 'close it by hand');
  const decision = then(undone);
  const said: Intent[] = commentPossible(outcome.refused)
    ? [{ kind: 'commentPullRequest', number, marker: `close-refused-${record.correlationId}`, comment: comments.closeRefused(record.correlationId, undone) }]
    : [];
  return { ...withIntents(decision, said), notes: [...decision.notes, { kind: 'left-undone', reason: 'PullRequestNotClosed', message: undone }] };
}

function abort(facts: Facts, record: AttemptRecord, reason: Reason, message: string): Decision {
  return withIntents(move(facts, record, 'Abort', reason, message), abortComment(record, reason, message));
}

/** The fail-safe of SPEC §14.5: an unexpected error ends an active attempt in Abort. */
export function failSafe(facts: Facts, message: string): Decision {
  if (!facts.record || !inProgress(facts.record.state)) return nothing();
  return abort(facts, facts.record, Reason.UnexpectedError, message);
}

/**
 * The invariants are evaluated here, from the raw facts observe read (governance/merge-verdict.ts):
 * what they mean is a decision, not a read.
 */
function evaluated(facts: Facts): Facts {
  const invariants = facts.invariantFacts ? evaluateInvariants(facts.invariantFacts, facts.now) : facts.invariants;
  const preflight = facts.preflight?.invariantFacts ? { ...facts.preflight, invariants: evaluateInvariants(facts.preflight.invariantFacts, facts.now) } : facts.preflight;
  return { ...facts, ...(invariants ? { invariants } : {}), ...(preflight ? { preflight } : {}) };
}

/** A reset is a human's word that the app may be rolled back again: the attempts of the hour are forgotten. */
const FORGET_STARTS: { attemptStarts: string[] } = { attemptStarts: [] };

export function decide(observed: Facts): Decision {
  const facts = evaluated(observed);
  const record = facts.record;
  if (!record) return decideIdle(facts);

  if (record.state === 'Abort') {
    if (facts.applicationGone) return releaseAborted(facts, record);
    if (!facts.human.reset) return nothing();
    // A reset starts over: the aborted attempt's PR is closed first, so a new
    // attempt can never leave two rollback PRs open for one app.
    const pr = facts.pullRequest?.ref ?? record.pullRequest;
    if (pr?.state === 'open' && facts.pullRequest?.ref.state !== 'closed' && facts.pullRequest?.ref.state !== 'merged') {
      return closeFirst(facts, record, pr.number, comments.reset(record.correlationId, record.reason),
        (undone) => ({ ...move(facts, record, 'Idle', Reason.Reset, `reset by a human; ${undone}`, [], { pullRequest: { ...pr, state: 'open' } }), app: FORGET_STARTS }));
    }
    return { ...move(facts, record, 'Idle', Reason.Reset, 'reset by a human', [], pr ? { pullRequest: { ...pr, state: facts.pullRequest?.ref.state ?? 'closed' } } : {}), app: FORGET_STARTS };
  }
  if (!inProgress(record.state)) return nothing();

  if (facts.human.abort !== undefined) {
    return abort(facts, record, Reason.AbortRequested, `abort requested: ${facts.human.abort || 'no reason given'}`);
  }
  if (facts.applicationGone) return applicationGone(facts, record);
  // Whatever the health: a Healthy app on a new source is no reason to merge a PR built for the old one.
  const changed = changedUnderAttempt(facts, record);
  if (changed) return applicationEnded(facts, record, changed.reason, changed.message);

  switch (record.state) {
    case 'DegradationDetected': return decideDetected(facts, record);
    case 'CandidateResolved': return decideCandidateResolved(facts, record);
    case 'PRCreated': return decidePrCreated(facts, record);
    case 'AwaitingMergeApproval': return decideAwaiting(facts, record);
    case 'RollbackMerged': return decideMerged(facts, record);
    default: return nothing();
  }
}

/**
 * An aborted attempt holds its app until a reset; once its Application is deleted nobody would reset it, and an
 * Application created again under the name would be blocked silently. It is released (its PR closed first), and
 * the new Application is told.
 */
function releaseAborted(facts: Facts, record: AttemptRecord): Decision {
  const message = `Application ${facts.app.namespace}/${facts.app.name} was deleted while this attempt was aborted (${record.reason}): the app is released`;
  const done = (undone?: string): Decision => ({
    ...nothing(), record: update(record, { message: undone ? `${message}; ${undone}` : message }), release: true,
    ...(facts.recreated ? { notes: [{ kind: 'waiting' as const, reason: 'PreviousAttemptReleased', message: `an aborted rollback attempt (${record.correlationId}) of the Application deleted under this name was released: ${record.message}` }] } : {}),
  });
  const pr = facts.pullRequest?.ref ?? record.pullRequest;
  if (pr?.state === 'open' && facts.pullRequest?.ref.state !== 'closed' && facts.pullRequest?.ref.state !== 'merged') {
    return closeFirst(facts, record, pr.number, comments.applicationEnded(record.correlationId, Reason.ApplicationDeleted, message), done);
  }
  return done();
}

/** Nothing of the attempt can go on without its Application: abort, close its PR, free the app's name. */
function applicationGone(facts: Facts, record: AttemptRecord): Decision {
  return applicationEnded(facts, record, Reason.ApplicationDeleted, `Application ${facts.app.namespace}/${facts.app.name} was deleted`);
}

/**
 * An attempt is governed by what held when it started, except where that is
 * unsafe: its PR restores the old source (merging it would change a path the app
 * no longer deploys), or a policy made the app production (staging's auto-merge
 * would skip the approval production needs).
 */
function changedUnderAttempt(facts: Facts, record: AttemptRecord): { reason: Reason; message: string } | undefined {
  const [was, now] = [record.source, facts.source];
  if (was && now && (was.repoURL !== now.repoURL || was.path !== now.path || was.targetRevision !== now.targetRevision)) {
    const diff = (['repoURL', 'path', 'targetRevision'] as const).filter((k) => was[k] !== now[k]).map((k) => `${k} ${was[k]} -> ${now[k]}`).join(', ');
    return { reason: Reason.SourceChanged, message: `spec.source changed mid-attempt (${diff}): the rollback was built for the old source` };
  }
  const merged = record.state === 'RollbackMerged';
  if (!merged && record.environment === 'staging' && facts.liveEnvironment === 'production') {
    return { reason: Reason.EnvironmentChanged, message: 'the app is production now: a staging attempt may not merge it without the approval production needs' };
  }
  return undefined;
}

/**
 * The attempt cannot go on for its app: close its PR first, then abort and free
 * the app's key so a fresh attempt may start. The close comes first, as for a
 * reset: an Abort that released the key could never close a PR whose close failed.
 */
function applicationEnded(facts: Facts, record: AttemptRecord, reason: Reason, message: string): Decision {
  const pr = facts.pullRequest?.ref ?? record.pullRequest;
  if (pr?.state === 'open') {
    return closeFirst(facts, record, pr.number, comments.applicationEnded(record.correlationId, reason, message),
      (undone) => ({ ...move(facts, record, 'Abort', reason, `${message}; ${undone}`, [], { pullRequest: pr }), release: true }));
  }
  return { ...move(facts, record, 'Abort', reason, message, [], pr ? { pullRequest: pr } : {}), release: true };
}

/**
 * No attempt yet: count Degraded checks in the app's health key, and start an
 * attempt only once persistence is confirmed (SPEC §6.2). A blip costs no
 * attempt and no RollbackAttempt object: one write of the health key and one
 * to clear it.
 */
function decideIdle(facts: Facts): Decision {
  const { settings, now } = facts;
  const pending = facts.pendingCorrelationId;
  const cleared = (id: string, checks: number): PendingEvent => ev.degradationCleared(base(facts), checks, Reason.TransientDegradation, id);
  const check = failingNow(facts);
  if (!check || !facts.health) {
    // Health left Degraded (or the pods stopped failing) before persistence was confirmed: the count restarts.
    if (pending === undefined) return nothing();
    return { ...nothing(), degradation: null, events: [cleared(pending, facts.checks.length)] };
  }
  const waiting = (reason: string, message: string): Decision => ({ ...nothing(), notes: [{ kind: 'waiting', reason, message }] });
  if (facts.refused) return waiting('ApplicationRefused', facts.refused);
  if (facts.suspended) return waiting('PolicySuspended', 'Degraded, but the policy is suspended: no rollback is attempted');
  const cooldownUntil = cooldownEnds(facts.lastRollbackAt, settings.cooldownSeconds);
  if (cooldownUntil && Date.parse(cooldownUntil) > now.getTime()) {
    return waiting('InCooldown', `Degraded, but rolled back recently: no new attempt before ${cooldownUntil}`);
  }

  const run = checksOfCurrentRun(facts.checks, facts.health.degradedSince);
  // The watch saw health leave Degraded since the last check: that degradation is over, a new one begins.
  const restarted = pending !== undefined && run.length < facts.checks.length;
  if (!restarted && !checkDue(run, settings, now)) return nothing();
  const correlationId = pending === undefined || restarted ? facts.nextCorrelationId : pending;
  const revision = facts.health.revision;
  const checks = nextChecks(run, check, settings);
  const signal = check.signal ? facts.health.failsEarly : undefined;
  const events: PendingEvent[] = [];
  if (restarted) events.push(cleared(pending!, facts.checks.length));
  if (correlationId !== pending) {
    events.push(ev.degradationDetected(base(facts), correlationId, revision, signal));
  }
  const [confirmed, detail] = persistence(checks, settings.persistenceChecks, settings.intervalSeconds);
  if (confirmed !== 'PASS') return { ...nothing(), degradation: { correlationId, checks }, events };

  const at = now.toISOString();
  const firstSeenAt = checks.at(-settings.persistenceChecks)?.at ?? checks[0]!.at;
  const idle: AttemptRecord = {
    correlationId,
    app: facts.app,
    ...(facts.appUid ? { appUid: facts.appUid } : {}),
    environment: facts.environment,
    ...(facts.source ? { source: facts.source } : {}),
    ...(facts.branch ? { branch: facts.branch } : {}),
    ...(facts.policyRef ? { policyRef: facts.policyRef } : {}),
    settings,
    state: 'Idle',
    reason: Reason.DegradationConfirmed,
    message: '',
    since: at,
    version: 0,
    createdAt: at,
    degradation: { firstSeenAt, checks: checks.length, ...(signal ? { signal } : {}) },
    ...(revision ? { currentRevision: revision } : {}),
    invariants: [],
    transitions: [],
  };
  const confirmedEvents = [...events, ev.degradationConfirmed(base(facts), checks.length, firstSeenAt, signal?.signal)];
  const started = startsWithinHour(facts.attemptStarts, now);
  const limit = settings.maxAttemptsPerHour ?? 0;
  if (limit > 0 && started.length >= limit) {
    // A flapping app would open and close a PR per flap: it is held, in Abort, until a human looks (a reset).
    return { ...move(facts, idle, 'Abort', Reason.AttemptLimitReached,
      `degradation confirmed, but ${started.length} attempt(s) already started for this app within the hour (maxAttemptsPerHour ${limit}, first at ${started[0]}): ` +
      'it keeps degrading after each attempt, so it is held for a human; reset this attempt to let the operator act again', confirmedEvents), checks };
  }
  const decision = move(facts, idle, 'DegradationDetected', Reason.DegradationConfirmed,
    `degradation confirmed after ${settings.persistenceChecks} consecutive ${signal ? 'failing' : 'Degraded'} checks (${detail})${signal ? `; Argo CD reports Progressing, ${signal.detail}` : ''}`, confirmedEvents);
  // No bound, nothing to count: the app keeps no key for it.
  return { ...decision, checks, ...(limit > 0 ? { app: { attemptStarts: [...started, at] } } : {}) };
}

/** The attempt starts of the last hour, oldest first: what maxAttemptsPerHour counts. */
export function startsWithinHour(starts: string[] | undefined, now: Date): string[] {
  const since = now.getTime() - 3_600_000;
  return (starts ?? []).filter((at) => Date.parse(at) > since).sort();
}

function decideDetected(facts: Facts, record: AttemptRecord): Decision {
  const { settings, now } = facts;
  const run = checksOfCurrentRun(facts.checks, facts.health?.degradedSince);
  const check = failingNow(facts);
  const left = facts.health !== undefined && !check;
  if (left || run.length < facts.checks.length) {
    return move(facts, record, 'Idle', Reason.TransientDegradation,
      `health read ${left ? facts.health!.status : 'something other than Degraded'} after ${facts.checks.length} Degraded check(s)`, [
        ev.degradationCleared(base(facts), facts.checks.length, Reason.TransientDegradation),
      ]);
  }
  if (!facts.health) return nothing();
  const checks = checkDue(run, settings, now) && check ? nextChecks(run, check, settings) : run;
  if (persistence(checks, settings.persistenceChecks, settings.intervalSeconds)[0] !== 'PASS') {
    // A record written before attempts started confirmed: it still counts its checks itself.
    if (checks === run) return nothing();
    return {
      ...nothing(),
      record: update(record, {
        degradation: { ...record.degradation, firstSeenAt: checks[0]!.at, checks: checks.length },
        message: `health check ${checks.length} of ${settings.persistenceChecks} read ${check?.signal ? `Progressing, pods failing early (${check.signal})` : 'Degraded'}`,
      }),
      checks,
    };
  }
  if (facts.candidate === undefined) return { ...nothing(), needs: 'candidate' };
  const confirmed = { ...record, degradation: { ...record.degradation, checks: checks.length } };
  return { ...candidateDecision(facts, confirmed, facts.candidate), checks };
}

function candidateDecision(facts: Facts, record: AttemptRecord, outcome: CandidateOutcome): Decision {
  switch (outcome.kind) {
    case 'found':
      return move(facts, record, 'CandidateResolved', Reason.StableCandidateFound,
        `rollback target ${outcome.candidate.shortRevision}: ${outcome.candidate.evidence}`,
        [ev.candidateResolved(base(facts), outcome.currentRevision, outcome.candidate)],
        { candidate: outcome.candidate, currentRevision: outcome.currentRevision, ...(outcome.rolledBackFrom ? { rolledBackFrom: outcome.rolledBackFrom } : {}) });
    case 'none':
      return move(facts, record, 'Abort', Reason.NoStableCandidate, outcome.detail);
    case 'timeout':
      return move(facts, record, 'Abort', Reason.CandidateSearchTimeout, outcome.detail);
    case 'error':
      return move(facts, record, 'Abort', failureReason(outcome.code), `candidate search failed: ${outcome.message}`);
  }
}

function decideCandidateResolved(facts: Facts, record: AttemptRecord): Decision {
  if (facts.failure && isTransient(facts.failure.code)) return waitForIntegration(record, facts.failure);
  if (facts.failure) return move(facts, record, 'Abort', failureReason(facts.failure.code), `${facts.failure.call} failed: ${facts.failure.message}`);
  if (facts.pullRequest) {
    const adopted = !facts.pullRequestJustOpened;
    const pr = facts.pullRequest.ref;
    const commit = facts.pullRequest.rollbackCommit;
    // A PR under the attempt's branch name that is not the operator's rollback is never adopted: a human looks at it.
    if (!commit) {
      return move(facts, record, 'Abort', Reason.PullRequestChanged,
        `pull request #${pr.number} of ${pr.branch} is not this attempt's rollback (${facts.pullRequest.notRollback ?? 'its head could not be checked'}): not adopted, left for a human`);
    }
    // The blast radius is kept with the PR: read before it opened, or, for a PR found after a restart, now.
    const affected = record.affected ?? facts.preflight?.affected;
    if (!affected) return { ...nothing(), needs: 'preflight' };
    return move(facts, record, 'PRCreated', adopted ? Reason.PullRequestAdopted : Reason.PullRequestOpened,
      `${adopted ? 'adopted' : 'opened'} pull request #${pr.number} on the rollback commit ${shortSha(commit.sha)}`, [ev.pullRequestCreated(base(facts), pr, adopted)],
      { pullRequest: pr, rollbackCommit: commit, affected });
  }
  const target = record.candidate?.shortRevision ?? 'the rollback target';
  if (record.settings.dryRun) {
    return move(facts, record, 'Abort', Reason.DryRun,
      `dry run: would open a pull request restoring ${record.currentRevision ? shortSha(record.currentRevision) : 'the app'} to ${target}`);
  }
  if (facts.health?.status === 'Healthy') {
    return move(facts, record, 'Idle', Reason.HealthRestoredBeforeMerge, 'health restored before a rollback pull request was opened', []);
  }
  const preflight = facts.preflight;
  if (!preflight) return { ...nothing(), needs: 'preflight' };
  // Another attempt's rollback already restores these files: its merge may well heal this app too (Healthy
  // then ends this attempt above); closed without a merge, this attempt opens its own. Bounded like an approval.
  const other = preflight.competing?.[0];
  const awaited = other ?? (record.waitingFor && preflight.changedFiles === 0 ? record.waitingFor : undefined);
  if (awaited) {
    const observed = observedTime(record, facts.now);
    // Merged (the branch already holds what this attempt would restore), but not deployed yet: Argo CD's sync
    // is what heals the app. Nothing to roll back would be said too early here.
    const waiting = other
      ? `waiting for rollback pull request #${other.number} (${other.title}), which already changes files of this app's source set: no second pull request restoring them is opened`
      : `rollback pull request #${awaited.number} (${awaited.title}) was merged and restores this app's source set too: waiting for Argo CD to deploy it`;
    if (approvalTimedOut(observed.seconds, record.settings)) {
      return move(facts, record, 'Abort', Reason.InvariantViolated, other
        ? `rollback pull request #${other.number} (${other.title}) still open after ${formatDuration(record.settings.approvalTimeoutSeconds)}: no pull request opened`
        : `rollback pull request #${awaited.number} (${awaited.title}) was merged, but health did not come back within ${formatDuration(record.settings.approvalTimeoutSeconds)}`, [], { invariants: preflight.invariants ?? [] });
    }
    return { ...nothing(), record: record.message === waiting ? { ...record, observed } : update(record, { observed, message: waiting, waitingFor: awaited }) };
  }
  const paths = restoredPaths(record).join(', ') || 'the app\'s source';
  if (preflight.changedFiles === 0) {
    return move(facts, record, 'Abort', Reason.NothingToRollBack,
      `${paths} on ${preflight.base} already ${restoredPaths(record).length > 1 ? 'match' : 'matches'} ${target}: the degradation is not in Git, so no pull request was opened`, [],
      { invariants: preflight.invariants ?? [] });
  }
  // An invariant no PR can change already fails: waiting for CI could only reach the same verdict.
  const failing = violations(preflight.invariants ?? []).filter((r) => PRE_PULL_REQUEST_INVARIANTS.includes(r.id));
  if (failing.length > 0) {
    return move(facts, record, 'Abort', Reason.InvariantViolated,
      `no pull request opened: ${failing.map((v) => `${v.id}: ${v.detail}`).join('; ')}`, [], { invariants: preflight.invariants ?? [] });
  }
  return { ...nothing(), intents: [{ kind: 'openPullRequest', preflight }] };
}

/** Health came back before the merge: close the PR, then go back to Idle. */
function restoredBeforeMerge(facts: Facts, record: AttemptRecord): Decision | undefined {
  if (facts.health?.status !== 'Healthy') return undefined;
  // Unread this reconcile, the PR may have been merged — by us: Healthy could be our own rollback.
  if (record.pullRequest && !facts.pullRequest) return undefined;
  const pr = facts.pullRequest?.ref ?? record.pullRequest;
  if (pr && pr.state === 'open') {
    return closeFirst(facts, record, pr.number, comments.healthRestored(facts.app.name, record.correlationId),
      (undone) => move(facts, record, 'Idle', Reason.HealthRestoredBeforeMerge, `health restored before the merge; ${undone}`, [], { pullRequest: pr }));
  }
  if (pr && pr.state === 'merged') return undefined;
  return move(facts, record, 'Idle', Reason.HealthRestoredBeforeMerge, 'health restored before the merge: pull request closed',
    pr ? [ev.pullRequestClosed(base(facts), pr.number, Reason.HealthRestoredBeforeMerge)] : [], pr ? { pullRequest: { ...pr, state: 'closed' } } : {});
}

function closedByHuman(facts: Facts, record: AttemptRecord): Decision | undefined {
  const pr = facts.pullRequest?.ref;
  if (!pr || pr.state !== 'closed') return undefined;
  return move(facts, record, 'Abort', Reason.PullRequestClosed, `pull request #${pr.number} was closed without merging`,
    [ev.pullRequestClosed(base(facts), pr.number, Reason.PullRequestClosed)], { pullRequest: pr });
}

/**
 * The open PR is no longer the rollback the operator built: its head moved off the rollback commit, or it
 * was retargeted to a branch the app does not deploy. Never merged: the attempt aborts, the PR is
 * commented and left open for a human.
 */
function pullRequestChanged(facts: Facts, record: AttemptRecord): Decision | undefined {
  const pr = facts.pullRequest;
  if (!pr || pr.ref.state !== 'open') return undefined;
  const deploys = attemptBranch(record);
  if (pr.base !== undefined && pr.base !== deploys) {
    return abort(facts, record, Reason.PullRequestChanged, `#${pr.ref.number} was retargeted to ${pr.base}; ${record.app.name} deploys ${deploys}: not merged`);
  }
  const built = record.rollbackCommit ?? pr.rollbackCommit;
  if (!built) {
    return abort(facts, record, Reason.PullRequestChanged,
      `#${pr.ref.number} is not the operator's rollback (${pr.notRollback ?? 'its head could not be checked'}): not merged`);
  }
  if (pr.headSha !== built.sha) {
    return abort(facts, record, Reason.PullRequestChanged,
      `the head of #${pr.ref.number} is ${shortSha(pr.headSha)}, not the rollback commit ${shortSha(built.sha)}; pushed by ${pr.headAuthor ?? 'someone else'}: not merged`);
  }
  return undefined;
}

/**
 * What ends or holds an attempt whose PR is open, before anything else is judged: a PR that is no longer
 * the operator's rollback (abort), health back (close it), a human closed it, an integration down (wait)
 * or refusing (abort).
 */
function openPullRequestChecks(facts: Facts, record: AttemptRecord): Decision | undefined {
  const settled = pullRequestChanged(facts, record) ?? restoredBeforeMerge(facts, record) ?? closedByHuman(facts, record);
  if (settled) return settled;
  if (facts.failure && isTransient(facts.failure.code)) return waitForIntegration(record, facts.failure);
  if (facts.failure) return abort(facts, record, failureReason(facts.failure.code), `${facts.failure.call} failed: ${facts.failure.message}`);
  return undefined;
}

function decidePrCreated(facts: Facts, record: AttemptRecord): Decision {
  const settled = openPullRequestChecks(facts, record);
  if (settled) return settled;
  const pr = record.pullRequest!;
  // CI is judged on a fresh read of the PR only: without one there is nothing to judge, not even a timeout.
  const head = facts.pullRequest?.headSha;
  if (!head) return nothing();
  // Kept from now on: a record written before the rollback commit was, checked this reconcile.
  const bound = record.rollbackCommit ? record : update(record, { rollbackCommit: facts.pullRequest!.rollbackCommit! });
  const ciEvent = (state: 'success' | 'failure' | 'timeout'): PendingEvent => ev.ciCompleted(base(facts), pr.number, head, state);
  const detail = facts.ciDetail ? `: ${facts.ciDetail}` : '';
  if (facts.ci === 'success') {
    // Production asks for an approval only once the invariants allow a merge (decideAwaiting).
    return move(facts, bound, 'AwaitingMergeApproval', Reason.CISucceeded, `CI on #${pr.number} is success${detail}`, [ciEvent('success')]);
  }
  if (facts.ci === 'failure' || facts.ci === 'error') {
    const decision = abort(facts, bound, Reason.CIFailure, `CI on #${pr.number} is ${facts.ci}${detail}`);
    return { ...decision, events: [ciEvent('failure'), ...decision.events] };
  }
  const observed = observedTime(bound, facts.now);
  if (ciTimedOut(observed.seconds, record.settings)) {
    const decision = abort(facts, bound, Reason.CITimeout, `CI on #${pr.number} still pending after ${formatDuration(record.settings.ciTimeoutSeconds)}${detail}`);
    return { ...decision, events: [ciEvent('timeout'), ...decision.events] };
  }
  return { ...nothing(), record: observedWrite(bound, observed, `waiting for CI on #${pr.number}`) };
}

/**
 * The environment an attempt's merge is decided as: its own, except that a staging rollback which also
 * changes what an app beyond staging deploys (a shared base, a chart) waits for an approver as production does.
 */
export function mergeEnvironment(environment: Environment, record: Pick<AttemptRecord, 'affected'>): Environment {
  return environment === 'staging' && affectsBeyondStaging(record) ? 'production' : environment;
}

function decideAwaiting(facts: Facts, record: AttemptRecord): Decision {
  const pr = facts.pullRequest;
  const environment = mergeEnvironment(facts.environment, record);
  if (pr?.ref.state === 'merged') return merged(facts, record, pr);
  const settled = openPullRequestChecks(facts, record);
  if (settled) return settled;

  const notes: Note[] = [];
  const events: PendingEvent[] = [];
  const patch: Partial<AttemptRecord> = {};
  // Record an authorized approval once; each distinct refusal once (status, Event, audit).
  const intents: Intent[] = [];
  const enforcement = facts.approvalEnforcement ?? { enforced: false, problem: 'not checked yet' };
  // Fail closed: while the API server does not check who approves, say so once on the status and the PR.
  const blocked = environment === 'production' && !record.approval && !enforcement.enforced && !enforcement.unknown ? enforcement.problem ?? 'admission policy not confirmed' : undefined;
  if (blocked !== record.approvalBlocked) {
    patch.approvalBlocked = blocked;
    if (blocked && pr) {
      intents.push({ kind: 'commentPullRequest', number: pr.ref.number, marker: `approval-blocked-${record.correlationId}`, comment: comments.approvalBlocked(record.correlationId, blocked) });
      notes.push({ kind: 'approval-refused', reason: 'ApprovalNotEnforced', message: `approvals are not recorded: ${blocked}` });
    }
  }
  // A record written before the rollback commit was kept gets the one observe checked (pullRequestChanged
  // aborted already if there was none): without it nothing could be approved or merged.
  const built = record.rollbackCommit ?? pr?.rollbackCommit;
  if (!record.rollbackCommit && built) patch.rollbackCommit = built;
  // An approval stands only while its annotation does, unchanged, and only for the commit it was given for.
  const rollbackCommit = built?.sha;
  let approval = record.approval;
  if (approval && environment === 'production') {
    const annotated = facts.human.approval?.username;
    const why = annotated === undefined ? 'its annotation was removed'
      : annotated !== approval.approvedBy ? `its annotation now names ${annotated || '(empty)'}`
        : approval.commitSha !== rollbackCommit ? `it was given for ${approval.commitSha ? shortSha(approval.commitSha) : 'no recorded commit'}, not the rollback commit ${rollbackCommit ? shortSha(rollbackCommit) : '(unknown)'}`
          : undefined;
    if (why) {
      patch.approval = undefined;
      patch.approvalWithdrawn = { approvedBy: approval.approvedBy, at: facts.now.toISOString(), detail: why };
      notes.push({ kind: 'approval-withdrawn', reason: 'ApprovalWithdrawn', message: `the approval by ${approval.approvedBy} no longer counts: ${why}` });
      approval = undefined;
    }
  }
  if (environment === 'production' && !approval && facts.human.approval && pr && rollbackCommit) {
    const verdict = authorizeApproval(facts.human.approval, record.settings.approvers, enforcement);
    const username = facts.human.approval.username;
    if (verdict.authorized) {
      patch.approval = { approvedBy: username, approvedAt: facts.now.toISOString(), commitSha: rollbackCommit };
      events.push(ev.mergeApproved(base(facts), pr.ref.number, patch.approval.approvedBy, false));
      notes.push({ kind: 'approval-recorded', message: verdict.detail });
    } else if (!verdict.authorized) {
      if (record.approvalRefused?.username !== username || record.approvalRefused.detail !== verdict.detail) {
        patch.approvalRefused = { username, detail: verdict.detail, at: facts.now.toISOString() };
        notes.push({ kind: 'approval-refused', reason: enforcement.enforced ? 'ApprovalRefused' : 'ApprovalNotEnforced', message: `approval by ${username || '(empty)'} refused: ${verdict.detail}` });
      }
      // An annotation whose writer the API server did not check may never count later: take it away.
      if (!verdict.authorized && verdict.unchecked) intents.push({ kind: 'removeApproval', reason: verdict.detail });
    }
  }
  const invariants = facts.invariants;
  if (invariants && !sameResults(record.invariants, invariants)) patch.invariants = invariants;
  // The invariants were read fresh: this reconcile observed the state (the approval deadline counts it).
  const observed = invariants && pr ? observedTime(record, facts.now) : undefined;
  if (observed) {
    patch.observed = observed;
    if (record.retrying) Object.assign(patch, { message: `waiting for the merge verdict on #${pr!.ref.number}`, retrying: undefined });
  }
  const current: AttemptRecord = { ...record, ...patch };
  const changed = Object.keys(patch).filter((k) => k !== 'observed').length > 0;
  // Merged only by the SHA the operator built: if the head moved meanwhile, GitHub refuses the merge (409).
  const mergeSha = rollbackCommit;
  const write = changed ? update(record, patch) : patch.observed ? { ...record, observed: patch.observed } : undefined;
  const withEvents = (decision: Decision): Decision => ({ ...decision, events: [...events, ...decision.events], notes: [...notes, ...decision.notes] });
  if (!invariants || !pr) return { ...nothing(), ...(write ? { record: write } : {}), events, notes, intents };
  notes.push({ kind: 'invariants', message: JSON.stringify(summary(invariants)) });

  const counted = current.approval && current.approval.commitSha === mergeSha ? current.approval : undefined;
  const verdict = mergeVerdict({ environment, invariants, ...(counted ? { approval: counted } : {}),
    observedSeconds: observed!.seconds, settings: record.settings });
  if (verdict.verdict === 'abort') return withEvents(abort(facts, changed ? update(record, patch) : current, Reason[verdict.reason], verdict.detail));
  if (verdict.verdict === 'merge' && mergeSha) {
    return { ...nothing(), ...(write ? { record: write } : {}), events, notes,
      intents: [{ kind: 'mergePullRequest', number: pr.ref.number, headSha: mergeSha, method: record.settings.mergeMethod }] };
  }
  // Production waits for a human: ask once, and only now that nothing this reconcile saw contradicts it.
  if (environment === 'production' && !current.approval && !record.approvalRequestedAt && !blocked) {
    return { ...nothing(), record: update(record, { ...patch, approvalRequestedAt: facts.now.toISOString() }), events, notes,
      intents: [...intents, { kind: 'requestApproval', number: pr.ref.number }] };
  }
  return { ...nothing(), ...(write ? { record: write } : {}), events, notes, intents };
}

function merged(facts: Facts, record: AttemptRecord, pr: PullRequestFacts): Decision {
  const byOperator = pr.mergedByOperator === true;
  const auto = byOperator && mergeEnvironment(facts.environment, record) === 'staging';
  const reason = !byOperator ? Reason.MergedByHuman : auto ? Reason.AutoMerged : Reason.ApprovedAndMerged;
  const at = facts.now.toISOString();
  const sha = pr.mergeCommitSha;
  const events: PendingEvent[] = [ev.pullRequestMerged(base(facts), pr.ref.number, sha, auto)];
  if (auto) events.unshift(ev.mergeApproved(base(facts), pr.ref.number, 'ai-operator', true));
  const decision = move(facts, record, 'RollbackMerged', reason, `pull request #${pr.ref.number} merged${byOperator ? '' : ' by a human on GitHub'}`, events, {
    pullRequest: pr.ref, merge: { at, ...(sha ? { commitSha: sha } : {}), auto },
  });
  const from = record.rolledBackFrom ?? record.currentRevision;
  return { ...decision, app: { ...(from ? { rolledBackFrom: from } : {}), lastRollbackAt: at } };
}

function decideMerged(facts: Facts, record: AttemptRecord): Decision {
  const { now } = facts;
  const deployedAway = facts.health?.revision !== undefined && facts.health.revision !== record.currentRevision;
  if (facts.health?.status === 'Healthy' && deployedAway) {
    const healthySince = record.healthySince ?? now.toISOString();
    if (restorationHeld(healthySince, now, record.settings)) {
      const recoverySeconds = Math.max(0, (now.getTime() - Date.parse(record.degradation.firstSeenAt)) / 1000);
      return move(facts, record, 'RollbackComplete', Reason.HealthRestored,
        `Healthy for ${formatDuration(record.settings.healthRestorationSeconds)} on ${shortSha(facts.health.revision!)}`,
        [ev.rollbackCompleted(base(facts), facts.health.revision!, recoverySeconds)], { healthySince });
    }
    if (!record.healthySince) return { ...nothing(), record: update(record, { healthySince, message: 'Healthy again; confirming it holds' }) };
  } else if (record.healthySince) {
    return { ...nothing(), record: update(record, { healthySince: undefined, message: `health read ${facts.health?.status ?? 'unreadable'} again` }) };
  }
  if (!facts.health) return nothing();
  const observed = observedTime(record, now);
  if (recoveryTimedOut(observed.seconds, record.settings)) {
    return move(facts, record, 'Abort', Reason.RecoveryTimeout, `not Healthy for ${formatDuration(record.settings.healthRestorationSeconds)} within ${formatDuration(record.settings.recoveryTimeoutSeconds)} of the merge`);
  }
  return { ...nothing(), record: observedWrite(record, observed, 'merged; waiting for Healthy') };
}
