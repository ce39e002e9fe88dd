// What the operator says about a decision, derived in one place: the audit
// records, the metric observations, the Kubernetes Events, the log lines and the
// trace attributes of a decision (and of an intent carried out, and of a reconcile
// that stopped for good). Pure: the reconciler applies what this returns at two
// fixed points — the audit records of a write inside its etcd transaction (the
// audit outbox), the rest once the RollbackAttempt status is projected — and
// decides nothing about any of it. The CloudEvent payloads are fsm/event-payloads.ts's.
import { ANNOTATIONS } from '../api/group.ts';
import type { Decision, Facts, Intent, Note } from './machine.ts';
import { type AppRef, type AttemptRecord, type Environment, type InvariantResult } from '../fsm/record.ts';
import { Reason, type State } from '../fsm/table.ts';
import { summary, violations } from '../governance/merge-verdict.ts';
import { approveCommand } from '../modules/pr-generator.ts';
import type { AuditInput } from '../ports/audit.ts';
import type { MetricObservation } from '../ports/observations.ts';

export type Transition = { from: State; to: State; reason: Reason };

/** A Kubernetes Event: on the RollbackAttempt and its Application alike, or (`applicationOnly`) on the Application. */
export interface SaidEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  action: string;
  note: string;
  /** The attempt it is about; absent: the Application alone (before any attempt). */
  record?: AttemptRecord;
  app: AppRef;
}

export interface SaidLog {
  level: 'info' | 'warn' | 'error';
  message: string;
  fields: Record<string, unknown>;
}

/** Everything said about one decision, one intent or one stall. */
export interface Said {
  /** Written in the decision's etcd transaction (the audit outbox): exactly once with the write. */
  committedAudit: AuditInput[];
  /** Recorded after the write, each on its own (notes, intents' outcomes). */
  audit: AuditInput[];
  metrics: MetricObservation[];
  events: SaidEvent[];
  logs: SaidLog[];
  /** Attributes of the reconcile's span (tracing): the transition, its reason, the invariants. */
  span: Record<string, string | number>;
}

/** What the reconciler remembers and hands in; what the operator said before is never said again here. */
export interface SayContext {
  /** Who reset the attempt through POST /reset, when the transition is a reset and it came that way. */
  resetBy?: { username: string; via: string };
  /** The `waiting` message last said for this app's current degradation (said once per degradation). */
  waitingSaid?: string;
}

const nothing = (): Said => ({ committedAudit: [], audit: [], metrics: [], events: [], logs: [], span: {} });

/**
 * Everything said about a decision; `eventIds` are the CloudEvent ids of its
 * pending events, in order (the degradation audit records name them).
 */
export function sayDecision(facts: Facts, decision: Decision, eventIds: string[], context: SayContext = {}): Said {
  const said = nothing();
  const record = decision.record ?? facts.record;
  if (decision.degradation !== undefined) said.committedAudit.push(...degradationAudit(facts, decision, eventIds));
  if (decision.record && decision.transition) {
    const t = decision.transition;
    said.committedAudit.push(...transitionAudit(decision.record, t, context.resetBy));
    said.metrics.push(...transitionMetrics(decision.record, t, facts.now));
    said.logs.push({ level: 'info', message: 'Transitioned attempt', fields: {
      correlationId: decision.record.correlationId, app: decision.record.app.name, from: t.from, to: t.to, reason: t.reason, detail: decision.record.message,
      ...(context.resetBy ? { resetBy: context.resetBy.username } : {}),
    } });
    said.events.push({
      type: t.to === 'Abort' ? 'Warning' : 'Normal', reason: t.reason, action: `To${t.to}`, record: decision.record, app: decision.record.app,
      // The PR before the message: the API server keeps 1 KiB of a note, and the message may be long.
      note: `${t.from} -> ${t.to}${decision.record.pullRequest ? ` (PR #${decision.record.pullRequest.number} ${decision.record.pullRequest.url})` : ''}: ${decision.record.message || t.reason}`,
    });
  }
  for (const note of decision.notes) {
    if (note.kind === 'waiting') sayWaiting(said, facts, note, context.waitingSaid);
    else if (record) sayNote(said, record, note);
  }
  if (record) said.span = spanAttributes(record, decision.transition);
  return said;
}

/** The audit records of a degradation's count starting or ending, under their events' ids. */
function degradationAudit(facts: Facts, decision: Decision, eventIds: string[]): AuditInput[] {
  return decision.events.flatMap((event, i): AuditInput[] => {
    if (event.type !== 'degradation.detected' && event.type !== 'degradation.cleared') return [];
    const detected = event.type === 'degradation.detected';
    return [{
      module: 'DegradationDetector',
      correlationId: event.correlationId ?? decision.degradation?.correlationId ?? facts.pendingCorrelationId!,
      actionType: detected ? 'DEGRADATION_DETECTED' : 'DEGRADATION_CLEARED',
      message: detected
        ? `Degraded seen: check 1 of ${facts.settings.persistenceChecks}`
        : `Health left Degraded after ${event.data.checks} check(s): the count restarts`,
      reasoning: detected
        ? event.data.signal
          // Issue 21: Argo CD still says Progressing; the pods of the current revision fail early.
          ? `Argo CD reports Progressing on ${facts.health?.revision ?? 'an unknown revision'}, and ${event.data.evidence ?? event.data.signal}`
          : `Argo CD reports Degraded on ${facts.health?.revision ?? 'an unknown revision'}`
        : `health now ${facts.health?.status ?? 'not Degraded'}`,
      metadata: { appName: facts.app.name, environment: facts.environment },
      eventId: eventIds[i]!,
    }];
  });
}

/** The audit records of a transition: the merge, when it is one, and the transition itself. */
function transitionAudit(record: AttemptRecord, t: Transition, resetBy: SayContext['resetBy']): AuditInput[] {
  const meta = { appName: record.app.name, environment: record.environment };
  const records: AuditInput[] = [];
  if (t.to === 'RollbackMerged' && record.pullRequest) {
    const n = record.pullRequest.number;
    records.push({ module: 'MergeController', correlationId: record.correlationId, actionType: 'PR_MERGED',
      message: `Merged rollback pull request #${n}${t.reason === Reason.MergedByHuman ? ' (by a human on GitHub)' : ''}`, invariantsChecked: summary(record.invariants),
      reasoning: t.reason === Reason.AutoMerged ? 'staging: all eight invariants PASS on fresh reads'
        : t.reason === Reason.ApprovedAndMerged ? `production: approved by ${record.approval?.approvedBy}; I2–I8 PASS` : 'merged on GitHub by a human',
      metadata: { ...meta, prNumber: n, ...(record.merge?.commitSha ? { mergeCommitSha: record.merge.commitSha } : {}) },
      eventId: `${record.correlationId}-merge-${n}` });
  }
  records.push({
    level: t.to === 'Abort' ? 'WARN' : 'INFO',
    module: moduleFor(t.to),
    correlationId: record.correlationId,
    actionType: t.to === 'Abort' ? 'ABORT' : t.reason === Reason.Reset ? 'RESET' : 'FSM_TRANSITION',
    message: `${t.from} -> ${t.to} (${t.reason})`,
    reasoning: resetBy ? `${record.message}: ${resetBy.username} through ${resetBy.via}` : record.message,
    ...(record.invariants.length > 0 ? { invariantsChecked: summary(record.invariants) } : {}),
    metadata: {
      ...meta, from: t.from, to: t.to, reason: t.reason, version: record.version, ...(record.pullRequest ? { prNumber: record.pullRequest.number } : {}),
      // Who reset it, when it came through POST /reset (the annotation's writer is the API server's to know).
      ...(t.reason === Reason.Reset ? (resetBy ? { resetBy: resetBy.username, resetVia: resetBy.via } : { resetVia: 'annotation' }) : {}),
    },
    eventId: `${record.correlationId}-v${record.version}`,
  });
  return records;
}

/** The counters and the state gauge a transition moves (SPEC §11). */
function transitionMetrics(record: AttemptRecord, t: Transition, now: Date): MetricObservation[] {
  const app = record.app.name;
  const environment = record.environment;
  const observed: MetricObservation[] = [{ metric: 'fsmState', app, state: t.to }];
  if (t.from === 'Idle' && t.to === 'DegradationDetected') observed.push({ metric: 'degradationDetected', app, environment });
  if (t.to === 'PRCreated') observed.push({ metric: 'rollbackProposed', app, environment, success: true });
  // The PR could not be opened: proposed, and failed.
  if (t.from === 'CandidateResolved' && t.to === 'Abort' && [Reason.PermissionDenied, Reason.Conflict, Reason.IntegrationError].includes(t.reason as never)) {
    observed.push({ metric: 'rollbackProposed', app, environment, success: false });
  }
  if (t.to === 'RollbackMerged') observed.push({ metric: 'rollbackMerged', app, environment, auto: record.merge?.auto ?? false });
  if (t.to === 'Abort') observed.push({ metric: 'rollbackAborted', app, environment, reason: t.reason });
  // Violations that stopped an attempt, so an alert on this counter means what it says.
  if (t.reason === Reason.InvariantViolated) for (const v of violations(record.invariants)) observed.push({ metric: 'invariantViolated', invariant: v.id });
  if (t.to === 'RollbackComplete') observed.push({ metric: 'recovery', app, environment, seconds: (now.getTime() - Date.parse(record.degradation.firstSeenAt)) / 1000 });
  return observed;
}

/** A Degraded app that may not be rolled back (refused, suspended, in cooldown): said once per degradation. */
function sayWaiting(said: Said, facts: Facts, note: Note, saidBefore: string | undefined): void {
  if (saidBefore === note.message) return;
  const { app, environment } = facts;
  said.logs.push({ level: 'info', message: 'Not rolling back a Degraded application', fields: { app: `${app.namespace}/${app.name}`, reason: note.reason, detail: note.message } });
  said.events.push({ app, type: note.reason === 'InCooldown' ? 'Normal' : 'Warning', reason: note.reason ?? 'RollbackNotAttempted', action: 'StartRollback', note: note.message });
  said.audit.push({ level: 'WARN', module: 'DegradationDetector', actionType: 'DEGRADATION_IGNORED', message: note.message,
    reasoning: note.reason ?? 'waiting', metadata: { appName: app.name, environment } });
}

function sayNote(said: Said, record: AttemptRecord, note: Note): void {
  const meta = { appName: record.app.name, environment: record.environment, ...(record.pullRequest ? { prNumber: record.pullRequest.number } : {}) };
  const about = { correlationId: record.correlationId, app: record.app.name, detail: note.message };
  switch (note.kind) {
    case 'left-undone':
      // Audited once already, as the failure of its intent: the Event says it where a person looks.
      said.logs.push({ level: 'warn', message: 'Moved on without a refused side effect', fields: about });
      said.events.push({ type: 'Warning', reason: note.reason ?? 'SideEffectRefused', action: 'ClosePullRequest', note: note.message, record, app: record.app });
      return;
    case 'invariants':
      said.audit.push({ level: 'INFO', module: 'MergeController', correlationId: record.correlationId, actionType: 'INVARIANT_CHECK',
        message: `Evaluated invariants in ${record.state}`, reasoning: record.invariants.map((i) => `${i.id}=${i.result}: ${i.detail}`).join('; '),
        invariantsChecked: summary(record.invariants), metadata: meta });
      return;
    case 'approval-refused':
    case 'approval-withdrawn': {
      const withdrawn = note.kind === 'approval-withdrawn';
      said.logs.push({ level: 'warn', message: withdrawn ? 'Withdrew approval' : 'Refused approval', fields: about });
      said.events.push({ type: 'Warning', reason: note.reason ?? 'ApprovalRefused', action: withdrawn ? 'WithdrawApproval' : 'RecordApproval', note: note.message, record, app: record.app });
      said.audit.push({ level: 'WARN', module: 'MergeController', correlationId: record.correlationId, actionType: 'APPROVAL', message: note.message, reasoning: note.message, metadata: meta });
      return;
    }
    case 'approval-recorded':
      said.audit.push({ level: 'INFO', module: 'MergeController', correlationId: record.correlationId, actionType: 'APPROVAL', message: note.message, reasoning: note.message, metadata: meta });
      return;
    case 'waiting':
      return;
  }
}

/** What an intent carried out says; `failure` when it failed after its retries (`first`: not the failure said last). */
export function sayIntent(intent: Intent, record: AttemptRecord, outcome: { opened?: { number: number; url: string; branch: string }; failure?: { code: string; message: string; call: string; first: boolean } }): Said {
  const said = nothing();
  const meta = { appName: record.app.name, environment: record.environment };
  const number = 'number' in intent ? intent.number : undefined;
  if (outcome.failure) {
    if (outcome.failure.first) {
      said.audit.push({ level: 'ERROR', module: 'Reconciler', correlationId: record.correlationId, actionType: 'MCP_CALL', message: `${intent.kind} failed: ${outcome.failure.message}`,
        metadata: { ...meta, errorCode: outcome.failure.code, call: outcome.failure.call, ...(number !== undefined ? { prNumber: number } : {}) } });
    }
    return said;
  }
  switch (intent.kind) {
    case 'openPullRequest': {
      const pr = outcome.opened;
      // Another attempt's PR restores these files now: nothing was opened, nothing to say.
      if (pr) {
        said.audit.push({ module: 'PRGenerator', correlationId: record.correlationId, actionType: 'PR_CREATED', message: `Opened rollback pull request #${pr.number}`,
          metadata: { ...meta, prNumber: pr.number, url: pr.url, branch: pr.branch }, eventId: `${record.correlationId}-pr-${pr.number}` });
      }
      break;
    }
    case 'closePullRequest':
      said.audit.push({ module: 'MergeController', correlationId: record.correlationId, actionType: 'PR_CLOSED',
        message: `Closed rollback pull request #${intent.number}`, reasoning: intent.comment, metadata: { ...meta, prNumber: intent.number } });
      break;
    case 'removeApproval':
      said.events.push({ type: 'Warning', reason: 'ApprovalRemoved', action: 'RemoveApproval', note: `removed the ${ANNOTATIONS.approve} annotation: ${intent.reason}`, record, app: record.app });
      said.audit.push({ level: 'WARN', module: 'MergeController', correlationId: record.correlationId, actionType: 'APPROVAL',
        message: 'Removed an approve annotation the API server did not check', reasoning: intent.reason, metadata: meta });
      break;
    case 'requestApproval':
      said.events.push({ type: 'Normal', reason: 'ApprovalRequested', action: 'RequestApproval', note: `pull request #${intent.number} waits for an authorized approver: ${approveCommand(record)}`, record, app: record.app });
      break;
    // Its PR_MERGED record is written with the transition to RollbackMerged: the merge's answer can be
    // lost while the merge lands, and the trail must say what happened, not what was heard back.
    case 'mergePullRequest':
    case 'commentPullRequest':
      break;
  }
  return said;
}

/** A reconcile that stopped retrying until a human repairs something (a TerminalError). */
export function sayStalled(app: AppRef, correlationId: string | undefined, reason: string, message: string): Said {
  const note = `stopped retrying until repaired: ${message}`;
  return {
    ...nothing(),
    events: [{ app, type: 'Warning', reason, action: 'Reconcile', note }],
    audit: [{ level: 'ERROR', module: 'Reconciler', actionType: 'MCP_CALL', message: note, reasoning: reason, ...(correlationId ? { correlationId } : {}), metadata: { appName: app.name, errorCode: reason } }],
  };
}

function spanAttributes(record: AttemptRecord, t: Transition | undefined): Record<string, string | number> {
  return {
    'ai_operator.app': `${record.app.namespace}/${record.app.name}`,
    'ai_operator.correlation_id': record.correlationId,
    'ai_operator.state': t?.to ?? record.state,
    'ai_operator.environment': record.environment satisfies Environment,
    ...(t ? { 'ai_operator.transition': `${t.from} -> ${t.to}`, 'ai_operator.reason': t.reason } : {}),
    ...(record.invariants.length > 0 ? { 'ai_operator.invariants': invariantList(record.invariants) } : {}),
  };
}

const invariantList = (invariants: InvariantResult[]) => invariants.map((i) => `${i.id}=${i.result}`).join(',');

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
