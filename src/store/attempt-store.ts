// The authoritative state of every rollback attempt, in etcd (SPEC §5).
//
// Every write is one transaction that
//   - compares the attempt's state key mod_revision (compare-and-swap), or, for a
//     new attempt, that the app has no active attempt (so there can never be two);
//   - compares that the writer still holds the leader key (fencing);
//   - writes the transition's events into the outbox, and its audit records into
//     the audit outbox, in the same transaction;
//   - writes the attempt's index key (correlationId → app), so an id is found
//     without a scan.
// Ended attempts (and their index keys) are attached to a lease of the retention
// (ATTEMPT_RETENTION, 7 days by default); the app's `last-rollback` and
// `rolled-back-from/*` keys to one of the retention or the cooldown, whichever is
// longer (src/api/etcd.ts says who owns each key and when it ends).
import { createHash } from 'node:crypto';
import { KEYS } from '../api/etcd.ts';
import { readAuditOutboxEntry, type AuditOutboxEntry, type AuditOutboxStore, type StoredAuditOutboxEntry } from '../audit/outbox.ts';
import type { CloudEvent, DeadLetter, OutboxEntry, OutboxStore } from '../fsm/cloud-events.ts';
import type { AttemptRecord, HealthCheck } from '../fsm/record.ts';
import { attemptEnded, bindAttempt, currentTraceparent, noteWrite, traceCall, traceFields, tracingEnabled, type AttemptFacts } from '../observability/tracing.ts';
import { holdsApp, inProgress } from '../fsm/table.ts';
import type { Compare, KeyValue, KV, Put, Txn, TxnResult } from './kv.ts';

/** The default retention of an ended attempt (ATTEMPT_RETENTION). */
export const RETENTION_SECONDS = 7 * 24 * 3600;

export { KEYS };
export { CorruptRecord } from '../ports/attempt-store.ts';
export type { AppState, AttemptLocation, AttemptWrite, CommitResult, DegradationWrite, Fence, IndexReport, PendingDegradation, StateKey, StoredAttempt } from '../ports/attempt-store.ts';
import { CorruptRecord, type AppState, type AttemptLocation, type AttemptStorePort, type AttemptWrite, type CommitResult, type DegradationWrite, type Fence, type IndexReport, type StateKey, type StoredAttempt } from '../ports/attempt-store.ts';

/** The most of an outbox value a dead letter copies (etcd takes 1.5 MiB per request by default). */
const DEAD_LETTER_VALUE_LIMIT = 64 * 1024;

export class AttemptStore implements AttemptStorePort, OutboxStore, AuditOutboxStore {
  private readonly kv: KV;
  private fence: () => Fence | undefined;
  private outboxCounter = 0;
  private readonly now: () => number;
  private indexedTerm?: string;
  private indexing?: Promise<IndexReport>;
  /** How long an ended attempt's keys live (ATTEMPT_RETENTION). */
  readonly retentionSeconds: number;

  /**
   * `fence` returns the current leadership proof, or undefined when leader election is off; `now` (ms) orders
   * the outbox; `retentionSeconds` is the lease of an ended attempt's keys.
   */
  constructor(kv: KV, fence: () => Fence | undefined = () => undefined, now: () => number = () => Date.now(), retentionSeconds = RETENTION_SECONDS) {
    this.kv = kv;
    this.fence = fence;
    this.now = now;
    this.retentionSeconds = retentionSeconds;
  }

  async loadApp(appKey: string): Promise<AppState> {
    const [active, lastRollback, rolledBack, health, starts] = await Promise.all([
      this.kv.get(KEYS.active(appKey)),
      this.kv.get(KEYS.lastRollback(appKey)),
      this.kv.getPrefix(KEYS.rolledBackFrom(appKey, '')),
      this.kv.get(KEYS.health(appKey)),
      this.kv.get(KEYS.attemptStarts(appKey)),
    ]);
    const state: AppState = {
      rolledBackFrom: rolledBack.map((kv) => kv.key.slice(KEYS.rolledBackFrom(appKey, '').length)),
      attemptStarts: starts ? startTimes(starts) : [],
      ...(lastRollback ? { lastRollbackAt: lastRollback.value } : {}),
    };
    if (active) {
      const stored = await this.getAttempt(appKey, active.value);
      if (stored) state.active = stored;
    } else if (health) {
      const history = parseStored<{ correlationId: string; checks: HealthCheck[] }>(health);
      state.pending = { ...history, modRevision: health.modRevision };
    }
    // The reconcile reading this is about that attempt (or that degradation being counted): its span starts.
    if (!tracingEnabled()) return state;
    if (state.active) bindAttempt(state.active.record.correlationId, attemptFacts(state.active.record));
    else if (state.pending) bindAttempt(state.pending.correlationId, { state: 'Idle', app: appKey, ...(state.pending.checks[0] ? { firstSeenAt: state.pending.checks[0].at } : {}) });
    return state;
  }

  async getAttempt(appKey: string, correlationId: string): Promise<StoredAttempt | undefined> {
    const [state, attempt, health] = await Promise.all([
      this.kv.get(KEYS.state(appKey, correlationId)),
      this.kv.get(KEYS.attempt(appKey, correlationId)),
      this.kv.get(KEYS.health(appKey)),
    ]);
    if (!state || !attempt) return undefined;
    const history = health ? parseStored<{ correlationId: string; checks: HealthCheck[] }>(health) : undefined;
    return {
      record: parseStored<AttemptRecord>(attempt),
      checks: history?.correlationId === correlationId ? history.checks : [],
      modRevision: state.modRevision,
    };
  }

  /**
   * Where the attempt with this correlationId is: one read of its index key,
   * never a scan. An attempt written before the index existed has no index key
   * until indexUnindexed() adds it.
   */
  async locateAttempt(correlationId: string): Promise<AttemptLocation | undefined> {
    const kv = await this.kv.get(KEYS.attemptIndex(correlationId));
    return kv ? parseStored<AttemptLocation>(kv) : undefined;
  }

  /**
   * Whether indexUnindexed() has completed in this leadership term (the fence's
   * create revision): from then on every attempt has its index key, since a
   * leader's writes all write it and a deposed writer is fenced out.
   */
  get indexComplete(): boolean {
    return this.indexedTerm !== undefined && this.indexedTerm === this.term();
  }

  /**
   * Writes the index key of every attempt that has none (written by a version
   * before the index), on the attempt's own lease, so it ends with the record.
   * Reads every attempt record: callers run it once per leadership term, on a
   * miss, for a caller already authorized. Returns the keys it indexed and the
   * records it could not read (left without an index key: a person repairs them).
   */
  indexUnindexed(): Promise<IndexReport> {
    this.indexing ??= this.runIndexing().finally(() => { this.indexing = undefined; });
    return this.indexing;
  }

  private async runIndexing(): Promise<IndexReport> {
    const term = this.term();
    const [records, index] = await Promise.all([this.kv.getPrefix(KEYS.rollbackPrefix), this.kv.getPrefix(KEYS.attemptIndexPrefix)]);
    const indexed = new Set(index.map((kv) => kv.key.slice(KEYS.attemptIndexPrefix.length)));
    const report: IndexReport = { indexed: [], unreadable: [] };
    for (const kv of records) {
      const match = /^(.+)\/([^/]+)\/attempt$/.exec(kv.key.slice(KEYS.rollbackPrefix.length));
      if (!match || indexed.has(match[2]!)) continue;
      const [, appKey, cid] = match as unknown as [string, string, string];
      let namespace: unknown;
      try {
        namespace = parseStored<Partial<AttemptRecord>>(kv).app?.namespace;
      } catch (error) {
        if (!(error instanceof CorruptRecord)) throw error;
      }
      if (typeof namespace !== 'string') {
        report.unreadable.push(kv.key);
        continue;
      }
      const location: AttemptLocation = { appKey, namespace };
      // Only if the record is still the one read (a lease that expired since took it, and the lease, away).
      const result = await this.kv.txn({
        compares: [{ key: kv.key, target: 'mod', equals: kv.modRevision }, { key: KEYS.attemptIndex(cid), target: 'absent' }],
        puts: [{ key: KEYS.attemptIndex(cid), value: JSON.stringify(location), ...(kv.lease ? { lease: kv.lease } : {}) }],
        deletes: [],
      });
      if (result.succeeded) report.indexed.push(KEYS.attemptIndex(cid));
    }
    this.indexedTerm = term;
    return report;
  }

  private term(): string {
    return this.fence()?.createRevision ?? 'unfenced';
  }

  /** The attempt's state key alone (the seed's runbook key): a small read, for the gauges. */
  async getState(appKey: string, correlationId: string): Promise<StateKey | undefined> {
    const state = await this.kv.get(KEYS.state(appKey, correlationId));
    return state ? parseStored<StateKey>(state) : undefined;
  }

  /** The app's active correlationId, if it has one. */
  async activeId(appKey: string): Promise<string | undefined> {
    return (await this.kv.get(KEYS.active(appKey)))?.value;
  }

  /** Every app with an active attempt (aborted ones included), for resync. */
  async activeAttempts(): Promise<Array<{ appKey: string; correlationId: string }>> {
    return (await this.appsWithState()).active;
  }

  /** Apps with an active attempt, and apps whose degradation is being counted before any attempt. */
  async appsWithState(): Promise<{ active: Array<{ appKey: string; correlationId: string }>; pending: string[] }> {
    // Keys only: the apps index holds every app's rollback memory and health history, and only the few active
    // keys' values (a correlationId each) are needed.
    const keys = await this.kv.getKeys(KEYS.appsPrefix);
    const appOf = (key: string, leaf: string) => key.slice(KEYS.appsPrefix.length, -leaf.length);
    const active = await Promise.all(keys.filter((key) => key.endsWith('/active')).map(async (key) => {
      const kv = await this.kv.get(key);
      return kv ? { appKey: appOf(key, '/active'), correlationId: kv.value } : undefined;
    }));
    return {
      active: active.filter((a) => a !== undefined),
      pending: keys.filter((key) => key.endsWith('/health')).map((key) => appOf(key, '/health')),
    };
  }

  /** Every stored attempt record, newest writes included, for the RollbackAttempt projection. */
  async allAttempts(): Promise<AttemptRecord[]> {
    const all = await this.kv.getPrefix(KEYS.rollbackPrefix);
    return all.filter((kv) => kv.key.endsWith('/attempt')).map((kv) => parseStored<AttemptRecord>(kv));
  }

  async commit(write: AttemptWrite): Promise<CommitResult> {
    const { appKey, record } = write;
    const cid = record.correlationId;
    // Bound already when the reconcile read it; else a new attempt, counted by no reconcile before.
    if (tracingEnabled()) bindAttempt(cid, attemptFacts(record, 'Idle', false));
    const fence = this.fence();
    const compares: Compare[] = [];
    if (write.expectedModRevision === null) {
      compares.push({ key: KEYS.active(appKey), target: 'absent' }, { key: KEYS.state(appKey, cid), target: 'absent' });
    } else {
      compares.push({ key: KEYS.state(appKey, cid), target: 'mod', equals: write.expectedModRevision });
    }
    if (fence) compares.push({ key: fence.key, target: 'create', equals: fence.createRevision });

    const ended = !holdsApp(record.state) || write.release === true;
    const lease = ended ? await this.kv.grantLease(this.retentionSeconds) : undefined;
    const leased = lease ? { lease: lease.id } : {};
    const state: StateKey = { state: record.state, since: record.since, reason: record.reason, version: record.version };
    const puts: Put[] = [
      { key: KEYS.state(appKey, cid), value: JSON.stringify(state), ...leased },
      { key: KEYS.attempt(appKey, cid), value: JSON.stringify(record), ...leased },
      // The index lives exactly as long as the record: written with it, on its lease.
      { key: KEYS.attemptIndex(cid), value: JSON.stringify({ appKey, namespace: record.app.namespace } satisfies AttemptLocation), ...leased },
      ...this.eventPuts(write.events),
    ];
    const auditKey = this.auditPut(write.audit, puts);
    const deletes: string[] = [];
    if (ended) {
      deletes.push(KEYS.active(appKey), KEYS.health(appKey));
    } else {
      if (write.expectedModRevision === null) puts.push({ key: KEYS.active(appKey), value: cid });
      if (write.checks) puts.push({ key: KEYS.health(appKey), value: JSON.stringify({ correlationId: cid, checks: write.checks }) });
    }
    // The app's rollback memory outlives the attempt by as long as it is needed: the cooldown (last-rollback),
    // and the retention (what was rolled back from is never chosen again while the attempt that learnt it is kept).
    const remembers = write.app?.lastRollbackAt || write.app?.rolledBackFrom;
    const memoryLease = remembers ? await this.kv.grantLease(Math.max(this.retentionSeconds, write.app?.cooldownSeconds ?? 0)) : undefined;
    if (write.app?.lastRollbackAt) puts.push({ key: KEYS.lastRollback(appKey), value: write.app.lastRollbackAt, lease: memoryLease!.id });
    if (write.app?.rolledBackFrom) puts.push({ key: KEYS.rolledBackFrom(appKey, write.app.rolledBackFrom), value: cid, lease: memoryLease!.id });
    // The count of the hour's attempts ends an hour after the last one started, or at a reset.
    const starts = write.app?.attemptStarts;
    const startsLease = starts?.length ? await this.kv.grantLease(3600) : undefined;
    if (starts?.length) puts.push({ key: KEYS.attemptStarts(appKey), value: JSON.stringify(starts), lease: startsLease!.id });
    else if (starts) deletes.push(KEYS.attemptStarts(appKey));

    const result = await this.tracedTxn('commitAttempt', { compares, puts, deletes });
    if (result.succeeded) {
      if (tracingEnabled()) this.traceWrite(record);
      // The new state key's mod_revision is the transaction's revision.
      return { ok: true, modRevision: result.revision, ...(auditKey ? { auditKey } : {}) };
    }
    if (lease) await lease.revoke();
    if (memoryLease) await memoryLease.revoke();
    if (startsLease) await startsLease.revoke();
    return this.refusal(fence);
  }

  /** Why a fenced compare-and-swap failed: leadership moved, or someone wrote first. */
  private async refusal(fence: Fence | undefined): Promise<CommitResult> {
    if (fence) {
      const leader = await this.kv.get(fence.key);
      if (leader?.createRevision !== fence.createRevision) return { ok: false, reason: 'fenced' };
    }
    return { ok: false, reason: 'conflict' };
  }

  /** Writes or clears the health key of an app without an attempt, with its events, fenced like commit(). */
  async commitDegradation(write: DegradationWrite): Promise<CommitResult> {
    const { appKey } = write;
    if (write.degradation && tracingEnabled()) bindAttempt(write.degradation.correlationId, { state: 'Idle', app: appKey, ...(write.degradation.checks[0] ? { firstSeenAt: write.degradation.checks[0].at } : {}) });
    const fence = this.fence();
    const compares: Compare[] = [
      // An attempt that started meanwhile owns the health key now.
      { key: KEYS.active(appKey), target: 'absent' },
      write.expectedModRevision === null
        ? { key: KEYS.health(appKey), target: 'absent' }
        : { key: KEYS.health(appKey), target: 'mod', equals: write.expectedModRevision },
    ];
    if (fence) compares.push({ key: fence.key, target: 'create', equals: fence.createRevision });
    const puts: Put[] = this.eventPuts(write.events);
    const auditKey = this.auditPut(write.audit, puts);
    const deletes: string[] = [];
    if (write.degradation) puts.push({ key: KEYS.health(appKey), value: JSON.stringify(write.degradation) });
    else deletes.push(KEYS.health(appKey));
    const result = await this.tracedTxn('commitDegradation', { compares, puts, deletes });
    if (!result.succeeded) return this.refusal(fence);
    // The count ended without an attempt (health left Degraded): its trace's root span.
    const cleared = tracingEnabled() ? write.events.find((e) => e.type === 'io.ai-operator.degradation.cleared') : undefined;
    if (cleared) attemptEnded(cleared.correlationid, { state: 'Idle', reason: 'TransientDegradation', app: appKey });
    return { ok: true, modRevision: result.revision, ...(auditKey ? { auditKey } : {}) };
  }

  async pendingOutbox(limit: number): Promise<OutboxEntry[]> {
    const entries = await this.kv.getPrefix(KEYS.outboxPrefix, limit);
    return entries.map((kv): OutboxEntry => {
      // One unreadable value must not fail the whole read: the relay moves it aside.
      try {
        return { key: kv.key, event: JSON.parse(kv.value) as CloudEvent, raw: kv.value, modRevision: kv.modRevision };
      } catch (err) {
        return { key: kv.key, event: undefined, raw: kv.value, unreadable: `value: not JSON (${err instanceof Error ? err.message : String(err)})`, modRevision: kv.modRevision };
      }
    });
  }

  async removeOutbox(keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    await this.kv.txn({ compares: [], puts: [], deletes: keys });
  }

  async pendingAuditOutbox(chainId: string | undefined, limit: number): Promise<StoredAuditOutboxEntry[]> {
    const entries = await this.kv.getPrefix(`${KEYS.auditOutboxPrefix}${chainId === undefined ? '' : `${chainId}/`}`, limit);
    return entries.map((kv): StoredAuditOutboxEntry => ({ key: kv.key, modRevision: kv.modRevision, raw: kv.value, ...readAuditOutboxEntry(kv.value) }));
  }

  async removeAuditOutbox(entry: Pick<StoredAuditOutboxEntry, 'key' | 'modRevision'>): Promise<boolean> {
    const result = await this.kv.txn({ compares: [{ key: entry.key, target: 'mod', equals: entry.modRevision }], puts: [], deletes: [entry.key] });
    return result.succeeded;
  }

  /** Adds the audit outbox put of a write; its key, time-ordered within its chain. */
  private auditPut(audit: AttemptWrite['audit'], puts: Put[]): string | undefined {
    if (!audit || audit.entry.records.length === 0) return undefined;
    const key = `${KEYS.auditOutboxPrefix}${audit.entry.chainId}/${this.orderedSuffix(audit.id)}`;
    // The records name the reconcile span that wrote them, also when another drain records them later.
    const trace = traceFields();
    const entry = trace ? { ...audit.entry, records: audit.entry.records.map((r) => ({ ...trace, ...r })) } : audit.entry;
    puts.push({ key, value: JSON.stringify(entry) });
    return key;
  }

  /** The outbox puts of a write's events, each carrying the traceparent of the reconcile that wrote it (CloudEvents distributed tracing). */
  private eventPuts(events: CloudEvent[]): Put[] {
    const traceparent = currentTraceparent();
    return events.map((event) => ({ key: this.outboxKey(event), value: JSON.stringify(traceparent && !event.traceparent ? { ...event, traceparent } : event) }));
  }

  /** A committed write on the reconcile's span: its transition, its invariants, and the attempt's root span once it is over. */
  private traceWrite(record: AttemptRecord): void {
    const last = record.transitions?.at(-1);
    const moved = noteWrite(record.correlationId, { ...(last ? { last } : {}), invariants: record.invariants ?? [] });
    // Out of progress by this write: the attempt's root span is emitted (once: the transition is this write's).
    if (moved && last && inProgress(last.from) && !inProgress(last.to)) {
      attemptEnded(record.correlationId, {
        state: record.state, reason: record.reason, app: `${record.app.namespace}/${record.app.name}`, environment: record.environment,
        ...(record.degradation?.firstSeenAt ? { firstSeenAt: record.degradation.firstSeenAt } : {}),
      });
    }
  }

  /** A write's etcd transaction, as a span of the reconcile in progress (`call_name` commitAttempt or commitDegradation). */
  private tracedTxn(name: string, txn: Txn): Promise<TxnResult> {
    return traceCall(name, async () => {
      const result = await this.kv.txn(txn);
      return result;
    }, { attributes: { 'db.system.name': 'etcd', 'db.operation.name': 'txn' } });
  }

  async deadLetterOutbox(letter: DeadLetter): Promise<string | undefined> {
    return this.moveAside(letter, KEYS.outboxPrefix, KEYS.outboxDeadPrefix);
  }

  async deadLetterAuditOutbox(letter: DeadLetter): Promise<string | undefined> {
    return this.moveAside(letter, KEYS.auditOutboxPrefix, KEYS.auditOutboxDeadPrefix);
  }

  /** Moves an entry that can never be used from `from` to the same suffix under `to`, with why. */
  private async moveAside(letter: DeadLetter, from: string, to: string): Promise<string | undefined> {
    if (!letter.key.startsWith(from)) throw new Error(`not a key under ${from}: ${letter.key}`);
    const deadKey = `${to}${letter.key.slice(from.length)}`;
    // A value too large to publish may be too large to copy in one etcd request: keep its start and its hash.
    const kept = letter.raw.length <= DEAD_LETTER_VALUE_LIMIT ? { value: letter.raw }
      : { excerpt: letter.raw.slice(0, DEAD_LETTER_VALUE_LIMIT), size: letter.raw.length, sha256: createHash('sha256').update(letter.raw).digest('hex') };
    const value = JSON.stringify({ outboxKey: letter.key, reason: letter.reason, deadLetteredAt: letter.at, ...kept });
    // Comparing the revision (or the value) keeps two drains from both moving it (and counting it twice).
    const result = await this.kv.txn({
      compares: [letter.modRevision ? { key: letter.key, target: 'mod', equals: letter.modRevision } : { key: letter.key, target: 'value', equals: letter.raw }],
      puts: [{ key: deadKey, value }],
      deletes: [letter.key],
    });
    return result.succeeded ? deadKey : undefined;
  }

  // Time-ordered, so the relay publishes in commit order; the counter orders
  // events of one transaction, the event id makes the key unique across replicas.
  private outboxKey(event: CloudEvent): string {
    return `${KEYS.outboxPrefix}${this.orderedSuffix(event.id)}`;
  }

  /** `{ms}-{seq}-{id}`: sorts in write order (the event and the audit outbox drain in key order). */
  private orderedSuffix(id: string): string {
    const seq = (this.outboxCounter++ % 1_000_000).toString().padStart(6, '0');
    return `${this.now().toString().padStart(15, '0')}-${seq}-${id}`;
  }
}

/** The hour's attempt starts; a value that is not a list of times counts none, rather than wedge the app's reconcile. */
function startTimes(kv: KeyValue): string[] {
  let value: unknown;
  try {
    value = JSON.parse(kv.value);
  } catch {
    return [];
  }
  return Array.isArray(value) ? value.filter((at): at is string => typeof at === 'string' && !Number.isNaN(Date.parse(at))) : [];
}

/** What the span of a reconcile about this attempt says of it. */
function attemptFacts(record: AttemptRecord, state: string = record.state, read = true): AttemptFacts {
  const last = read ? record.transitions?.at(-1) : undefined;
  return {
    state, app: `${record.app.namespace}/${record.app.name}`, environment: record.environment,
    ...(last ? { last } : {}), ...(record.degradation?.firstSeenAt ? { firstSeenAt: record.degradation.firstSeenAt } : {}),
  };
}

function parseStored<T>(kv: { key: string; value: string }): T {
  try {
    return JSON.parse(kv.value) as T;
  } catch (err) {
    throw new CorruptRecord(kv.key, err);
  }
}
