import { describe, expect, it } from 'vitest';
import type { AuditDocument } from './elasticsearch-sink.ts';
import { GENESIS_HASH, hashRecord, sealRecord } from './record.ts';
import { auditVerify, formatReport, parseTime, parseVerifyArgs, toRecord, UsageError, verifyDocuments } from './verify.ts';

const NOW = new Date('2026-02-27T12:00:00Z');

/** A chain of `n` documents, all sealed in the same millisecond (so only chainSeq orders them). */
function chain(chainId: string, n: number, at = '2026-02-27T10:00:00.000Z', prev = GENESIS_HASH, firstSeq = 0): AuditDocument[] {
  return Array.from({ length: n }, (_, i) => {
    const record = sealRecord({ module: 'Reconciler', actionType: 'FSM_TRANSITION', correlationId: 'c', message: `m${i}` }, prev, new Date(at));
    prev = record.hash;
    return { ...record, chainId, chainSeq: firstSeq + i };
  });
}

describe('parseTime', () => {
  it('reads durations back from now and RFC 3339 times', () => {
    expect(parseTime('since', '24h', NOW).toISOString()).toBe('2026-02-26T12:00:00.000Z');
    expect(parseTime('since', '30m', NOW).toISOString()).toBe('2026-02-27T11:30:00.000Z');
    expect(parseTime('since', '90s', NOW).toISOString()).toBe('2026-02-27T11:58:30.000Z');
    expect(parseTime('since', '7d', NOW).toISOString()).toBe('2026-02-20T12:00:00.000Z');
    expect(parseTime('since', '2026-02-27T10:00:00+01:00', NOW).toISOString()).toBe('2026-02-27T09:00:00.000Z');
    expect(parseTime('since', '2026-02-27T10:00:00.5Z', NOW).toISOString()).toBe('2026-02-27T10:00:00.500Z');
  });

  it('refuses anything else, naming the option', () => {
    for (const bad of ['yesterday', '24', '2026-02-27', '-1h', '2026-02-30T10:00:00Z x']) {
      expect(() => parseTime('until', bad, NOW)).toThrow(UsageError);
    }
    expect(() => parseTime('until', 'soon', NOW)).toThrow(/--until: expected an RFC 3339 time/);
  });
});

describe('parseVerifyArgs', () => {
  it('defaults --until to now and keeps --chain', () => {
    expect(parseVerifyArgs(['--since', '1h', '--chain', 'abc'], NOW)).toEqual({ since: new Date('2026-02-27T11:00:00Z'), until: NOW, chain: 'abc' });
  });

  it('requires --since, refuses unknown options and an empty window', () => {
    expect(() => parseVerifyArgs([], NOW)).toThrow('--since is required');
    expect(() => parseVerifyArgs(['--since', '1h', '--head', 'x'], NOW)).toThrow(UsageError);
    expect(() => parseVerifyArgs(['--since', '1h', '--until', '2h'], NOW)).toThrow(/before --since/);
  });
});

describe('verifyDocuments', () => {
  it('orders each chain by chainSeq, not by timestamp or arrival, and finds it intact', () => {
    const docs = chain('a', 5);
    const [report] = verifyDocuments([docs[3]!, docs[0]!, docs[4]!, docs[2]!, docs[1]!]);
    expect(report).toMatchObject({ chainId: 'a', count: 5, firstSeq: 0, lastSeq: 4, fromGenesis: true });
    expect(report!.problem).toBeUndefined();
  });

  it('reports a missing record as missing, at the record after the gap', () => {
    const docs = chain('a', 5);
    const [report] = verifyDocuments(docs.filter((d) => d.chainSeq !== 2));
    expect(report!.problem).toMatchObject({ seq: 3, eventId: docs[3]!.eventId });
    expect(report!.problem!.reason).toBe(`1 record missing (seq 2) after ${docs[1]!.eventId} at ${docs[1]!.timestamp}`);
  });

  it('reports a modified record at its own place', () => {
    const docs = chain('a', 4);
    docs[1] = { ...docs[1]!, message: 'rewritten' };
    const [report] = verifyDocuments(docs);
    expect(report!.problem).toMatchObject({ seq: 1 });
    expect(report!.problem!.reason).toMatch(/was modified/);
  });

  it('reports a record replaced by a re-sealed one as a broken link after it', () => {
    const docs = chain('a', 4);
    const forged = { ...docs[1]!, message: 'forged' };
    docs[1] = { ...forged, hash: hashRecord(toRecord(forged)) };
    const [report] = verifyDocuments(docs);
    expect(report!.problem).toMatchObject({ seq: 2 });
    expect(report!.problem!.reason).toMatch(/does not follow/);
  });

  it('reports two records at one place as a fork', () => {
    const docs = chain('a', 3);
    const other = chain('a', 2)[1]!;
    const [report] = verifyDocuments([...docs, other]);
    expect(report!.problem!.reason).toMatch(/two records at seq 1 .*: the chain forks/);
  });

  it('verifies each chain on its own; a window that starts mid-chain is checked from its first record', () => {
    const a = chain('a', 6);
    const b = chain('b', 3, '2026-02-27T09:00:00.000Z');
    const reports = verifyDocuments([...a.slice(2), ...b]);
    expect(reports.map((r) => [r.chainId, r.count, r.fromGenesis, r.problem])).toEqual([['b', 3, true, undefined], ['a', 4, false, undefined]]);
    expect(reports[1]!.startsAfter).toBe(a[1]!.hash);
  });
});

describe('formatReport and auditVerify', () => {
  const args = { since: new Date('2026-02-27T00:00:00Z'), until: NOW };
  const index = (docs: AuditDocument[]) => ({ async *read() { yield* docs; } });

  it('says "N records, chain intact from … to …" and exits 0', async () => {
    const out: string[] = [];
    const docs = chain('a', 3);
    expect(await auditVerify(args, index(docs), (l) => out.push(l))).toBe(0);
    expect(out).toEqual([`3 records, chain intact from ${docs[0]!.timestamp} to ${docs[2]!.timestamp} (chain a, seq 0..2, from its genesis)`]);
  });

  it('names the first broken link and exits 1', async () => {
    const out: string[] = [];
    const docs = chain('a', 3);
    expect(await auditVerify(args, index([docs[0]!, docs[2]!]), (l) => out.push(l))).toBe(1);
    expect(out[0]).toMatch(/^BROKEN chain a at seq 2 \(eventId \w+, .*\): 1 record missing \(seq 1\)/);
  });

  it('keeps only the chain asked for', async () => {
    const out: string[] = [];
    const broken = chain('b', 3);
    expect(await auditVerify({ ...args, chain: 'a' }, index([...chain('a', 2), broken[0]!, broken[2]!]), (l) => out.push(l))).toBe(0);
    expect(out).toHaveLength(1);
  });

  it('says when the window holds nothing', () => {
    expect(formatReport([], args)).toEqual(['0 records between 2026-02-27T00:00:00.000Z and 2026-02-27T12:00:00.000Z']);
  });
});
