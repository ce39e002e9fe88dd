// Kubernetes Events (events.k8s.io/v1) on the Application and the RollbackAttempt
// (SPEC §13), so `kubectl describe` and Argo CD's UI tell a human what the
// operator did or refused. Events are best effort: emit() only queues, and a
// single writer drains the queue under a rate limit, so an Event storm or an API
// server that refuses Events never slows or fails a reconcile. The queue is
// bounded and drops its oldest entry when full (counted).
//
// Repeats are folded the way client-go's EventSeries does it: the same Event
// (regarding, type, reason, action, note, related) again within the series
// window becomes a PATCH of the existing Event's `series` (count,
// lastObservedTime) instead of a new object. Repeats still waiting in the queue
// are merged into the pending write, so a storm of one Event costs one request.
//
// Argo CD shows an Application's Events by listing core/v1 Events with the
// field selector involvedObject.name + involvedObject.namespace +
// involvedObject.uid (server/application/application.go, ListResourceEvents):
// an Event without the Application's uid never appears there. When the caller
// does not know the uid, one GET of the object before the Event is created
// finds it (never for a series update).
import { EventsV1Api, KubernetesObjectApi, PatchStrategy, V1MicroTime, setHeaderOptions, type EventsV1Event, type KubeConfig, type V1ObjectReference } from '@kubernetes/client-node';
import { REPORTING_CONTROLLER } from '../api/group.ts';
import type { Logger } from '../observability/log.ts';
import type { KubeEventResult } from '../observability/metrics.ts';
import { IntegrationError } from '../ports/errors.ts';
import type { EventObjectRef, EventRecorderPort, KubeEvent } from '../ports/kubernetes.ts';
import { call, classifyHttpError, type CallMetrics } from './call.ts';

export { REPORTING_CONTROLLER };
/** The API server's limits (k8s.io/kubernetes pkg/apis/core/validation/events.go), in bytes. */
export const NOTE_MAX_BYTES = 1024;
export const FIELD_MAX_BYTES = 128;
export const SERIES_WINDOW_MS = 10 * 60_000;
const NAME_MAX = 253;
const DROP_WARNING_INTERVAL_MS = 60_000;

export interface EventMetrics extends CallMetrics {
  kubeEvent(reason: string, result: KubeEventResult, count?: number): void;
}

export interface EventSeriesUpdate {
  count: number;
  lastObservedTime: V1MicroTime;
}

/** The three requests the recorder makes; KubeEventWriter is the real one. */
export interface EventWriter {
  create(namespace: string, body: EventsV1Event): Promise<void>;
  /** false when the Event no longer exists (expired by the API server's event TTL, or deleted). */
  patchSeries(namespace: string, name: string, series: EventSeriesUpdate): Promise<boolean>;
  /** The object's uid, or undefined when it does not exist. */
  uidOf(ref: EventObjectRef): Promise<string | undefined>;
}

// ---- pure parts -------------------------------------------------------------

/** Cuts text to at most maxBytes of UTF-8 on a character boundary, marking the cut with "…". */
export function truncateUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text, 'utf8') <= maxBytes) return text;
  const budget = maxBytes - Buffer.byteLength('…', 'utf8');
  let out = '';
  let bytes = 0;
  for (const ch of text) {
    const size = Buffer.byteLength(ch, 'utf8');
    if (bytes + size > budget) break;
    out += ch;
    bytes += size;
  }
  return `${out}…`;
}

/** The event as it will be written: every field within the API's limits. */
export function sanitise(event: KubeEvent): KubeEvent {
  return {
    ...event,
    reason: truncateUtf8(event.reason, FIELD_MAX_BYTES),
    action: truncateUtf8(event.action, FIELD_MAX_BYTES),
    note: truncateUtf8(event.note, NOTE_MAX_BYTES),
  };
}

/** Why the API server would refuse this event, or undefined. Reasons are CamelCase by convention, and kept so here. */
export function problemOf(event: KubeEvent): string | undefined {
  if (!/^[A-Z][A-Za-z0-9]*$/.test(event.reason)) return `reason "${event.reason}" is not CamelCase`;
  if (event.action === '') return 'action is empty';
  if (event.type !== 'Normal' && event.type !== 'Warning') return `type "${String(event.type)}" is neither Normal nor Warning`;
  for (const [field, ref] of [['regarding', event.regarding], ['related', event.related]] as const) {
    if (ref && (ref.apiVersion === '' || ref.kind === '' || ref.name === '')) return `${field} needs apiVersion, kind and name`;
  }
  return undefined;
}

const refKey = (ref: EventObjectRef | undefined) => (ref ? [ref.apiVersion, ref.kind, ref.namespace, ref.name, ref.uid ?? ''] : null);

/** Which earlier Event a new one repeats: client-go's isomorphic-event key. */
export function seriesKey(event: KubeEvent): string {
  return JSON.stringify([refKey(event.regarding), event.type, event.reason, event.action, event.note, refKey(event.related)]);
}

/** Events live in the namespace of the object they are about; a cluster-scoped object's go to `default`. */
export function eventNamespace(ref: EventObjectRef): string {
  return ref.namespace === '' ? 'default' : ref.namespace;
}

/** client-go's naming: `<regarding name>.<unix nanoseconds in hex>`, within a name's 253 characters. */
export function eventName(regardingName: string, unixNanos: bigint): string {
  const suffix = `.${unixNanos.toString(16)}`;
  const base = regardingName.slice(0, NAME_MAX - suffix.length).replace(/[^a-z0-9]+$/, '');
  return `${base || 'event'}${suffix}`;
}

function reference(ref: EventObjectRef, uid = ref.uid): V1ObjectReference {
  return { apiVersion: ref.apiVersion, kind: ref.kind, name: ref.name, ...(ref.namespace !== '' ? { namespace: ref.namespace } : {}), ...(uid ? { uid } : {}) };
}

export interface EventBodyFacts {
  name: string;
  instance: string;
  /** The regarding object's uid, when the event did not carry it. */
  uid?: string;
  firstObservedMs: number;
  /** Occurrences so far; two or more make it a series. */
  count: number;
  lastObservedMs: number;
}

/** The events.k8s.io/v1 Event for a (sanitised) event. Pure. */
export function eventBody(event: KubeEvent, facts: EventBodyFacts): EventsV1Event {
  return {
    apiVersion: 'events.k8s.io/v1',
    kind: 'Event',
    metadata: { name: facts.name, namespace: eventNamespace(event.regarding) },
    // MicroTime: the API wants microseconds ("2025-01-02T03:04:05.678000Z"), which V1MicroTime serialises.
    eventTime: new V1MicroTime(facts.firstObservedMs),
    reportingController: REPORTING_CONTROLLER,
    reportingInstance: truncateUtf8(facts.instance, FIELD_MAX_BYTES),
    type: event.type,
    reason: event.reason,
    action: event.action,
    note: event.note,
    regarding: reference(event.regarding, event.regarding.uid ?? facts.uid),
    ...(event.related ? { related: reference(event.related) } : {}),
    ...(facts.count >= 2 ? { series: seriesUpdate(facts.count, facts.lastObservedMs) } : {}),
  };
}

export function seriesUpdate(count: number, lastObservedMs: number): EventSeriesUpdate {
  return { count, lastObservedTime: new V1MicroTime(lastObservedMs) };
}

// ---- the recorder -----------------------------------------------------------

export interface EventRecorderOptions {
  /** reportingInstance: the pod's identity. */
  instance: string;
  log: Logger;
  metrics?: EventMetrics;
  writesPerSecond?: number;
  burst?: number;
  /** Events waiting to be written; the oldest is dropped beyond this. */
  queueLimit?: number;
  /** Series remembered for dedupe; the least recently seen is forgotten beyond this. */
  seriesLimit?: number;
  seriesWindowMs?: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

interface Pending {
  event: KubeEvent;
  occurrences: number;
  firstMs: number;
  lastMs: number;
}

interface Series {
  namespace: string;
  name: string;
  count: number;
  lastMs: number;
}

export class KubeEventRecorder implements EventRecorderPort {
  readonly #writer: EventWriter;
  readonly #instance: string;
  readonly #log: Logger;
  readonly #metrics: EventMetrics | undefined;
  readonly #rate: number;
  readonly #burst: number;
  readonly #queueLimit: number;
  readonly #seriesLimit: number;
  readonly #windowMs: number;
  readonly #now: () => number;
  readonly #sleep: (ms: number) => Promise<void>;
  /** Insertion order is age: the first entry is the oldest. */
  readonly #queue = new Map<string, Pending>();
  /** Least recently observed first. */
  readonly #series = new Map<string, Series>();
  #draining: Promise<void> | undefined;
  #tokens: number;
  #refilledAt: number;
  #lastNanos = 0n;
  #droppedSinceWarning = 0;
  #lastDropWarning = Number.NEGATIVE_INFINITY;

  constructor(writer: EventWriter, options: EventRecorderOptions) {
    this.#writer = writer;
    this.#instance = options.instance;
    this.#log = options.log;
    this.#metrics = options.metrics;
    this.#rate = options.writesPerSecond ?? 10;
    this.#burst = options.burst ?? 10;
    this.#queueLimit = options.queueLimit ?? 256;
    this.#seriesLimit = options.seriesLimit ?? 4096;
    this.#windowMs = options.seriesWindowMs ?? SERIES_WINDOW_MS;
    this.#now = options.now ?? Date.now;
    this.#sleep = options.sleep ?? ((ms) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref()));
    this.#tokens = this.#burst;
    this.#refilledAt = this.#now();
  }

  emit(event: KubeEvent): void {
    try {
      const clean = sanitise(event);
      const problem = problemOf(clean);
      if (problem) {
        this.#count(clean.reason, 'invalid');
        this.#log.warn('Refused Kubernetes Event', { problem, reason: clean.reason, regarding: `${clean.regarding.kind}/${clean.regarding.namespace}/${clean.regarding.name}` });
        return;
      }
      const key = seriesKey(clean);
      const now = this.#now();
      const queued = this.#queue.get(key);
      if (queued) {
        queued.occurrences++;
        queued.lastMs = now;
        return;
      }
      if (this.#queue.size >= this.#queueLimit) this.#dropOldest(now);
      this.#queue.set(key, { event: clean, occurrences: 1, firstMs: now, lastMs: now });
      // Started after the assignment, so the drain's own `finally` always clears a set field.
      this.#draining ??= Promise.resolve().then(() => this.#drain());
    } catch (error) {
      // emit() is called from reconciles, which an Event must never fail.
      this.#log.warn('Failed to queue Kubernetes Event', { reason: event?.reason, error: String(error) });
    }
  }

  /** Waits until the queue is drained, or at most timeoutMs (shutdown must not wait on an API server that is down). */
  async flush(timeoutMs?: number): Promise<void> {
    const drained = (async () => { while (this.#draining) await this.#draining; })();
    if (timeoutMs === undefined) return drained;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs); });
    await Promise.race([drained, timeout]).finally(() => clearTimeout(timer));
  }

  /** Events waiting to be written (for tests and diagnostics). */
  get queued(): number {
    return this.#queue.size;
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.size > 0) {
        await this.#takeToken();
        const oldest = this.#queue.entries().next();
        if (oldest.done) return;
        const [key, pending] = oldest.value;
        this.#queue.delete(key);
        await this.#write(key, pending);
      }
    } catch (error) {
      // #write catches its own failures; this is a bug, and must not become an unhandled rejection.
      this.#log.error('Kubernetes Event queue stopped; it restarts with the next Event', { queued: this.#queue.size, error: String(error) });
    } finally {
      // Cleared in the same step that sees the queue empty, so an emit() right after starts a new drain.
      this.#draining = undefined;
    }
  }

  async #takeToken(): Promise<void> {
    for (;;) {
      const now = this.#now();
      this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#refilledAt) * this.#rate) / 1000);
      this.#refilledAt = now;
      if (this.#tokens >= 1) {
        this.#tokens -= 1;
        return;
      }
      await this.#sleep(Math.ceil(((1 - this.#tokens) * 1000) / this.#rate));
    }
  }

  async #write(key: string, pending: Pending): Promise<void> {
    const { event } = pending;
    try {
      const series = this.#liveSeries(key, pending.firstMs);
      if (series) {
        const count = series.count + pending.occurrences;
        if (await this.#writer.patchSeries(series.namespace, series.name, seriesUpdate(count, pending.lastMs))) {
          this.#remember(key, { ...series, count, lastMs: pending.lastMs });
          this.#settled(event.reason, 'updated', pending.occurrences);
          return;
        }
        // Gone (the API server's event TTL, or deleted): a new Event carries the series on.
        this.#log.debug('Kubernetes Event of a series is gone; creating a new one', { name: series.name, namespace: series.namespace });
        await this.#create(key, pending, count);
        return;
      }
      await this.#create(key, pending, pending.occurrences);
    } catch (error) {
      this.#count(event.reason, 'failed', pending.occurrences);
      this.#log.warn('Failed to write Kubernetes Event', {
        reason: event.reason, regarding: `${event.regarding.kind}/${event.regarding.namespace}/${event.regarding.name}`,
        occurrences: pending.occurrences, error: error instanceof Error ? error.message : String(error),
      });
    }
  }

  async #create(key: string, pending: Pending, count: number): Promise<void> {
    const { event } = pending;
    const uid = event.regarding.uid ?? await this.#uidOf(event.regarding);
    const name = eventName(event.regarding.name, this.#nextNanos(pending.firstMs));
    const namespace = eventNamespace(event.regarding);
    await this.#writer.create(namespace, eventBody(event, { name, instance: this.#instance, uid, firstObservedMs: pending.firstMs, count, lastObservedMs: pending.lastMs }));
    this.#remember(key, { namespace, name, count, lastMs: pending.lastMs });
    this.#settled(event.reason, 'created', pending.occurrences);
  }

  async #uidOf(ref: EventObjectRef): Promise<string | undefined> {
    try {
      return await this.#writer.uidOf(ref);
    } catch (error) {
      // Without the uid the Event still shows in kubectl; only Argo CD's UI misses it.
      this.#log.debug('Could not read the uid of an Event\'s object; writing the Event without it', { kind: ref.kind, namespace: ref.namespace, name: ref.name, error: error instanceof Error ? error.message : String(error) });
      return undefined;
    }
  }

  #liveSeries(key: string, at: number): Series | undefined {
    const series = this.#series.get(key);
    if (!series) return undefined;
    if (at - series.lastMs > this.#windowMs) {
      this.#series.delete(key);
      return undefined;
    }
    return series;
  }

  #remember(key: string, series: Series): void {
    this.#series.delete(key);
    this.#series.set(key, series);
    while (this.#series.size > this.#seriesLimit) this.#series.delete(this.#series.keys().next().value!);
  }

  #dropOldest(now: number): void {
    const [key, oldest] = this.#queue.entries().next().value!;
    this.#queue.delete(key);
    this.#count(oldest.event.reason, 'dropped', oldest.occurrences);
    this.#droppedSinceWarning += oldest.occurrences;
    this.#log.debug('Dropped Kubernetes Event; the queue is full', { reason: oldest.event.reason, name: oldest.event.regarding.name });
    if (now - this.#lastDropWarning >= DROP_WARNING_INTERVAL_MS) {
      this.#log.warn('Dropping Kubernetes Events; more are emitted than the API server is sent', { dropped: this.#droppedSinceWarning, queueLimit: this.#queueLimit, writesPerSecond: this.#rate });
      this.#lastDropWarning = now;
      this.#droppedSinceWarning = 0;
    }
  }

  /** A write carried `occurrences` emits: the first is what the write did, the rest were folded into it. */
  #settled(reason: string, result: 'created' | 'updated', occurrences: number): void {
    this.#count(reason, result);
    if (occurrences > 1) this.#count(reason, 'coalesced', occurrences - 1);
  }

  #count(reason: string, result: KubeEventResult, occurrences = 1): void {
    this.#metrics?.kubeEvent(reason, result, occurrences);
  }

  /** Unique, increasing names even for two Events in one millisecond. */
  #nextNanos(ms: number): bigint {
    const candidate = BigInt(Math.trunc(ms)) * 1_000_000n;
    this.#lastNanos = candidate > this.#lastNanos ? candidate : this.#lastNanos + 1n;
    return this.#lastNanos;
  }
}

// ---- on the API server ------------------------------------------------------

export interface KubeEventWriterOptions {
  metrics?: CallMetrics;
  /** Short: an Event is not worth holding the queue for long. */
  timeoutMs?: number;
  backoffMs?: readonly number[];
}

const isNotFound = (error: unknown) => error instanceof IntegrationError && error.code === 'NOT_FOUND';

export class KubeEventWriter implements EventWriter {
  readonly #events: EventsV1Api;
  readonly #objects: KubernetesObjectApi;
  readonly #options: KubeEventWriterOptions;

  constructor(kubeConfig: KubeConfig, options: KubeEventWriterOptions = {}) {
    this.#events = kubeConfig.makeApiClient(EventsV1Api);
    this.#objects = KubernetesObjectApi.makeApiClient(kubeConfig);
    this.#options = options;
  }

  async create(namespace: string, body: EventsV1Event): Promise<void> {
    const name = body.metadata!.name!;
    await this.#call('createEvent', () => this.#events.createNamespacedEvent({ namespace, body }), async () => {
      // A try that timed out may have created it: the name is ours alone.
      try {
        return await this.#call('readEvent', () => this.#events.readNamespacedEvent({ namespace, name }));
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw error;
      }
    });
  }

  async patchSeries(namespace: string, name: string, series: EventSeriesUpdate): Promise<boolean> {
    try {
      // Absolute values: a retried patch writes the same thing.
      await this.#call('patchEvent', () => this.#events.patchNamespacedEvent({ namespace, name, body: { series } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch)));
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }

  async uidOf(ref: EventObjectRef): Promise<string | undefined> {
    try {
      const object = await this.#call('readEventRegarding', () => this.#objects.read({ apiVersion: ref.apiVersion, kind: ref.kind, metadata: { name: ref.name, ...(ref.namespace !== '' ? { namespace: ref.namespace } : {}) } }));
      return object.metadata?.uid;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  #call<T>(name: string, run: () => Promise<T>, lookBeforeRetry?: () => Promise<T | undefined>): Promise<T> {
    return call(name, run, {
      classify: classifyHttpError, metrics: this.#options.metrics,
      timeoutMs: this.#options.timeoutMs ?? 5000, backoffMs: this.#options.backoffMs ?? [500, 1000, 2000],
      ...(lookBeforeRetry ? { lookBeforeRetry } : {}),
    });
  }
}

/** The recorder on the API server, as main.ts wires it. */
export function kubeEventRecorder(kubeConfig: KubeConfig, options: EventRecorderOptions & { writer?: KubeEventWriterOptions }): KubeEventRecorder {
  return new KubeEventRecorder(new KubeEventWriter(kubeConfig, { metrics: options.metrics, ...options.writer }), options);
}
