import { afterEach, describe, expect, it, vi } from 'vitest';
import { exampleEvent } from './examples.ts';
import type { EventBus } from './jetstream.ts';
import { OutboxRelay } from './outbox-relay.ts';
import { EVENT_TYPES, type CloudEvent, type OutboxEntry, type OutboxStore } from './types.ts';

class MemoryOutbox implements OutboxStore {
  readonly entries = new Map<string, CloudEvent>();
  failReads = 0;
  pendingOutbox = vi.fn(async (limit: number): Promise<OutboxEntry[]> => {
    if (this.failReads > 0 && this.failReads--) throw new Error('etcd unavailable');
    return [...this.entries.keys()].sort().slice(0, limit).map((key) => ({ key, event: this.entries.get(key)! }));
  });
  removeOutbox = vi.fn(async (keys: string[]) => {
    for (const key of keys) this.entries.delete(key);
  });
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
    const relay = new OutboxRelay({ store, bus, log, batchSize: 3 });
    expect(await relay.drain()).toBe(7);
    expect(bus.published).toEqual(ids);
    expect(store.entries.size).toBe(0);
  });

  it('orders unpadded sequence keys numerically', async () => {
    const store = new MemoryOutbox();
    const bus = new FakeBus();
    for (const seq of [10, 9, 100, 2]) store.entries.set(`/ai-operator/outbox/${seq}`, exampleEvent('fsm.transition', { id: `seq-${seq}` }));
    await new OutboxRelay({ store, bus, log }).drain();
    expect(bus.published).toEqual(['seq-2', 'seq-9', 'seq-10', 'seq-100']);
  });

  it('on a publish failure keeps that entry and every later one, in order, for the next drain', async () => {
    const store = new MemoryOutbox();
    const bus = new FakeBus();
    const ids = fill(store, 6);
    bus.failAt = 4;
    const relay = new OutboxRelay({ store, bus, log });
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
    const draining = new OutboxRelay({ store, bus, log }).drain();
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
    const relay = new OutboxRelay({ store, bus, log });
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
    const relay = new OutboxRelay({ store, bus, log });
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

describe('OutboxRelay.start', () => {
  it('drains on start, on every tick and on wake, and logs failures instead of throwing', async () => {
    vi.useFakeTimers();
    const store = new MemoryOutbox();
    const bus = new FakeBus();
    store.failReads = 1;
    fill(store, 2);
    const relay = new OutboxRelay({ store, bus, log });
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
    const relay = new OutboxRelay({ store, bus, log });
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
