// `audit verify`: reads the records of a time window back from Elasticsearch,
// chain by chain in the order they were sealed (chainSeq, stored beside each
// record by the shipper), and checks the hash chain with verifyChain. The first
// broken or missing link is reported; a window can only be checked from its own
// first record on, which is said in the report.
import { parseArgs } from 'node:util';
import type { AuditDocument, AuditIndex } from './elasticsearch-sink.ts';
import { GENESIS_HASH, verifyChain, type AuditRecord } from './record.ts';

export class UsageError extends Error {
  override name = 'UsageError';
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** `--since`/`--until`: an RFC 3339 time, or a duration back from now (`90s`, `30m`, `24h`, `7d`, `2w`). */
export function parseTime(option: string, value: string, now: Date): Date {
  const duration = /^(\d+)([smhdw])$/.exec(value);
  if (duration) return new Date(now.getTime() - Number(duration[1]) * UNIT_MS[duration[2]!]!);
  if (RFC3339.test(value)) {
    const at = Date.parse(value);
    if (!Number.isNaN(at)) return new Date(at);
  }
  throw new UsageError(`--${option}: expected an RFC 3339 time (2026-02-27T10:00:00Z) or a duration such as 24h, got ${JSON.stringify(value)}`);
}

export interface VerifyArgs {
  since: Date;
  until: Date;
  /** Only this chain (one replica's spool); all chains in the window otherwise. */
  chain?: string;
}

export const VERIFY_USAGE = 'usage: node src/cli.ts audit verify --since <RFC3339|duration> [--until <RFC3339|duration>] [--chain <chainId>]';

export function parseVerifyArgs(argv: readonly string[], now: Date): VerifyArgs {
  let values;
  try {
    ({ values } = parseArgs({ args: [...argv], options: { since: { type: 'string' }, until: { type: 'string' }, chain: { type: 'string' } }, strict: true, allowPositionals: false }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.since === undefined) throw new UsageError('--since is required');
  const since = parseTime('since', values.since, now);
  const until = values.until === undefined ? now : parseTime('until', values.until, now);
  if (until.getTime() < since.getTime()) throw new UsageError(`--until (${until.toISOString()}) is before --since (${since.toISOString()})`);
  return { since, until, ...(values.chain !== undefined && { chain: values.chain }) };
}

export interface ChainReport {
  chainId: string;
  count: number;
  firstSeq: number;
  lastSeq: number;
  from: string;
  to: string;
  /** The window starts at the start of the chain (its first record follows the genesis hash). */
  fromGenesis: boolean;
  startsAfter: string;
  /** The first broken or missing link; absent when the chain is intact. */
  problem?: { seq: number; eventId: string; timestamp: string; reason: string };
}

export function toRecord(document: AuditDocument): AuditRecord {
  const { chainId: _chain, chainSeq: _seq, ...record } = document;
  return record;
}

/** Verifies each chain of `documents` (any order); chains in order of their first record. */
export function verifyDocuments(documents: readonly AuditDocument[]): ChainReport[] {
  const chains = new Map<string, AuditDocument[]>();
  for (const doc of documents) {
    const list = chains.get(doc.chainId) ?? [];
    list.push(doc);
    chains.set(doc.chainId, list);
  }
  const reports = [...chains.entries()].map(([chainId, docs]) => verifyOneChain(chainId, docs.toSorted((a, b) => a.chainSeq - b.chainSeq)));
  return reports.sort((a, b) => a.from.localeCompare(b.from) || a.chainId.localeCompare(b.chainId));
}

function verifyOneChain(chainId: string, docs: readonly AuditDocument[]): ChainReport {
  const first = docs[0]!;
  const last = docs.at(-1)!;
  const report: ChainReport = {
    chainId, count: docs.length, firstSeq: first.chainSeq, lastSeq: last.chainSeq, from: first.timestamp, to: last.timestamp,
    fromGenesis: first.prevHash === GENESIS_HASH, startsAfter: first.prevHash,
  };
  // A gap in the sequence says "missing" more plainly than the broken link it also causes.
  let seqProblem: { index: number; reason: string } | undefined;
  for (let i = 1; i < docs.length && seqProblem === undefined; i++) {
    const [prev, doc] = [docs[i - 1]!, docs[i]!];
    if (doc.chainSeq === prev.chainSeq) seqProblem = { index: i, reason: `two records at seq ${doc.chainSeq} (${prev.eventId}, ${doc.eventId}): the chain forks` };
    else if (doc.chainSeq > prev.chainSeq + 1) {
      const missing = doc.chainSeq - prev.chainSeq - 1;
      seqProblem = { index: i, reason: `${missing} record${missing === 1 ? '' : 's'} missing (seq ${prev.chainSeq + 1}${missing === 1 ? '' : `..${doc.chainSeq - 1}`}) after ${prev.eventId} at ${prev.timestamp}` };
    }
  }
  const verdict = verifyChain(docs.map(toRecord), { from: first.prevHash });
  const hashProblem = verdict.ok ? undefined : { index: verdict.index, reason: verdict.reason };
  const problem = seqProblem !== undefined && (hashProblem === undefined || seqProblem.index <= hashProblem.index) ? seqProblem : hashProblem;
  if (problem !== undefined) {
    const at = docs[problem.index]!;
    report.problem = { seq: at.chainSeq, eventId: at.eventId, timestamp: at.timestamp, reason: problem.reason };
  }
  return report;
}

export function formatReport(reports: readonly ChainReport[], args: VerifyArgs): string[] {
  if (reports.length === 0) return [`0 records between ${args.since.toISOString()} and ${args.until.toISOString()}`];
  return reports.map((r) => {
    const chain = `chain ${r.chainId}`;
    const start = r.fromGenesis ? 'from its genesis' : `following ${r.startsAfter.slice(0, 12)} (not checked: before the window)`;
    if (r.problem === undefined) return `${r.count} records, chain intact from ${r.from} to ${r.to} (${chain}, seq ${r.firstSeq}..${r.lastSeq}, ${start})`;
    return `BROKEN ${chain} at seq ${r.problem.seq} (eventId ${r.problem.eventId}, ${r.problem.timestamp}): ${r.problem.reason}`;
  });
}

/** Runs `audit verify`; resolves with the exit code (0 intact, 1 a broken or missing link). */
export async function auditVerify(args: VerifyArgs, index: Pick<AuditIndex, 'read'>, out: (line: string) => void): Promise<number> {
  const documents: AuditDocument[] = [];
  for await (const doc of index.read(args.since, args.until)) if (args.chain === undefined || doc.chainId === args.chain) documents.push(doc);
  const reports = verifyDocuments(documents);
  for (const line of formatReport(reports, args)) out(line);
  return reports.some((r) => r.problem !== undefined) ? 1 : 0;
}
