// KV in memory with etcd's revision semantics, for unit and property tests only
// (SPEC §2). Behaviour on the real etcd is shown by the e2e tests.
import type { KV, KeyValue, Lease, Txn, TxnResult } from './kv.ts';

export class MemoryKV implements KV {
  private revision = 0;
  private readonly data = new Map<string, KeyValue>();
  private readonly leases = new Map<string, { expiresAt: number; ttl: number }>();
  private readonly watchers = new Set<{ prefix: string; onChange: (key: string, deleted: boolean) => void }>();
  private nextLease = 1;
  now: () => number = () => Date.now();

  async get(key: string): Promise<KeyValue | undefined> {
    this.expire();
    const kv = this.data.get(key);
    return kv ? strip(kv) : undefined;
  }

  async getPrefix(prefix: string, limit?: number): Promise<KeyValue[]> {
    this.expire();
    const found = [...this.data.values()].filter((kv) => kv.key.startsWith(prefix)).sort((a, b) => a.key.localeCompare(b.key)).map(strip);
    return limit === undefined ? found : found.slice(0, limit);
  }

  async getKeys(prefix: string): Promise<string[]> {
    return (await this.getPrefix(prefix)).map((kv) => kv.key);
  }

  async txn(txn: Txn): Promise<TxnResult> {
    this.expire();
    const holds = txn.compares.every((c) => {
      const kv = this.data.get(c.key);
      switch (c.target) {
        case 'absent': return kv === undefined;
        case 'mod': return (kv?.modRevision ?? '0') === c.equals;
        case 'create': return (kv?.createRevision ?? '0') === c.equals;
        case 'value': return kv?.value === c.equals;
      }
    });
    if (!holds) return { succeeded: false, revision: String(this.revision) };
    this.revision++;
    const rev = String(this.revision);
    const changed: Array<[string, boolean]> = [];
    for (const put of txn.puts) {
      if (put.lease && !this.leases.has(put.lease)) throw new Error(`lease ${put.lease} not found`);
      const existing = this.data.get(put.key);
      this.data.set(put.key, { key: put.key, value: put.value, modRevision: rev, createRevision: existing?.createRevision ?? rev, ...(put.lease ? { lease: put.lease } : {}) });
      changed.push([put.key, false]);
    }
    for (const key of txn.deletes) {
      if (this.data.delete(key)) changed.push([key, true]);
    }
    this.notify(changed);
    return { succeeded: true, revision: rev };
  }

  async grantLease(ttlSeconds: number): Promise<Lease> {
    const id = String(this.nextLease++);
    this.leases.set(id, { ttl: ttlSeconds, expiresAt: this.now() + ttlSeconds * 1000 });
    return {
      id,
      renew: async () => {
        this.expire();
        const lease = this.leases.get(id);
        if (!lease) return 0;
        lease.expiresAt = this.now() + lease.ttl * 1000;
        return lease.ttl;
      },
      revoke: async () => this.dropLease(id),
    };
  }

  async watchPrefix(prefix: string, onChange: (key: string, deleted: boolean) => void): Promise<() => Promise<void>> {
    const watcher = { prefix, onChange };
    this.watchers.add(watcher);
    return async () => { this.watchers.delete(watcher); };
  }

  async close(): Promise<void> {
    this.watchers.clear();
  }

  /** Test hook: a lease lost (as when etcd expires it after a partition). */
  dropLease(id: string): void {
    this.leases.delete(id);
    const gone = [...this.data.values()].filter((kv) => kv.lease === id).map((kv) => kv.key);
    for (const key of gone) this.data.delete(key);
    if (gone.length > 0) this.revision++;
    this.notify(gone.map((key) => [key, true]));
  }

  private expire(): void {
    for (const [id, lease] of this.leases) if (lease.expiresAt <= this.now()) this.dropLease(id);
  }

  private notify(changed: Array<[string, boolean]>): void {
    for (const [key, deleted] of changed) {
      for (const w of this.watchers) if (key.startsWith(w.prefix)) w.onChange(key, deleted);
    }
  }
}

function strip(kv: KeyValue): KeyValue {
  return { key: kv.key, value: kv.value, modRevision: kv.modRevision, createRevision: kv.createRevision, ...(kv.lease ? { lease: kv.lease } : {}) };
}
