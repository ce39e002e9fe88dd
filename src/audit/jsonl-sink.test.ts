import { appendFile, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openAuditLog } from './audit-log.ts';
import { JsonlSink, auditFileName, countSpooled, readAuditDir, readAuditFile, readSpool, recordEndingAt } from './jsonl-sink.ts';
import { GENESIS_HASH, sealRecord, verifyChain, type AuditRecord } from './record.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'jsonl-sink-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function sealed(times: string[]): AuditRecord[] {
  let prev = GENESIS_HASH;
  return times.map((t, i) => {
    const r = sealRecord({ module: 'HealthMonitor', actionType: 'FSM_TRANSITION', correlationId: 'c', message: `m${i}` }, prev, new Date(t));
    prev = r.hash;
    return r;
  });
}

describe('JsonlSink', () => {
  it('creates the directory and writes one JSON line per record, shaped like SPEC §10', async () => {
    const nested = join(dir, 'a', 'b');
    const log = await openAuditLog({ sink: await JsonlSink.open(nested), now: () => new Date('2026-02-27T10:30:00.123Z') });
    await log.record({
      module: 'MergeController',
      correlationId: '5b1c',
      actionType: 'INVARIANT_CHECK',
      message: 'Auto-merging rollback PR in staging',
      invariantsChecked: { I1_environment: 'PASS', I8_branch_protection: 'PASS' },
      metadata: { appName: 'payment-service', prNumber: 42, environment: 'staging' },
    });
    await log.close();

    expect(await readdir(nested)).toEqual(['ai-operator-audit-2026.02.27.jsonl']);
    const text = await readFile(join(nested, 'ai-operator-audit-2026.02.27.jsonl'), 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    expect(text.split('\n')).toHaveLength(2);
    const line = JSON.parse(text) as Record<string, unknown>;
    expect(Object.keys(line)).toEqual([
      'timestamp', 'level', 'module', 'correlationId', 'actionType', 'message',
      'invariantsChecked', 'metadata', 'eventId', 'prevHash', 'hash',
    ]);
    expect(line).toMatchObject({
      timestamp: '2026-02-27T10:30:00.123Z',
      level: 'INFO',
      module: 'MergeController',
      actionType: 'INVARIANT_CHECK',
      metadata: { appName: 'payment-service', prNumber: 42, environment: 'staging' },
      prevHash: GENESIS_HASH,
    });
  });

  it('starts a new file at each UTC day; the chain runs across files', async () => {
    const records = sealed(['2026-02-27T23:59:59.900Z', '2026-02-28T00:00:00.100Z', '2026-02-28T08:00:00.000Z', '2026-03-01T00:00:00.000Z']);
    const sink = await JsonlSink.open(dir);
    await sink.write(records.slice(0, 3));
    await sink.write(records.slice(3));
    await sink.close();
    expect((await readdir(dir)).sort()).toEqual([
      'ai-operator-audit-2026.02.27.jsonl',
      'ai-operator-audit-2026.02.28.jsonl',
      'ai-operator-audit-2026.03.01.jsonl',
    ]);
    expect(await readAuditFile(join(dir, auditFileName('2026-02-28T12:00:00Z')))).toEqual(records.slice(1, 3));
    const all = await readAuditDir(dir);
    expect(all).toEqual(records);
    expect(verifyChain(all).ok).toBe(true);
  });

  it('skips what it already wrote when a batch is offered again', async () => {
    const records = sealed(['2026-02-27T10:00:00Z', '2026-02-27T10:00:01Z', '2026-02-27T10:00:02Z']);
    const sink = await JsonlSink.open(dir);
    await sink.write(records.slice(0, 2));
    await sink.write(records);
    await sink.close();
    expect(await readAuditDir(dir)).toEqual(records);
  });

  it('cuts off a line a crash left half-written, and the chain continues from the last whole one', async () => {
    const records = sealed(['2026-02-27T10:00:00Z', '2026-02-27T10:00:01Z']);
    const sink = await JsonlSink.open(dir);
    await sink.write(records);
    await sink.close();
    const file = join(dir, auditFileName(records[0]!.timestamp));
    await appendFile(file, '{"timestamp":"2026-02-27T10:00:02Z","lev');
    expect(await readAuditFile(file)).toEqual(records);

    const log = await openAuditLog({ sink: await JsonlSink.open(dir), now: () => new Date('2026-02-27T10:00:03Z') });
    expect(log.head).toBe(records[1]!.hash);
    await log.record({ module: 'Operator', actionType: 'LEADER_ELECTED', message: 'Acquired leader lease' });
    await log.close();
    const all = await readAuditDir(dir);
    expect(all).toHaveLength(3);
    expect(verifyChain(all).ok).toBe(true);
  });

  it('reports corruption inside a file', async () => {
    const file = join(dir, 'ai-operator-audit-2026.02.27.jsonl');
    await appendFile(file, 'not json\n{}\n');
    await expect(readAuditFile(file)).rejects.toThrow(/:1: not a JSON audit record/);
  });

  it('returns the newest records oldest first, across files', async () => {
    const records = sealed(['2026-02-27T10:00:00Z', '2026-02-28T10:00:00Z', '2026-02-28T11:00:00Z']);
    const sink = await JsonlSink.open(dir);
    await sink.write(records);
    expect(await sink.tail(2)).toEqual(records.slice(1));
    expect(await sink.tail(10)).toEqual(records);
    await sink.close();
  });

  it('ignores files that are not audit files', async () => {
    await appendFile(join(dir, 'notes.txt'), 'hello\n');
    const sink = await JsonlSink.open(dir);
    expect(await sink.tail(5)).toEqual([]);
    await sink.close();
  });

  it('reads the spool back from a position, across days, never past the durable end', async () => {
    const records = sealed(['2026-02-27T10:00:00Z', '2026-02-27T10:00:01Z', '2026-02-28T10:00:00Z', '2026-02-28T10:00:01Z']);
    const sink = await JsonlSink.open(dir);
    expect(sink.durableEnd).toBeUndefined();
    expect(await sink.write(records.slice(0, 3))).toBe(3);
    const end = sink.durableEnd!;
    expect(end.file).toBe('ai-operator-audit-2026.02.28.jsonl');
    // A line on disk past the durable end (a write in progress) is not read.
    await appendFile(join(dir, end.file), `${JSON.stringify(records[3])}\n`);

    const all = await readSpool(dir, undefined, end, 100);
    expect(all.map((s) => s.record)).toEqual(records.slice(0, 3));
    expect(all[2]!.end).toEqual(end);
    const rest = await readSpool(dir, all[0]!.end, end, 100);
    expect(rest.map((s) => s.record)).toEqual(records.slice(1, 3));
    expect((await readSpool(dir, undefined, end, 2)).map((s) => s.record)).toEqual(records.slice(0, 2));
    expect(await readSpool(dir, end, end, 100)).toEqual([]);
    expect(await countSpooled(dir, all[0]!.end, end)).toBe(2);

    expect(await recordEndingAt(dir, all[1]!.end)).toEqual(records[1]);
    expect(await recordEndingAt(dir, { file: all[1]!.end.file, offset: all[1]!.end.offset - 1 })).toBeUndefined();
    expect(await recordEndingAt(dir, { file: 'ai-operator-audit-2026.01.01.jsonl', offset: 10 })).toBeUndefined();
    await sink.close();

    // A reopened sink counts every whole line on disk as durable.
    const reopened = await JsonlSink.open(dir);
    expect((await readSpool(dir, undefined, reopened.durableEnd!, 100)).map((s) => s.record)).toEqual(records);
    await reopened.close();
  });

  it('reads a record longer than the read chunk', async () => {
    let prev = GENESIS_HASH;
    const records = [0, 1].map((i) => {
      const r = sealRecord({ module: 'Reconciler', actionType: 'FSM_TRANSITION', message: 'x'.repeat(1_500_000 * (i + 1)) }, prev, new Date('2026-02-27T10:00:00Z'));
      prev = r.hash;
      return r;
    });
    const sink = await JsonlSink.open(dir);
    await sink.write(records);
    const read = await readSpool(dir, undefined, sink.durableEnd!, 10);
    expect(read.map((s) => s.record.hash)).toEqual(records.map((r) => r.hash));
    expect((await recordEndingAt(dir, read[1]!.end))?.hash).toBe(records[1]!.hash);
    await sink.close();
  });
});
