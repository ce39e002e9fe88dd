// The state store against the real etcd: compare-and-swap, fencing, the
// transactional outbox and the one-active-attempt rule (SPEC §5, §14.3, §14.8).
import { afterEach, describe, expect, inject, it } from 'vitest';
import { createLogger } from '../../src/observability/log.ts';
import { makeEvent } from '../../src/fsm/cloud-events.ts';
import { transition } from '../../src/decide/machine.ts';
import type { AttemptRecord } from '../../src/fsm/record.ts';
import { Reason } from '../../src/fsm/table.ts';
import { SETTINGS } from '../../src/fsm/testing.ts';
import { AttemptStore, KEYS, RETENTION_SECONDS } from '../../src/store/attempt-store.ts';
import { EtcdKV } from '../../src/store/etcd.ts';
import { LeaderElector } from '../../src/store/leader.ts';
import { eventually } from './support/operator.ts';

const stack = inject('stack');
const closers: Array<() => Promise<void>> = [];
afterEach(async () => { await Promise.all(closers.splice(0).map((c) => c())); });

function kvFor(prefix: string): EtcdKV {
  const kv = new EtcdKV([stack.etcd], { prefix });
  closers.push(() => kv.close());
  return kv;
}

const prefix = () => `/store-test/${Math.random().toString(36).slice(2, 10)}`;

function newRecord(correlationId: string): AttemptRecord {
  const at = new Date().toISOString();
  const idle: AttemptRecord = {
    correlationId, app: { namespace: 'argocd', name: 'app' }, environment: 'staging', settings: SETTINGS, state: 'Idle',
    reason: Reason.DegradationObserved, message: '', since: at, version: 0, createdAt: at, degradation: { firstSeenAt: at, checks: 1 }, invariants: [], transitions: [],
  };
  return transition(idle, 'DegradationDetected', Reason.DegradationConfirmed, new Date(), 'confirmed');
}

const event = (record: AttemptRecord, to: string) => makeEvent('fsm.transition', {
  subject: 'argocd/app', correlationId: record.correlationId, time: new Date(),
  data: { app: record.app, environment: 'staging', from: 'Idle', to: to as never, reason: 'DegradationObserved', version: record.version },
});

describe('AttemptStore on etcd', () => {
  it('lets exactly one of two racing writers take the same transition', async () => {
    const p = prefix();
    const [a, b] = [new AttemptStore(kvFor(p)), new AttemptStore(kvFor(p))];
    const record = newRecord('00000000-0000-4000-8000-000000000001');
    expect(await a.commit({ appKey: 'app', record, expectedModRevision: null, events: [event(record, 'DegradationDetected')] })).toMatchObject({ ok: true });
    const stored = (await a.getAttempt('app', record.correlationId))!;
    for (let round = 0; round < 20; round++) {
      const current = (await a.getAttempt('app', record.correlationId))!;
      const next = { ...current.record, version: current.record.version + 1, message: `round ${round}` };
      const results = await Promise.all([a, b].map((s) => s.commit({ appKey: 'app', record: next, expectedModRevision: current.modRevision, events: [event(next, 'DegradationDetected')] })));
      expect(results.filter((r) => r.ok)).toHaveLength(1);
      expect(results.find((r) => !r.ok)).toEqual({ ok: false, reason: 'conflict' });
    }
    expect((await a.getAttempt('app', record.correlationId))!.record.version).toBe(stored.record.version + 20);
    // The outbox holds exactly the events of committed writes: 1 + 20, none of the 20 losers.
    expect(await a.pendingOutbox(1000)).toHaveLength(21);
  });

  it('never lets two attempts of one app start, whatever races', async () => {
    const p = prefix();
    const stores = [0, 1, 2, 3].map(() => new AttemptStore(kvFor(p)));
    const results = await Promise.all(stores.map((s, i) => {
      const record = newRecord(`00000000-0000-4000-8000-00000000000${i}`);
      return s.commit({ appKey: 'app', record, expectedModRevision: null, events: [event(record, 'DegradationDetected')] });
    }));
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    expect((await stores[0]!.activeAttempts())).toHaveLength(1);
    expect(await stores[0]!.pendingOutbox(100)).toHaveLength(1);
  });

  it('fences out a writer whose leader lease was revoked', async () => {
    const p = prefix();
    const kv = kvFor(p);
    const log = createLogger('ERROR');
    const leader = new LeaderElector(kv, 'replica-a', log, { ttlSeconds: 5 });
    await leader.start();
    closers.push(() => leader.stop());
    await eventually('leadership', async () => leader.isLeader());
    const fence = leader.fence();
    const store = new AttemptStore(kv, () => fence);
    const record = newRecord('00000000-0000-4000-8000-0000000000aa');
    expect(await store.commit({ appKey: 'app', record, expectedModRevision: null, events: [] })).toMatchObject({ ok: true });

    // The lease goes (as after a partition): the leader key is deleted by etcd.
    await kv.txn({ compares: [], puts: [], deletes: [KEYS.leader] });
    const stored = (await store.getAttempt('app', record.correlationId))!;
    const next = { ...stored.record, version: stored.record.version + 1 };
    expect(await store.commit({ appKey: 'app', record: next, expectedModRevision: stored.modRevision, events: [event(next, 'DegradationDetected')] })).toEqual({ ok: false, reason: 'fenced' });
    // Another replica that takes over gets a different fence; the old one still cannot write.
    const other = new LeaderElector(kvFor(p), 'replica-b', log, { ttlSeconds: 5 });
    await other.start();
    closers.push(() => other.stop());
    await eventually('replica-b leads', async () => other.isLeader());
    expect(other.fence().createRevision).not.toBe(fence.createRevision);
    expect(await store.commit({ appKey: 'app', record: next, expectedModRevision: stored.modRevision, events: [] })).toEqual({ ok: false, reason: 'fenced' });
    expect(await store.pendingOutbox(10)).toEqual([]);
    const fenced = new AttemptStore(kv, () => other.fence());
    expect(await fenced.commit({ appKey: 'app', record: next, expectedModRevision: stored.modRevision, events: [] })).toMatchObject({ ok: true });
  });

  it('attaches an ended attempt to a 7-day lease and frees the app', async () => {
    const p = prefix();
    const kv = kvFor(p);
    const store = new AttemptStore(kv);
    const record = newRecord('00000000-0000-4000-8000-0000000000bb');
    await store.commit({ appKey: 'app', record, expectedModRevision: null, events: [], checks: [{ at: record.since, status: 'Degraded' }] });
    const stored = (await store.getAttempt('app', record.correlationId))!;
    const ended = transition(stored.record, 'Idle', Reason.TransientDegradation, new Date(), 'healthy again');
    expect(await store.commit({ appKey: 'app', record: ended, expectedModRevision: stored.modRevision, events: [] })).toMatchObject({ ok: true });
    expect(await kv.get(KEYS.active('app'))).toBeUndefined();
    expect(await kv.get(KEYS.health('app'))).toBeUndefined();
    const state = JSON.parse((await kv.get(KEYS.state('app', record.correlationId)))!.value) as { state: string; reason: string; version: number; since: string };
    expect(state).toEqual({ state: 'Idle', reason: 'TransientDegradation', version: ended.version, since: ended.since });
    // The lease is etcd's own: ask etcd for the remaining TTL of the key's lease.
    const { Etcd3 } = await import('etcd3');
    const raw = new Etcd3({ hosts: stack.etcd });
    try {
      const response = await raw.get(`${p}${KEYS.state('app', record.correlationId)}`).exec();
      const leaseId = response.kvs[0]!.lease;
      expect(leaseId).not.toBe('0');
      const info = await (raw as unknown as { leaseClient: { leaseTimeToLive(req: { ID: string }): Promise<{ TTL: string }> } }).leaseClient.leaseTimeToLive({ ID: leaseId });
      expect(Number(info.TTL)).toBeGreaterThan(RETENTION_SECONDS - 60);
    } finally {
      raw.close();
    }
  });
});
