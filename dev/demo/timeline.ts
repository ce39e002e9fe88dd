// The demo's readable timeline: it follows the operator's own events on
// JetStream (the same ones any consumer would see) and prints one line each.
import { Registry } from 'prom-client';
import { JetStreamBus, type EventConsumer } from '../../src/bus/jetstream.ts';
import type { CloudEvent } from '../../src/fsm/cloud-events.ts';
import { createLogger } from '../../src/observability/log.ts';

const started = Date.now();
const clock = () => `+${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s`;

/** One line of the timeline that is not the operator's (what Argo CD reports), on the same clock. */
export function stamp(text: string): void {
  process.stdout.write(`${clock()}  ${text}\n`);
}

export function describeEvent(event: CloudEvent): string {
  const data = event.data as unknown as Record<string, unknown> & { app: { name: string }; environment: string };
  const who = `${data.app.name} (${data.environment})`;
  const type = event.type.replace('io.ai-operator.', '');
  switch (type) {
    case 'degradation.detected': {
      const on = data.revision ? `on ${String(data.revision).slice(0, 7)}` : 'with no synced revision';
      // Issue 21: Argo CD still says Progressing, but the pods of the current revision fail early.
      if (data.signal) return `${who}: Progressing ${on}, but its current revision fails early — ${String(data.signal)} (check ${String(data.checks)}): ${String(data.evidence ?? '').replace(/^the current revision of /, '')}`;
      return `${who}: Degraded seen (check ${String(data.checks)}) ${on}`;
    }
    case 'degradation.confirmed': return `${who}: degradation confirmed after ${String(data.checks)} consecutive checks${data.signal ? ` (the pods' ${String(data.signal)}, long before Argo CD's 600 s progress deadline)` : ''}`;
    case 'degradation.cleared': return `${who}: health came back by itself (${String(data.reason)})`;
    case 'candidate.resolved': return `${who}: rollback target ${String(data.candidateRevision).slice(0, 7)} — ${String(data.evidence)}`;
    case 'pr.created': return `${who}: pull request #${String(data.number)} ${data.adopted ? 'adopted' : 'opened'} on ${String(data.branch)}`;
    case 'ci.completed': return `${who}: CI on #${String(data.number)} is ${String(data.state)}`;
    case 'merge.approved': return `${who}: merge of #${String(data.number)} approved by ${String(data.approvedBy)}${data.auto ? ' (automatic: all 8 invariants PASS)' : ''}`;
    case 'pr.merged': return `${who}: #${String(data.number)} merged${data.mergeCommitSha ? ` as ${String(data.mergeCommitSha).slice(0, 7)}` : ''}${data.autoMerged ? ' by the operator' : ''}`;
    case 'pr.closed': return `${who}: #${String(data.number)} closed (${String(data.reason)})`;
    case 'rollback.completed': return `${who}: RollbackComplete — Healthy again on ${String(data.revision).slice(0, 7)}, ${Number(data.recoverySeconds).toFixed(0)} s after the first failing check`;
    case 'rollback.aborted': return `${who}: Abort (${String(data.reason)}): ${String(data.message)}`;
    case 'fsm.transition': return `${who}: ${String(data.from)} → ${String(data.to)} (${String(data.reason)})`;
    default: return `${who}: ${type}`;
  }
}

export async function followTimeline(natsUrl: string, onEvent: (event: CloudEvent) => Promise<void> | void, options: { print?: boolean } = {}): Promise<{ stop(): Promise<void> }> {
  const bus = await JetStreamBus.connect({ servers: natsUrl, registry: new Registry(), log: createLogger('ERROR') });
  await bus.ensureStream();
  const consumer: EventConsumer = await bus.consume({
    durable: `demo-timeline-${process.pid}`,
    handler: async (event) => {
      if (options.print !== false && event.type !== 'io.ai-operator.fsm.transition') stamp(describeEvent(event));
      await onEvent(event);
    },
  });
  return { stop: async () => { await consumer.stop(); await bus.close(); } };
}
