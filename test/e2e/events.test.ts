// Events on the real nats-server (SPEC §9): the stream's settings, dedup by
// Nats-Msg-Id, the outbox relay's exactly-once hand-off, and a consumer that
// survives malformed messages. Every test gets its own stream and subject
// prefix, so nothing here can clash with another file or another test.
import { randomUUID } from 'node:crypto';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { exampleEvent } from '../../src/bus/examples.ts';
import { EVENTS_REJECTED_METRIC, InvalidEventError, JetStreamBus, type EventBus, type EventConsumer, type Rejected } from '../../src/bus/jetstream.ts';
import { OutboxRelay } from '../../src/bus/outbox-relay.ts';
import type { CloudEvent, DeadLetter, OutboxEntry, OutboxStore } from '../../src/fsm/cloud-events.ts';
import { ChainedAuditLog } from '../../src/audit/audit-log.ts';
import { Metrics } from '../../src/observability/metrics.ts';

const stack = inject('stack');
const run = randomUUID().slice(0, 8);
const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
// Where relays report dead letters (test/e2e/outbox-dead-letter.test.ts covers them).
const reporting = () => ({ metrics: new Metrics(), audit: new ChainedAuditLog({ sink: { name: 'memory', write: async () => {} } }) });

let nc: NatsConnection;
let jsm: JetStreamManager;
const streams: string[] = [];
const closers: Array<() => Promise<void>> = [];

beforeAll(async () => {
  nc = await connect({ servers: stack.nats });
  jsm = await jetstreamManager(nc);
});

afterAll(async () => {
  for (const close of closers.reverse()) await close();
  for (const stream of streams) await jsm.streams.delete(stream);
  await nc.close();
});

/** A bus on a stream of its own, created the way the operator creates AI_OPERATOR. */
async function freshBus(name: string) {
  const stream = `E2E_EVENTS_${run}_${name}`.toUpperCase();
  const subjectPrefix = `e2e-events-${run}-${name}`;
  const registry = new Registry();
  const bus = await JetStreamBus.connect({ servers: [stack.nats], registry, log: silent, stream, subjectPrefix });
  closers.push(() => bus.close());
  await bus.ensureStream();
  streams.push(stream);
  return { bus, stream, subjectPrefix, registry };
}

/** Starts a consumer that records what it sees. */
async function recorder(bus: JetStreamBus, options: { fail?: (event: CloudEvent) => boolean } = {}) {
  const seen: CloudEvent[] = [];
  const rejected: Rejected[] = [];
  const durable = `reader-${randomUUID().slice(0, 8)}`;
  const consumer: EventConsumer = await bus.consume({
    durable,
    handler: (event) => {
      if (options.fail?.(event)) throw new Error('handler failed');
      seen.push(event);
    },
    onRejected: (r) => {
      rejected.push(r);
    },
    nakDelayMs: 200,
  });
  return { seen, rejected, consumer, durable, ids: () => seen.map((e) => e.id) };
}

/** Publishes a marker and waits for it: everything published before it has been delivered. */
async function settle(bus: EventBus, seen: CloudEvent[]): Promise<void> {
  const marker = exampleEvent('fsm.transition', { id: `marker-${randomUUID()}` });
  await bus.publish(marker);
  await vi.waitFor(() => expect(seen.map((e) => e.id)).toContain(marker.id), { timeout: 15_000, interval: 50 });
}

class MemoryOutbox implements OutboxStore {
  readonly entries = new Map<string, CloudEvent>();
  failRemovals = 0;
  async pendingOutbox(limit: number): Promise<OutboxEntry[]> {
    return [...this.entries.keys()].sort().slice(0, limit).map((key) => ({ key, event: this.entries.get(key)! }));
  }
  async removeOutbox(keys: string[]): Promise<void> {
    if (this.failRemovals > 0) {
      this.failRemovals--;
      throw new Error('operator killed before removing the outbox entries');
    }
    for (const key of keys) this.entries.delete(key);
  }
  async deadLetterOutbox(letter: DeadLetter): Promise<string | undefined> {
    return this.entries.delete(letter.key) ? letter.key : undefined;
  }
}

/** Remembers whether JetStream called each publish a duplicate. */
function observed(bus: EventBus) {
  const acks: Array<{ id: string; duplicate: boolean }> = [];
  const wrapped: EventBus = {
    publish: async (event) => {
      const ack = await bus.publish(event);
      acks.push({ id: event.id, duplicate: ack.duplicate });
      return ack;
    },
    close: () => bus.close(),
  };
  return { bus: wrapped, acks };
}

describe('events on JetStream', () => {
  it('creates the stream with the SPEC settings, and restores them if they drift', async () => {
    // Given a stream created by the bus
    const { bus, stream, subjectPrefix } = await freshBus('stream');

    // Then it has the subjects, storage, max age and duplicate window of SPEC §9
    const expectSpec = async () => {
      const { config } = await jsm.streams.info(stream);
      expect(config.subjects).toEqual([`${subjectPrefix}.>`]);
      expect(config.storage).toBe('file');
      expect(config.max_age).toBe(nanos(7 * 24 * 60 * 60 * 1000));
      expect(config.duplicate_window).toBe(nanos(2 * 60 * 1000));
    };
    await expectSpec();

    // When someone shortens its retention and the operator starts again
    await jsm.streams.update(stream, { max_age: nanos(60_000), duplicate_window: nanos(10_000) });
    await bus.ensureStream();

    // Then the SPEC settings are back
    await expectSpec();
  });

  it('drops a re-published event: the consumer receives it once', async () => {
    // Given a bus and a consumer
    const { bus } = await freshBus('dedup');
    const reader = await recorder(bus);

    // When the same event is published twice
    const event = exampleEvent('pr.created', { id: randomUUID() });
    expect(await bus.publish(event)).toEqual({ duplicate: false });
    expect(await bus.publish(event)).toEqual({ duplicate: true });

    // Then the consumer sees it exactly once, as it was sent
    await settle(bus, reader.seen);
    expect(reader.ids().filter((id) => id === event.id)).toHaveLength(1);
    expect(reader.seen[0]).toEqual(event);

    // And after stop() the consumer hands over nothing more
    await reader.consumer.stop();
    await bus.publish(exampleEvent('pr.merged', { id: randomUUID() }));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(reader.seen).toHaveLength(2);
  });

  it('refuses to publish an invalid event and sends nothing', async () => {
    const { bus, stream } = await freshBus('invalid');
    const event = structuredClone(exampleEvent('pr.created')) as CloudEvent<'pr.created'>;
    (event.data as { number: unknown }).number = 'forty-two';

    await expect(bus.publish(event)).rejects.toThrow(InvalidEventError);
    await expect(bus.publish(event)).rejects.toThrow('data.number: must be integer');
    expect((await jsm.streams.info(stream)).state.messages).toBe(0);
  });

  it('relays the outbox so each event is seen once, despite concurrent drains and a crash before removal', async () => {
    // Given an outbox holding one attempt's events and a consumer
    const { bus } = await freshBus('outbox');
    const reader = await recorder(bus);
    const { bus: watched, acks } = observed(bus);
    const store = new MemoryOutbox();
    const correlationId = randomUUID();
    const types = ['degradation.detected', 'degradation.confirmed', 'candidate.resolved', 'pr.created', 'ci.completed'] as const;
    const first = types.map((type) => exampleEvent(type, { id: randomUUID(), correlationId }));
    first.forEach((event, i) => store.entries.set(`/ai-operator/outbox/${String(i).padStart(8, '0')}`, event));

    // When two relays (two operator replicas' worth) drain it at the same time
    const a = new OutboxRelay({ store, bus: watched, log: silent, ...reporting() });
    const b = new OutboxRelay({ store, bus: watched, log: silent, ...reporting() });
    await Promise.all([a.drain(), b.drain()]);

    // Then the outbox is empty and the consumer saw every event once, in order
    expect(store.entries.size).toBe(0);
    await settle(bus, reader.seen);
    expect(reader.ids().slice(0, first.length)).toEqual(first.map((e) => e.id));

    // Given more events, and an operator killed after the acks but before removal
    const later = (['merge.approved', 'pr.merged', 'rollback.completed'] as const).map((type) => exampleEvent(type, { id: randomUUID(), correlationId }));
    later.forEach((event, i) => store.entries.set(`/ai-operator/outbox/${String(100 + i).padStart(8, '0')}`, event));
    store.failRemovals = 1;
    await expect(a.drain()).rejects.toThrow('operator killed');
    expect(store.entries.size).toBe(later.length);

    // When a new operator drains the same outbox
    const restarted = new OutboxRelay({ store, bus: watched, log: silent, ...reporting() });
    expect(await restarted.drain()).toBe(later.length);

    // Then JetStream called each re-publish a duplicate and the consumer saw each event once
    expect(store.entries.size).toBe(0);
    for (const event of later) expect(acks.filter((ack) => ack.id === event.id).map((ack) => ack.duplicate)).toEqual([false, true]);
    await settle(bus, reader.seen);
    const ids = reader.ids().filter((id) => !id.startsWith('marker-'));
    expect(ids).toEqual([...first, ...later].map((e) => e.id));
  });

  it('terminates, counts and reports malformed messages, then handles the next valid event', async () => {
    // Given a consumer
    const { bus, stream, subjectPrefix, registry } = await freshBus('malformed');
    const reader = await recorder(bus);
    const js = jetstream(nc);

    // When garbage and a schema-invalid envelope are published raw, then a valid event
    await js.publish(`${subjectPrefix}.pr.created`, 'this is not json');
    const invalid = { ...exampleEvent('pr.created'), correlationid: 'not-a-uuid' };
    await js.publish(`${subjectPrefix}.pr.created`, JSON.stringify(invalid));
    const valid = exampleEvent('pr.merged', { id: randomUUID() });
    await bus.publish(valid);

    // Then the valid event is handled
    await vi.waitFor(() => expect(reader.ids()).toEqual([valid.id]), { timeout: 15_000, interval: 50 });

    // And both bad messages were passed to onRejected with the reason and the raw body
    expect(reader.rejected).toEqual([
      { subject: `${subjectPrefix}.pr.created`, reason: 'NotJSON', errors: expect.stringContaining('body: not JSON'), raw: 'this is not json' },
      { subject: `${subjectPrefix}.pr.created`, reason: 'SchemaInvalid', errors: expect.stringContaining('correlationid: must match format "uuid"'), raw: JSON.stringify(invalid) },
    ]);

    // And counted
    const metric = registry.getSingleMetric(EVENTS_REJECTED_METRIC);
    const values = (await metric!.get()).values.map((v) => [v.labels.reason, v.value]);
    expect(values).toEqual(expect.arrayContaining([['NotJSON', 1], ['SchemaInvalid', 1]]));

    // And terminated: nothing is pending or redelivered
    await new Promise((resolve) => setTimeout(resolve, 500));
    const info = await jsm.consumers.info(stream, reader.durable);
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_redelivered).toBe(0);
    expect(reader.rejected).toHaveLength(2);
  });

  it('redelivers an event whose handler failed, and goes on', async () => {
    // Given a consumer whose handler fails the first time it sees one event
    const { bus } = await freshBus('retry');
    const failing = exampleEvent('ci.completed', { id: randomUUID() });
    let failures = 0;
    const reader = await recorder(bus, { fail: (event) => event.id === failing.id && failures++ === 0 });

    // When that event and another are published
    const next = exampleEvent('pr.merged', { id: randomUUID() });
    await bus.publish(failing);
    await bus.publish(next);

    // Then both are handled: the failed one after its redelivery
    await vi.waitFor(() => expect(reader.ids().sort()).toEqual([failing.id, next.id].sort()), { timeout: 15_000, interval: 50 });
    expect(failures).toBe(2);
  });
});
