// One trace per rollback (SPEC §10b), read back from a real Jaeger v2 through
// its query API by the trace id anyone holding the correlationId can compute.
// The real operator (src/main.ts) exports over OTLP/HTTP to the stack's Jaeger;
// GitHub and Argo CD are the simulators. Then the same rollback with the trace
// backend gone for the whole of it: the attempt is not slowed, nothing else
// changes, and the spans that could not be exported are counted.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { readAuditDir } from '../../src/audit/jsonl-sink.ts';
import type { CloudEvent } from '../../src/fsm/cloud-events.ts';
import type { AttemptRecord } from '../../src/fsm/record.ts';
import { attemptSpanIdOf, parseTraceparent, traceIdOf } from '../../src/observability/tracing.ts';
import { grantPatch, installApprovalPolicy } from './support/approvals.ts';
import { field, jaegerTrace as readTrace, list, parentOf, tag, traceTree, type JaegerSpan, type JaegerTrace } from './support/jaeger.ts';
import { PrivateComponents, type Component } from './support/faults.ts';
import { kubectl, kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { nothingLost } from './support/outage-checks.ts';
import { givenRollbackScenario, REPO, type OperatorHandle, type Scenario, type ScenarioOptions, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });
const given = (name: string, options: ScenarioOptions) => givenRollbackScenario(stack, name, options, stoppers);

/** The operator's tracing: the stack's Jaeger (or `otlp`), short batching so a trace is whole within a second. */
const otel = (otlp = stack.jaeger.otlp, extra: Record<string, string> = {}) => ({
  OTEL_EXPORTER_OTLP_ENDPOINT: otlp, OTEL_SERVICE_NAME: 'ai-operator', OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=e2e',
  OTEL_BSP_SCHEDULE_DELAY: '200', ...extra,
});

/** The attempt's trace once it holds its root span, every transition and the publish of every event (the exporter batches, Jaeger too). */
function wholeTrace(record: AttemptRecord, eventIds: string[]): Promise<JaegerTrace> {
  const traceId = traceIdOf(record.correlationId)!;
  return eventually(`trace ${traceId} in Jaeger`, async () => {
    const trace = await readTrace(stack.jaeger.query, traceId);
    if (!trace) return undefined;
    const root = trace.spans.some((s) => s.spanID === attemptSpanIdOf(record.correlationId));
    const transitions = trace.spans.flatMap((s) => s.logs.filter((l) => field(l.fields, 'event') === 'transition')).length;
    const published = new Set(trace.spans.filter((s) => s.operationName === 'publishEvent').map((s) => tag(s, 'messaging.message.id')));
    return root && transitions >= record.transitions.length && eventIds.every((id) => published.has(id)) ? trace : undefined;
  }, 30_000, 250);
}

/** Every message of the attempt in the operator's stream, with its traceparent header. */
async function publishedWithHeaders(s: Scenario, correlationId: string): Promise<Array<{ event: CloudEvent; header: string | undefined }>> {
  const nc = await connect({ servers: stack.nats });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(s.stream);
    const out: Array<{ event: CloudEvent; header: string | undefined }> = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const message = await jsm.streams.getMessage(s.stream, { seq }).catch(() => undefined);
      const event = message?.json<CloudEvent>();
      if (event?.correlationid === correlationId) out.push({ event, header: message!.header?.get('traceparent') || undefined });
    }
    return out;
  } finally {
    await nc.close();
  }
}

/**
 * The trace of a finished attempt, as an SRE reads it: one root span for the attempt, one span per
 * reconcile under it whose transition events are the record's transitions in order, the GitHub calls,
 * etcd commits and JetStream publishes as their children; and the CloudEvents, audit records and log
 * lines of the attempt all naming that trace.
 */
async function assertTraceOf(s: Scenario, operator: OperatorHandle, record: AttemptRecord, merge: 'AutoMerged' | 'ApprovedAndMerged'): Promise<void> {
  const traceId = traceIdOf(record.correlationId)!;
  expect(traceId).toBe(record.correlationId.replace(/-/g, ''));
  const published = await eventually('every event of the attempt in JetStream', async () => {
    const all = await publishedWithHeaders(s, record.correlationId);
    return all.some((p) => p.event.type === 'io.ai-operator.rollback.completed') ? all : undefined;
  }, 10_000, 250);
  const trace = await wholeTrace(record, published.map((p) => p.event.id));
  console.log(`${stack.jaeger.query}/api/traces/${traceId}\n${traceTree(trace)}`);
  const spans = trace.spans;
  const byId = new Map(spans.map((span) => [span.spanID, span]));
  expect(spans.every((span) => span.traceID === traceId)).toBe(true);
  expect(Object.values(trace.processes).map((p) => p.serviceName)).toContain('ai-operator');

  // The root: the attempt, from the first degraded check to the end
  const root = byId.get(attemptSpanIdOf(record.correlationId))!;
  expect(root.operationName).toBe(`rollback ${s.namespace}/${s.app}`);
  expect(root.references).toEqual([]);
  expect(tag(root, 'ai_operator.outcome')).toBe('RollbackComplete');
  expect(spans.filter((span) => span.references.length === 0)).toEqual([root]);

  // One span per reconcile, each under the root, named by the state it found
  const reconciles = spans.filter((span) => span.operationName.startsWith('reconcile '));
  expect(reconciles.length).toBeGreaterThanOrEqual(record.transitions.length);
  for (const span of reconciles) {
    expect(parentOf(span)).toBe(root.spanID);
    expect(span.operationName).toMatch(/^reconcile (Idle|DegradationDetected|CandidateResolved|PRCreated|AwaitingMergeApproval|RollbackMerged)$/);
    expect(tag(span, 'ai_operator.correlation_id')).toBe(record.correlationId);
  }
  // Their transition events are the attempt's transitions, each once, in order: DegradationDetected to RollbackComplete
  const transitions = reconciles.flatMap((span) => span.logs.filter((l) => field(l.fields, 'event') === 'transition')
    .map((l) => ({ span, at: l.timestamp, from: field(l.fields, 'ai_operator.from'), to: field(l.fields, 'ai_operator.to'), reason: field(l.fields, 'ai_operator.reason') })))
    .sort((a, b) => a.at - b.at);
  expect(transitions.map((t) => `${t.from} -> ${t.to} (${t.reason})`)).toEqual(record.transitions.map((t) => `${t.from} -> ${t.to} (${t.reason})`));
  expect(transitions.map((t) => t.to)).toEqual(['DegradationDetected', 'CandidateResolved', 'PRCreated', 'AwaitingMergeApproval', 'RollbackMerged', 'RollbackComplete']);
  const spanOf = (to: string) => transitions.find((t) => t.to === to)!.span;
  // The transition and reason as attributes, and the invariants the merge was decided on
  const merged = spanOf('RollbackMerged');
  expect(list(merged, 'ai_operator.transitions')).toContain('AwaitingMergeApproval -> RollbackMerged');
  expect(list(merged, 'ai_operator.reasons')).toContain(merge);
  // The span's last transition, as plain attributes
  const last = transitions.filter((t) => t.span === merged).at(-1)!;
  expect([tag(merged, 'ai_operator.transition'), tag(merged, 'ai_operator.reason')]).toEqual([`${last.from} -> ${last.to}`, last.reason]);
  // (as decide/record-keeping.ts says them, on the span and on the transition's event)
  const invariants = record.invariants.map((i) => `${i.id}=${i.result}`).join(',');
  expect(record.invariants.length).toBe(8);
  expect(tag(merged, 'ai_operator.invariants')).toBe(invariants);
  const mergedEvent = merged.logs.find((l) => field(l.fields, 'event') === 'transition' && field(l.fields, 'ai_operator.to') === 'RollbackMerged')!;
  expect(field(mergedEvent.fields, 'ai_operator.invariants')).toBe(invariants);

  // The calls as children of the reconcile that made them, named by call_name as the call metrics are
  const children = (name: string) => spans.filter((span) => span.operationName === name);
  const reconcileOf = (span: JaegerSpan) => byId.get(parentOf(span) ?? '');
  const create = children('createPullRequest');
  expect(create).toHaveLength(1);
  expect(tag(create[0]!, 'call_name')).toBe('createPullRequest');
  // Opened in the reconcile that then found it and moved to PRCreated (a reconcile runs a few rounds)
  expect(reconcileOf(create[0]!)).toBe(spanOf('PRCreated'));
  const merges = children('mergePullRequest');
  expect(merges).toHaveLength(1);
  expect(reconcileOf(merges[0]!)?.operationName).toMatch(/^reconcile (PRCreated|AwaitingMergeApproval)$/);
  expect(merges[0]!.startTime).toBeLessThan(transitions.find((t) => t.to === 'RollbackMerged')!.at);
  expect(children('getPullRequestStatus').length).toBeGreaterThan(0);
  expect(children('getPullRequestStatus').every((span) => reconcileOf(span)?.operationName.startsWith('reconcile '))).toBe(true);
  // The etcd commit of every transition, in the reconcile that made it
  for (const t of transitions) {
    expect(spans.some((span) => span.operationName === 'commitAttempt' && parentOf(span) === t.span.spanID), `commit of -> ${t.to}`).toBe(true);
  }
  // Kubernetes API calls (the RollbackAttempt status) are children of reconciles too
  expect(children('patchRollbackAttemptStatus').every((span) => byId.get(parentOf(span)!)?.operationName.startsWith('reconcile '))).toBe(true);

  // The JetStream publish of each event, a child of the reconcile that wrote the event; the message
  // carries the publish span's traceparent, the CloudEvent the reconcile's
  const publishes = children('publishEvent');
  expect(published.length).toBeGreaterThanOrEqual(record.transitions.length);
  for (const { event, header } of published) {
    const written = parseTraceparent(event.traceparent);
    expect(written, `${event.type} traceparent`).toMatchObject({ traceId, sampled: true });
    expect(byId.get(written!.spanId)?.operationName, event.type).toMatch(/^reconcile /);
    const sent = parseTraceparent(header);
    const publish = byId.get(sent?.spanId ?? '');
    expect(publish?.operationName, `${event.type} header`).toBe('publishEvent');
    expect(parentOf(publish!)).toBe(written!.spanId);
    expect(tag(publish!, 'messaging.message.id')).toBe(event.id);
  }
  expect(publishes.length).toBeGreaterThanOrEqual(published.length);

  // Every audit record of the attempt names the trace and the reconcile span that decided it
  const audit = (await readAuditDir(join(s.dir, 'audit'))).filter((a) => a.correlationId === record.correlationId);
  expect(audit.length).toBeGreaterThanOrEqual(record.transitions.length);
  for (const a of audit) {
    expect(a.trace_id, `${a.actionType} ${a.eventId}`).toBe(traceId);
    expect(byId.get(a.span_id!)?.operationName, `${a.actionType} span`).toMatch(/^reconcile /);
  }
  expect(audit.find((a) => a.actionType === 'PR_MERGED')?.span_id).toBe(merged.spanID);

  // And so does every log line about it, the audit records' lines included
  const lines = readFileSync(operator.log, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  const about = lines.filter((l) => l.correlationId === record.correlationId);
  expect(about.filter((l) => l.message === 'Transitioned attempt')).toHaveLength(record.transitions.length);
  for (const line of about) expect(line.trace_id, String(line.message)).toBe(traceId);
}

describe('one trace per rollback, read back from Jaeger', () => {
  it('a staging rollback: the reconciles from DegradationDetected to RollbackComplete, the GitHub calls, the etcd commits and the JetStream publishes', async () => {
    // Given a staging app, the operator exporting to the stack's Jaeger
    const s = await given('trace-staging', { environment: 'staging', startOperator: false });
    const operator = await s.startOperator(otel());

    // When a bad release degrades it and the operator rolls it back
    const started = Date.now();
    await s.release('v2', true);
    const pr = await s.firstPull();
    s.ci(pr.headSha, 'success');
    const record = await s.inState('RollbackComplete', 90_000).catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    console.log(`traced staging rollback in ${((Date.now() - started) / 1000).toFixed(1)} s`);

    // Then its trace, found by the trace id the correlationId gives, tells the whole story
    await assertTraceOf(s, operator, record, 'AutoMerged');
    expect(await operator.metrics()).toMatch(/^ai_operator_trace_spans_dropped_total\{reason="export_failed"\} 0$/m);
  }, 180_000);

  it('a production rollback: the same tree, the merge after an authorized approval', async () => {
    // Given a production app under a policy naming alice, the approval policy in force in its namespace
    const s = await given('trace-production', { environment: 'production', startOperator: false });
    const { bindingName } = await installApprovalPolicy(stack, s.namespace);
    await grantPatch(stack, s.namespace, 'alice@example.com');
    await kubectlOk(stack, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name: 'prod', namespace: s.namespace },
      spec: { environment: 'production', detection: { intervalSeconds: 1, persistenceChecks: 3 }, healthRestorationSeconds: 3, merge: { approvers: { users: ['alice@example.com'] } } } }));
    const operator = await s.startOperator(otel(stack.jaeger.otlp, { APPROVAL_POLICY_BINDING_NAME: bindingName }));

    // When a bad release degrades it, its PR goes green, and alice approves
    await s.release('v2', true);
    const pr = await s.firstPull();
    s.ci(pr.headSha, 'success');
    const waiting = await s.inState('AwaitingMergeApproval');
    const name = `${s.app}-${waiting.correlationId.replace(/-/g, '').slice(0, 8)}`;
    await eventually('approval requested', async () => s.github.control.comments({ ...REPO, number: pr.number }).some((c) => c.body.includes('ai-operator.io/approve=')));
    expect((await kubectl(stack, ['annotate', '--overwrite', '--as=alice@example.com', 'rollbackattempt', name, '-n', s.namespace, 'ai-operator.io/approve=alice@example.com'])).code).toBe(0);
    const record = await s.inState('RollbackComplete', 90_000).catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    expect(record.transitions.find((t) => t.to === 'RollbackMerged')?.reason).toBe('ApprovedAndMerged');

    // Then its trace tells that story too
    await assertTraceOf(s, operator, record, 'ApprovedAndMerged');
  }, 180_000);
});

describe('the trace backend down for a whole rollback', () => {
  const components = new PrivateComponents();
  let jaeger: { otlp: string; query: string; component: Component };
  beforeAll(async () => { jaeger = await components.jaeger(); }, 120_000);
  afterAll(() => components.dispose());

  it('changes nothing: the attempt completes on time, nothing is lost or doubled, and the spans it could not export are counted', async () => {
    // Given a staging app whose operator exports to a Jaeger that is stopped, and stays stopped
    await jaeger.component.stop();
    const s = await given('trace-down', { environment: 'staging', startOperator: false });
    const operator = await s.startOperator(otel(jaeger.otlp, { OTEL_EXPORTER_OTLP_TIMEOUT: '2000' }));

    // When the same rollback runs
    const started = Date.now();
    await s.release('v2', true);
    const pr = await s.firstPull();
    s.ci(pr.headSha, 'success');
    const record = await s.inState('RollbackComplete', 90_000).catch((error: Error) => { throw new Error(`${error.message}\n${s.logs()}`); });
    const tookMs = Date.now() - started;

    // Then it took what a rollback takes here (3 checks, CI, 3 s of health), not an exporter's timeouts
    expect(tookMs).toBeLessThan(45_000);
    expect(record.transitions.map((t) => t.to)).toEqual(['DegradationDetected', 'CandidateResolved', 'PRCreated', 'AwaitingMergeApproval', 'RollbackMerged', 'RollbackComplete']);
    // Nothing else is affected: one PR, every event and audit record once, the chain intact, events still carry their traceparent
    const lost = await nothingLost(s, record, stack.nats);
    expect(lost.problems).toEqual([]);
    expect(lost.events.every((e) => parseTraceparent(e.traceparent)?.traceId === traceIdOf(record.correlationId))).toBe(true);
    expect(jaeger.component.isDown()).toBe('stop');
    // And the spans that never reached Jaeger are counted
    const dropped = await eventually('dropped spans counted', async () => {
      const value = Number(/^ai_operator_trace_spans_dropped_total\{reason="export_failed"\} (\S+)$/m.exec(await operator.metrics())?.[1] ?? 0);
      return value > 0 ? value : undefined;
    }, 30_000, 500);
    expect(dropped).toBeGreaterThanOrEqual(record.transitions.length);
    expect(operator.child.exitCode).toBeNull();
    console.log(`trace backend down: rollback in ${(tookMs / 1000).toFixed(1)} s, ${dropped} spans counted as dropped (export_failed)`);
  }, 180_000);
});
