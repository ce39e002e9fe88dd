import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Metrics } from '../observability/metrics.ts';
import { ChainedAuditLog, openAuditLog, type AuditSink } from './audit-log.ts';
import { JsonlSink, readAuditDir } from './jsonl-sink.ts';
import { GENESIS_HASH, verifyChain, type AuditInput, type AuditRecord } from './record.ts';

const input = (i: number, extra: Partial<AuditInput> = {}): AuditInput => ({
  module: 'Reconciler',
  actionType: 'FSM_TRANSITION',
  correlationId: 'corr-1',
  message: `Moved to step ${i}`,
  metadata: { appName: 'payment-service', step: i },
  ...extra,
});

/** An in-memory sink that can be told to fail its next writes. */
class MemorySink implements AuditSink {
  readonly name = 'memory';
  readonly records: AuditRecord[] = [];
  failures = 0;
  writes = 0;
  async write(records: readonly AuditRecord[]): Promise<void> {
    this.writes++;
    // Yield first, so concurrent record() calls really interleave with writes.
    await new Promise((r) => setImmediate(r));
    if (this.failures > 0) {
      this.failures--;
      throw new Error('disk full');
    }
    this.records.push(...records);
  }
  async tail(limit: number): Promise<AuditRecord[]> {
    return this.records.slice(-limit);
  }
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'audit-log-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('ChainedAuditLog', () => {
  it('starts a chain at the genesis hash and resolves each record once written', async () => {
    const sink = new MemorySink();
    const log = await openAuditLog({ sink });
    const first = await log.record(input(0));
    expect(first.prevHash).toBe(GENESIS_HASH);
    expect(sink.records).toEqual([first]);
    expect(log.head).toBe(first.hash);
  });

  it('keeps the chain linear when record() is called concurrently', async () => {
    const sink = new MemorySink();
    const log = await openAuditLog({ sink, maxBatch: 7 });
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => log.record(input(i))));
    expect(sink.records).toEqual(results);
    expect(verifyChain(sink.records, { head: log.head }).ok).toBe(true);
    expect(results.map((r) => r.metadata.step)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    // Batching: far fewer writes than records.
    expect(sink.writes).toBeLessThan(100);
  });

  it('keeps concurrent records in one valid chain on disk', async () => {
    const log = await openAuditLog({ sink: await JsonlSink.open(dir) });
    await Promise.all(Array.from({ length: 50 }, (_, i) => log.record(input(i))));
    await log.close();
    const records = await readAuditDir(dir);
    expect(records).toHaveLength(50);
    expect(verifyChain(records).ok).toBe(true);
  });

  it('continues the chain after a restart on the same directory', async () => {
    const first = await openAuditLog({ sink: await JsonlSink.open(dir) });
    for (let i = 0; i < 3; i++) await first.record(input(i));
    const headBefore = first.head;
    await first.close();

    const second = await openAuditLog({ sink: await JsonlSink.open(dir) });
    expect(second.head).toBe(headBefore);
    const next = await second.record(input(3));
    expect(next.prevHash).toBe(headBefore);
    await second.record(input(4));
    await second.close();

    const records = await readAuditDir(dir);
    expect(records.map((r) => r.metadata.step)).toEqual([0, 1, 2, 3, 4]);
    expect(verifyChain(records, { head: second.head }).ok).toBe(true);
  });

  it('records a replayed eventId once, also across a restart', async () => {
    const first = await openAuditLog({ sink: await JsonlSink.open(dir) });
    const a = await first.record(input(0, { eventId: 'pr-created-corr-1' }));
    const again = await first.record(input(0, { eventId: 'pr-created-corr-1' }));
    expect(again).toEqual(a);
    await first.close();

    const second = await openAuditLog({ sink: await JsonlSink.open(dir) });
    expect(await second.record(input(0, { eventId: 'pr-created-corr-1' }))).toEqual(a);
    await second.close();
    expect(await readAuditDir(dir)).toHaveLength(1);
  });

  it('keeps a record that failed to write and writes it with the next one, in order', async () => {
    const sink = new MemorySink();
    const log = await openAuditLog({ sink });
    sink.failures = 1;
    await expect(log.record(input(0))).rejects.toThrow('disk full');
    expect(log.pending).toBe(1);
    expect(log.lastError).toBeInstanceOf(Error);
    await log.record(input(1));
    expect(sink.records.map((r) => r.metadata.step)).toEqual([0, 1]);
    expect(verifyChain(sink.records).ok).toBe(true);
    expect(log.pending).toBe(0);
    expect(log.lastError).toBeUndefined();
  });

  it('lets a caller retry a failed record by its eventId without a duplicate', async () => {
    const sink = new MemorySink();
    const log = await openAuditLog({ sink });
    sink.failures = 1;
    await expect(log.record(input(0, { eventId: 'abort-corr-1' }))).rejects.toThrow('disk full');
    const retried = await log.record(input(0, { eventId: 'abort-corr-1' }));
    expect(sink.records).toEqual([retried]);
  });

  it('fails every waiter when a write fails, not only the batch being written', async () => {
    const sink = new MemorySink();
    const log = await openAuditLog({ sink, maxBatch: 1 });
    sink.failures = 1;
    const results = await Promise.allSettled([log.record(input(0)), log.record(input(1)), log.record(input(2))]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    await log.flush();
    expect(sink.records.map((r) => r.metadata.step)).toEqual([0, 1, 2]);
  });

  it('rejects flush() and close() while the sink keeps failing', async () => {
    const sink = new MemorySink();
    const log = await openAuditLog({ sink });
    sink.failures = 10;
    await expect(log.record(input(0))).rejects.toThrow();
    await expect(log.flush()).rejects.toThrow('disk full');
    await expect(log.close()).rejects.toThrow('Audit log closed with 1 records not written');
  });

  it('refuses records after close', async () => {
    const log = await openAuditLog({ sink: new MemorySink() });
    await log.close();
    await expect(log.record(input(0))).rejects.toThrow('closed');
  });

  it('never lets timestamps go backwards along the chain', async () => {
    const times = [Date.parse('2026-02-27T10:00:05Z'), Date.parse('2026-02-27T10:00:01Z')];
    const log = new ChainedAuditLog({ sink: new MemorySink(), now: () => new Date(times.shift()!) });
    const a = await log.record(input(0));
    const b = await log.record(input(1));
    expect(b.timestamp).toBe(a.timestamp);
  });

  it('hands each sealed record to onSealed once, in chain order, however often its write is retried', async () => {
    const sink = new MemorySink();
    const sealed: AuditRecord[] = [];
    const log = await openAuditLog({ sink, onSealed: (r) => sealed.push(r) });
    sink.failures = 2;
    await expect(log.record(input(0))).rejects.toThrow('disk full');
    await expect(log.record(input(1))).rejects.toThrow('disk full');
    const third = await log.record(input(2));
    // A replayed eventId is the same record: it is not sealed, nor handed over, again.
    await log.record({ ...input(3), eventId: third.eventId });
    expect(sink.writes).toBe(3);
    expect(sealed).toEqual(sink.records);
    expect(sealed.map((r) => r.message)).toEqual(['Moved to step 0', 'Moved to step 1', 'Moved to step 2']);
  });

  it('does not hand over the records a restart reads back from the sink', async () => {
    const sink = new MemorySink();
    await (await openAuditLog({ sink })).record(input(0));
    const sealed: AuditRecord[] = [];
    const log = await openAuditLog({ sink, onSealed: (r) => sealed.push(r) });
    const next = await log.record(input(1));
    expect(sealed).toEqual([next]);
  });

  it('counts written records per sink', async () => {
    const metrics = new Metrics();
    const log = await openAuditLog({ sink: new MemorySink(), metrics });
    await Promise.all([log.record(input(0)), log.record(input(1))]);
    expect(await metrics.registry.metrics()).toContain('ai_operator_audit_records_total{sink="memory"} 2');
  });
});
