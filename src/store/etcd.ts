// KV on a real etcd v3 cluster through the etcd3 library. The only importer of etcd3.
import { Etcd3, type IOptions, type Namespace } from 'etcd3';
import { KEYS } from '../api/etcd.ts';
import { StoreUnavailable, type KV, type KeyValue, type Lease, type Txn, type TxnResult } from './kv.ts';

const NEUTRAL_KEY = KEYS.root;

// Every failure of the client surfaces as StoreUnavailable, so callers can tell
// "etcd is down, retry" from a bug.
async function guarded<T>(what: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw new StoreUnavailable(`${what}: ${(error as Error).message}`, { cause: error });
  }
}

export interface EtcdKVOptions extends Partial<IOptions> {
  /** Every key lives under this prefix (etcd3's namespace), so tests can share one etcd. */
  prefix?: string;
}

export class EtcdKV implements KV {
  private readonly root: Etcd3;
  private readonly client: Namespace;
  private readonly prefix: string;

  constructor(endpoints: string[], options: EtcdKVOptions = {}) {
    const { prefix = '', ...etcdOptions } = options;
    this.root = new Etcd3({ hosts: endpoints, dialTimeout: 5000, ...etcdOptions });
    this.client = prefix ? this.root.namespace(prefix) : this.root;
    this.prefix = prefix;
  }

  private unprefixed(key: string): string {
    return this.prefix && key.startsWith(this.prefix) ? key.slice(this.prefix.length) : key;
  }

  async get(key: string): Promise<KeyValue | undefined> {
    const response = await guarded(`get ${key}`, () => this.client.get(key).exec());
    const kv = response.kvs[0];
    return kv ? { ...toKeyValue(kv), key: this.unprefixed(kv.key.toString()) } : undefined;
  }

  async getPrefix(prefix: string, limit?: number): Promise<KeyValue[]> {
    let query = this.client.getAll().prefix(prefix).sort('Key', 'Ascend');
    if (limit !== undefined) query = query.limit(limit);
    const response = await guarded(`get ${prefix}*`, () => query.exec());
    return response.kvs.map((kv) => ({ ...toKeyValue(kv), key: this.unprefixed(kv.key.toString()) }));
  }

  async getKeys(prefix: string): Promise<string[]> {
    const keys = await guarded(`get ${prefix}* (keys only)`, () => this.client.getAll().prefix(prefix).sort('Key', 'Ascend').keys());
    return keys.map((key) => this.unprefixed(key));
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
    watcher.on('put', (kv) => onChange(this.unprefixed(kv.key.toString()), false));
    watcher.on('delete', (kv) => onChange(this.unprefixed(kv.key.toString()), true));
    // The library reconnects watchers itself; an error is reported, not fatal.
    watcher.on('error', onError);
    return async () => { await watcher.cancel(); };
  }

  async close(): Promise<void> {
    this.root.close();
  }
}

function toKeyValue(kv: { key: Buffer; value: Buffer; mod_revision: string; create_revision: string; lease: string }): KeyValue {
  // etcd says "no lease" with lease 0.
  const lease = String(kv.lease);
  return {
    key: kv.key.toString(), value: kv.value.toString(), modRevision: String(kv.mod_revision), createRevision: String(kv.create_revision),
    ...(lease !== '0' && lease !== '' ? { lease } : {}),
  };
}
