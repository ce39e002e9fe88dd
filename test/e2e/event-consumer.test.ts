// The operator's JetStream consumer on the real nats-server (SPEC §9): one
// durable consumer per installation that delivers new messages only — a new or
// restarted one never replays the stream — kept running when its loop dies
// (consumer deleted on the server, a server that lost its state after an outage
// longer than the client's default reconnect budget), each restart counted by
// reason; and the per-pod consumers of an older version deleted once idle.
// Every test has its own stream and subjects; the outage test its own server.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { binaries } from '../../dev/stack/binaries.ts';
import { freePort, httpOk, spawnManaged, waitHealthy, type ManagedProcess } from '../../dev/stack/process.ts';
import { exampleEvent } from '../../src/bus/examples.ts';
import { JetStreamBus, PER_POD_CONSUMER_PREFIX, wakeConsumerName, type EventConsumer } from '../../src/bus/jetstream.ts';
import type { CloudEvent } from '../../src/fsm/cloud-events.ts';

const stack = inject('stack');
const run = randomUUID().slice(0, 8);
const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
const quick = { initialMs: 100, maxMs: 1000 };

let nc: NatsConnection;
let jsm: JetStreamManager;
const cleanups: Array<() => Promise<unknown> | unknown> = [];

beforeAll(async () => {
  nc = await connect({ servers: stack.nats });
  jsm = await jetstreamManager(nc);
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  await nc.close();
});

/** A bus on a stream of its own, on `servers` (the shared NATS unless told). */
async function freshBus(name: string, servers = stack.nats) {
  const stream = `E2E_CONSUMER_${run}_${name}`.toUpperCase();
  const subjectPrefix = `e2e-consumer-${run}-${name}`;
  const registry = new Registry();
  const bus = await JetStreamBus.connect({ servers: [servers], registry, log: silent, stream, subjectPrefix });
  cleanups.push(() => bus.close());
  await bus.ensureStream();
  cleanups.push(() => jsm.streams.delete(stream).catch(() => undefined));
  return { bus, stream, subjectPrefix, registry, durable: wakeConsumerName(`/e2e/${run}/${name}`) };
}

/** A consumer that records the ids it sees. */
async function reader(bus: JetStreamBus, durable: string, extra: { supersedes?: string } = {}) {
  const seen: string[] = [];
  const consumer: EventConsumer = await bus.consume({
    durable, handler: (event: CloudEvent) => { seen.push(event.id); }, restartBackoff: quick, ...extra,
  });
  return { seen, consumer };
}

const event = (id: string) => exampleEvent('fsm.transition', { id });

/** Publishes a marker and waits for it: what was published before it has been delivered. */
async function settle(bus: JetStreamBus, seen: string[], timeout = 15_000): Promise<string> {
  const id = `marker-${randomUUID()}`;
  await bus.publish(event(id));
  await vi.waitFor(() => expect(seen).toContain(id), { timeout, interval: 50 });
  return id;
}

async function restarts(registry: Registry, reason: string): Promise<number> {
  const metric = registry.getSingleMetric('ai_operator_event_consumer_restarts_total');
  return (await metric!.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

describe('the event consumer', () => {
  it('starts from new messages and, restarted, replays none: one durable consumer per installation', async () => {
    // Given a stream already holding a week's worth of events (three here)
    const { bus, stream, durable, subjectPrefix } = await freshBus('new');
    for (const id of ['old-1', 'old-2', 'old-3']) await bus.publish(event(id));

    // When the installation's consumer is created
    const first = await reader(bus, durable);
    const m1 = await settle(bus, first.seen);
    // Then it sees what is published from then on, and none of the stream before it
    await bus.publish(event('during'));
    const m2 = await settle(bus, first.seen);
    expect(first.seen).toEqual([m1, 'during', m2]);
    const info = await jsm.consumers.info(stream, durable);
    expect(info.config.deliver_policy).toBe(DeliverPolicy.New);
    expect(info.config.filter_subject).toBe(`${subjectPrefix}.>`);

    // When the operator restarts (a new process, a new connection, another pod name)
    await first.consumer.stop();
    await bus.close();
    const restarted = await JetStreamBus.connect({ servers: [stack.nats], registry: new Registry(), log: silent, stream, subjectPrefix });
    cleanups.push(() => restarted.close());
    const second = await reader(restarted, durable);
    await restarted.publish(event('after'));
    const m3 = await settle(restarted, second.seen);

    // Then the restarted consumer replays nothing it had acknowledged, nor the old stream
    expect(second.seen).toEqual(['after', m3]);
    // And the installation still has exactly one consumer
    const names: string[] = [];
    for await (const c of jsm.consumers.list(stream)) names.push(c.name);
    expect(names).toEqual([durable]);
  });

  it('opens its consumer again when it is deleted on the server, counts why, and goes on consuming', async () => {
    // Given a running consumer
    const { bus, stream, durable, registry } = await freshBus('deleted');
    const r = await reader(bus, durable);
    await settle(bus, r.seen);
    expect(await restarts(registry, 'ConsumerDeleted')).toBe(0);

    // When someone deletes its durable consumer on the server
    await jsm.consumers.delete(stream, durable);

    // Then the loop is restarted, counted as ConsumerDeleted, and the consumer exists again
    await vi.waitFor(async () => expect(await restarts(registry, 'ConsumerDeleted')).toBe(1), { timeout: 15_000, interval: 100 });
    await vi.waitFor(async () => expect((await jsm.consumers.info(stream, durable)).config.deliver_policy).toBe(DeliverPolicy.New), { timeout: 15_000, interval: 100 });
    // And what is published afterwards is consumed
    await bus.publish(event('after-deletion'));
    await settle(bus, r.seen);
    expect(r.seen).toContain('after-deletion');
    await r.consumer.stop();
  });

  it('deletes the per-pod consumers an older version left behind, once idle, and keeps a live one', async () => {
    // Given an older version's consumers: one of a pod long gone, one of a replica still reading
    const { bus, stream, subjectPrefix, durable } = await freshBus('legacy');
    const legacy = { ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, filter_subject: `${subjectPrefix}.>` };
    const gone = `${PER_POD_CONSUMER_PREFIX}ai-operator-5f7d9-abcde`;
    const live = `${PER_POD_CONSUMER_PREFIX}ai-operator-1`;
    await jsm.consumers.add(stream, { ...legacy, durable_name: gone });
    await jsm.consumers.add(stream, { ...legacy, durable_name: live });
    const liveMessages = await (await jetstream(nc).consumers.get(stream, live)).consume();
    // Iterating is what sends the pull requests (as the older version's loop did).
    const reading = (async () => { for await (const m of liveMessages) m.ack(); })();
    cleanups.push(async () => { await liveMessages.close(); await reading; });
    await vi.waitFor(async () => expect((await jsm.consumers.info(stream, live)).num_waiting).toBeGreaterThan(0), { timeout: 10_000, interval: 50 });

    // When the new version's consumer starts
    const r = await reader(bus, durable, { supersedes: PER_POD_CONSUMER_PREFIX });
    await settle(bus, r.seen);

    // Then the idle one is gone; the one being read and the installation's own remain
    const names: string[] = [];
    for await (const c of jsm.consumers.list(stream)) names.push(c.name);
    expect(names.sort()).toEqual([durable, live].sort());
    await r.consumer.stop();
  });

  it('survives an outage longer than the client\'s reconnect budget on a server that lost its state', async () => {
    // Given a private nats-server (so stopping it disturbs no other test), and a consumer on it
    const bin = (await binaries('nats'))['nats-server']!;
    const [port, monitorPort] = [await freePort(), await freePort()];
    const url = `nats://127.0.0.1:${port}`;
    const dir = mkdtempSync(join(tmpdir(), 'ai-operator-consumer-outage-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    let server: ManagedProcess | undefined;
    const startServer = async (dataDir: string) => {
      server = spawnManaged('nats-server', bin, ['-a', '127.0.0.1', '-p', String(port), '-m', String(monitorPort), '-js', '-sd', join(dir, dataDir)], join(dir, 'nats.log'));
      await waitHealthy(server, () => httpOk(`http://127.0.0.1:${monitorPort}/healthz?js-enabled-only=true`), 30_000);
    };
    await startServer('before');
    cleanups.push(() => server?.stop());
    const { bus, stream, durable, registry } = await freshBus('outage', url);
    const r = await reader(bus, durable);
    await settle(bus, r.seen);

    // When the server is down for 25 s (the client's default gives up after ten tries 2 s apart)
    // and comes back with no stream and no consumer (a pod without its volume)
    await server!.stop();
    await new Promise((resolve) => setTimeout(resolve, 25_000));
    await startServer('after');
    const privateNc = await connect({ servers: url });
    cleanups.push(() => privateNc.close());
    const privateJsm = await jetstreamManager(privateNc);
    cleanups.push(() => privateJsm.streams.delete(stream).catch(() => undefined));

    // Then the bus reconnected, and the consumer was opened again, the stream with it
    await vi.waitFor(async () => {
      const lost = (await restarts(registry, 'StreamNotFound')) + (await restarts(registry, 'ConsumerNotFound'));
      expect(lost).toBeGreaterThan(0);
    }, { timeout: 30_000, interval: 200 });
    await vi.waitFor(async () => expect((await privateJsm.consumers.info(stream, durable)).name).toBe(durable), { timeout: 15_000, interval: 200 });
    expect(bus.connectionProblem()).toBeUndefined();
    // And what is published now is consumed
    await bus.publish(event('after-outage'));
    await settle(bus, r.seen);
    expect(r.seen).toContain('after-outage');
    await r.consumer.stop();
  }, 120_000);
});
