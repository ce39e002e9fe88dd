// Moves events from the transactional outbox (SPEC §5) to JetStream. An entry is
// removed only after JetStream acknowledged it, so a crash re-publishes rather
// than loses; the re-publish carries the same Nats-Msg-Id and is dropped as a
// duplicate. Entries go out in key order and a transient failure stops the drain
// at that entry, so events of one attempt are never reordered.
//
// An entry that can never be published — its event fails its schema, or the
// stored value is not JSON — would stop every later event of every app for
// good (it lives in etcd, so a restart does not help). It is moved aside to a
// dead letter instead, audited, counted and logged, and the drain goes on.
import type { AuditLog } from '../audit/audit-log.ts';
import type { Metrics } from '../observability/metrics.ts';
import { untraced } from '../observability/tracing.ts';
import { InvalidEventError, type EventBus, type EventLog } from './jetstream.ts';
import { eventTypeOf, type OutboxEntry, type OutboxStore } from '../fsm/cloud-events.ts';

export interface OutboxRelayOptions {
  store: OutboxStore;
  bus: EventBus;
  log: EventLog;
  metrics: Pick<Metrics, 'outboxDeadLettered' | 'setOutboxPending'>;
  audit: Pick<AuditLog, 'record'>;
  /** Entries read from the store per round trip. */
  batchSize?: number;
  now?: () => Date;
}

export class OutboxRelay {
  private readonly store: OutboxStore;
  private readonly bus: EventBus;
  private readonly log: EventLog;
  private readonly metrics: OutboxRelayOptions['metrics'];
  private readonly audit: OutboxRelayOptions['audit'];
  private readonly batchSize: number;
  private readonly now: () => Date;
  private running: Promise<number> | undefined;
  private queued: Promise<number> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(options: OutboxRelayOptions) {
    this.store = options.store;
    this.bus = options.bus;
    this.log = options.log;
    this.metrics = options.metrics;
    this.audit = options.audit;
    this.batchSize = options.batchSize ?? 100;
    this.now = options.now ?? (() => new Date());
  }

  /**
   * Publishes every pending entry; resolves to how many were published (dead
   * letters are not counted).
   * Calls made while a drain runs share one follow-up drain, so two drains
   * never overlap and an entry written meanwhile is still picked up.
   */
  drain(): Promise<number> {
    if (this.running === undefined) {
      // A drain a reconcile woke belongs to no attempt: each publish is traced under its own event's traceparent.
      this.running = untraced(() => this.drainAll()).finally(() => {
        this.running = undefined;
      });
      return this.running;
    }
    if (this.queued === undefined) {
      const next = () => {
        this.queued = undefined;
        return this.drain();
      };
      this.queued = this.running.then(next, next);
    }
    return this.queued;
  }

  /** Drains now and then every intervalMs until stop(). */
  start(intervalMs: number): void {
    if (this.timer !== undefined) return;
    this.stopped = false;
    this.timer = setInterval(() => this.wake(), intervalMs);
    this.wake();
  }

  /** Asks for a drain soon (e.g. right after a transition wrote to the outbox). */
  wake(): void {
    if (this.stopped) return;
    this.drain().catch((err: unknown) => {
      // Left in the outbox; the next tick or wake retries.
      this.log.warn('Failed to drain outbox; will retry', { error: err instanceof Error ? err.message : String(err) });
    });
  }

  /** Stops the timer and waits for a drain in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
    // Failures were already logged by wake(); only completion matters here.
    await Promise.allSettled([this.running, this.queued]);
  }

  private async drainAll(): Promise<number> {
    let published = 0;
    for (;;) {
      const batch = inKeyOrder(await this.store.pendingOutbox(this.batchSize));
      published += await this.relayBatch(batch);
      if (batch.length < this.batchSize) {
        this.metrics.setOutboxPending(0);
        return published;
      }
    }
  }

  private async relayBatch(batch: OutboxEntry[]): Promise<number> {
    const acked: string[] = [];
    let settled = 0;
    try {
      for (const entry of batch) {
        if (entry.event === undefined) {
          await this.deadLetter(entry, entry.unreadable);
        } else {
          let duplicate: boolean;
          try {
            ({ duplicate } = await this.bus.publish(entry.event));
          } catch (err) {
            // Only a rejection by the schema is permanent; anything else (NATS down,
            // a timeout) stops the drain here and the entry is retried in order.
            if (!(err instanceof InvalidEventError)) throw err;
            await this.deadLetter(entry, err.errors);
            settled++;
            continue;
          }
          acked.push(entry.key);
          this.log.debug('Published event', { key: entry.key, eventId: entry.event.id, correlationId: entry.event.correlationid, type: entry.event.type, duplicate });
        }
        settled++;
      }
    } catch (err) {
      this.metrics.setOutboxPending(batch.length - settled);
      throw err;
    } finally {
      // Even when a later entry failed, the acknowledged prefix is done.
      if (acked.length > 0) await this.store.removeOutbox(acked);
    }
    return acked.length;
  }

  /**
   * Audits first (with an id derived from the key, so a retry records nothing
   * new), then moves the entry: the record must exist before the entry leaves
   * the outbox. A failure here stops the drain like any store failure.
   */
  private async deadLetter(entry: OutboxEntry, reason: string): Promise<void> {
    const raw = entry.raw ?? JSON.stringify(entry.event);
    const seen: unknown = entry.event;
    const eventId = field(seen, 'id');
    const correlationId = field(seen, 'correlationid');
    const type = eventTypeOf(field(seen, 'type')) ?? 'unknown';
    const subject = field(seen, 'subject');
    const at = this.now().toISOString();
    await this.audit.record({
      level: 'WARN',
      module: 'EventBus',
      actionType: 'EVENT_DEAD_LETTERED',
      ...(correlationId ? { correlationId } : {}),
      message: `Moved outbox entry ${entry.key} to the dead letters: it can never be published`,
      reasoning: reason,
      metadata: { outboxKey: entry.key, type, ...(eventId ? { eventId } : {}), ...(subject ? { appName: subject } : {}) },
      eventId: `dead-letter:${entry.key}`,
    });
    const deadKey = await this.store.deadLetterOutbox({ key: entry.key, raw, reason, at, ...(entry.modRevision ? { modRevision: entry.modRevision } : {}) });
    // Gone already: another drain moved (and counted) it.
    if (deadKey === undefined) return;
    this.metrics.outboxDeadLettered(type);
    this.log.warn('Moved outbox entry to the dead letters', { key: entry.key, deadLetterKey: deadKey, eventId, correlationId, type, reason });
  }
}

/** A string attribute of whatever was stored, which need not be an event at all. */
function field(value: unknown, name: string): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const found = (value as Record<string, unknown>)[name];
  return typeof found === 'string' && found !== '' ? found : undefined;
}

/** Numeric-aware, so `outbox/10` follows `outbox/9` even without zero padding. */
function inKeyOrder(entries: OutboxEntry[]): OutboxEntry[] {
  return [...entries].sort((a, b) => a.key.localeCompare(b.key, 'en', { numeric: true }));
}
