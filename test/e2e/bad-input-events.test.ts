// Oversized and malformed JetStream messages on the real nats-server (issue 12 §4):
// an event too large for the server's max_payload is refused at once as a schema
// error would be (before: UNAVAILABLE, which the outbox relay retries in order, so
// every later event of every app waited behind it); megabyte-sized garbage and a
// message with 50,000 schema errors reach the consumer, are rejected with a
// bounded reason and terminated, and the next valid event is handled.
import { randomUUID } from 'node:crypto';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { ChainedAuditLog } from '../../src/audit/audit-log.ts';
import type { AuditRecord } from '../../src/audit/record.ts';
import { exampleEvent } from '../../src/bus/examples.ts';
import { InvalidEventError, JetStreamBus, type Rejected } from '../../src/bus/jetstream.ts';
import { OutboxRelay } from '../../src/bus/outbox-relay.ts';
import type { CloudEvent } from '../../src/fsm/cloud-events.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { AttemptStore, KEYS } from '../../src/store/attempt-store.ts';
import { EtcdKV } from '../../src/store/etcd.ts';

const stack = inject('stack');
const run = randomUUID().slice(0, 8);
let nc: NatsConnection;
let jsm: JetStreamManager;
const closers: Array<() => Promise<void>> = [];

beforeAll(async () => {
  nc = await connect({ servers: stack.nats });
  jsm = await jetstreamManager(nc);
});
afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await nc.close();
});

const quiet = () => ({ debug: vi.fn(), info: vi.fn(), warn: vi.fn(), error: vi.fn() });

async function freshBus(name: string, metrics = new Metrics()) {
  const stream = `E2E_BAD_EVENTS_${run}_${name}`.toUpperCase();
  const subjectPrefix = `e2e-bad-events-${run}-${name}`;
  const log = quiet();
  const bus = await JetStreamBus.connect({ servers: [stack.nats], registry: metrics.registry, log, stream, subjectPrefix });
  closers.push(async () => { await bus.close(); await jsm.streams.delete(stream); });
  await bus.ensureStream();
  return { bus, stream, subjectPrefix, metrics, log };
}

describe('oversized and malformed messages on the real nats-server', () => {
  it('refuses to publish an event over max_payload at once, as a schema error: never worth a retry', async () => {
    const { bus, stream } = await freshBus('oversized');
    const maxPayload = nc.info!.max_payload;
    const huge = structuredClone(exampleEvent('rollback.aborted', { id: randomUUID(), correlationId: randomUUID() }));
    huge.data.message = 'm'.repeat(maxPayload + 10_000);
    const refused = await bus.publish(huge).catch((e: unknown) => e);
    // Before: the server's refusal came back as UNAVAILABLE, which the outbox relay retries in order, forever.
    expect(refused).toBeInstanceOf(InvalidEventError);
    expect((refused as InvalidEventError).code).toBe('INVALID_ARGUMENT');
    expect((refused as InvalidEventError).errors).toBe(`event ${huge.id} (io.ai-operator.rollback.aborted) is ${JSON.stringify(huge).length} bytes, over the NATS server's max_payload of ${maxPayload} less 1 KiB for headers`);
    // And the bus goes on: the next event is published
    expect(await bus.publish(exampleEvent('fsm.transition', { id: randomUUID() }))).toEqual({ duplicate: false });
    expect((await jsm.streams.info(stream)).state.messages).toBe(1);
  });

  // An entry over max_payload (1 MiB) copied whole beside a compare of its whole value would be
  // over etcd's request limit: the move compares the key's mod_revision and keeps an excerpt and a
  // hash of a large value, so the drain goes on past it.
  it('dead-letters an event over max_payload and publishes every entry behind it once', async () => {
    // Given an outbox in etcd whose oldest entry is an abort whose message is larger than the server takes
    const kv = new EtcdKV([stack.etcd], { prefix: `/bad-input-events/${run}` });
    closers.push(() => kv.close());
    const store = new AttemptStore(kv);
    const { bus, stream, metrics } = await freshBus('dead-letter');
    const maxPayload = nc.info!.max_payload;
    const huge = structuredClone(exampleEvent('rollback.aborted', { id: randomUUID(), correlationId: randomUUID() }));
    huge.data.message = 'm'.repeat(maxPayload + 10_000);
    const valid = (['fsm.transition', 'pr.created'] as const).map((type) => exampleEvent(type, { id: randomUUID(), correlationId: randomUUID() }));
    const keys = [huge, ...valid].map((event, i) => `${KEYS.outboxPrefix}${String(Date.now()).padStart(15, '0')}-${String(i).padStart(6, '0')}-${event.id}`);
    for (const [i, event] of [huge, ...valid].entries()) await kv.txn({ compares: [], puts: [{ key: keys[i]!, value: JSON.stringify(event) }], deletes: [] });

    // When the relay drains the outbox
    const records: AuditRecord[] = [];
    const audit = new ChainedAuditLog({ sink: { name: 'memory', write: async (batch) => { records.push(...batch); } } });
    const relay = new OutboxRelay({ store, bus, log: quiet(), metrics, audit });
    expect(await relay.drain()).toBe(valid.length);

    // Then the entries behind it are on the stream once each, the outbox is empty
    expect((await jsm.streams.info(stream)).state.messages).toBe(valid.length);
    expect(await store.pendingOutbox(100)).toEqual([]);
    // And the oversized one is a dead letter with its reason, audited once
    const dead = await kv.getPrefix(KEYS.outboxDeadPrefix);
    expect(dead).toHaveLength(1);
    expect(JSON.parse(dead[0]!.value)).toMatchObject({ outboxKey: keys[0], reason: expect.stringContaining(`over the NATS server's max_payload of ${maxPayload}`) });
    expect(records.map((r) => r.actionType)).toEqual(['EVENT_DEAD_LETTERED']);
    expect(await metrics.registry.metrics()).toContain('ai_operator_outbox_dead_letters_total{type="rollback.aborted"} 1');
  });

  it('rejects megabyte garbage and 50,000 schema errors with a bounded reason, and handles the next event', async () => {
    // Given a consumer that records what it handles and what it rejects
    const { bus, stream, subjectPrefix, log } = await freshBus('garbage');
    const seen: CloudEvent[] = [];
    const rejected: Rejected[] = [];
    const durable = `reader-${run}`;
    const consumer = await bus.consume({ durable, handler: (e) => { seen.push(e); }, onRejected: (r) => { rejected.push(r); }, nakDelayMs: 200 });
    closers.push(() => consumer.stop());
    const js = jetstream(nc);

    // When 1 MiB less a little of garbage, an event with 50,000 unknown fields and then a valid event are published
    await js.publish(`${subjectPrefix}.pr.created`, 'x'.repeat(nc.info!.max_payload - 4096));
    const wide = structuredClone(exampleEvent('pr.created')) as unknown as { data: Record<string, unknown> };
    for (let i = 0; i < 50_000; i++) wide.data[`f${i}`] = i;
    await js.publish(`${subjectPrefix}.pr.created`, JSON.stringify(wide));
    const next = exampleEvent('pr.merged', { id: randomUUID() });
    await bus.publish(next);

    // Then the valid event is handled
    await vi.waitFor(() => expect(seen.map((e) => e.id)).toEqual([next.id]), { timeout: 15_000, interval: 50 });
    // And both bad ones were rejected, with reasons that fit a log line
    expect(rejected.map((r) => r.reason)).toEqual(['NotJSON', 'SchemaInvalid']);
    expect(rejected[1]!.errors).toMatch(/^data\.f0: is not allowed; .* and 49990 more$/);
    for (const r of rejected) expect(r.errors.length).toBeLessThan(2_000);
    const warnings = log.warn.mock.calls.filter(([message]) => message === 'Rejected malformed event');
    expect(warnings).toHaveLength(2);
    for (const [, fields] of warnings) expect(JSON.stringify(fields).length).toBeLessThan(2_200);
    // And nothing waits for an ack or comes back
    await new Promise((resolve) => setTimeout(resolve, 500));
    const info = await jsm.consumers.info(stream, durable);
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_redelivered).toBe(0);
  });
});
