import { describe, expect, it } from 'vitest';
import type { AttemptRecord } from '../fsm/record.ts';
import { exampleEvent } from '../bus/examples.ts';
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

describe('the correlationId index', () => {
  const record = (state: AttemptRecord['state'], correlationId = cid) => ({
    correlationId, state, since: '2026-01-01T00:00:00Z', reason: 'DegradationDetected', version: 1, app: { namespace: 'shop', name: 'cart' },
  }) as unknown as AttemptRecord;

  it('is written in the transaction of every write of the attempt, on the record\'s lease once it has ended', async () => {
    const kv = new MemoryKV();
    const store = new AttemptStore(kv);
    const first = await store.commit({ appKey: 'shop_cart', record: record('DegradationDetected'), expectedModRevision: null, events: [] });
    expect(first.ok).toBe(true);
    const index = (await kv.get(KEYS.attemptIndex(cid)))!;
    expect([JSON.parse(index.value), index.modRevision, index.lease]).toEqual([{ appKey: 'shop_cart', namespace: 'shop' }, first.ok && first.modRevision, undefined]);
    expect(await store.locateAttempt(cid)).toEqual({ appKey: 'shop_cart', namespace: 'shop' });

    const ended = await store.commit({ appKey: 'shop_cart', record: record('Idle'), expectedModRevision: first.ok ? first.modRevision : '', events: [] });
    expect(ended.ok).toBe(true);
    const attempt = (await kv.get(KEYS.attempt('shop_cart', cid)))!;
    expect(attempt.lease).toBeDefined();
    expect((await kv.get(KEYS.attemptIndex(cid)))!.lease).toBe(attempt.lease);
    // The lease ends: the record and its index go together.
    kv.dropLease(attempt.lease!);
    expect([await kv.get(KEYS.attempt('shop_cart', cid)), await store.locateAttempt(cid)]).toEqual([undefined, undefined]);
  });

  it('indexes the attempts written before it, once per leadership term, on their own lease, leaving unreadable ones for a person', async () => {
    const kv = new MemoryKV();
    let fence = { key: KEYS.leader, createRevision: '7' };
    const store = new AttemptStore(kv, () => fence);
    const lease = await kv.grantLease(3600);
    const old = '11111111-2222-4333-8444-555555555555';
    const broken = '66666666-7777-4888-8999-000000000000';
    // As a version before the index wrote them: an active attempt, an ended one (leased), and a corrupt one.
    await kv.txn({ compares: [], deletes: [], puts: [
      { key: KEYS.state('shop_cart', cid), value: '{}' }, { key: KEYS.attempt('shop_cart', cid), value: JSON.stringify(record('Abort')) },
      { key: KEYS.state('argo-app', old), value: '{}', lease: lease.id }, { key: KEYS.attempt('argo-app', old), value: JSON.stringify({ ...record('Idle', old), app: { namespace: 'argocd', name: 'argo-app' } }), lease: lease.id },
      { key: KEYS.attempt('bad', broken), value: 'not json' },
      { key: KEYS.attempt('bad', cid.replace('5b', '5c')), value: '{"state":"Idle"}' },
    ] });
    expect([await store.locateAttempt(cid), store.indexComplete]).toEqual([undefined, false]);

    expect(await store.indexUnindexed()).toEqual({ indexed: [KEYS.attemptIndex(old), KEYS.attemptIndex(cid)], unreadable: [KEYS.attempt('bad', cid.replace('5b', '5c')), KEYS.attempt('bad', broken)] });
    expect(store.indexComplete).toBe(true);
    expect(await store.locateAttempt(cid)).toEqual({ appKey: 'shop_cart', namespace: 'shop' });
    expect(await kv.get(KEYS.attemptIndex(old))).toMatchObject({ value: JSON.stringify({ appKey: 'argo-app', namespace: 'argocd' }), lease: lease.id });
    expect((await kv.get(KEYS.attemptIndex(cid)))!.lease).toBeUndefined();
    // A second run changes nothing; a new term is not known to be complete until it runs.
    expect((await store.indexUnindexed()).indexed).toEqual([]);
    fence = { key: KEYS.leader, createRevision: '9' };
    expect(store.indexComplete).toBe(false);
  });
});

describe('the app\'s attempt starts (maxAttemptsPerHour)', () => {
  it('reads a value that is not a list of times as no starts, instead of stopping the app\'s reconcile', async () => {
    const kv = new MemoryKV();
    const store = new AttemptStore(kv);
    const at = '2026-12-06T12:00:00.000Z';
    for (const [value, starts] of [['not json', []], ['{"a":1}', []], [JSON.stringify([at, 42, 'soon']), [at]]] as const) {
      await kv.txn({ compares: [], puts: [{ key: KEYS.attemptStarts('cart'), value }], deletes: [] });
      expect((await store.loadApp('cart')).attemptStarts, value).toEqual(starts);
    }
  });
});
