// The small key-value port the engine needs from etcd: reads, one-transaction
// writes with compare-and-swap, leases and prefix watches. Only etcd.ts talks to
// the etcd3 library (quiet since 2023), so it can be swapped without touching
// callers; memory.ts implements the same port for fast unit tests.

export interface KeyValue {
  key: string;
  value: string;
  modRevision: string;
  createRevision: string;
  /** The lease the key is attached to; absent when it has none. */
  lease?: string;
}

export type Compare =
  | { key: string; target: 'mod' | 'create'; equals: string }
  | { key: string; target: 'value'; equals: string }
  /** The key does not exist. */
  | { key: string; target: 'absent' };

export interface Put {
  key: string;
  value: string;
  /** Attach to this lease: the key goes when the lease expires. */
  lease?: string;
}

export interface Txn {
  compares: Compare[];
  puts: Put[];
  deletes: string[];
}

export interface TxnResult {
  succeeded: boolean;
  /** The store revision after a successful transaction. */
  revision: string;
}

export interface Lease {
  readonly id: string;
  /** Renews the lease once; resolves to the remaining TTL (0 when it is gone). */
  renew(): Promise<number>;
  revoke(): Promise<void>;
}

export interface KV {
  get(key: string): Promise<KeyValue | undefined>;
  getPrefix(prefix: string, limit?: number): Promise<KeyValue[]>;
  /** The keys under prefix, without their values: what a scan needs that only asks which keys exist. */
  getKeys(prefix: string): Promise<string[]>;
  txn(txn: Txn): Promise<TxnResult>;
  grantLease(ttlSeconds: number): Promise<Lease>;
  /** Calls onChange for every put or delete under prefix until the returned stop() is called. */
  watchPrefix(prefix: string, onChange: (key: string, deleted: boolean) => void, onError?: (error: Error) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export { StoreUnavailable } from '../ports/errors.ts';
