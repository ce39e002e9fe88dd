import { afterEach, describe, expect, it, vi } from 'vitest';
import { ChainedAuditLog } from '../audit/audit-log.ts';
import type { AuditRecord } from '../audit/record.ts';
import { METRIC, Metrics } from '../observability/metrics.ts';
import { AttemptStore, KEYS } from '../store/attempt-store.ts';
import { MemoryKV } from '../store/memory.ts';
import { exampleEvent } from './examples.ts';
import { IntegrationError } from '../ports/errors.ts';
import { InvalidEventError, type EventBus } from './jetstream.ts';
import { OutboxRelay } from './outbox-relay.ts';
import { EVENT_TYPES, type CloudEvent, type DeadLetter, type OutboxEntry, type OutboxStore } from '../fsm/cloud-events.ts';
import { validateEvent } from './validate.ts';

class MemoryOutbox implements OutboxStore {
  readonly entries = new Map<string, CloudEvent>();
  readonly dead: DeadLetter[] = [];
  failReads = 0;
  pendingOutbox = vi.fn(async (limit: number): Promise<OutboxEntry[]> => {
    if (this.failReads > 0 && this.failReads--) throw new Error('etcd unavailable');
    return [...this.entries.keys()].sort().slice(0, limit).map((key) => ({ key, event: this.entries.get(key)! }));
  });
  removeOutbox = vi.fn(async (keys: string[]) => {
    for (const key of keys) this.entries.delete(key);
  });
  deadLetterOutbox = vi.fn(async (letter: DeadLetter) => {
    if (!this.entries.delete(letter.key)) return undefined;
    this.dead.push(letter);
    return `dead:${letter.key}`;
  });
}

/** The metrics and audit log a relay reports dead letters to, real and in memory. */
function observers() {
  const records: AuditRecord[] = [];
  const metrics = new Metrics();
  const audit = new ChainedAuditLog({ sink: { name: 'memory', write: async (batch) => { records.push(...batch); } } });
  const series = async () => (await metrics.registry.getSingleMetric(METRIC.outboxDeadLetters)!.get()).values.map((v) => ({ type: v.labels.type, value: v.value }));
  const deadLetters = async () => (await series()).filter((s) => s.value > 0);
  const pending = async () => (await metrics.registry.getSingleMetric(METRIC.outboxPending)!.get()).values[0]?.value;
  return { metrics, audit, records, series, deadLetters, pending };
}

/** Records what was published; publish number `failAt` (1-based) fails once. */
class FakeBus implements EventBus {
  readonly published: string[] = [];
  failAt: number | undefined;
  calls = 0;
  inFlight = 0;
  maxInFlight = 0;
  gate: Promise<void> | undefined;
  async publish(event: CloudEvent) {
    this.calls++;
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await this.gate;
      if (this.calls === this.failAt) throw new Error('nats: timeout');
      const duplicate = this.published.includes(event.id);
      if (!duplicate) this.published.push(event.id);
      return { duplicate };
    } finally {
      this.inFlight--;
    }
  }
  async close() {}
}

const log = { debug: vi.fn(), info: vi.fn(), warn: vi.fn(), error: vi.fn() };

/**
 * A bus that refuses what JetStreamBus refuses: it validates against schemas/
 * and throws InvalidEventError; publish number `failAt` fails as NATS does when down.
 */
class ValidatingBus implements EventBus {
  readonly published: string[] = [];
  failAt: number | undefined;
  calls = 0;
  async publish(event: CloudEvent) {
    this.calls++;
    const validation = validateEvent(event);
    if (!validation.ok) throw new InvalidEventError('publish', validation.errors);
    if (this.calls === this.failAt) throw new IntegrationError('publish', 'UNAVAILABLE', 'connection refused (no stream for the subject)');
    this.published.push(event.id);
    return { duplicate: false };
  }
  async close() {}
}

/** The real AttemptStore over the in-memory KV, with entries put straight into the outbox. */
function etcdOutbox() {
  const kv = new MemoryKV();
  const store = new AttemptStore(kv);
  let seq = 0;
  const keys: string[] = [];
  const put = async (value: CloudEvent | string) => {
    const key = `${KEYS.outboxPrefix}000001772188200${String(seq++).padStart(3, '0')}-000000`;
    await kv.txn({ compares: [], puts: [{ key, value: typeof value === 'string' ? value : JSON.stringify(value) }], deletes: [] });
    keys.push(key);
    return key;
  };
  const deadLetter = async (key: string) => {
    const found = await kv.get(`${KEYS.outboxDeadPrefix}${key.slice(KEYS.outboxPrefix.length)}`);
    return found && (JSON.parse(found.value) as { outboxKey: string; reason: string; deadLetteredAt: string; value: string });
  };
  const remaining = async () => (await kv.getPrefix(KEYS.outboxPrefix)).map((e) => e.key);
  return { kv, store, put, keys, deadLetter, remaining };
}

/** The field-level fault seen in the field: a Degraded app without status.sync.revision. */
function withoutRevision(id: string): CloudEvent {
  const event = structuredClone(exampleEvent('degradation.detected', { id, correlationId: '0b9f6a4e-3c2d-4e1f-8a7b-6c5d4e3f2a1b' }));
  event.data.revision = '';
  return event;
}

const at = new Date('2026-02-27T10:30:00.000Z');

function fill(store: MemoryOutbox, count: number): string[] {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const id = `event-${i}`;
    store.entries.set(`/ai-operator/outbox/${String(i).padStart(8, '0')}`, exampleEvent(EVENT_TYPES[i % EVENT_TYPES.length]!, { id }));
    ids.push(id);
  }
  return ids;
}

afterEach(() => {
  vi.useRealTimers();
  vi.clearAllMocks();
});

describe('OutboxRelay.drain', () => {
  it('publishes pending entries in key order and removes them', async () => {
    const store = new MemoryOutbox();
    const bus = new FakeBus();
    const ids = fill(store, 7);
    const relay = new OutboxRelay({ store, bus, log, ...observers(), batchSize: 3 });
    expect(await relay.drain()).toBe(7);
    expect(bus.published).toEqual(ids);
    expect(store.entries.size).toBe(0);
  });

  it('orders unpadded sequence keys numerically', async () => {
    const store = new MemoryOutbox();
    const bus = new FakeBus();
    for (const seq of [10, 9, 100, 2]) store.entries.set(`/ai-operator/outbox/${seq}`, exampleEvent('fsm.transition', { id: `seq-${seq}` }));
    await new OutboxRelay({ store, bus, log, ...observers() }).drain();
    expect(bus.published).toEqual(['seq-2', 'seq-9', 'seq-10', 'seq-100']);
  });

  it('on a publish failure keeps that entry and every later one, in order, for the next drain', async () => {
    const store = new MemoryOutbox();
    const bus = new FakeBus();
    const ids = fill(store, 6);
    bus.failAt = 4;
    const relay = new OutboxRelay({ store, bus, log, ...observers() });
    await expect(relay.drain()).rejects.toThrow('nats: timeout');
    expect(bus.published).toEqual(ids.slice(0, 3));
    expect([...store.entries.values()].map((e) => e.id)).toEqual(ids.slice(3));

    expect(await relay.drain()).toBe(3);
    expect(bus.published).toEqual(ids);
    expect(store.entries.size).toBe(0);
  });

  it('removes nothing before the bus acknowledged it', async () => {
    const store = new MemoryOutbox();
    const bus = new FakeBus();
    fill(store, 2);
    let release!: () => void;
    bus.gate = new Promise((resolve) => (release = resolve));
    const draining = new OutboxRelay({ store, bus, log, ...observers() }).drain();
    await vi.waitFor(() => expect(bus.inFlight).toBe(1));
    expect(store.removeOutbox).not.toHaveBeenCalled();
    expect(store.entries.size).toBe(2);
    release();
    await draining;
    expect(store.entries.size).toBe(0);
  });

  it('re-publishes (and the bus deduplicates) when removal failed after the ack', async () => {
    const store = new MemoryOutbox();
    const bus = new FakeBus();
    const ids = fill(store, 2);
    store.removeOutbox.mockRejectedValueOnce(new Error('crashed before removal'));
    const relay = new OutboxRelay({ store, bus, log, ...observers() });
    await expect(relay.drain()).rejects.toThrow('crashed before removal');
    expect(store.entries.size).toBe(2);
    await relay.drain();
    expect(bus.calls).toBe(4);
    expect(bus.published).toEqual(ids);
    expect(store.entries.size).toBe(0);
  });

  it('never runs two drains at once and coalesces calls made during one', async () => {
    const store = new MemoryOutbox();
    const bus = new FakeBus();
    fill(store, 3);
    let release!: () => void;
    bus.gate = new Promise((resolve) => (release = resolve));
    const relay = new OutboxRelay({ store, bus, log, ...observers() });
    const first = relay.drain();
    await vi.waitFor(() => expect(bus.inFlight).toBe(1));
    const followers = [relay.drain(), relay.drain(), relay.drain()];
    expect(followers[1]).toBe(followers[0]);
    expect(followers[2]).toBe(followers[0]);
    // Written while the first drain runs: the follow-up drain picks it up.
    store.entries.set('/ai-operator/outbox/99999999', exampleEvent('pr.merged', { id: 'late' }));
    release();
    expect(await first).toBe(3);
    expect(await followers[0]).toBe(1);
    expect(bus.maxInFlight).toBe(1);
    expect(store.pendingOutbox).toHaveBeenCalledTimes(2);
    expect(bus.published.at(-1)).toBe('late');
  });
});

describe('OutboxRelay dead letters', () => {
  it('exports the dead-letter counter at 0 for every event type before any, so the alert\'s increase() sees the first one', async () => {
    const seen = observers();
    expect(await seen.series()).toEqual([...EVENT_TYPES, 'unknown'].map((type) => ({ type, value: 0 })));
  });

  it('moves a schema-invalid entry in the middle of a batch aside with the reason, and publishes the entries after it', async () => {
    // Given an outbox where the third of five entries fails its schema
    const outbox = etcdOutbox();
    const bus = new ValidatingBus();
    const seen = observers();
    const valid = ['pr.created', 'ci.completed', 'pr.merged', 'rollback.completed'].map((type, i) => exampleEvent(type as 'pr.created', { id: `valid-${i}` }));
    await outbox.put(valid[0]!);
    await outbox.put(valid[1]!);
    const badKey = await outbox.put(withoutRevision('bad-1'));
    const badRaw = (await outbox.kv.get(badKey))!.value;
    await outbox.put(valid[2]!);
    await outbox.put(valid[3]!);

    // When the relay drains it
    const relay = new OutboxRelay({ store: outbox.store, bus, log, ...seen, now: () => at });
    expect(await relay.drain()).toBe(4);

    // Then every valid entry went out, in order, and the outbox is empty
    expect(bus.published).toEqual(valid.map((e) => e.id));
    expect(await outbox.remaining()).toEqual([]);
    // And the bad one sits in its dead letter, exactly as stored, with the field named
    expect(await outbox.deadLetter(badKey)).toEqual({
      outboxKey: badKey, reason: 'data.revision: must NOT have fewer than 1 characters', deadLetteredAt: at.toISOString(), value: badRaw,
    });
    // And it is counted, audited under its attempt, and logged
    expect(await seen.deadLetters()).toEqual([{ type: 'degradation.detected', value: 1 }]);
    expect(await seen.pending()).toBe(0);
    expect(seen.records).toHaveLength(1);
    expect(seen.records[0]).toMatchObject({
      level: 'WARN', module: 'EventBus', actionType: 'EVENT_DEAD_LETTERED', correlationId: '0b9f6a4e-3c2d-4e1f-8a7b-6c5d4e3f2a1b',
      reasoning: 'data.revision: must NOT have fewer than 1 characters',
      metadata: { outboxKey: badKey, eventId: 'bad-1', type: 'degradation.detected', appName: 'argocd/payment-service' },
    });
    expect(log.warn).toHaveBeenCalledWith('Moved outbox entry to the dead letters', expect.objectContaining({
      key: badKey, eventId: 'bad-1', type: 'degradation.detected', reason: 'data.revision: must NOT have fewer than 1 characters',
    }));
  });

  it('moves aside an entry whose stored value is not JSON, or JSON but no event, and publishes the rest', async () => {
    const outbox = etcdOutbox();
    const bus = new ValidatingBus();
    const seen = observers();
    await outbox.put(exampleEvent('pr.created', { id: 'before' }));
    const truncated = await outbox.put('{"specversion":"1.0","id":"cut-off","type":"io.ai-operator.pr.cre');
    const notAnEvent = await outbox.put('null');
    await outbox.put(exampleEvent('pr.closed', { id: 'after' }));

    expect(await new OutboxRelay({ store: outbox.store, bus, log, ...seen, now: () => at }).drain()).toBe(2);

    expect(bus.published).toEqual(['before', 'after']);
    expect(await outbox.remaining()).toEqual([]);
    expect(await outbox.deadLetter(truncated)).toMatchObject({ value: '{"specversion":"1.0","id":"cut-off","type":"io.ai-operator.pr.cre', reason: expect.stringMatching(/^value: not JSON \(/) });
    expect(await outbox.deadLetter(notAnEvent)).toMatchObject({ value: 'null', reason: 'event: must be an object' });
    expect(await seen.deadLetters()).toEqual([{ type: 'unknown', value: 2 }]);
    // No attempt is known for either, so the records belong to none
    expect(seen.records.map((r) => [r.actionType, r.correlationId, r.metadata.outboxKey])).toEqual([
      ['EVENT_DEAD_LETTERED', '', truncated],
      ['EVENT_DEAD_LETTERED', '', notAnEvent],
    ]);
  });

  it('on a transient bus failure stops the drain at that entry and leaves it and every later one in place', async () => {
    // Given five valid entries and NATS failing on the third publish
    const outbox = etcdOutbox();
    const bus = new ValidatingBus();
    const seen = observers();
    for (let i = 0; i < 5; i++) await outbox.put(exampleEvent('fsm.transition', { id: `t-${i}` }));
    bus.failAt = 3;

    // When the relay drains, the failure surfaces and nothing is moved aside
    const relay = new OutboxRelay({ store: outbox.store, bus, log, ...seen });
    await expect(relay.drain()).rejects.toThrow('UNAVAILABLE');
    expect(bus.published).toEqual(['t-0', 't-1']);
    expect(await outbox.remaining()).toEqual(outbox.keys.slice(2));
    expect(await outbox.kv.getPrefix(KEYS.outboxDeadPrefix)).toEqual([]);
    expect(await seen.deadLetters()).toEqual([]);
    expect(seen.records).toEqual([]);
    expect(await seen.pending()).toBe(3);

    // And the next drain sends the rest, in order
    expect(await relay.drain()).toBe(3);
    expect(bus.published).toEqual(['t-0', 't-1', 't-2', 't-3', 't-4']);
    expect(await seen.pending()).toBe(0);
  });

  it('keeps the entry in the outbox, in order, while its audit record cannot be written', async () => {
    const outbox = etcdOutbox();
    const bus = new ValidatingBus();
    const seen = observers();
    const badKey = await outbox.put(withoutRevision('bad-1'));
    await outbox.put(exampleEvent('pr.created', { id: 'after' }));
    const audit = { record: vi.fn(seen.audit.record.bind(seen.audit)).mockRejectedValueOnce(new Error('audit sink down')) };
    const relay = new OutboxRelay({ store: outbox.store, bus, log, metrics: seen.metrics, audit });

    await expect(relay.drain()).rejects.toThrow('audit sink down');
    expect(await outbox.remaining()).toEqual(outbox.keys);
    expect(bus.published).toEqual([]);

    expect(await relay.drain()).toBe(1);
    expect(await outbox.deadLetter(badKey)).toMatchObject({ reason: 'data.revision: must NOT have fewer than 1 characters' });
    expect(await seen.deadLetters()).toEqual([{ type: 'degradation.detected', value: 1 }]);
  });

  it('moves and counts a bad entry once when two relays drain the same outbox', async () => {
    const outbox = etcdOutbox();
    const bus = new ValidatingBus();
    const seen = observers();
    const badKey = await outbox.put(withoutRevision('bad-1'));
    await outbox.put(exampleEvent('pr.created', { id: 'after' }));

    const relays = [0, 1].map(() => new OutboxRelay({ store: outbox.store, bus, log, ...seen }));
    await Promise.all(relays.map((r) => r.drain()));

    expect(await outbox.deadLetter(badKey)).toBeDefined();
    expect(await seen.deadLetters()).toEqual([{ type: 'degradation.detected', value: 1 }]);
    // Both audited it under the same eventId: the log keeps one record.
    expect(seen.records.filter((r) => r.actionType === 'EVENT_DEAD_LETTERED')).toHaveLength(1);
    expect(await outbox.remaining()).toEqual([]);
  });
});

describe('OutboxRelay.start', () => {
  it('drains on start, on every tick and on wake, and logs failures instead of throwing', async () => {
    vi.useFakeTimers();
    const store = new MemoryOutbox();
    const bus = new FakeBus();
    store.failReads = 1;
    fill(store, 2);
    const relay = new OutboxRelay({ store, bus, log, ...observers() });
    relay.start(1000);
    await vi.advanceTimersByTimeAsync(0);
    expect(log.warn).toHaveBeenCalledWith('Failed to drain outbox; will retry', { error: 'etcd unavailable' });
    expect(store.entries.size).toBe(2);

    await vi.advanceTimersByTimeAsync(1000);
    expect(store.entries.size).toBe(0);

    store.entries.set('/ai-operator/outbox/00000100', exampleEvent('pr.closed', { id: 'woken' }));
    relay.wake();
    await vi.advanceTimersByTimeAsync(0);
    expect(bus.published.at(-1)).toBe('woken');

    await relay.stop();
    const reads = store.pendingOutbox.mock.calls.length;
    relay.wake();
    await vi.advanceTimersByTimeAsync(5000);
    expect(store.pendingOutbox.mock.calls.length).toBe(reads);
  });

  it('stop waits for the drain in progress', async () => {
    const store = new MemoryOutbox();
    const bus = new FakeBus();
    fill(store, 1);
    let release!: () => void;
    bus.gate = new Promise((resolve) => (release = resolve));
    const relay = new OutboxRelay({ store, bus, log, ...observers() });
    relay.start(60_000);
    await vi.waitFor(() => expect(bus.inFlight).toBe(1));
    let stopped = false;
    const stopping = relay.stop().then(() => (stopped = true));
    await Promise.resolve();
    expect(stopped).toBe(false);
    release();
    await stopping;
    expect(store.entries.size).toBe(0);
  });
});
