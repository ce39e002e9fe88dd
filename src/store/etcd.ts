// KV on a real etcd v3 cluster through the etcd3 library. The only importer of etcd3.
import { Etcd3, type IOptions } from 'etcd3';
import { StoreUnavailable, type KV, type KeyValue, type Lease, type Txn, type TxnResult } from './kv.ts';

const NEUTRAL_KEY = '/ai-operator/';

// Every failure of the client surfaces as StoreUnavailable, so callers can tell
// "etcd is down, retry" from a bug.
async function guarded<T>(what: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw new StoreUnavailable(`${what}: ${(error as Error).message}`, { cause: error });
  }
}

export class EtcdKV implements KV {
  private readonly client: Etcd3;

  constructor(endpoints: string[], options: Partial<IOptions> = {}) {
    this.client = new Etcd3({ hosts: endpoints, dialTimeout: 5000, ...options });
  }

  async get(key: string): Promise<KeyValue | undefined> {
    const response = await guarded(`get ${key}`, () => this.client.get(key).exec());
    const kv = response.kvs[0];
    return kv ? toKeyValue(kv) : undefined;
  }

  async getPrefix(prefix: string, limit?: number): Promise<KeyValue[]> {
    let query = this.client.getAll().prefix(prefix).sort('Key', 'Ascend');
    if (limit !== undefined) query = query.limit(limit);
    const response = await guarded(`get ${prefix}*`, () => query.exec());
    return response.kvs.map(toKeyValue);
  }

  async txn(txn: Txn): Promise<TxnResult> {
    // The library's builder needs a first compare; a key's version is never
    // negative, so this one always holds.
    let builder = this.client.if(NEUTRAL_KEY, 'Version', '>', -1);
    for (const c of txn.compares) {
      if (c.target === 'absent') builder = builder.and(c.key, 'Create', '==', 0);
      else if (c.target === 'value') builder = builder.and(c.key, 'Value', '==', c.equals);
      else builder = builder.and(c.key, c.target === 'mod' ? 'Mod' : 'Create', '==', c.equals);
    }
    const ops = [
      ...txn.puts.map((p) => {
        const put = this.client.put(p.key).value(p.value);
        return p.lease ? put.lease(p.lease) : put;
      }),
      ...txn.deletes.map((key) => this.client.delete().key(key)),
    ];
    const response = await guarded('txn', () => builder.then(...ops).commit());
    return { succeeded: response.succeeded, revision: String(response.header.revision) };
  }

  async grantLease(ttlSeconds: number): Promise<Lease> {
    const lease = this.client.lease(ttlSeconds, { autoKeepAlive: false });
    const id = await guarded('lease grant', () => lease.grant());
    return {
      id,
      async renew() {
        const response = await guarded('lease renew', () => lease.keepaliveOnce());
        return Number(response.TTL);
      },
      revoke: () => guarded('lease revoke', () => lease.revoke()),
    };
  }

  async watchPrefix(prefix: string, onChange: (key: string, deleted: boolean) => void, onError: (error: Error) => void = () => undefined): Promise<() => Promise<void>> {
    const watcher = await guarded(`watch ${prefix}*`, () => this.client.watch().prefix(prefix).create());
    watcher.on('put', (kv) => onChange(kv.key.toString(), false));
    watcher.on('delete', (kv) => onChange(kv.key.toString(), true));
    // The library reconnects watchers itself; an error is reported, not fatal.
    watcher.on('error', onError);
    return async () => { await watcher.cancel(); };
  }

  async close(): Promise<void> {
    this.client.close();
  }
}

function toKeyValue(kv: { key: Buffer; value: Buffer; mod_revision: string; create_revision: string }): KeyValue {
  return { key: kv.key.toString(), value: kv.value.toString(), modRevision: String(kv.mod_revision), createRevision: String(kv.create_revision) };
}
