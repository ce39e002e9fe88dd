import { describe, expect, it } from 'vitest';
import { KEYS } from '../api/etcd.ts';
import { AttemptStore } from '../store/attempt-store.ts';
import { MemoryKV } from '../store/memory.ts';
import { ChainedAuditLog, type AuditSink } from './audit-log.ts';
import { AuditOutbox, recordEntry, type AuditOutboxEntry } from './outbox.ts';
import type { AuditInput, AuditRecord } from './record.ts';

/** A sink that outlives the log over it, as the spool outlives a killed process. */
class Spool implements AuditSink {
  readonly name = 'memory';
  readonly records: AuditRecord[] = [];
  failing = false;
  async write(records: readonly AuditRecord[]): Promise<void> {
    if (this.failing) throw new Error('disk full');
    this.records.push(...records);
  }
  async tail(limit: number): Promise<AuditRecord[]> {
    return this.records.slice(-limit);
  }
}

const transition = (cid: string, version: number): AuditInput => ({
  module: 'Reconciler', actionType: 'FSM_TRANSITION', correlationId: cid, message: `step ${version}`, eventId: `${cid}-v${version}`,
});

const entry = (chainId: string, committedAt: string, ...records: AuditInput[]): AuditOutboxEntry => ({ chainId, committedAt, records });

function world() {
  const kv = new MemoryKV();
  const store = new AttemptStore(kv);
  const logged: Array<{ level: string; message: string; fields?: Record<string, unknown> }> = [];
  const log = {
    warn: (message: string, fields?: Record<string, unknown>) => { logged.push({ level: 'warn', message, ...(fields ? { fields } : {}) }); },
    error: (message: string, fields?: Record<string, unknown>) => { logged.push({ level: 'error', message, ...(fields ? { fields } : {}) }); },
  };
  /** A committed write's entry, as AttemptStore.commit puts it (a degradation write: no attempt needed). */
  const commit = async (id: string, value: AuditOutboxEntry): Promise<{ key: string; modRevision: string }> => {
    const result = await store.commitDegradation({ appKey: `app-${id}`, degradation: { correlationId: id, checks: [] }, expectedModRevision: null, events: [], audit: { id, entry: value } });
    if (!result.ok || !result.auditKey) throw new Error('commit failed');
    return { key: result.auditKey, modRevision: result.modRevision };
  };
  return { kv, store, log, logged, commit };
}

describe('the audit outbox', () => {
  it('keeps a committed write\'s records in etcd until its chain has recorded them, then deletes them', async () => {
    const w = world();
    const spool = new Spool();
    const audit = await ChainedAuditLog.open({ sink: spool, chainId: 'chain-a' });
    const stored = await w.commit('c1', entry('chain-a', '2026-12-02T04:00:00.000Z', transition('c1', 1), transition('c1', 2)));
    expect(stored.key).toMatch(new RegExp(`^${KEYS.auditOutboxPrefix}chain-a/\\d{15}-\\d{6}-c1$`));
    expect(await w.store.pendingAuditOutbox('chain-a', 10)).toHaveLength(1);

    expect(await recordEntry({ store: w.store, audit }, { ...stored, entry: entry('chain-a', '2026-12-02T04:00:00.000Z', transition('c1', 1), transition('c1', 2)) })).toBe(true);
    expect(spool.records.map((r) => r.eventId)).toEqual(['c1-v1', 'c1-v2']);
    expect(await w.store.pendingAuditOutbox(undefined, 10)).toEqual([]);
  });

  it('records what a kill left after the commit at the chain\'s next start, and once only when the kill came after the record', async () => {
    const w = world();
    const spool = new Spool();
    // Life 1: c1 committed, killed before its record; c2 committed and recorded, killed before the delete.
    const life1 = await ChainedAuditLog.open({ sink: spool, chainId: 'chain-a' });
    await w.commit('c1', entry('chain-a', '2026-12-02T04:00:00.000Z', transition('c1', 1)));
    await w.commit('c2', entry('chain-a', '2026-12-02T04:00:01.000Z', transition('c2', 1)));
    await life1.record(transition('c2', 1));
    expect(spool.records.map((r) => r.eventId)).toEqual(['c2-v1']);

    // Life 2 continues the chain from the spool, and drains: c1 recorded, c2 not again; both entries gone.
    const life2 = await ChainedAuditLog.open({ sink: spool, chainId: 'chain-a' });
    const outbox = new AuditOutbox({ store: w.store, audit: life2, chainId: 'chain-a', log: w.log });
    expect(await outbox.drain()).toBe(2);
    expect(spool.records.map((r) => r.eventId)).toEqual(['c2-v1', 'c1-v1']);
    expect(await w.store.pendingAuditOutbox(undefined, 10)).toEqual([]);
    expect(await outbox.drain()).toBe(0);
  });

  it('leaves the entries in etcd while the audit log cannot write, and records them when it can', async () => {
    const w = world();
    const spool = new Spool();
    const audit = await ChainedAuditLog.open({ sink: spool, chainId: 'chain-a' });
    await w.commit('c1', entry('chain-a', '2026-12-02T04:00:00.000Z', transition('c1', 1)));
    spool.failing = true;
    const outbox = new AuditOutbox({ store: w.store, audit, chainId: 'chain-a', log: w.log });
    await expect(outbox.drain()).rejects.toThrow('disk full');
    expect(await w.store.pendingAuditOutbox('chain-a', 10)).toHaveLength(1);
    spool.failing = false;
    expect(await outbox.drain()).toBe(1);
    expect(spool.records.map((r) => r.eventId)).toEqual(['c1-v1']);
  });

  it('leaves another chain\'s entries to it, and lets the leader adopt one its chain has not recorded for adoptAfterMs', async () => {
    const w = world();
    const spool = new Spool();
    const audit = await ChainedAuditLog.open({ sink: spool, chainId: 'chain-b' });
    let now = Date.parse('2026-12-02T04:05:00.000Z');
    await w.commit('c1', entry('chain-a', '2026-12-02T04:00:00.000Z', transition('c1', 1)));
    const outbox = new AuditOutbox({ store: w.store, audit, chainId: 'chain-b', log: w.log, now: () => new Date(now), adoptAfterMs: 10 * 60_000 });

    // Not its chain: a standby leaves it; a leader leaves it while it is younger than ten minutes.
    expect(await outbox.drain(false)).toBe(0);
    expect(await outbox.drain(true)).toBe(0);
    expect(await w.store.pendingAuditOutbox('chain-a', 10)).toHaveLength(1);

    now = Date.parse('2026-12-02T04:10:00.001Z');
    expect(await outbox.drain(true)).toBe(1);
    expect(spool.records).toHaveLength(1);
    expect(spool.records[0]).toMatchObject({ eventId: 'c1-v1', metadata: { adoptedFromChain: 'chain-a', committedAt: '2026-12-02T04:00:00.000Z' } });
    expect(w.logged).toEqual([expect.objectContaining({ level: 'warn', message: expect.stringMatching(/Adopted another chain's audit records/), fields: expect.objectContaining({ chainId: 'chain-a' }) })]);
    expect(await w.store.pendingAuditOutbox(undefined, 10)).toEqual([]);
  });

  it('moves an unreadable entry aside, says it once, and records the others', async () => {
    const w = world();
    const spool = new Spool();
    const audit = await ChainedAuditLog.open({ sink: spool, chainId: 'chain-a' });
    await w.kv.txn({ compares: [], puts: [{ key: `${KEYS.auditOutboxPrefix}chain-a/000000000000001-000000-broken`, value: '{"chainId":' }], deletes: [] });
    await w.kv.txn({ compares: [], puts: [{ key: `${KEYS.auditOutboxPrefix}chain-a/000000000000002-000000-shape`, value: '{"records":"no"}' }], deletes: [] });
    await w.commit('c1', entry('chain-a', '2026-12-02T04:00:00.000Z', transition('c1', 1)));
    const outbox = new AuditOutbox({ store: w.store, audit, chainId: 'chain-a', log: w.log });
    expect(await outbox.drain()).toBe(1);
    expect(await outbox.drain()).toBe(0);
    expect(spool.records.map((r) => r.eventId)).toEqual(['c1-v1']);
    expect(w.logged.map((l) => [l.level, l.fields?.key, l.fields?.problem])).toEqual([
      ['error', `${KEYS.auditOutboxPrefix}chain-a/000000000000001-000000-broken`, expect.stringMatching(/^value: not JSON/)],
      ['error', `${KEYS.auditOutboxPrefix}chain-a/000000000000002-000000-shape`, 'chainId: not a string'],
    ]);
    // Kept, out of the way: the dead letters hold the value and the reason.
    expect(await w.store.pendingAuditOutbox('chain-a', 10)).toHaveLength(0);
    const dead = await w.kv.getPrefix(KEYS.auditOutboxDeadPrefix);
    expect(dead.map((d) => JSON.parse(d.value) as Record<string, unknown>)).toEqual([
      expect.objectContaining({ outboxKey: `${KEYS.auditOutboxPrefix}chain-a/000000000000001-000000-broken`, value: '{"chainId":', reason: expect.stringMatching(/^value: not JSON/) }),
      expect.objectContaining({ outboxKey: `${KEYS.auditOutboxPrefix}chain-a/000000000000002-000000-shape`, value: '{"records":"no"}', reason: 'chainId: not a string' }),
    ]);
  });

  it('never lets a page of unreadable entries hold a good one back, and keeps a record the chain must not take out of it', async () => {
    const w = world();
    const spool = new Spool();
    const audit = await ChainedAuditLog.open({ sink: spool, chainId: 'chain-a' });
    for (let i = 0; i < 3; i++) {
      await w.kv.txn({ compares: [], puts: [{ key: `${KEYS.auditOutboxPrefix}chain-a/00000000000000${i}-000000-bad`, value: JSON.stringify(entry('chain-a', '2026-12-02T04:00:00.000Z', { ...transition('c0', i), actionType: 'NOT_AN_ACTION' as never })) }], deletes: [] });
    }
    await w.commit('c1', entry('chain-a', '2026-12-02T04:00:00.000Z', transition('c1', 1)));
    // A page of 2: the first drain moves two bad entries aside, the next the third and records c1.
    const outbox = new AuditOutbox({ store: w.store, audit, chainId: 'chain-a', log: w.log, batchSize: 2 });
    expect(await outbox.drain()).toBe(0);
    expect(await outbox.drain()).toBe(1);
    expect(spool.records.map((r) => r.eventId)).toEqual(['c1-v1']);
    expect(w.logged.map((l) => l.fields?.problem)).toEqual(Array(3).fill('records[0].actionType: not one of the audit action types'));
  });

  it('drains on its timer until stopped, and a drain running at stop() arms no other', async () => {
    const w = world();
    let drains = 0;
    let release: () => void = () => undefined;
    const store = { ...w.store, pendingAuditOutbox: async () => { drains++; await new Promise<void>((r) => { release = r; }); return []; } } as never;
    const outbox = new AuditOutbox({ store, audit: { record: async () => undefined }, chainId: 'chain-a', log: w.log });
    outbox.start(5, () => false);
    await new Promise((r) => setTimeout(r, 30));
    expect(drains).toBe(1);
    const stopped = outbox.stop();
    release();
    await stopped;
    await new Promise((r) => setTimeout(r, 30));
    expect(drains).toBe(1);
  });

  it('deletes an entry only if it is still the one read, so two drains cannot both take it', async () => {
    const w = world();
    const stored = await w.commit('c1', entry('chain-a', '2026-12-02T04:00:00.000Z', transition('c1', 1)));
    expect(await w.store.removeAuditOutbox({ key: stored.key, modRevision: '999' })).toBe(false);
    expect(await w.store.removeAuditOutbox(stored)).toBe(true);
    expect(await w.store.removeAuditOutbox(stored)).toBe(false);
  });
});
