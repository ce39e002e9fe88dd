import { describe, expect, it } from 'vitest';
import { exampleEvent } from '../events/examples.ts';
import { terminalCause } from '../ports/errors.ts';
import { AttemptStore, CorruptRecord, KEYS } from './attempt-store.ts';
import { MemoryKV } from './memory.ts';

const cid = '5b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d';

describe('AttemptStore', () => {
  it('stops on a stored record that is not JSON with a TerminalError naming the key', async () => {
    // Given an app whose active attempt's record was overwritten with garbage
    const kv = new MemoryKV();
    await kv.txn({ compares: [], deletes: [], puts: [
      { key: KEYS.active('payment-service'), value: cid },
      { key: KEYS.state('payment-service', cid), value: '{"state":"PRCreated"' },
      { key: KEYS.attempt('payment-service', cid), value: '{"state":"PRCreated", trunc' },
    ] });
    const store = new AttemptStore(kv);

    // Then reading it fails for good, and says which key to repair
    const failure = await store.loadApp('payment-service').catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(CorruptRecord);
    expect(terminalCause(failure)?.reason).toBe('CorruptRecord');
    expect((failure as CorruptRecord).key).toBe(KEYS.attempt('payment-service', cid));
    expect((failure as Error).message).toContain(`${KEYS.attempt('payment-service', cid)} in etcd is not JSON`);
    // And so does the state key alone (the gauges' read)
    await expect(store.getState('payment-service', cid)).rejects.toBeInstanceOf(CorruptRecord);
  });

  it('stops on a health key that is not JSON the same way', async () => {
    const kv = new MemoryKV();
    await kv.txn({ compares: [], deletes: [], puts: [{ key: KEYS.health('cart'), value: 'not json' }] });
    await expect(new AttemptStore(kv).loadApp('cart')).rejects.toThrow(`${KEYS.health('cart')} in etcd is not JSON`);
  });

  it('orders the outbox by its clock: an event written at an earlier time is relayed first', async () => {
    // Given a store whose clock the test sets
    const kv = new MemoryKV();
    let now = 2_000;
    const store = new AttemptStore(kv, undefined, () => now);
    const later = exampleEvent('degradation.detected', { id: 'later', app: { namespace: 'argocd', name: 'a' } });
    const earlier = exampleEvent('degradation.detected', { id: 'earlier', app: { namespace: 'argocd', name: 'b' } });

    // When an event is written at 2 s, then another at 1 s (the clock stepped back)
    await store.commitDegradation({ appKey: 'a', degradation: { correlationId: cid, checks: [] }, expectedModRevision: null, events: [later] });
    now = 1_000;
    await store.commitDegradation({ appKey: 'b', degradation: { correlationId: cid, checks: [] }, expectedModRevision: null, events: [earlier] });

    // Then the outbox keys carry those times, and the one written at 1 s comes first
    const pending = await store.pendingOutbox(10);
    expect(pending.map((e) => e.event?.id)).toEqual(['earlier', 'later']);
    expect(pending[0]!.key).toMatch(new RegExp(`^${KEYS.outboxPrefix}000000000001000-`));
  });
});
