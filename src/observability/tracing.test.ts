import { InMemorySpanExporter, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace';
import { afterEach, describe, expect, it } from 'vitest';
import { exampleEvent } from '../bus/examples.ts';
import { SETTINGS } from '../fsm/testing.ts';
import type { AttemptRecord } from '../fsm/record.ts';
import { call } from '../integrations/call.ts';
import { IntegrationError } from '../ports/errors.ts';
import { AttemptStore } from '../store/attempt-store.ts';
import { MemoryKV } from '../store/memory.ts';
import { createLogger } from './log.ts';
import {
  annotateReconcile, attemptEnded, attemptSpanIdOf, bindAttempt, BoundedExportProcessor, currentTraceparent, formatTraceparent, inReconcile, noteWrite,
  parseTraceparent, startTracing, traceCall, traceFields, traceFrom, traceIdOf, tracingEnabled, untraced, type DropReason, type TracingConfig, type Tracing,
} from './tracing.ts';

const CID = '5b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d';
const TRACE = '5b1c2d3e4f504a6b8c7d9e0f1a2b3c4d';

const CONFIG: TracingConfig = {
  endpoint: 'http://127.0.0.1:1/v1/traces', protocol: 'http/protobuf', headers: {}, timeoutMs: 1000, sampler: 'parentbased_always_on', samplerRatio: 1,
  serviceName: 'ai-operator', resourceAttributes: {}, maxQueueSize: 2048, maxExportBatchSize: 512, scheduledDelayMs: 5000, exportTimeoutMs: 30_000,
};

let running: Tracing | undefined;
afterEach(async () => { await running?.shutdown(); running = undefined; });

async function traced(config: Partial<TracingConfig> = {}) {
  const exporter = new InMemorySpanExporter();
  const dropped: Array<[DropReason, number]> = [];
  running = await startTracing({ ...CONFIG, ...config }, { dropped: (reason, count) => dropped.push([reason, count]) }, exporter);
  return { exporter, dropped, spans: async () => { await running!.flush(); return exporter.getFinishedSpans(); } };
}

const byName = (spans: ReadableSpan[], name: string) => spans.filter((s) => s.name === name);
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;

describe('ids and traceparent', () => {
  it('takes a trace id from the correlationId\'s 128 bits, and derives one root span id per attempt', () => {
    expect(traceIdOf(CID)).toBe(TRACE);
    expect(traceIdOf(CID.toUpperCase())).toBe(TRACE);
    expect(traceIdOf('not-a-uuid')).toBeUndefined();
    expect(traceIdOf('00000000-0000-0000-0000-000000000000')).toBeUndefined();
    expect(attemptSpanIdOf(CID)).toMatch(/^[0-9a-f]{16}$/);
    expect(attemptSpanIdOf(CID)).toBe(attemptSpanIdOf(CID.toUpperCase()));
    expect(attemptSpanIdOf(CID)).not.toBe(attemptSpanIdOf('6b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d'));
  });

  it('formats and parses W3C traceparent, refusing what the specification refuses', () => {
    const tp = formatTraceparent({ traceId: TRACE, spanId: '00f067aa0ba902b7', sampled: true });
    expect(tp).toBe(`00-${TRACE}-00f067aa0ba902b7-01`);
    expect(parseTraceparent(tp)).toEqual({ traceId: TRACE, spanId: '00f067aa0ba902b7', sampled: true });
    expect(parseTraceparent(`00-${TRACE}-00f067aa0ba902b7-00`)?.sampled).toBe(false);
    // A later version may add fields; version 00 may not; ff is invalid; ids may not be zero or upper case.
    expect(parseTraceparent(`01-${TRACE}-00f067aa0ba902b7-01-extra`)?.traceId).toBe(TRACE);
    for (const bad of [`00-${TRACE}-00f067aa0ba902b7-01-extra`, `ff-${TRACE}-00f067aa0ba902b7-01`, `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`,
      `00-${TRACE}-${'0'.repeat(16)}-01`, `00-${TRACE.toUpperCase()}-00f067aa0ba902b7-01`, `00-${TRACE}-00f067aa0ba902b7`, 42, undefined]) {
      expect(parseTraceparent(bad), String(bad)).toBeUndefined();
    }
  });
});

describe('tracing off', () => {
  it('runs everything as it is: no scope, no fields, no spans, traceparents passed through', async () => {
    expect(tracingEnabled()).toBe(false);
    const result = await inReconcile(async () => {
      bindAttempt(CID, { state: 'PRCreated' });
      expect(traceFields()).toBeUndefined();
      expect(currentTraceparent()).toBeUndefined();
      return traceCall('createPullRequest', async () => 7);
    });
    expect(result).toBe(7);
    const incoming = `00-${TRACE}-00f067aa0ba902b7-01`;
    await expect(traceFrom(incoming, 'publishEvent', async (tp) => tp)).resolves.toBe(incoming);
    await expect(traceFrom(undefined, 'publishEvent', async (tp) => tp)).resolves.toBeUndefined();
  });
});

describe('a traced reconcile', () => {
  it('is a span in the attempt\'s trace, under its root span; its calls are children named by call_name', async () => {
    const { spans } = await traced();
    let fields: ReturnType<typeof traceFields>;
    let traceparent: string | undefined;
    await inReconcile(async () => {
      // Before the store says which attempt: nothing is traced
      await traceCall('getBranch', async () => undefined);
      expect(traceFields()).toBeUndefined();
      bindAttempt(CID, { state: 'CandidateResolved', app: 'shop/cart', environment: 'staging', last: { from: 'DegradationDetected', to: 'CandidateResolved', reason: 'StableCandidateFound', at: '2026-01-01T00:00:00Z' } });
      fields = traceFields();
      traceparent = currentTraceparent();
      await call('createPullRequest', async () => 1, { classify: () => ({ code: 'UNAVAILABLE', message: 'x' }) });
      await call('mergePullRequest', async () => { throw new Error('refused'); }, { classify: () => ({ code: 'CONFLICT', message: 'refused' }) }).catch(() => undefined);
      // The transition read at bind is not new; the one written now is
      expect(noteWrite(CID, { last: { from: 'DegradationDetected', to: 'CandidateResolved', reason: 'StableCandidateFound', at: '2026-01-01T00:00:00Z' } })).toBe(false);
      expect(noteWrite(CID, { last: { from: 'CandidateResolved', to: 'PRCreated', reason: 'PullRequestOpened', at: '2026-01-01T00:00:05Z' }, invariants: [{ id: 'I1_environment', result: 'PASS' }] })).toBe(true);
      // What decide/record-keeping.ts says of the decision
      annotateReconcile({ 'ai_operator.invariants': 'I1_environment=PASS' });
    });
    const all = await spans();
    const [reconcile] = byName(all, 'reconcile CandidateResolved');
    expect(reconcile).toBeDefined();
    expect(reconcile!.spanContext().traceId).toBe(TRACE);
    expect(parentOf(reconcile!)).toBe(attemptSpanIdOf(CID));
    expect(reconcile!.attributes).toMatchObject({
      'ai_operator.correlation_id': CID, 'ai_operator.app': 'shop/cart', 'ai_operator.state': 'CandidateResolved',
      'ai_operator.transition': 'CandidateResolved -> PRCreated', 'ai_operator.reason': 'PullRequestOpened',
      'ai_operator.transitions': ['CandidateResolved -> PRCreated'], 'ai_operator.invariants': 'I1_environment=PASS',
    });
    expect(reconcile!.events.map((e) => [e.name, e.attributes?.['ai_operator.to'], e.attributes?.['ai_operator.invariants']])).toEqual([['transition', 'PRCreated', 'I1_environment=PASS']]);
    const create = byName(all, 'createPullRequest')[0]!;
    const merge = byName(all, 'mergePullRequest')[0]!;
    expect(parentOf(create)).toBe(reconcile!.spanContext().spanId);
    expect(create.attributes).toMatchObject({ call_name: 'createPullRequest' });
    expect(merge.attributes).toMatchObject({ call_name: 'mergePullRequest', error_code: 'CONFLICT' });
    expect(merge.status.code).toBe(2);
    expect(byName(all, 'getBranch')).toEqual([]);
    // What logs, audit records and events carry is that span
    expect(fields).toEqual({ trace_id: TRACE, span_id: reconcile!.spanContext().spanId });
    expect(parseTraceparent(traceparent)).toEqual({ traceId: TRACE, spanId: reconcile!.spanContext().spanId, sampled: true });
  });

  it('notes each retry of a call as an event of its one span', async () => {
    const { spans } = await traced();
    let tries = 0;
    await inReconcile(async () => {
      bindAttempt(CID, { state: 'PRCreated' });
      await call('getPullRequestStatus', async () => { if (++tries < 3) throw new Error('503'); return 'ok'; }, {
        classify: () => ({ code: 'UNAVAILABLE', message: '503' }), sleep: async () => undefined,
      });
    });
    const [span] = byName(await spans(), 'getPullRequestStatus');
    expect(span!.events.map((e) => [e.name, e.attributes?.error_code, e.attributes?.try])).toEqual([['retry', 'UNAVAILABLE', 1], ['retry', 'UNAVAILABLE', 2]]);
  });

  it('ends an attempt with its root span: the derived id, no parent, from the first degraded check', async () => {
    const { spans } = await traced();
    await inReconcile(async () => {
      bindAttempt(CID, { state: 'RollbackMerged', app: 'shop/cart', firstSeenAt: '2026-01-01T00:00:00Z' });
      attemptEnded(CID, { state: 'RollbackComplete', reason: 'HealthRestored' });
    });
    const all = await spans();
    const root = byName(all, 'rollback shop/cart')[0]!;
    expect(root.spanContext()).toMatchObject({ traceId: TRACE, spanId: attemptSpanIdOf(CID) });
    expect(root.parentSpanContext).toBeUndefined();
    expect(root.startTime[0]).toBe(Date.parse('2026-01-01T00:00:00Z') / 1000);
    expect(root.attributes).toMatchObject({ 'ai_operator.outcome': 'RollbackComplete', 'ai_operator.reason': 'HealthRestored' });
    expect(parentOf(byName(all, 'reconcile RollbackMerged')[0]!)).toBe(root.spanContext().spanId);
  });

  it('marks a reconcile that threw as an error, and puts a later bind to another attempt in a span of its own', async () => {
    const { spans } = await traced();
    const other = '6b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d';
    await expect(inReconcile(async () => {
      bindAttempt(CID, { state: 'RollbackComplete' });
      bindAttempt(other, { state: 'Idle' });
      throw new Error('boom');
    })).rejects.toThrow('boom');
    const all = await spans();
    expect(byName(all, 'reconcile RollbackComplete')[0]!.spanContext().traceId).toBe(TRACE);
    const idle = byName(all, 'reconcile Idle')[0]!;
    expect(idle.spanContext().traceId).toBe(traceIdOf(other));
    expect(idle.status).toMatchObject({ code: 2, message: 'boom' });
  });

  it('puts trace_id and span_id in log lines written within it, and none outside it or in untraced work', async () => {
    await traced();
    const lines: string[] = [];
    const log = createLogger('INFO', {}, (l) => lines.push(l));
    log.info('Before');
    await inReconcile(async () => {
      bindAttempt(CID, { state: 'PRCreated' });
      log.info('Transitioned attempt', { correlationId: CID });
      untraced(() => log.info('Drained outbox'));
    });
    const [before, within, drained] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(before!.trace_id).toBeUndefined();
    expect(within).toMatchObject({ trace_id: TRACE, span_id: expect.stringMatching(/^[0-9a-f]{16}$/), correlationId: CID });
    expect(drained!.trace_id).toBeUndefined();
  });

  it('samples whole attempts: with always_off nothing is recorded, and the traceparent says so', async () => {
    const { spans } = await traced({ sampler: 'always_off' });
    let tp: string | undefined;
    await inReconcile(async () => {
      bindAttempt(CID, { state: 'PRCreated' });
      tp = currentTraceparent();
      await traceCall('createPullRequest', async () => undefined);
    });
    expect(await spans()).toEqual([]);
    expect(parseTraceparent(tp)).toMatchObject({ traceId: TRACE, sampled: false });
  });

  it('continues a trace from a traceparent (the JetStream publish of an event) and hands on its own span\'s', async () => {
    const { spans } = await traced();
    const parent = `00-${TRACE}-00f067aa0ba902b7-01`;
    const sent = await traceFrom(parent, 'publishEvent', async (tp) => tp, { kind: 'producer' });
    const [publish] = byName(await spans(), 'publishEvent');
    expect(publish!.spanContext().traceId).toBe(TRACE);
    expect(parentOf(publish!)).toBe('00f067aa0ba902b7');
    expect(publish!.kind).toBe(3);
    expect(sent).toBe(formatTraceparent({ traceId: TRACE, spanId: publish!.spanContext().spanId, sampled: true }));
  });
});

describe('the attempt store within a traced reconcile', () => {
  const record = (over: Partial<AttemptRecord> = {}): AttemptRecord => ({
    correlationId: CID, app: { namespace: 'shop', name: 'cart' }, environment: 'staging', settings: SETTINGS, state: 'DegradationDetected',
    reason: 'DegradationConfirmed', message: '', since: '2026-01-01T00:00:03Z', version: 1, createdAt: '2026-01-01T00:00:03Z',
    degradation: { firstSeenAt: '2026-01-01T00:00:00Z', checks: 3 }, invariants: [],
    transitions: [{ from: 'Idle', to: 'DegradationDetected', at: '2026-01-01T00:00:03Z', reason: 'DegradationConfirmed' }], ...over,
  } as AttemptRecord);

  it('binds the reconcile to the attempt it reads, stamps the events and audit records it writes, and traces the etcd commit', async () => {
    const { spans } = await traced();
    const kv = new MemoryKV();
    const store = new AttemptStore(kv);
    const first = await store.commit({ appKey: 'cart', record: record(), expectedModRevision: null, events: [] });
    expect(first.ok).toBe(true);
    const event = exampleEvent('fsm.transition', { correlationId: CID, app: { namespace: 'shop', name: 'cart' } });
    await inReconcile(async () => {
      const state = await store.loadApp('cart');
      const next = record({ state: 'CandidateResolved', version: 2, transitions: [...state.active!.record.transitions, { from: 'DegradationDetected', to: 'CandidateResolved', at: '2026-01-01T00:00:04Z', reason: 'StableCandidateFound' }] });
      const result = await store.commit({
        appKey: 'cart', record: next, expectedModRevision: state.active!.modRevision, events: [event],
        audit: { id: 'a1', entry: { chainId: 'local', committedAt: '2026-01-01T00:00:04Z', records: [{ module: 'Reconciler', actionType: 'FSM_TRANSITION', message: 'x', correlationId: CID, eventId: 'e1' }] } },
      });
      expect(result.ok).toBe(true);
    });
    const all = await spans();
    const reconcile = byName(all, 'reconcile DegradationDetected')[0]!;
    expect(reconcile.attributes['ai_operator.transition']).toBe('DegradationDetected -> CandidateResolved');
    const commit = byName(all, 'commitAttempt')[0]!;
    expect(parentOf(commit)).toBe(reconcile.spanContext().spanId);
    // Outside any reconcile (the first write), nothing was traced
    expect(byName(all, 'commitAttempt')).toHaveLength(1);
    const [stored] = await store.pendingOutbox(10);
    expect(parseTraceparent(stored!.event?.traceparent)).toEqual({ traceId: TRACE, spanId: reconcile.spanContext().spanId, sampled: true });
    const [audit] = await store.pendingAuditOutbox(undefined, 10);
    expect(audit!.entry!.records[0]).toMatchObject({ trace_id: TRACE, span_id: reconcile.spanContext().spanId });
  });
});

describe('the bounded export queue', () => {
  const span = (sampled = true) => ({ spanContext: () => ({ traceId: TRACE, spanId: '00f067aa0ba902b7', traceFlags: sampled ? 1 : 0 }) }) as unknown as ReadableSpan;

  function processor(exporter: SpanExporter, options: { maxQueueSize?: number; exportTimeoutMs?: number } = {}) {
    const dropped: Array<[DropReason, number]> = [];
    const p = new BoundedExportProcessor(exporter, {
      maxQueueSize: options.maxQueueSize ?? 4, maxExportBatchSize: 2, scheduledDelayMs: 60_000, exportTimeoutMs: options.exportTimeoutMs ?? 1000, success: 0,
    }, { dropped: (reason, count) => dropped.push([reason, count]) });
    return { p, dropped };
  }

  it('drops and counts what does not fit while an export hangs, and never waits for it', async () => {
    // An exporter that never answers (a backend that accepts connections and says nothing)
    let exports = 0;
    const hung: SpanExporter = { export: () => { exports++; }, shutdown: async () => undefined };
    const { p, dropped } = processor(hung, { maxQueueSize: 4, exportTimeoutMs: 200 });
    const started = performance.now();
    for (let i = 0; i < 10; i++) p.onEnd(span());
    // onEnd returned at once; one export runs (2 spans), 4 wait, 4 were dropped
    expect(performance.now() - started).toBeLessThan(50);
    expect(exports).toBe(1);
    expect(p.queued).toBe(4);
    expect(dropped).toEqual([['queue_full', 1], ['queue_full', 1], ['queue_full', 1], ['queue_full', 1]]);
    // The hung export times out: its spans count as failed, and the next batch goes
    await new Promise((r) => setTimeout(r, 300));
    expect(dropped).toContainEqual(['export_failed', 2]);
    expect(exports).toBe(2);
  });

  it('counts the spans of a failed export, and skips unsampled spans', async () => {
    const failing: SpanExporter = { export: (_spans, done) => done({ code: 1, error: new Error('ECONNREFUSED') }), shutdown: async () => undefined };
    const { p, dropped } = processor(failing);
    p.onEnd(span(false));
    p.onEnd(span());
    expect(p.queued).toBe(1);
    await p.forceFlush();
    expect(dropped).toEqual([['export_failed', 1]]);
    expect(p.queued).toBe(0);
  });
});
