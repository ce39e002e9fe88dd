// The audit trail as the operator runs it: the hash-chained log, written to the
// fsync'd spool in AUDIT_FALLBACK_DIR, shipped from there to Elasticsearch. The
// spool is this process's alone while it runs (spool-lock.ts).
import { mkdir } from 'node:fs/promises';
import type { Logger } from '../observability/log.ts';
import type { Metrics } from '../observability/metrics.ts';
import { openAuditLog, type ChainedAuditLog } from './audit-log.ts';
import type { AuditIndex } from './elasticsearch-sink.ts';
import { JsonlSink } from './jsonl-sink.ts';
import type { AuditRecord } from './record.ts';
import { AuditShipper, ShippingSpool, type Backoff } from './shipper.ts';
import { SpoolLock, type LockHolder } from './spool-lock.ts';

export interface AuditTrailOptions {
  dir: string;
  index: AuditIndex;
  log: Logger;
  metrics?: Metrics;
  onSealed?: (record: AuditRecord) => void;
  backoff?: Backoff;
  /** Another process took the spool's lock while this one held it: this one must stop. */
  onLockLost?: (holder: LockHolder) => void;
}

/**
 * Takes the spool's lock (SpoolInUseError if another process holds it), opens the
 * spool, continues its chain, and starts shipping; close() on the log stops it all.
 */
export async function openAuditTrail(options: AuditTrailOptions): Promise<ChainedAuditLog> {
  await mkdir(options.dir, { recursive: true });
  const lock = await SpoolLock.acquire(options.dir, { ...(options.onLockLost && { onLost: options.onLockLost }) });
  try {
    const file = await JsonlSink.open(options.dir);
    const shipper = await AuditShipper.open({ dir: options.dir, spool: file, index: options.index, log: options.log, metrics: options.metrics, ...(options.backoff && { backoff: options.backoff }) });
    const log = await openAuditLog({
      sink: new ShippingSpool(file, shipper, lock),
      chainId: shipper.chainId,
      ...(options.metrics && { metrics: options.metrics }),
      ...(options.onSealed && { onSealed: options.onSealed }),
    });
    shipper.start();
    return log;
  } catch (error) {
    await lock.release();
    throw error;
  }
}
