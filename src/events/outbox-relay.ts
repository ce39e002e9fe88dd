// Moves events from the transactional outbox (SPEC §5) to JetStream. An entry is
// removed only after JetStream acknowledged it, so a crash re-publishes rather
// than loses; the re-publish carries the same Nats-Msg-Id and is dropped as a
// duplicate. Entries go out in key order and a failure stops the drain at that
// entry, so events of one attempt are never reordered.
import type { EventBus, EventLog } from './jetstream.ts';
import type { OutboxEntry, OutboxStore } from './types.ts';

export interface OutboxRelayOptions {
  store: OutboxStore;
  bus: EventBus;
  log: EventLog;
  /** Entries read from the store per round trip. */
  batchSize?: number;
}

export class OutboxRelay {
  private readonly store: OutboxStore;
  private readonly bus: EventBus;
  private readonly log: EventLog;
  private readonly batchSize: number;
  private running: Promise<number> | undefined;
  private queued: Promise<number> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(options: OutboxRelayOptions) {
    this.store = options.store;
    this.bus = options.bus;
    this.log = options.log;
    this.batchSize = options.batchSize ?? 100;
  }

  /**
   * Publishes every pending entry; resolves to how many were published.
   * Calls made while a drain runs share one follow-up drain, so two drains
   * never overlap and an entry written meanwhile is still picked up.
   */
  drain(): Promise<number> {
    if (this.running === undefined) {
      this.running = this.drainAll().finally(() => {
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
      published += await this.publishBatch(batch);
      if (batch.length < this.batchSize) return published;
    }
  }

  private async publishBatch(batch: OutboxEntry[]): Promise<number> {
    const acked: string[] = [];
    try {
      for (const entry of batch) {
        const { duplicate } = await this.bus.publish(entry.event);
        acked.push(entry.key);
        this.log.debug('Published event', { key: entry.key, eventId: entry.event.id, correlationId: entry.event.correlationid, type: entry.event.type, duplicate });
      }
    } finally {
      // Even when a later entry failed, the acknowledged prefix is done.
      if (acked.length > 0) await this.store.removeOutbox(acked);
    }
    return acked.length;
  }
}

/** Numeric-aware, so `outbox/10` follows `outbox/9` even without zero padding. */
function inKeyOrder(entries: OutboxEntry[]): OutboxEntry[] {
  return [...entries].sort((a, b) => a.key.localeCompare(b.key, 'en', { numeric: true }));
}
