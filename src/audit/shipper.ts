// Ships the spool to Elasticsearch. Every record is first fsync'd to the spool
// (jsonl-sink.ts), so record() resolving means durable whatever Elasticsearch
// does; this loop then sends the spooled records in chain order and moves a
// checkpoint (fsync'd, renamed into place) over what Elasticsearch has taken.
// Killed at any point, a restart resumes from the checkpoint: at worst the last
// batch is sent again, and `create` with `_id` = eventId turns that into 409s.
//
// Rotation rule: a day's file is deleted once the checkpoint has moved into a
// later file (everything in it is in Elasticsearch). The newest file is never
// deleted, because it holds the chain head the next start continues from.
import { randomUUID } from 'node:crypto';
import { open, rename, rm, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../observability/log.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { AuditSink } from './audit-log.ts';
import type { AuditIndex, AuditDocument } from './elasticsearch-sink.ts';
import { countSpooled, listAuditFiles, readSpool, recordEndingAt, type JsonlSink, type SpoolPosition } from './jsonl-sink.ts';
import type { AuditRecord } from './record.ts';
import type { SpoolLock } from './spool-lock.ts';

export const CHECKPOINT_FILE = 'elasticsearch.checkpoint.json';

export interface Checkpoint {
  /** Names this spool's chain in Elasticsearch (chainId of every document it ships). */
  chainId: string;
  /** Where shipping resumes; absent: the start of the oldest file. */
  position?: SpoolPosition;
  /** The chainSeq of the next record to ship. */
  nextSeq: number;
  /** The last record shipped: a restart checks the spool still ends a line with it there. */
  lastEventId?: string;
  lastHash?: string;
}

export async function readCheckpoint(dir: string): Promise<Checkpoint | undefined> {
  const text = await readFile(join(dir, CHECKPOINT_FILE), 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (text === undefined) return undefined;
  const parsed = JSON.parse(text) as Checkpoint;
  if (typeof parsed.chainId !== 'string' || !Number.isSafeInteger(parsed.nextSeq)) throw new Error(`${join(dir, CHECKPOINT_FILE)}: not a shipping checkpoint`);
  return parsed;
}

/** Written beside, fsync'd, renamed over the old one, directory fsync'd: a crash leaves the old or the new one whole. */
export async function writeCheckpoint(dir: string, checkpoint: Checkpoint): Promise<void> {
  const path = join(dir, CHECKPOINT_FILE);
  const handle = await open(`${path}.tmp`, 'w');
  try {
    await handle.writeFile(`${JSON.stringify(checkpoint)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(`${path}.tmp`, path);
  const dirHandle = await open(dir, 'r');
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}

/** The rotation rule: files wholly before the checkpoint's file. Never the checkpoint's own, so never the newest. */
export function removableFiles(files: readonly string[], checkpoint: Checkpoint): string[] {
  const at = checkpoint.position?.file;
  return at === undefined ? [] : files.filter((f) => f < at);
}

/**
 * Whether a checkpoint belongs to the spool it sits in: the line ending at its
 * position is the record it names, or that file is gone and later ones exist.
 * A spool wiped or replaced under a kept checkpoint would otherwise be skipped.
 */
export function checkpointMatches(checkpoint: Checkpoint, files: readonly string[], atPosition: AuditRecord | undefined): boolean {
  const position = checkpoint.position;
  if (position === undefined) return true;
  if (atPosition !== undefined) return atPosition.hash === checkpoint.lastHash;
  return !files.includes(position.file) && files.some((f) => f > position.file);
}

export interface Backoff {
  initialMs: number;
  maxMs: number;
}

/** Exponential, capped, with jitter in [½, 1] of the step so replicas do not retry in step. */
export function backoffDelay(failures: number, backoff: Backoff, random: () => number = Math.random): number {
  const step = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(Math.max(failures - 1, 0), 30));
  return Math.round(step * (0.5 + random() / 2));
}

export interface ShipperOptions {
  dir: string;
  /** The spool's writer: shipping never reads past its durable end. */
  spool: Pick<JsonlSink, 'durableEnd'>;
  index: AuditIndex;
  log: Logger;
  metrics?: Pick<Metrics, 'auditRecorded' | 'setAuditFallbackPending'> | undefined;
  /** Records per bulk request. */
  batch?: number;
  backoff?: Backoff;
  random?: () => number;
}

export interface ShipperStats {
  created: number;
  duplicates: number;
  failures: number;
}

export class AuditShipper {
  readonly #dir: string;
  readonly #spool: Pick<JsonlSink, 'durableEnd'>;
  readonly #index: AuditIndex;
  readonly #log: Logger;
  readonly #metrics: ShipperOptions['metrics'];
  readonly #batch: number;
  readonly #backoff: Backoff;
  readonly #random: () => number;
  #checkpoint: Checkpoint;
  #pending: number;
  #templateReady = false;
  #failures = 0;
  #stopping = false;
  #drainUntil = 0;
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  readonly #abort = new AbortController();
  readonly stats: ShipperStats = { created: 0, duplicates: 0, failures: 0 };

  /** Reads (or starts) the checkpoint and counts what is waiting; call start() to ship. */
  static async open(options: ShipperOptions): Promise<AuditShipper> {
    const files = await listAuditFiles(options.dir);
    let checkpoint = await readCheckpoint(options.dir);
    if (checkpoint?.position !== undefined) {
      const there = await recordEndingAt(options.dir, checkpoint.position);
      if (!checkpointMatches(checkpoint, files, there)) {
        options.log.warn('Reset the audit shipping checkpoint: it does not match the spool, which is shipped again from its start', { checkpoint });
        checkpoint = undefined;
      }
    }
    if (checkpoint === undefined) {
      checkpoint = { chainId: randomUUID(), nextSeq: 0 };
      await writeCheckpoint(options.dir, checkpoint);
    }
    const until = options.spool.durableEnd;
    const pending = until === undefined ? 0 : await countSpooled(options.dir, checkpoint.position, until);
    const shipper = new AuditShipper(options, checkpoint, pending);
    await shipper.#rotate();
    return shipper;
  }

  private constructor(options: ShipperOptions, checkpoint: Checkpoint, pending: number) {
    this.#dir = options.dir;
    this.#spool = options.spool;
    this.#index = options.index;
    this.#log = options.log;
    this.#metrics = options.metrics;
    this.#batch = options.batch ?? 500;
    this.#backoff = options.backoff ?? { initialMs: 1000, maxMs: 30_000 };
    this.#random = options.random ?? Math.random;
    this.#checkpoint = checkpoint;
    this.#pending = pending;
    this.#metrics?.setAuditFallbackPending(pending);
  }

  get chainId(): string {
    return this.#checkpoint.chainId;
  }

  /** Records spooled and not yet in Elasticsearch (the gauge ai_operator_audit_fallback_pending). */
  get pending(): number {
    return this.#pending;
  }

  get checkpoint(): Checkpoint {
    return this.#checkpoint;
  }

  start(): void {
    this.#loop ??= this.#run().catch((error: unknown) => {
      // #run catches every shipping error; reaching here is a bug, said loudly, and the spool keeps the records.
      this.#log.error('Stopped shipping audit records', { error: (error as Error).message });
    });
  }

  /** The spool took `count` more records. */
  notify(count: number): void {
    if (count <= 0) return;
    this.#setPending(this.#pending + count);
    this.#wake?.();
  }

  /**
   * Stops the loop. While Elasticsearch is taking records it keeps going for up to
   * `drainMs`, so a clean shutdown usually leaves the spool empty; what is left
   * ships on the next start. Closes the index client.
   */
  async stop(drainMs = 5000): Promise<void> {
    this.#stopping = true;
    this.#drainUntil = Date.now() + drainMs;
    this.#wake?.();
    // A request still in flight at the deadline (or now, while Elasticsearch is failing) is given up: the spool keeps its records.
    const deadline = setTimeout(() => this.#abort.abort(), this.#failures > 0 ? 0 : drainMs);
    try {
      await this.#loop;
    } finally {
      clearTimeout(deadline);
      await this.#index.close();
    }
  }

  async #run(): Promise<void> {
    for (;;) {
      if (this.#stopping && !(this.#pending > 0 && this.#failures === 0 && Date.now() < this.#drainUntil)) return;
      if (this.#templateReady && this.#pending === 0) {
        if (this.#stopping) return;
        await new Promise<void>((resolve) => { this.#wake = resolve; });
        this.#wake = undefined;
        continue;
      }
      try {
        if (!this.#templateReady) {
          await this.#index.ensureTemplate(this.#abort.signal);
          this.#templateReady = true;
        }
        if (this.#pending > 0) await this.#shipBatch();
        if (this.#failures > 0) this.#log.info('Shipping audit records to Elasticsearch again', { pending: this.#pending, failedAttempts: this.#failures });
        this.#failures = 0;
      } catch (error) {
        this.#failures++;
        this.stats.failures++;
        const fields = { pending: this.#pending, attempt: this.#failures, error: (error as Error).message };
        // Said once per outage, not once per retry; the gauge and its alert carry the duration.
        if (this.#failures === 1) this.#log.warn('Could not ship audit records to Elasticsearch; they stay in the spool', fields);
        else this.#log.debug('Could not ship audit records to Elasticsearch', fields);
        if (this.#stopping) return;
        await this.#sleep(backoffDelay(this.#failures, this.#backoff, this.#random));
      }
    }
  }

  async #shipBatch(): Promise<void> {
    const until = this.#spool.durableEnd;
    const spooled = until === undefined ? [] : await readSpool(this.#dir, this.#checkpoint.position, until, this.#batch);
    if (spooled.length === 0) {
      // The spool is the truth: nothing after the checkpoint means nothing pending.
      this.#setPending(0);
      return;
    }
    const { chainId, nextSeq } = this.#checkpoint;
    const documents: AuditDocument[] = spooled.map((s, i) => ({ ...s.record, chainId, chainSeq: nextSeq + i }));
    const outcome = await this.#index.ship(documents, this.#abort.signal);
    if (outcome.shipped > 0) {
      const last = spooled[outcome.shipped - 1]!;
      const moved = last.end.file !== this.#checkpoint.position?.file;
      this.#checkpoint = { chainId, position: last.end, nextSeq: nextSeq + outcome.shipped, lastEventId: last.record.eventId, lastHash: last.record.hash };
      await writeCheckpoint(this.#dir, this.#checkpoint);
      this.stats.created += outcome.created;
      this.stats.duplicates += outcome.duplicates;
      this.#metrics?.auditRecorded('elasticsearch', outcome.created);
      this.#setPending(this.#pending - outcome.shipped);
      if (outcome.duplicates > 0) this.#log.info('Found audit records already in Elasticsearch (a replay after a restart)', { duplicates: outcome.duplicates, total: this.stats.duplicates });
      if (moved) await this.#rotate();
    }
    if (outcome.error !== undefined) throw outcome.error;
  }

  async #rotate(): Promise<void> {
    for (const file of removableFiles(await listAuditFiles(this.#dir), this.#checkpoint)) {
      await rm(join(this.#dir, file), { force: true });
      this.#log.info('Removed a shipped audit spool file', { file });
    }
  }

  #setPending(count: number): void {
    this.#pending = Math.max(0, count);
    this.#metrics?.setAuditFallbackPending(this.#pending);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.#wake = undefined; resolve(); }, ms);
      // stop() cuts a backoff short (no new records do: Elasticsearch is refusing).
      this.#wake = () => {
        if (!this.#stopping) return;
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
    });
  }
}

/**
 * The spool as the audit log's sink: each batch is fsync'd to the file first,
 * then the shipper is told. Closing stops the shipper (after a short drain),
 * then the file, then lets go of the spool's lock.
 */
export class ShippingSpool implements AuditSink {
  readonly name = 'file';
  readonly #file: JsonlSink;
  readonly shipper: AuditShipper;
  readonly #lock: Pick<SpoolLock, 'release'> | undefined;

  constructor(file: JsonlSink, shipper: AuditShipper, lock?: Pick<SpoolLock, 'release'>) {
    this.#file = file;
    this.shipper = shipper;
    this.#lock = lock;
  }

  async write(records: readonly AuditRecord[]): Promise<void> {
    this.shipper.notify(await this.#file.write(records));
  }

  tail(limit: number): Promise<AuditRecord[]> {
    return this.#file.tail(limit);
  }

  async close(): Promise<void> {
    try {
      await this.shipper.stop();
    } finally {
      try {
        await this.#file.close();
      } finally {
        await this.#lock?.release();
      }
    }
  }
}
