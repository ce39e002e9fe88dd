import { describe, expect, it } from 'vitest';
import { createLogger } from '../observability/log.ts';
import { KEYS } from './attempt-store.ts';
import { StoreUnavailable, type KV, type Lease } from './kv.ts';
import { LeaderElector, validForMs } from './leader.ts';
import { MemoryKV } from './memory.ts';

/** A KV that an outage makes fail every call, leases included, as an unreachable etcd does. */
function outageKV(inner: MemoryKV): KV & { down: boolean } {
  const kv = {
    down: false,
    guard<T>(run: () => Promise<T>): Promise<T> {
      return kv.down ? Promise.reject(new StoreUnavailable('connection refused')) : run();
    },
    get: (key: string) => kv.guard(() => inner.get(key)),
    getPrefix: (prefix: string, limit?: number) => kv.guard(() => inner.getPrefix(prefix, limit)),
    getKeys: (prefix: string) => kv.guard(() => inner.getKeys(prefix)),
    txn: (txn: Parameters<KV['txn']>[0]) => kv.guard(() => inner.txn(txn)),
    grantLease: (ttl: number) => kv.guard(async () => {
      const lease = await inner.grantLease(ttl);
      return { id: lease.id, renew: () => kv.guard(() => lease.renew()), revoke: () => kv.guard(() => lease.revoke()) } satisfies Lease;
    }),
    watchPrefix: (prefix: string, onChange: (key: string, deleted: boolean) => void) => inner.watchPrefix(prefix, onChange),
    close: () => inner.close(),
  };
  return kv;
}

const until = async (what: string, probe: () => boolean, ms: number) => {
  const deadline = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`not ${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('LeaderElector across an etcd outage', () => {
  it('deposes itself when renewal fails, and leads again as soon as etcd is back: its own stale lease is revoked, not waited out', async () => {
    const memory = new MemoryKV();
    const kv = outageKV(memory);
    const elector = new LeaderElector(kv, 'replica-a', createLogger('ERROR'), { ttlSeconds: 15, renewIntervalMs: 20 });
    await elector.start();
    expect(elector.isLeader()).toBe(true);

    // etcd goes away: the renewal fails and the replica stops acting at once; its lease cannot be revoked
    kv.down = true;
    await until('deposed', () => !elector.isLeader(), 1000);
    // The leader key outlives the outage, bound to the old lease (etcd keeps a lease through a restart)
    kv.down = false;
    expect((await memory.get(KEYS.leader))?.value).toBe('replica-a');

    // Back: elected within a few campaign intervals, not after the 15 s TTL
    await until('leader again', () => elector.isLeader(), 1000);
    const key = await memory.get(KEYS.leader);
    expect(key?.value).toBe('replica-a');
    expect(elector.fence().createRevision).toBe(key?.createRevision);
    await elector.stop();
  });

  it('never takes over a key that another replica holds', async () => {
    const memory = new MemoryKV();
    const a = new LeaderElector(memory, 'replica-a', createLogger('ERROR'), { ttlSeconds: 15, renewIntervalMs: 20 });
    const b = new LeaderElector(memory, 'replica-b', createLogger('ERROR'), { ttlSeconds: 15, renewIntervalMs: 20 });
    await a.start();
    await b.start();
    await new Promise((r) => setTimeout(r, 200));
    expect([a.isLeader(), b.isLeader()]).toEqual([true, false]);
    await a.stop();
    await until('b leads after a stepped down', () => b.isLeader(), 1000);
    await b.stop();
  });
});

describe('LeaderElector with a short lease', () => {
  it('acts on a 2 s lease: elected, it leads across renewals instead of holding the key without ever acting', async () => {
    const memory = new MemoryKV();
    const elector = new LeaderElector(memory, 'replica-a', createLogger('ERROR'), { ttlSeconds: 2 });
    await elector.start();
    expect((await memory.get(KEYS.leader))?.value).toBe('replica-a');
    expect(elector.isLeader()).toBe(true);
    // Past the first validity window: renewals (every TTL/3) keep it leading.
    await new Promise((r) => setTimeout(r, 1600));
    expect(elector.isLeader()).toBe(true);
    await elector.stop();
  });

  it('keeps the 2 s margin for the usual TTLs and a third of a short one', () => {
    expect(validForMs(15)).toBe(13_000);
    expect(validForMs(8)).toBe(6000);
    expect(validForMs(3)).toBe(2000);
    expect(validForMs(2)).toBeCloseTo(1333.3, 1);
  });
});
