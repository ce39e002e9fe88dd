// What every outage scenario checks, whatever went away: the operator process
// lived through it, /readyz said what was missing and came back by itself, and
// nothing was lost or doubled — PRs, merges, JetStream events, audit records.
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { readAuditDir } from '../../../src/audit/jsonl-sink.ts';
import { verifyChain, type AuditRecord } from '../../../src/audit/record.ts';
import type { CloudEvent } from '../../../src/fsm/cloud-events.ts';
import type { AttemptRecord } from '../../../src/fsm/record.ts';
import { eventually } from './operator.ts';
import type { OperatorHandle, Scenario } from './rollback-scenario.ts';
import { REPO } from './rollback-scenario.ts';

export interface ReadinessSample {
  at: number;
  status: number;
  body: string;
  ms: number;
}

/** One probe as a kubelet makes it (2 s timeout); no answer is status 0. */
export async function readyz(port: number): Promise<ReadinessSample> {
  const at = Date.now();
  try {
    const response = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(2000) });
    return { at, status: response.status, body: await response.text(), ms: Date.now() - at };
  } catch (error) {
    return { at, status: 0, body: (error as Error).message, ms: Date.now() - at };
  }
}

/** /readyz probed every `everyMs` in the background, every answer kept. */
export class ReadinessWatch {
  readonly samples: ReadinessSample[] = [];
  private stopped = false;
  private readonly loop: Promise<void>;

  constructor(port: number, everyMs = 500) {
    this.loop = (async () => {
      while (!this.stopped) {
        this.samples.push(await readyz(port));
        await new Promise((r) => setTimeout(r, everyMs));
      }
    })();
  }

  between(from: number, to: number): ReadinessSample[] {
    return this.samples.filter((s) => s.at >= from && s.at <= to);
  }

  /** The first 200 at or after `from`, and how long after `from` it came. */
  readyAgain(from: number): { at: number; afterMs: number } | undefined {
    const sample = this.samples.find((s) => s.at >= from && s.status === 200);
    return sample ? { at: sample.at, afterMs: sample.at - from } : undefined;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

/** The operator process is the one that was started and it has not exited: it neither crashed nor restarted. */
export function stillRunning(operator: OperatorHandle, pid: number): string | undefined {
  if (operator.child.pid !== pid) return `operator pid changed from ${pid} to ${operator.child.pid}`;
  if (operator.child.exitCode !== null || operator.child.signalCode !== null) return `operator exited (code ${operator.child.exitCode}, signal ${operator.child.signalCode})`;
  return undefined;
}

/** Every event of this attempt in a JetStream stream (the operator's: Scenario.stream), in stream order. */
export async function attemptEvents(natsUrl: string, correlationId: string, stream: string): Promise<CloudEvent[]> {
  const nc = await connect({ servers: natsUrl });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(stream);
    const events: CloudEvent[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const message = await jsm.streams.getMessage(stream, { seq }).catch(() => undefined);
      const event = message?.json<CloudEvent>();
      if (event?.correlationid === correlationId) events.push(event);
    }
    return events;
  } finally {
    await nc.close();
  }
}

export interface LossReport {
  /** What is wrong; empty when nothing was lost or doubled. */
  problems: string[];
  events: CloudEvent[];
  audit: AuditRecord[];
}

/**
 * Nothing lost, nothing doubled, for one attempt: one rollback PR (merged at most
 * once, by one merge commit), each transition's fsm.transition event in JetStream
 * exactly once and every event id once, each transition's audit record once, and
 * the audit trail's hash chain intact.
 */
export async function nothingLost(s: Scenario, record: AttemptRecord, natsUrl: string): Promise<LossReport> {
  const problems: string[] = [];
  const pulls = s.github.control.pulls(REPO);
  if (record.pullRequest && pulls.length !== 1) problems.push(`${pulls.length} rollback PRs, expected 1: ${pulls.map((p) => `#${p.number} ${p.state}`).join(', ')}`);
  if (!record.pullRequest && pulls.length > 0) problems.push(`the attempt has no PR but GitHub has ${pulls.map((p) => `#${p.number} (${p.state})`).join(', ')}: orphaned`);
  const mergeCalls = s.github.control.counters()['PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge'] ?? 0;
  if (record.merge && mergeCalls < 1) problems.push('merged, but no merge call reached GitHub');

  // The last transitions' events leave the etcd outbox at the relay's next pass (every second; later on a
  // loaded machine): the record can reach its end before they are in JetStream. Read until they all are, or 15 s.
  // Past 15 s, what JetStream holds then is checked below (and found short, by name).
  const read = () => attemptEvents(natsUrl, record.correlationId, s.stream);
  const complete = (all: CloudEvent[]) => all.filter((e) => e.type === 'io.ai-operator.fsm.transition').length >= record.transitions.length;
  const events = await eventually('every transition\'s event in JetStream', async () => {
    const all = await read();
    return complete(all) ? all : undefined;
  }, 15_000, 500).catch(read);
  const ids = events.map((e) => e.id);
  if (new Set(ids).size !== ids.length) problems.push(`duplicate event ids: ${ids.filter((id, i) => ids.indexOf(id) !== i).join(', ')}`);
  // Each transition's event once: by version (unique), in the record's order.
  const transitions = events.filter((e) => e.type === 'io.ai-operator.fsm.transition').map((e) => e.data as { to: string; version: number })
    .sort((a, b) => a.version - b.version);
  const versions = transitions.map((t) => t.version);
  if (new Set(versions).size !== versions.length) problems.push(`fsm.transition published twice for a version: ${versions.join(', ')}`);
  const published = transitions.map((t) => t.to).join(' -> ');
  const happened = record.transitions.map((t) => t.to).join(' -> ');
  if (published !== happened) problems.push(`fsm.transition events ${published || '(none)'}, transitions ${happened}`);
  const merged = events.filter((e) => e.type === 'io.ai-operator.pr.merged').length;
  if (merged !== (record.merge ? 1 : 0)) problems.push(`${merged} pr.merged events`);
  const created = events.filter((e) => e.type === 'io.ai-operator.pr.created').length;
  if (created !== (record.pullRequest ? 1 : 0)) problems.push(`${created} pr.created events`);

  const audit = await readAuditDir(join(s.dir, 'audit'));
  const chain = verifyChain(audit);
  if (!chain.ok) problems.push(`audit chain broken: ${JSON.stringify(chain)}`);
  const mine = audit.filter((a) => a.correlationId === record.correlationId);
  const transitionsAudited = mine.filter((a) => a.actionType === 'FSM_TRANSITION' || a.actionType === 'ABORT' || a.actionType === 'RESET');
  if (transitionsAudited.length !== record.transitions.length) problems.push(`${transitionsAudited.length} transition audit records for ${record.transitions.length} transitions`);
  const auditIds = mine.map((a) => a.eventId);
  if (new Set(auditIds).size !== auditIds.length) problems.push('duplicate audit eventIds');
  const mergedByUs = record.merge && !record.transitions.some((t) => t.reason === 'MergedByHuman') ? 1 : 0;
  const mergedAudit = mine.filter((a) => a.actionType === 'PR_MERGED').length;
  if (mergedAudit !== mergedByUs) problems.push(`${mergedAudit} PR_MERGED audit records, expected ${mergedByUs}`);
  return { problems, events, audit };
}
