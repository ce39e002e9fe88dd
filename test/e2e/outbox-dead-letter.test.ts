// Issue 8 §3 on the real etcd and the real JetStream: an outbox entry that
// fails its own schema is moved to /ai-operator/outbox-dead/ with the
// validator's reason, and every entry behind it is still published — once.
// Before the fix the relay stopped at that entry and retried it forever.
import { randomUUID } from 'node:crypto';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { ChainedAuditLog } from '../../src/audit/audit-log.ts';
import type { AuditRecord } from '../../src/audit/record.ts';
import { exampleEvent } from '../../src/bus/examples.ts';
import { JetStreamBus } from '../../src/bus/jetstream.ts';
import { OutboxRelay } from '../../src/bus/outbox-relay.ts';
import type { CloudEvent } from '../../src/fsm/cloud-events.ts';
import { METRIC, Metrics } from '../../src/observability/metrics.ts';
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

describe('outbox dead letters on etcd and JetStream', () => {
  it('moves a schema-invalid entry aside with the field-naming reason and publishes the entries behind it exactly once', async () => {
    // Given an etcd of our own (a fresh key prefix) and a stream of our own
    const kv = new EtcdKV([stack.etcd], { prefix: `/outbox-dead-letter-test/${run}` });
    closers.push(() => kv.close());
    const store = new AttemptStore(kv);
    const metrics = new Metrics();
    const stream = `E2E_DEAD_LETTER_${run}`.toUpperCase();
    const subjectPrefix = `e2e-dead-letter-${run}`;
    const bus = await JetStreamBus.connect({ servers: [stack.nats], registry: metrics.registry, log: quiet(), stream, subjectPrefix });
    closers.push(async () => { await bus.close(); await jsm.streams.delete(stream); });
    await bus.ensureStream();
    const seen: CloudEvent[] = [];
    const consumer = await bus.consume({ durable: `reader-${run}`, handler: (event) => { seen.push(event); } });
    closers.push(() => consumer.stop());

    // And an outbox whose oldest entry is the event seen in the field: a Degraded
    // app without status.sync.revision, so `revision: ""` — followed by valid events
    const correlationId = randomUUID();
    const bad = structuredClone(exampleEvent('degradation.detected', { id: randomUUID(), correlationId }));
    bad.data.revision = '';
    const valid = (['fsm.transition', 'degradation.confirmed', 'pr.created'] as const).map((type) => exampleEvent(type, { id: randomUUID(), correlationId: randomUUID() }));
    const keys = [bad, ...valid].map((event, i) => `${KEYS.outboxPrefix}${String(Date.now()).padStart(15, '0')}-${String(i).padStart(6, '0')}-${event.id}`);
    await kv.txn({ compares: [], puts: [bad, ...valid].map((event, i) => ({ key: keys[i]!, value: JSON.stringify(event) })), deletes: [] });
    const badKey = keys[0]!;

    // When the relay drains it (twice, as its timer would)
    const records: AuditRecord[] = [];
    const audit = new ChainedAuditLog({ sink: { name: 'memory', write: async (batch) => { records.push(...batch); } } });
    const log = quiet();
    const relay = new OutboxRelay({ store, bus, log, metrics, audit });
    expect(await relay.drain()).toBe(valid.length);
    expect(await relay.drain()).toBe(0);

    // Then the valid events arrived on JetStream exactly once, in order
    await vi.waitFor(() => expect(seen.map((e) => e.id)).toEqual(valid.map((e) => e.id)), { timeout: 15_000, interval: 50 });
    expect((await jsm.streams.info(stream)).state.messages).toBe(valid.length);

    // And the outbox is empty
    expect(await store.pendingOutbox(100)).toEqual([]);

    // And the bad entry sits in its dead letter, as stored, with the reason naming the field
    const dead = await kv.getPrefix(KEYS.outboxDeadPrefix);
    expect(dead.map((d) => d.key)).toEqual([`${KEYS.outboxDeadPrefix}${badKey.slice(KEYS.outboxPrefix.length)}`]);
    const letter = JSON.parse(dead[0]!.value) as { outboxKey: string; reason: string; deadLetteredAt: string; value: string };
    expect(letter).toEqual({ outboxKey: badKey, reason: 'data.revision: must NOT have fewer than 1 characters', deadLetteredAt: expect.any(String), value: JSON.stringify(bad) });

    // And it was counted once, audited under its attempt and logged with its key
    const text = await metrics.registry.metrics();
    expect(text).toContain('ai_operator_outbox_dead_letters_total{type="degradation.detected"} 1');
    expect((await metrics.registry.getSingleMetric(METRIC.outboxDeadLetters)!.get()).values.reduce((sum, v) => sum + v.value, 0)).toBe(1);
    expect(text).toContain('ai_operator_outbox_pending 0');
    expect(records.map((r) => [r.actionType, r.correlationId, r.reasoning])).toEqual([
      ['EVENT_DEAD_LETTERED', correlationId, 'data.revision: must NOT have fewer than 1 characters'],
    ]);
    expect(log.warn).toHaveBeenCalledWith('Moved outbox entry to the dead letters', expect.objectContaining({ key: badKey, eventId: bad.id, type: 'degradation.detected' }));
  });
});

function quiet() {
  return { debug: vi.fn(), info: vi.fn(), warn: vi.fn(), error: vi.fn() };
}
