// The audit trail as the operator runs it: the hash-chained log, written to the
// fsync'd spool in AUDIT_FALLBACK_DIR, shipped from there to Elasticsearch.
import type { Logger } from '../observability/log.ts';
import type { Metrics } from '../observability/metrics.ts';
import { openAuditLog, type ChainedAuditLog } from './audit-log.ts';
import type { AuditIndex } from './elasticsearch-sink.ts';
import { JsonlSink } from './jsonl-sink.ts';
import type { AuditRecord } from './record.ts';
import { AuditShipper, ShippingSpool, type Backoff } from './shipper.ts';

export interface AuditTrailOptions {
  dir: string;
  index: AuditIndex;
  log: Logger;
  metrics?: Metrics;
  onSealed?: (record: AuditRecord) => void;
  backoff?: Backoff;
}

/** Opens the spool, continues its chain, and starts shipping; close() on the log stops it all. */
export async function openAuditTrail(options: AuditTrailOptions): Promise<ChainedAuditLog> {
  const file = await JsonlSink.open(options.dir);
  const shipper = await AuditShipper.open({ dir: options.dir, spool: file, index: options.index, log: options.log, metrics: options.metrics, ...(options.backoff && { backoff: options.backoff }) });
  const log = await openAuditLog({
    sink: new ShippingSpool(file, shipper),
    chainId: shipper.chainId,
    ...(options.metrics && { metrics: options.metrics }),
    ...(options.onSealed && { onSealed: options.onSealed }),
  });
  shipper.start();
  return log;
}
