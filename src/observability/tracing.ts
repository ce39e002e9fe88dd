// Tracing (SPEC §10b) with OpenTelemetry's JS SDK, exported over OTLP/HTTP.
//
// One trace per attempt: its trace id is the correlationId's 128 bits, so anyone
// holding a correlationId (RollbackAttempt, PR body, audit record, log line) can
// open the trace. Under one root span per attempt (its id derived from the
// correlationId too, emitted when the attempt stops being in progress) hangs a
// span per reconcile of the attempt, and under each of those a span per external
// call (the `call_name` of ai_operator_mcp_call_duration_seconds), the etcd
// commit, and, through the `traceparent` the commit writes into each CloudEvent,
// the JetStream publish of its events.
//
// A reconcile learns which attempt it is about only once it has read the app's
// state from etcd: inReconcile() opens a scope, and the attempt store binds it
// (bindAttempt) when it reads or writes an attempt. Calls made before that, and
// reconciles of apps that have no attempt, make no span at all.
//
// Off (no OTLP endpoint configured) it costs one `undefined` check per call: the
// SDK and the exporter are not even loaded. On, export never blocks a reconcile:
// spans wait in a bounded queue, one export runs at a time, and a span that does
// not fit in the queue, or whose export failed, is counted as dropped
// (ai_operator_trace_spans_dropped_total{reason}).
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash, randomBytes } from 'node:crypto';
import type * as Api from '@opentelemetry/api';
import type { IdGenerator, ReadableSpan, Sampler, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace';

export const OTLP_PROTOCOLS = ['http/protobuf', 'http/json'] as const;
export type OtlpProtocol = (typeof OTLP_PROTOCOLS)[number];
export const SAMPLERS = ['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio'] as const;
export type SamplerName = (typeof SAMPLERS)[number];

/** What OTEL_* configures (src/config.ts reads it); no config at all means tracing is off. */
export interface TracingConfig {
  /** Where spans are POSTed: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as given, or OTEL_EXPORTER_OTLP_ENDPOINT + `/v1/traces`. */
  endpoint: string;
  protocol: OtlpProtocol;
  /** OTEL_EXPORTER_OTLP_HEADERS (e.g. a collector's API key): secrets, never logged. */
  headers: Record<string, string>;
  /** OTEL_EXPORTER_OTLP_TIMEOUT: one export request, retries included. */
  timeoutMs: number;
  sampler: SamplerName;
  /** OTEL_TRACES_SAMPLER_ARG, for the traceidratio samplers. */
  samplerRatio: number;
  serviceName: string;
  /** OTEL_RESOURCE_ATTRIBUTES (service.name there loses to OTEL_SERVICE_NAME). */
  resourceAttributes: Record<string, string>;
  /** OTEL_BSP_MAX_QUEUE_SIZE: spans waiting for export; one more is dropped. */
  maxQueueSize: number;
  /** OTEL_BSP_MAX_EXPORT_BATCH_SIZE. */
  maxExportBatchSize: number;
  /** OTEL_BSP_SCHEDULE_DELAY: how long a span may wait for a fuller batch. */
  scheduledDelayMs: number;
  /** OTEL_BSP_EXPORT_TIMEOUT: an export that has not answered by then counts as failed. */
  exportTimeoutMs: number;
}

/** Why a span never reached the backend: the `reason` label of ai_operator_trace_spans_dropped_total. */
export const DROP_REASONS = ['queue_full', 'export_failed'] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export interface TracingHooks {
  /** Spans that will never be exported. */
  dropped(reason: DropReason, count: number): void;
}

export interface Tracing {
  /** Exports what is queued (bounded by the export timeout). */
  flush(): Promise<void>;
  /** Flushes, stops exporting, and turns tracing off. */
  shutdown(): Promise<void>;
}

// ---- ids and W3C traceparent (pure) -------------------------------------------

const UUID = /^([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{12})$/i;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/** The trace id of an attempt: its correlationId's 128 bits as 32 lower-case hex digits; undefined if it is no UUID. */
export function traceIdOf(correlationId: string): string | undefined {
  const m = UUID.exec(correlationId);
  if (!m) return undefined;
  const id = m.slice(1).join('').toLowerCase();
  return id === ZERO_TRACE ? undefined : id;
}

/** The id of an attempt's root span: derived from the correlationId, so every replica emits the same one. */
export function attemptSpanIdOf(correlationId: string): string {
  const id = createHash('sha256').update(`attempt:${correlationId.toLowerCase()}`).digest('hex').slice(0, 16);
  return id === ZERO_SPAN ? '0000000000000001' : id;
}

export interface TraceParent {
  traceId: string;
  spanId: string;
  sampled: boolean;
}

/** `00-{trace id}-{span id}-{flags}` (W3C Trace Context, version 00). */
export function formatTraceparent(p: TraceParent): string {
  return `00-${p.traceId}-${p.spanId}-${p.sampled ? '01' : '00'}`;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/**
 * A W3C traceparent, or undefined when it is not one: version ff, an all-zero
 * id, upper-case hex, or (for version 00) anything after the flags are refused,
 * as the specification says; a later version's extra fields are ignored.
 */
export function parseTraceparent(value: unknown): TraceParent | undefined {
  if (typeof value !== 'string') return undefined;
  const m = TRACEPARENT.exec(value.trim());
  if (!m) return undefined;
  const [, version, traceId, spanId, flags, rest] = m as unknown as [string, string, string, string, string, string | undefined];
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  return { traceId, spanId, sampled: (Number.parseInt(flags, 16) & 1) === 1 };
}

// ---- the active tracer -------------------------------------------------------------

/** Span ids handed out by the next startSpan, for the spans whose ids are derived; random ones otherwise. */
class DerivedIds implements IdGenerator {
  nextTraceId: string | undefined;
  nextSpanId: string | undefined;
  generateTraceId(): string {
    const id = this.nextTraceId ?? randomBytes(16).toString('hex');
    this.nextTraceId = undefined;
    return id;
  }
  generateSpanId(): string {
    const id = this.nextSpanId ?? randomBytes(8).toString('hex');
    this.nextSpanId = undefined;
    return id;
  }
}

interface Active {
  api: typeof Api;
  tracer: Api.Tracer;
  sampler: Sampler;
  ids: DerivedIds;
}

let active: Active | undefined;

/** Whether spans are being made (an OTLP endpoint is configured and startTracing ran). */
export function tracingEnabled(): boolean {
  return active !== undefined;
}

// ---- the reconcile scope -----------------------------------------------------------

interface Transition {
  from: string;
  to: string;
  reason: string;
  at: string;
}

export interface AttemptFacts {
  /** `namespace/name` of the Application. */
  app?: string;
  environment?: string;
  /** The state the attempt is in as the reconcile finds it (names its span). */
  state: string;
  /** The attempt's last transition as read: one seen later in this reconcile is new. */
  last?: Transition;
  /** When the degradation was first seen: the start of the attempt's root span. */
  firstSeenAt?: string;
}

class ReconcileScope {
  readonly startedAt = Date.now();
  correlationId: string | undefined;
  span: Api.Span | undefined;
  sampled = false;
  ended = false;
  facts: AttemptFacts | undefined;
  readonly seen = new Set<string>();
  readonly transitions: string[] = [];
  readonly reasons: string[] = [];
}

const scopes = new AsyncLocalStorage<ReconcileScope>();

const transitionKey = (t: Transition) => `${t.at}|${t.from}|${t.to}`;

function liveScope(): ReconcileScope | undefined {
  if (!active) return undefined;
  const scope = scopes.getStore();
  return scope && !scope.ended ? scope : undefined;
}

/** The remote parent of an attempt's reconcile spans: its root span, sampled as the configured sampler decides for the trace. */
function attemptParent(a: Active, traceId: string, correlationId: string): { context: Api.Context; sampled: boolean } {
  const decision = a.sampler.shouldSample(a.api.ROOT_CONTEXT, traceId, 'attempt', a.api.SpanKind.INTERNAL, {}, []).decision;
  const sampled = decision === a.api.SamplingDecision.RECORD_AND_SAMPLED;
  const context = a.api.trace.setSpanContext(a.api.ROOT_CONTEXT, {
    traceId, spanId: attemptSpanIdOf(correlationId), traceFlags: sampled ? a.api.TraceFlags.SAMPLED : a.api.TraceFlags.NONE, isRemote: true,
  });
  return { context, sampled };
}

/**
 * Runs one reconcile in a scope of its own: once bound to an attempt
 * (bindAttempt), its span is the parent of every call made within, and it ends
 * when `work` settles. Tracing off: `work()` itself, nothing else.
 */
export function inReconcile<T>(work: () => Promise<T>): Promise<T> {
  if (!active) return work();
  const scope = new ReconcileScope();
  return scopes.run(scope, async () => {
    try {
      return await work();
    } catch (error) {
      scope.span?.setStatus({ code: active?.api.SpanStatusCode.ERROR ?? 2, message: (error as Error)?.message ?? String(error) });
      throw error;
    } finally {
      endScope(scope);
    }
  });
}

function endScope(scope: ReconcileScope): void {
  scope.ended = true;
  const span = scope.span;
  if (!span) return;
  if (scope.transitions.length > 0) {
    span.setAttributes({
      'ai_operator.transition': scope.transitions.at(-1)!,
      'ai_operator.reason': scope.reasons.at(-1)!,
      'ai_operator.transitions': scope.transitions,
      'ai_operator.reasons': scope.reasons,
    });
  }
  span.end();
}

/**
 * The reconcile in progress is about this attempt (or the degradation being
 * counted under this correlationId): its span starts now, dated from the start
 * of the reconcile. Bound to another attempt already, that one's span ends first.
 */
export function bindAttempt(correlationId: string, facts: AttemptFacts): void {
  const scope = liveScope();
  if (!scope || !active) return;
  if (scope.correlationId === correlationId) {
    if (facts.last) scope.seen.add(transitionKey(facts.last));
    scope.facts = { ...facts, ...scope.facts, state: scope.facts?.state ?? facts.state };
    return;
  }
  const traceId = traceIdOf(correlationId);
  if (!traceId) return;
  if (scope.span) {
    endScope(scope);
    scope.ended = false;
    scope.transitions.length = 0;
    scope.reasons.length = 0;
    scope.seen.clear();
  }
  const a = active;
  const parent = attemptParent(a, traceId, correlationId);
  scope.correlationId = correlationId;
  scope.facts = facts;
  if (facts.last) scope.seen.add(transitionKey(facts.last));
  scope.span = a.tracer.startSpan(`reconcile ${facts.state}`, {
    kind: a.api.SpanKind.INTERNAL,
    startTime: scope.startedAt,
    attributes: {
      'ai_operator.correlation_id': correlationId,
      'ai_operator.state': facts.state,
      ...(facts.app ? { 'ai_operator.app': facts.app } : {}),
      ...(facts.environment ? { 'ai_operator.environment': facts.environment } : {}),
    },
  }, parent.context);
  scope.sampled = (scope.span.spanContext().traceFlags & a.api.TraceFlags.SAMPLED) === a.api.TraceFlags.SAMPLED;
}

/**
 * What the reconcile wrote for its attempt: a transition not seen before in
 * this reconcile becomes a span event (with the invariant results it was
 * decided on) and the span's transition/reason attributes. Returns whether the
 * transition was new.
 */
export function noteWrite(correlationId: string, write: { last?: Transition; invariants?: ReadonlyArray<{ id: string; result: string }> }): boolean {
  const scope = liveScope();
  if (!scope?.span || scope.correlationId !== correlationId) return false;
  const span = scope.span;
  const t = write.last;
  if (!t || scope.seen.has(transitionKey(t))) return false;
  scope.seen.add(transitionKey(t));
  scope.transitions.push(`${t.from} -> ${t.to}`);
  scope.reasons.push(t.reason);
  span.addEvent('transition', {
    'ai_operator.from': t.from, 'ai_operator.to': t.to, 'ai_operator.reason': t.reason,
    ...(write.invariants && write.invariants.length > 0 ? { 'ai_operator.invariants': write.invariants.map((i) => `${i.id}=${i.result}`).join(',') } : {}),
  }, Date.parse(t.at) || undefined);
  return true;
}

/**
 * The attempt stopped being in progress (or its degradation count ended): its
 * root span, whose id every reconcile span names as parent, is emitted now,
 * from when the degradation was first seen.
 */
export function attemptEnded(correlationId: string, outcome: { state: string; reason: string; app?: string; environment?: string; firstSeenAt?: string }): void {
  const a = active;
  if (!a) return;
  const traceId = traceIdOf(correlationId);
  if (!traceId) return;
  const scope = liveScope();
  const firstSeenAt = outcome.firstSeenAt ?? (scope?.correlationId === correlationId ? scope.facts?.firstSeenAt : undefined);
  const app = outcome.app ?? (scope?.correlationId === correlationId ? scope.facts?.app : undefined);
  const environment = outcome.environment ?? (scope?.correlationId === correlationId ? scope.facts?.environment : undefined);
  a.ids.nextTraceId = traceId;
  a.ids.nextSpanId = attemptSpanIdOf(correlationId);
  const span = a.tracer.startSpan(`rollback ${app ?? correlationId}`, {
    root: true,
    kind: a.api.SpanKind.INTERNAL,
    ...(firstSeenAt && Number.isFinite(Date.parse(firstSeenAt)) ? { startTime: Date.parse(firstSeenAt) } : {}),
    attributes: {
      'ai_operator.correlation_id': correlationId,
      'ai_operator.outcome': outcome.state,
      'ai_operator.reason': outcome.reason,
      ...(app ? { 'ai_operator.app': app } : {}),
      ...(environment ? { 'ai_operator.environment': environment } : {}),
    },
  }, a.api.ROOT_CONTEXT);
  a.ids.nextTraceId = undefined;
  a.ids.nextSpanId = undefined;
  span.end();
}

/**
 * Attributes of the reconcile span in progress: what decide/record-keeping.ts
 * says of a decision (its transition, reason, invariants). Nothing outside a
 * bound reconcile, or with tracing off.
 */
export function annotateReconcile(attributes: Record<string, string | number | boolean>): void {
  const span = liveScope()?.span;
  if (span && Object.keys(attributes).length > 0) span.setAttributes(attributes);
}

// ---- child spans -------------------------------------------------------------------

/** A call's span, for what happens during it (a failed try, a retry). */
export interface CallSpan {
  event(name: string, attributes?: Record<string, string | number | boolean>): void;
}

export interface CallTrace {
  kind?: 'client' | 'producer' | 'internal';
  attributes?: Record<string, string | number | boolean>;
  /** The `error_code` attribute of a call that threw (an IntegrationError's code). */
  codeOf?: (error: unknown) => string | undefined;
}

const NO_SPAN: CallSpan = { event: () => undefined };

function kindOf(a: Active, kind: CallTrace['kind']): Api.SpanKind {
  return kind === 'producer' ? a.api.SpanKind.PRODUCER : kind === 'internal' ? a.api.SpanKind.INTERNAL : a.api.SpanKind.CLIENT;
}

async function runSpan<T>(a: Active, parent: Api.Context, name: string, options: CallTrace, run: (span: CallSpan, traceparent: string) => Promise<T>): Promise<T> {
  const span = a.tracer.startSpan(name, { kind: kindOf(a, options.kind), attributes: { call_name: name, ...options.attributes } }, parent);
  const ctx = span.spanContext();
  const handle: CallSpan = { event: (n, attributes) => { span.addEvent(n, attributes); } };
  try {
    const result = await run(handle, formatTraceparent({ traceId: ctx.traceId, spanId: ctx.spanId, sampled: (ctx.traceFlags & 1) === 1 }));
    return result;
  } catch (error) {
    const code = options.codeOf?.(error);
    if (code) span.setAttribute('error_code', code);
    span.setStatus({ code: a.api.SpanStatusCode.ERROR, message: (error as Error)?.message ?? String(error) });
    throw error;
  } finally {
    span.end();
  }
}

/**
 * An external call made by the reconcile in progress, as a child of its span
 * (named and labelled `call_name`, as the call metrics are). Outside a bound
 * reconcile, or with tracing off, `run` runs alone.
 */
export function traceCall<T>(callName: string, run: (span: CallSpan) => Promise<T>, options: CallTrace = {}): Promise<T> {
  const scope = liveScope();
  if (!scope?.span || !scope.sampled || !active) return run(NO_SPAN);
  return runSpan(active, active.api.trace.setSpan(active.api.ROOT_CONTEXT, scope.span), callName, options, (span) => run(span));
}

/**
 * A span whose parent is named by a traceparent (a CloudEvent's, on its way to
 * JetStream); `run` receives the traceparent to send on, the new span's. With
 * tracing off, or no parent, `run` gets the parent's own traceparent (undefined
 * when there is none) and no span is made.
 */
export function traceFrom<T>(traceparent: string | undefined, name: string, run: (traceparent: string | undefined) => Promise<T>, options: CallTrace = {}): Promise<T> {
  const a = active;
  const parent = parseTraceparent(traceparent);
  if (!a || !parent || !parent.sampled) return run(parent ? traceparent : undefined);
  const context = a.api.trace.setSpanContext(a.api.ROOT_CONTEXT, {
    traceId: parent.traceId, spanId: parent.spanId, traceFlags: a.api.TraceFlags.SAMPLED, isRemote: true,
  });
  return runSpan(a, context, name, options, (_span, own) => run(own));
}

/** Runs `work` outside any reconcile scope (a drain a reconcile woke belongs to no attempt). */
export function untraced<T>(work: () => T): T {
  return active ? scopes.exit(work) : work();
}

// ---- what logs, audit records and events carry ---------------------------------------

/** The traceparent of the reconcile span in progress, for the CloudEvents its commit writes. */
export function currentTraceparent(): string | undefined {
  const span = liveScope()?.span;
  if (!span) return undefined;
  const ctx = span.spanContext();
  return formatTraceparent({ traceId: ctx.traceId, spanId: ctx.spanId, sampled: (ctx.traceFlags & 1) === 1 });
}

/** `trace_id` and `span_id` of the reconcile span in progress, for a log line or an audit record; undefined outside one. */
export function traceFields(): { trace_id: string; span_id: string } | undefined {
  const span = liveScope()?.span;
  if (!span) return undefined;
  const ctx = span.spanContext();
  return { trace_id: ctx.traceId, span_id: ctx.spanId };
}

// ---- export -------------------------------------------------------------------------

interface QueueOptions {
  maxQueueSize: number;
  maxExportBatchSize: number;
  scheduledDelayMs: number;
  exportTimeoutMs: number;
  /** @opentelemetry/core's ExportResultCode.SUCCESS. */
  success: number;
}

/**
 * A batch span processor that never waits and says what it loses: ended spans
 * go into a queue of at most maxQueueSize (one more is dropped, `queue_full`),
 * one export runs at a time, and the spans of an export that failed or did not
 * answer within exportTimeoutMs are dropped (`export_failed`).
 */
export class BoundedExportProcessor implements SpanProcessor {
  readonly #exporter: SpanExporter;
  readonly #options: QueueOptions;
  readonly #hooks: TracingHooks;
  #queue: ReadableSpan[] = [];
  #timer: NodeJS.Timeout | undefined;
  #exporting: Promise<void> | undefined;
  #shutdown = false;

  constructor(exporter: SpanExporter, options: QueueOptions, hooks: TracingHooks) {
    this.#exporter = exporter;
    this.#options = options;
    this.#hooks = hooks;
  }

  /** Spans waiting for export. */
  get queued(): number {
    return this.#queue.length;
  }

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    if (this.#shutdown || (span.spanContext().traceFlags & 1) === 0) return;
    if (this.#queue.length >= this.#options.maxQueueSize) {
      this.#hooks.dropped('queue_full', 1);
      return;
    }
    this.#queue.push(span);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#exporting) return;
    if (this.#queue.length >= this.#options.maxExportBatchSize) {
      this.#kick();
      return;
    }
    if (this.#timer) return;
    this.#timer = setTimeout(() => this.#kick(), this.#options.scheduledDelayMs);
    this.#timer.unref();
  }

  #kick(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#exporting ??= this.#exportBatch().finally(() => {
      this.#exporting = undefined;
      if (this.#queue.length > 0 && !this.#shutdown) this.#schedule();
    });
    return this.#exporting;
  }

  async #exportBatch(): Promise<void> {
    const batch = this.#queue.splice(0, this.#options.maxExportBatchSize);
    if (batch.length === 0) return;
    const ok = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), this.#options.exportTimeoutMs);
      timer.unref();
      try {
        this.#exporter.export(batch, (result) => {
          clearTimeout(timer);
          resolve(result.code === this.#options.success);
        });
      } catch {
        clearTimeout(timer);
        resolve(false);
      }
    });
    if (!ok) this.#hooks.dropped('export_failed', batch.length);
  }

  async forceFlush(): Promise<void> {
    if (this.#exporting) await this.#exporting;
    while (this.#queue.length > 0) await this.#kick();
  }

  async shutdown(): Promise<void> {
    await this.forceFlush();
    this.#shutdown = true;
    clearTimeout(this.#timer);
    await this.#exporter.shutdown();
  }
}

function samplerFor(sdk: typeof import('@opentelemetry/sdk-trace'), name: SamplerName, ratio: number): Sampler {
  switch (name) {
    case 'always_on': return new sdk.AlwaysOnSampler();
    case 'always_off': return new sdk.AlwaysOffSampler();
    case 'traceidratio': return new sdk.TraceIdRatioBasedSampler(ratio);
    case 'parentbased_always_on': return new sdk.ParentBasedSampler({ root: new sdk.AlwaysOnSampler() });
    case 'parentbased_always_off': return new sdk.ParentBasedSampler({ root: new sdk.AlwaysOffSampler() });
    case 'parentbased_traceidratio': return new sdk.ParentBasedSampler({ root: new sdk.TraceIdRatioBasedSampler(ratio) });
  }
}

/**
 * Turns tracing on: loads the SDK and the OTLP exporter (only now, so a process
 * with tracing off never loads them), and makes the span helpers above record.
 * `exporter` replaces the OTLP one (tests).
 */
export async function startTracing(config: TracingConfig, hooks: TracingHooks, exporter?: SpanExporter): Promise<Tracing> {
  const [api, sdk, core, resources] = await Promise.all([
    import('@opentelemetry/api'), import('@opentelemetry/sdk-trace'), import('@opentelemetry/core'), import('@opentelemetry/resources'),
  ]);
  const spanExporter = exporter ?? await otlpExporter(config);
  const processor = new BoundedExportProcessor(spanExporter, {
    maxQueueSize: config.maxQueueSize, maxExportBatchSize: Math.min(config.maxExportBatchSize, config.maxQueueSize),
    scheduledDelayMs: config.scheduledDelayMs, exportTimeoutMs: config.exportTimeoutMs, success: core.ExportResultCode.SUCCESS,
  }, hooks);
  const ids = new DerivedIds();
  const sampler = samplerFor(sdk, config.sampler, config.samplerRatio);
  const provider = new sdk.TracerProvider({
    sampler, idGenerator: ids, spanProcessors: [processor],
    resource: resources.resourceFromAttributes({ ...config.resourceAttributes, 'service.name': config.serviceName }),
  });
  const mine: Active = { api, tracer: provider.getTracer('ai-operator'), sampler, ids };
  active = mine;
  return {
    flush: () => provider.forceFlush(),
    shutdown: async () => {
      if (active === mine) active = undefined;
      await provider.shutdown();
    },
  };
}

async function otlpExporter(config: TracingConfig): Promise<SpanExporter> {
  const options = { url: config.endpoint, headers: config.headers, timeoutMillis: config.timeoutMs, concurrencyLimit: 1 };
  if (config.protocol === 'http/json') return new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter(options);
  return new (await import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter(options);
}
