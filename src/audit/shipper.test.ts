import { copyFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../observability/log.ts';
import { Metrics } from '../observability/metrics.ts';
import { IntegrationError } from '../ports/errors.ts';
import { openAuditLog, type ChainedAuditLog } from './audit-log.ts';
import { bulkOutcome, type AuditDocument, type AuditIndex, type BulkItemResult, type ShipOutcome } from './elasticsearch-sink.ts';
import { JsonlSink, readAuditDir } from './jsonl-sink.ts';
import { verifyChain, type AuditInput } from './record.ts';
import { AuditShipper, backoffDelay, CHECKPOINT_FILE, checkpointMatches, readCheckpoint, removableFiles, ShippingSpool } from './shipper.ts';
import { openAuditTrail } from './trail.ts';

/** Elasticsearch as the shipper sees it: documents by _id, create semantics, and switches to make it fail. */
class FakeIndex implements AuditIndex {
  readonly docs = new Map<string, AuditDocument>();
  readonly sent: AuditDocument[] = [];
  down = false;
  /** Refuse (429) the item at this position of the next bulk. */
  refuseAt: number | undefined;
  templates = 0;
  closed = 0;

  async ensureTemplate(): Promise<void> {
    if (this.down) throw new IntegrationError('auditTemplate', 'UNAVAILABLE', 'connect ECONNREFUSED');
    this.templates++;
  }

  async ship(documents: readonly AuditDocument[]): Promise<ShipOutcome> {
    if (this.down) return { shipped: 0, created: 0, duplicates: 0, error: new IntegrationError('auditBulk', 'UNAVAILABLE', 'connect ECONNREFUSED') };
    if (this.templates === 0) throw new Error('shipped before the template was installed');
    const items: BulkItemResult[] = documents.map((doc, i) => {
      if (i === this.refuseAt) return { status: 429, error: { type: 'es_rejected_execution_exception', reason: 'queue full' } };
      this.sent.push(doc);
      if (this.docs.has(doc.eventId)) return { status: 409, error: { type: 'version_conflict_engine_exception' } };
      this.docs.set(doc.eventId, doc);
      return { status: 201 };
    });
    this.refuseAt = undefined;
    return bulkOutcome(items, documents.length);
  }

  async *read(): AsyncIterable<AuditDocument> {
    yield* [...this.docs.values()];
  }

  async close(): Promise<void> {
    this.closed++;
  }
}

const input = (i: number): AuditInput => ({ module: 'Reconciler', actionType: 'FSM_TRANSITION', correlationId: 'corr-1', message: `step ${i}`, metadata: { step: i } });
const fast = { initialMs: 5, maxMs: 20 };

async function until(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

let dir: string;
let lines: string[];
const log = () => createLogger('DEBUG', {}, (l) => lines.push(l));
const pendingGauge = async (metrics: Metrics) => (await metrics.registry.getSingleMetricAsString('ai_operator_audit_fallback_pending')).split('\n').at(-1);
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shipper-'));
  lines = [];
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function record(audit: ChainedAuditLog, from: number, to: number): Promise<void> {
  for (let i = from; i < to; i++) await audit.record(input(i));
}

describe('AuditShipper', () => {
  it('ships every spooled record in chain order, numbered along the chain, behind the template', async () => {
    const index = new FakeIndex();
    const metrics = new Metrics();
    const audit = await openAuditTrail({ dir, index, log: log(), metrics, backoff: fast });
    await Promise.all(Array.from({ length: 30 }, (_, i) => audit.record(input(i))));
    await until('all shipped', () => index.docs.size === 30);
    await audit.close();

    const spool = await readAuditDir(dir);
    const docs = [...index.docs.values()];
    expect(docs.map((d) => d.eventId)).toEqual(spool.map((r) => r.eventId));
    expect(docs.map((d) => d.chainSeq)).toEqual(Array.from({ length: 30 }, (_, i) => i));
    expect(new Set(docs.map((d) => d.chainId)).size).toBe(1);
    expect(index.templates).toBe(1);
    expect(index.closed).toBe(1);
    expect(await pendingGauge(metrics)).toBe('ai_operator_audit_fallback_pending 0');
    expect(await metrics.registry.getSingleMetricAsString('ai_operator_audit_records_total')).toContain('ai_operator_audit_records_total{sink="elasticsearch"} 30');
    expect(await readCheckpoint(dir)).toMatchObject({ nextSeq: 30, lastEventId: spool.at(-1)!.eventId, lastHash: spool.at(-1)!.hash });
  });

  it('keeps records in the spool while Elasticsearch is down, counts them in the gauge, and ships them all when it is back', async () => {
    const index = new FakeIndex();
    index.down = true;
    const metrics = new Metrics();
    const audit = await openAuditTrail({ dir, index, log: log(), metrics, backoff: fast });
    // record() still resolves: durable in the spool is what it promises.
    await record(audit, 0, 5);
    await until('the gauge at 5', async () => (await pendingGauge(metrics)) === 'ai_operator_audit_fallback_pending 5');
    await new Promise((r) => setTimeout(r, 50));
    expect(index.docs.size).toBe(0);
    expect(await readAuditDir(dir)).toHaveLength(5);
    // One warning for the outage, not one per retry.
    expect(lines.filter((l) => l.includes('Could not ship audit records to Elasticsearch; they stay in the spool'))).toHaveLength(1);

    index.down = false;
    await until('all shipped', () => index.docs.size === 5);
    await until('the gauge at 0', async () => (await pendingGauge(metrics)) === 'ai_operator_audit_fallback_pending 0');
    await until('the recovery logged', () => lines.some((l) => l.includes('Shipping audit records to Elasticsearch again')));
    await audit.close();
  });

  it('resumes after a restart from the checkpoint: what was shipped is not sent again', async () => {
    const index = new FakeIndex();
    const first = await openAuditTrail({ dir, index, log: log(), backoff: fast });
    await record(first, 0, 4);
    await until('4 shipped', () => index.docs.size === 4);
    await first.close();

    // Records spooled while the shipper could not reach Elasticsearch, then a restart.
    index.down = true;
    const second = await openAuditTrail({ dir, index, log: log(), backoff: fast });
    await record(second, 4, 7);
    await second.close();

    index.down = false;
    const shipper = await AuditShipper.open({ dir, spool: await JsonlSink.open(dir), index, log: log(), backoff: fast });
    expect(shipper.pending).toBe(3);
    shipper.start();
    await until('7 shipped', () => index.docs.size === 7);
    await shipper.stop();
    expect(index.sent).toHaveLength(7);
    expect(shipper.stats).toMatchObject({ created: 3, duplicates: 0 });
    expect([...index.docs.values()].map((d) => d.chainSeq)).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it('counts a batch sent again after a crash before its checkpoint as duplicates, never twice in the index', async () => {
    const index = new FakeIndex();
    const audit = await openAuditTrail({ dir, index, log: log(), backoff: fast });
    await record(audit, 0, 2);
    await until('2 shipped', () => index.docs.size === 2);
    // The checkpoint is written after the bulk answer: wait for it, or the copy may be of an older one.
    await until('2 checkpointed', async () => (await readCheckpoint(dir))?.nextSeq === 2);
    // The checkpoint as it was before the next batch…
    await copyFile(join(dir, CHECKPOINT_FILE), join(dir, 'older'));
    await record(audit, 2, 5);
    await until('5 shipped', () => index.docs.size === 5);
    await audit.close();
    // …as if the process had died between the bulk request and the checkpoint write.
    await copyFile(join(dir, 'older'), join(dir, CHECKPOINT_FILE));
    await rm(join(dir, 'older'));

    const shipper = await AuditShipper.open({ dir, spool: await JsonlSink.open(dir), index, log: log(), backoff: fast });
    expect(shipper.pending).toBe(3);
    shipper.start();
    await until('pending 0', () => shipper.pending === 0);
    await shipper.stop();
    expect(shipper.stats).toMatchObject({ created: 0, duplicates: 3 });
    expect(index.docs.size).toBe(5);
    expect(lines.some((l) => l.includes('already in Elasticsearch') && l.includes('"duplicates":3'))).toBe(true);
  });

  it('moves the checkpoint only over the records before a refused one, and sends the rest again', async () => {
    const index = new FakeIndex();
    index.down = true;
    const audit = await openAuditTrail({ dir, index, log: log(), backoff: fast });
    await record(audit, 0, 6);
    index.refuseAt = 3;
    index.down = false;
    await until('6 shipped', () => index.docs.size === 6);
    await audit.close();
    // The first bulk took 0..2 (3 refused; 4, 5 created but beyond the checkpoint), the retry sent 3..5.
    expect(index.sent.map((d) => d.chainSeq)).toEqual([0, 1, 2, 4, 5, 3, 4, 5]);
    expect([...index.docs.values()].map((d) => d.chainSeq).sort()).toEqual([0, 1, 2, 3, 4, 5]);
    expect(await readCheckpoint(dir)).toMatchObject({ nextSeq: 6 });
  });

  it('removes a day’s file once shipping has moved past it, keeps the newest, and the chain continues from it', async () => {
    const days = ['2026-02-26T10:00:00Z', '2026-02-27T10:00:00Z', '2026-02-28T10:00:00Z'];
    const index = new FakeIndex();
    index.down = true;
    let now = days[0]!;
    const file = await JsonlSink.open(dir);
    const shipper = await AuditShipper.open({ dir, spool: file, index, log: log(), backoff: fast });
    const audit = await openAuditLog({ sink: new ShippingSpool(file, shipper), now: () => new Date(now) });
    shipper.start();
    for (const day of days) {
      now = day;
      await record(audit, 0, 2);
    }
    // Nothing shipped: nothing removed.
    expect(await readdir(dir)).toHaveLength(4);
    index.down = false;
    await until('6 shipped', () => index.docs.size === 6);
    const head = audit.head;
    await audit.close();
    expect((await readdir(dir)).sort()).toEqual(['ai-operator-audit-2026.02.28.jsonl', CHECKPOINT_FILE]);

    const again = await openAuditLog({ sink: await JsonlSink.open(dir) });
    expect(again.head).toBe(head);
    await again.close();
  });

  it('ships a spool replaced under a kept checkpoint from its start, as a new chain', async () => {
    const index = new FakeIndex();
    const first = await openAuditTrail({ dir, index, log: log(), backoff: fast });
    await record(first, 0, 3);
    await until('3 shipped', () => index.docs.size === 3);
    await first.close();
    const oldChain = (await readCheckpoint(dir))!.chainId;
    for (const f of await readdir(dir)) if (f !== CHECKPOINT_FILE) await rm(join(dir, f));

    const second = await openAuditTrail({ dir, index, log: log(), backoff: fast });
    await record(second, 0, 2);
    await until('5 shipped', () => index.docs.size === 5);
    await second.close();
    const fresh = [...index.docs.values()].slice(3);
    expect(fresh.map((d) => d.chainSeq)).toEqual([0, 1]);
    expect(fresh[0]!.chainId).not.toBe(oldChain);
    expect(lines.some((l) => l.includes('Reset the audit shipping checkpoint'))).toBe(true);
    expect(verifyChain(await readAuditDir(dir)).ok).toBe(true);
  });

  it('stops at once while Elasticsearch is failing, leaving the records in the spool', async () => {
    const index = new FakeIndex();
    index.down = true;
    const audit = await openAuditTrail({ dir, index, log: log(), backoff: { initialMs: 60_000, maxMs: 60_000 } });
    await record(audit, 0, 2);
    await until('a failed attempt', () => lines.some((l) => l.includes('they stay in the spool')));
    const started = Date.now();
    await audit.close();
    expect(Date.now() - started).toBeLessThan(1000);
    expect(index.closed).toBe(1);
    const shipper = await AuditShipper.open({ dir, spool: await JsonlSink.open(dir), index, log: log() });
    expect(shipper.pending).toBe(2);
  });
});

describe('rotation and checkpoint rules', () => {
  it('removes only the files before the checkpoint’s file', () => {
    const files = ['ai-operator-audit-2026.02.26.jsonl', 'ai-operator-audit-2026.02.27.jsonl', 'ai-operator-audit-2026.02.28.jsonl'];
    expect(removableFiles(files, { chainId: 'c', nextSeq: 0 })).toEqual([]);
    expect(removableFiles(files, { chainId: 'c', nextSeq: 5, position: { file: files[1]!, offset: 10 } })).toEqual([files[0]]);
    expect(removableFiles(files, { chainId: 'c', nextSeq: 9, position: { file: files[2]!, offset: 99 } })).toEqual(files.slice(0, 2));
  });

  it('trusts a checkpoint whose line holds its record, or whose file was rotated away before later ones', () => {
    const cp = { chainId: 'c', nextSeq: 3, position: { file: 'ai-operator-audit-2026.02.27.jsonl', offset: 10 }, lastHash: 'abc' };
    const record = { hash: 'abc' } as never;
    expect(checkpointMatches(cp, [cp.position.file], record)).toBe(true);
    expect(checkpointMatches(cp, [cp.position.file], { hash: 'other' } as never)).toBe(false);
    expect(checkpointMatches(cp, [cp.position.file], undefined)).toBe(false);
    expect(checkpointMatches(cp, ['ai-operator-audit-2026.02.28.jsonl'], undefined)).toBe(true);
    expect(checkpointMatches(cp, [], undefined)).toBe(false);
    expect(checkpointMatches({ chainId: 'c', nextSeq: 0 }, [], undefined)).toBe(true);
  });

  it('backs off exponentially up to the cap, with jitter', () => {
    const b = { initialMs: 1000, maxMs: 30_000 };
    expect([1, 2, 3, 4, 5, 6, 50].map((n) => backoffDelay(n, b, () => 1))).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
    expect(backoffDelay(1, b, () => 0)).toBe(500);
  });
});
