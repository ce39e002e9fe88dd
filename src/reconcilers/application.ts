// The application reconciler drives one app's rollback attempt through the state
// machine. Each reconcile: observe (the only reads) → decide (pure, decide/machine)
// → commit the record, its events and app facts in one fenced etcd transaction
// → carry out the intents idempotently → observe again, a few rounds at most so
// an effect and the transition it enables land in one reconcile. The
// RollbackAttempt status is written once, at the end, even on error.
import { API_VERSION, KINDS } from '../api/group.ts';
import { recordEntry, type AuditOutboxEntry } from '../audit/outbox.ts';
import { sayDecision, sayStalled, type Said, type SaidEvent } from '../decide/record-keeping.ts';
import { appSubject, makeEvent, type CloudEvent } from '../fsm/cloud-events.ts';
import { decide, failSafe, TransitionRefused, type Decision, type Facts } from '../decide/machine.ts';
import { appKey, attemptName, type AppRef, type AttemptRecord, type Settings } from '../fsm/record.ts';
import { Reason, holdsApp, inProgress } from '../fsm/table.ts';
import { type RefusalReason } from '../governance/repository.ts';
import { annotateReconcile, inReconcile } from '../observability/tracing.ts';
import type { ApplicationView } from '../ports/argocd.ts';
import { IntegrationError, TerminalError, terminalCause } from '../ports/errors.ts';
import type { AuditInput } from '../ports/audit.ts';
import { CorruptRecord } from '../ports/attempt-store.ts';
import { StoreUnavailable } from '../ports/errors.ts';
import type { ReconcileResult } from './queue.ts';
import type { ApplicationReconcilerDeps, ResetRequested } from './deps.ts';
import { Executor } from './execute.ts';
import { Observer, type Observed, type RoundMemo } from './observe.ts';

export type { ApplicationReconcilerDeps, AuditSink, ResetRequested } from './deps.ts';
export type { MonitoredApp } from '../policy/settings.ts';

/** The chain named in audit outbox entries when the audit log does not name its own. */
const LOCAL_CHAIN = 'local';

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

export class ApplicationReconciler {
  private readonly deps: ApplicationReconcilerDeps;
  private readonly clock: () => Date;
  private readonly newId: () => string;
  private readonly observer: Observer;
  private readonly executor: Executor;
  /** What was said about a Degraded app that may not be rolled back, so it is said once per degradation. */
  private readonly waitingSaid = new Map<string, string>();
  /** Transition Events of the reconcile in progress, per app key, emitted once its RollbackAttempt is projected. */
  private readonly heldEvents = new Map<string, Array<{ event: SaidEvent; appUid: string | undefined }>>();
  /** Resets asked through POST /reset, by correlationId: read as the annotation is, until written or expired. */
  private readonly resetRequests = new Map<string, ResetRequested & { until: number }>();

  constructor(deps: ApplicationReconcilerDeps) {
    this.deps = deps;
    this.clock = deps.clock ?? (() => new Date());
    this.newId = deps.newId ?? (() => crypto.randomUUID());
    this.observer = new Observer(deps, this.clock, this.newId, {
      resetRequested: (record, now) => this.resetRequested(record, now),
      dropPending: (storeKey, modRevision) => this.dropPending(storeKey, modRevision),
      forgetApp: (ref, storeKey, deleted) => this.forgetApp(ref, storeKey, deleted),
    });
    this.executor = new Executor(deps, this.observer, (storeKey, said, appUid) => this.say(storeKey, said, appUid));
  }

  /** Why the app's targetRevision names no branch, when a reconcile found that out. */
  targetRefusal(app: { ref: AppRef; source?: { targetRevision?: string } }): { reason: RefusalReason; message: string } | undefined {
    return this.observer.targetRefusal(app);
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
    if (deleted) this.observer.forget(ref);
  }

  /** How many entries the per-app memories hold (tests show they return to where they were once apps are gone). */
  memorySizes(): Record<string, number> {
    return {
      opening: this.executor.openingsUnderWay, waitingSaid: this.waitingSaid.size, heldEvents: this.heldEvents.size,
      targetRefusals: this.observer.refusalsKept, resetRequests: this.resetRequests.size,
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
      const failingEarly = app?.health === 'Progressing' && await this.observer.podSignal(app, this.deps.monitoring(app)?.settings, this.clock());
      if (!app || (app.health !== 'Degraded' && !failingEarly)) {
        this.forgetApp(ref, storeKey, app === undefined);
        return requeue(this.observer.podCheckMs(app));
      }
    }
    try {
      const memo: RoundMemo = {};
      for (let round = 0; round < MAX_ROUNDS; round++) {
        const observed = await this.observer.observe(ref, storeKey, memo);
        if (!observed) return {};
        seen = observed.app;
        latest = observed.facts.record ?? latest;
        let decision = decide(observed.facts);
        if (decision.needs) {
          // decide asked for what only a slower read can tell: read it, then decide again on the same facts.
          await this.observer.observeNeeds(observed, decision.needs);
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
        Object.assign(memo, await this.executor.execute(storeKey, decision.intents, written ?? observed.facts.record!, observed));
      }
      // A degradation being counted needs its next check an interval later, as an active attempt does.
      return requeue(this.nextCheckMs(latest) ?? (counting ? counting.intervalSeconds * 1000 : undefined) ?? this.observer.podCheckMs(seen));
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
      this.executor.forgetFailure(correlationId);
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
