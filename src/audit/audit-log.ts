// The audit log: seals records into one linear hash chain and writes them, in
// chain order, through a sink. record() resolves once its record is durable.
import type { Metrics } from '../observability/metrics.ts';
import { traceFields } from '../observability/tracing.ts';
import { GENESIS_HASH, sealRecord, type AuditInput, type AuditRecord } from './record.ts';

export interface AuditLog {
  /** The chain's name where it is shipped (the spool's checkpoint); undefined for a log that is not shipped. */
  readonly chainId?: string;
  record(input: AuditInput): Promise<AuditRecord>;
  flush(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Where sealed records go. Calls to write() never overlap, and a batch is always
 * the next part of the chain, except after a failure, when the same records are
 * offered again: a sink that wrote part of a failed batch must skip what it has.
 */
export interface AuditSink {
  /** The `sink` label of ai_operator_audit_records_total. */
  readonly name: string;
  /** Resolves once the records are durable; what it resolves with is the sink's own business. */
  write(records: readonly AuditRecord[]): Promise<unknown>;
  /** The newest records already stored, oldest first: the chain head and the ids a replay must not repeat. */
  tail?(limit: number): Promise<AuditRecord[]>;
  close?(): Promise<void>;
}

export interface AuditLogOptions {
  sink: AuditSink;
  /** The chain's name (AuditLog.chainId). */
  chainId?: string;
  now?: () => Date;
  /** Records per sink write (one fsync each for the file sink). */
  maxBatch?: number;
  /** How many recent eventIds are remembered so that recording one again returns the first record. */
  rememberIds?: number;
  metrics?: Pick<Metrics, 'auditRecorded'>;
  /**
   * Called once with each record as it is sealed, before any sink write (so a
   * sink retry never repeats it): a copy for the operator's own log. Must not throw.
   */
  onSealed?: (record: AuditRecord) => void;
}

const DEFAULT_REMEMBER_IDS = 10_000;

interface Entry {
  record: AuditRecord;
  written: boolean;
  waiters: { resolve: (r: AuditRecord) => void; reject: (e: unknown) => void }[];
}

export class ChainedAuditLog implements AuditLog {
  readonly chainId: string | undefined;
  readonly #sink: AuditSink;
  readonly #now: () => Date;
  readonly #maxBatch: number;
  readonly #rememberIds: number;
  readonly #metrics: Pick<Metrics, 'auditRecorded'> | undefined;
  readonly #onSealed: ((record: AuditRecord) => void) | undefined;
  readonly #queue: Entry[] = [];
  readonly #byEventId = new Map<string, Entry>();
  #head: string;
  #lastTime: number;
  #draining: Promise<void> | undefined;
  #closed = false;
  #lastError: unknown;

  /** Opens a log that continues the chain the sink already holds (a restart picks up where it stopped). */
  static async open(options: AuditLogOptions): Promise<ChainedAuditLog> {
    const stored = (await options.sink.tail?.(options.rememberIds ?? DEFAULT_REMEMBER_IDS)) ?? [];
    return new ChainedAuditLog(options, stored);
  }

  constructor(options: AuditLogOptions, stored: readonly AuditRecord[] = []) {
    this.chainId = options.chainId;
    this.#sink = options.sink;
    this.#now = options.now ?? (() => new Date());
    this.#maxBatch = options.maxBatch ?? 500;
    this.#rememberIds = options.rememberIds ?? DEFAULT_REMEMBER_IDS;
    this.#metrics = options.metrics;
    this.#onSealed = options.onSealed;
    const last = stored.at(-1);
    this.#head = last?.hash ?? GENESIS_HASH;
    this.#lastTime = last ? Date.parse(last.timestamp) : 0;
    for (const record of stored) this.#remember({ record, written: true, waiters: [] });
  }

  /** The hash of the newest sealed record: keep it elsewhere to detect truncation (verifyChain's `head`). */
  get head(): string {
    return this.#head;
  }

  /** Records sealed but not yet written. */
  get pending(): number {
    return this.#queue.length;
  }

  /** The error of the last failed write, until a write succeeds. */
  get lastError(): unknown {
    return this.#lastError;
  }

  /**
   * Seals and writes one record. A rejection means "not durable yet", not "dropped":
   * the record keeps its place in the chain and is written by the next record() or
   * flush(); recording the same eventId again waits for that same record.
   */
  record(input: AuditInput): Promise<AuditRecord> {
    if (this.#closed) return Promise.reject(new Error('Audit log is closed'));
    const known = input.eventId === undefined ? undefined : this.#byEventId.get(input.eventId);
    if (known?.written) return Promise.resolve(known.record);
    const entry = known ?? this.#seal(input);
    const done = new Promise<AuditRecord>((resolve, reject) => entry.waiters.push({ resolve, reject }));
    this.#kick().then(undefined, (error: unknown) => {
      // The waiters of the failed batch got this error; keep it for health reporting.
      this.#lastError = error;
    });
    return done;
  }

  async flush(): Promise<void> {
    while (this.#queue.length > 0) await this.#kick();
  }

  async close(): Promise<void> {
    this.#closed = true;
    try {
      await this.flush();
    } catch (error) {
      throw new Error(`Audit log closed with ${this.#queue.length} records not written`, { cause: error });
    } finally {
      await this.#sink.close?.();
    }
  }

  #seal(input: AuditInput): Entry {
    // Timestamps never go backwards along the chain, so a clock step cannot put a
    // record in an earlier day's file or index than the record before it.
    const at = new Date(Math.max(this.#now().getTime(), this.#lastTime));
    // Recorded within a reconcile of an attempt: the record names its trace and span.
    const trace = input.trace_id === undefined ? traceFields() : undefined;
    const record = sealRecord(trace ? { ...input, ...trace } : input, this.#head, at);
    this.#head = record.hash;
    this.#lastTime = at.getTime();
    const entry: Entry = { record, written: false, waiters: [] };
    this.#queue.push(entry);
    this.#remember(entry);
    this.#onSealed?.(record);
    return entry;
  }

  #remember(entry: Entry): void {
    this.#byEventId.set(entry.record.eventId, entry);
    if (this.#byEventId.size <= this.#rememberIds) return;
    // Maps iterate in insertion order: the first key is the oldest.
    const oldest = this.#byEventId.keys().next();
    if (!oldest.done) this.#byEventId.delete(oldest.value);
  }

  // One drain at a time is what keeps sink writes in chain order.
  #kick(): Promise<void> {
    this.#draining ??= this.#drain();
    return this.#draining;
  }

  async #drain(): Promise<void> {
    // Yield once so #kick has stored this promise before the finally below can clear it.
    await undefined;
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue.slice(0, this.#maxBatch);
        try {
          await this.#sink.write(batch.map((e) => e.record));
        } catch (error) {
          // The drain stops here, so everyone waiting learns now; the records stay queued for the next attempt.
          for (const entry of this.#queue) for (const w of entry.waiters.splice(0)) w.reject(error);
          throw error;
        }
        this.#queue.splice(0, batch.length);
        this.#lastError = undefined;
        this.#metrics?.auditRecorded(this.#sink.name, batch.length);
        for (const entry of batch) {
          entry.written = true;
          for (const w of entry.waiters.splice(0)) w.resolve(entry.record);
        }
      }
    } finally {
      // Cleared synchronously after the last queue check, before any resolved caller
      // runs: a record() from that caller starts a new drain instead of joining this one.
      this.#draining = undefined;
    }
  }
}

export function openAuditLog(options: AuditLogOptions): Promise<ChainedAuditLog> {
  return ChainedAuditLog.open(options);
}
