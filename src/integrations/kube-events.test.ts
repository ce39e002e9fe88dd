import type { EventsV1Event } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { Fields, Logger } from '../observability/log.ts';
import { METRIC, Metrics } from '../observability/metrics.ts';
import type { EventObjectRef, KubeEvent } from '../ports/kubernetes.ts';
import {
  KubeEventRecorder, NOTE_MAX_BYTES, REPORTING_CONTROLLER, SERIES_WINDOW_MS, eventBody, eventName, problemOf, sanitise, seriesKey, truncateUtf8,
  type EventSeriesUpdate, type EventWriter,
} from './kube-events.ts';

const APP: EventObjectRef = { apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', namespace: 'argocd', name: 'payment-service' };
const ATTEMPT: EventObjectRef = { apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackAttempt', namespace: 'argocd', name: 'payment-service-1a2b3c4d', uid: 'attempt-uid' };

function event(overrides: Partial<KubeEvent> = {}): KubeEvent {
  return { regarding: APP, type: 'Warning', reason: 'NothingToRollBack', action: 'Abort', note: 'apps/payment on main already matches 0123abc', ...overrides };
}

const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

describe('truncateUtf8', () => {
  it('leaves a short note alone', () => {
    expect(truncateUtf8('Rollback PR #42 opened', NOTE_MAX_BYTES)).toBe('Rollback PR #42 opened');
    expect(truncateUtf8('x'.repeat(NOTE_MAX_BYTES), NOTE_MAX_BYTES)).toBe('x'.repeat(NOTE_MAX_BYTES));
  });

  it('cuts a long note to the API\'s 1 kB, marked with an ellipsis', () => {
    const cut = truncateUtf8('x'.repeat(5000), NOTE_MAX_BYTES);
    expect(bytes(cut)).toBe(NOTE_MAX_BYTES);
    expect(cut.endsWith('x…')).toBe(true);
  });

  it('counts bytes, not characters, and never splits a character', () => {
    const cut = truncateUtf8('é'.repeat(1000) + '🚀'.repeat(100), NOTE_MAX_BYTES);
    expect(bytes(cut)).toBeLessThanOrEqual(NOTE_MAX_BYTES);
    expect(bytes(cut)).toBeGreaterThan(NOTE_MAX_BYTES - 4);
    expect(cut).not.toContain('\uFFFD');
    expect(Buffer.from(cut, 'utf8').toString('utf8')).toBe(cut);
    // 1000 é = 2000 bytes: the cut lands among them, on a whole one.
    expect(cut).toBe(`${'é'.repeat(510)}…`);
  });
});

describe('eventBody', () => {
  const facts = { name: 'payment-service.1810a2b3c4d5e6f7', instance: 'ai-operator-7d9f-abc', firstObservedMs: Date.parse('2025-01-02T03:04:05.678Z'), count: 1, lastObservedMs: Date.parse('2025-01-02T03:04:05.678Z') };

  it('builds the events.k8s.io/v1 Event the API server accepts', () => {
    const body = eventBody(sanitise(event()), { ...facts, uid: 'app-uid' });
    expect(JSON.parse(JSON.stringify(body))).toEqual({
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: facts.name, namespace: 'argocd' },
      eventTime: '2025-01-02T03:04:05.678000Z',
      reportingController: REPORTING_CONTROLLER,
      reportingInstance: 'ai-operator-7d9f-abc',
      type: 'Warning',
      reason: 'NothingToRollBack',
      action: 'Abort',
      note: 'apps/payment on main already matches 0123abc',
      regarding: { apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', namespace: 'argocd', name: 'payment-service', uid: 'app-uid' },
    });
  });

  it('writes eventTime and series.lastObservedTime as MicroTime (microseconds)', () => {
    const body = eventBody(event(), { ...facts, count: 3, lastObservedMs: facts.lastObservedMs + 1500 }) as EventsV1Event;
    const json = JSON.parse(JSON.stringify(body)) as { eventTime: string; series: { count: number; lastObservedTime: string } };
    expect(json.eventTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(json.series).toEqual({ count: 3, lastObservedTime: '2025-01-02T03:04:07.178000Z' });
  });

  it('keeps the uid the caller gave, carries related, and has no series for a first occurrence', () => {
    const body = eventBody(event({ regarding: ATTEMPT, related: APP }), { ...facts, uid: 'ignored' });
    expect(body.regarding?.uid).toBe('attempt-uid');
    expect(body.related).toEqual({ apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', namespace: 'argocd', name: 'payment-service' });
    expect(body.series).toBeUndefined();
  });

  it('puts the Event of a cluster-scoped object in default', () => {
    const body = eventBody(event({ regarding: { apiVersion: 'v1', kind: 'Namespace', namespace: '', name: 'argocd' } }), facts);
    expect(body.metadata?.namespace).toBe('default');
    expect(body.regarding).toEqual({ apiVersion: 'v1', kind: 'Namespace', name: 'argocd' });
  });

  it('truncates reason, action, note and reportingInstance to the API\'s limits', () => {
    const long = sanitise(event({ reason: `A${'b'.repeat(300)}`, action: 'x'.repeat(300), note: 'n'.repeat(70_000) }));
    const body = eventBody(long, { ...facts, instance: 'i'.repeat(300) });
    expect(bytes(body.reason!)).toBeLessThanOrEqual(128);
    expect(bytes(body.action!)).toBeLessThanOrEqual(128);
    expect(bytes(body.note!)).toBe(NOTE_MAX_BYTES);
    expect(bytes(body.reportingInstance!)).toBeLessThanOrEqual(128);
  });
});

describe('seriesKey', () => {
  it('is the same for a repeat and differs for another note, reason, object or uid', () => {
    const key = seriesKey(event());
    expect(seriesKey(event())).toBe(key);
    expect(seriesKey(event({ note: 'apps/payment on main already matches 4567def' }))).not.toBe(key);
    expect(seriesKey(event({ reason: 'ApprovalRefused' }))).not.toBe(key);
    expect(seriesKey(event({ regarding: { ...APP, name: 'order-service' } }))).not.toBe(key);
    expect(seriesKey(event({ regarding: { ...APP, namespace: 'team-a' } }))).not.toBe(key);
    expect(seriesKey(event({ regarding: { ...APP, uid: 'other' } }))).not.toBe(key);
    expect(seriesKey(event({ type: 'Normal' }))).not.toBe(key);
    expect(seriesKey(event({ related: ATTEMPT }))).not.toBe(key);
  });

  it('treats notes that differ only past the 1 kB cut as one Event (they are written the same)', () => {
    const head = 'x'.repeat(2000);
    expect(seriesKey(sanitise(event({ note: `${head}a` })))).toBe(seriesKey(sanitise(event({ note: `${head}b` }))));
  });
});

describe('eventName and problemOf', () => {
  it('names Events like client-go: <object>.<unix nanoseconds in hex>, at most 253 characters', () => {
    expect(eventName('payment-service', 1_735_787_045_678_000_000n)).toBe('payment-service.1816c11f175ca780');
    const long = eventName('a'.repeat(300), 1n);
    expect(long.length).toBeLessThanOrEqual(253);
    expect(long.endsWith('.1')).toBe(true);
  });

  it('refuses what the API server would refuse, and reasons that are not CamelCase', () => {
    expect(problemOf(event())).toBeUndefined();
    expect(problemOf(event({ reason: 'nothing to roll back' }))).toMatch(/CamelCase/);
    expect(problemOf(event({ reason: '' }))).toMatch(/CamelCase/);
    expect(problemOf(event({ action: '' }))).toMatch(/action/);
    expect(problemOf(event({ type: 'Error' as 'Warning' }))).toMatch(/Normal nor Warning/);
    expect(problemOf(event({ regarding: { ...APP, name: '' } }))).toMatch(/regarding/);
  });
});

// ---- the recorder, on a writer that records what it was asked -------------

interface Created { namespace: string; body: EventsV1Event }
interface Patched { namespace: string; name: string; count: number; lastObservedTime: string }

class RecordingWriter implements EventWriter {
  readonly created: Created[] = [];
  readonly patched: Patched[] = [];
  readonly uidLookups: EventObjectRef[] = [];
  readonly existing = new Set<string>();
  uids = new Map<string, string>([['payment-service', 'app-uid']]);
  fail?: Error;
  uidFailure?: Error;
  gate?: Promise<void>;

  async create(namespace: string, body: EventsV1Event): Promise<void> {
    await this.gate;
    if (this.fail) throw this.fail;
    this.created.push({ namespace, body });
    this.existing.add(`${namespace}/${body.metadata!.name}`);
  }

  async patchSeries(namespace: string, name: string, series: EventSeriesUpdate): Promise<boolean> {
    await this.gate;
    if (this.fail) throw this.fail;
    if (!this.existing.has(`${namespace}/${name}`)) return false;
    this.patched.push({ namespace, name, count: series.count, lastObservedTime: series.lastObservedTime.toISOString() });
    return true;
  }

  async uidOf(ref: EventObjectRef): Promise<string | undefined> {
    this.uidLookups.push(ref);
    if (this.uidFailure) throw this.uidFailure;
    return this.uids.get(ref.name);
  }
}

class RecordingLog implements Logger {
  readonly lines: { level: string; message: string; fields?: Fields }[] = [];
  debug(message: string, fields?: Fields) { this.lines.push({ level: 'DEBUG', message, fields }); }
  info(message: string, fields?: Fields) { this.lines.push({ level: 'INFO', message, fields }); }
  warn(message: string, fields?: Fields) { this.lines.push({ level: 'WARN', message, fields }); }
  error(message: string, fields?: Fields) { this.lines.push({ level: 'ERROR', message, fields }); }
  child() { return this; }
}

function setup(options: { queueLimit?: number; burst?: number; writesPerSecond?: number } = {}) {
  const clock = { now: Date.parse('2025-01-02T03:04:05.000Z') };
  const sleeps: number[] = [];
  const writer = new RecordingWriter();
  const log = new RecordingLog();
  const metrics = new Metrics();
  const recorder = new KubeEventRecorder(writer, {
    instance: 'ai-operator-0', log, metrics, ...options,
    now: () => clock.now,
    // Sleeping advances the fake clock, so the rate limit is measured, not waited for.
    sleep: async (ms) => { sleeps.push(ms); clock.now += ms; },
  });
  const counts = async () => {
    const metric = await metrics.registry.getSingleMetric(METRIC.kubeEvents)!.get();
    return Object.fromEntries(metric.values.map((v) => [`${v.labels.reason}/${v.labels.result}`, v.value]));
  };
  return { clock, sleeps, writer, log, recorder, counts };
}

describe('KubeEventRecorder', () => {
  it('updates one Event\'s series for a repeat instead of creating another (count 2, then 3)', async () => {
    const { clock, writer, recorder, counts } = setup();
    recorder.emit(event());
    await recorder.flush();
    clock.now += 30_000;
    recorder.emit(event());
    await recorder.flush();
    clock.now += 30_000;
    recorder.emit(event());
    await recorder.flush();

    expect(writer.created).toHaveLength(1);
    const name = writer.created[0]!.body.metadata!.name!;
    expect(writer.patched).toEqual([
      { namespace: 'argocd', name, count: 2, lastObservedTime: '2025-01-02T03:04:35.000000Z' },
      { namespace: 'argocd', name, count: 3, lastObservedTime: '2025-01-02T03:05:05.000000Z' },
    ]);
    expect(await counts()).toEqual({ 'NothingToRollBack/created': 1, 'NothingToRollBack/updated': 2 });
  });

  it('creates a second Event for another note', async () => {
    const { writer, recorder } = setup();
    recorder.emit(event());
    recorder.emit(event({ note: 'apps/payment on main already matches 4567def' }));
    await recorder.flush();
    expect(writer.created.map((c) => c.body.note)).toEqual(['apps/payment on main already matches 0123abc', 'apps/payment on main already matches 4567def']);
    expect(new Set(writer.created.map((c) => c.body.metadata!.name)).size).toBe(2);
    expect(writer.patched).toEqual([]);
  });

  it('folds repeats still in the queue into the pending write: three emits, one request, count 3', async () => {
    const { writer, recorder, counts } = setup();
    recorder.emit(event());
    recorder.emit(event());
    recorder.emit(event());
    await recorder.flush();
    expect(writer.created).toHaveLength(1);
    expect(writer.created[0]!.body.series?.count).toBe(3);
    expect(writer.patched).toEqual([]);
    expect(await counts()).toEqual({ 'NothingToRollBack/created': 1, 'NothingToRollBack/coalesced': 2 });
  });

  it('starts a new Event once the series has been quiet for longer than the window', async () => {
    const { clock, writer, recorder } = setup();
    recorder.emit(event());
    await recorder.flush();
    clock.now += SERIES_WINDOW_MS + 1;
    recorder.emit(event());
    await recorder.flush();
    expect(writer.created).toHaveLength(2);
    expect(writer.created[1]!.body.series).toBeUndefined();
    expect(writer.patched).toEqual([]);
  });

  it('carries the series on in a new Event when the old one is gone (event TTL)', async () => {
    const { writer, recorder } = setup();
    recorder.emit(event());
    await recorder.flush();
    writer.existing.clear();
    recorder.emit(event());
    await recorder.flush();
    expect(writer.created).toHaveLength(2);
    expect(writer.created[1]!.body.series?.count).toBe(2);
  });

  it('looks up the uid of the regarding object once per new Event, never for a series update or when given', async () => {
    const { writer, recorder } = setup();
    recorder.emit(event());
    await recorder.flush();
    recorder.emit(event());
    await recorder.flush();
    recorder.emit(event({ regarding: ATTEMPT }));
    await recorder.flush();
    expect(writer.uidLookups).toEqual([APP]);
    expect(writer.created.map((c) => c.body.regarding?.uid)).toEqual(['app-uid', 'attempt-uid']);
  });

  it('writes the Event without a uid when the lookup fails', async () => {
    const { writer, recorder, log } = setup();
    writer.uidFailure = new Error('forbidden');
    recorder.emit(event());
    await recorder.flush();
    expect(writer.created).toHaveLength(1);
    expect(writer.created[0]!.body.regarding?.uid).toBeUndefined();
    expect(log.lines.some((l) => l.level === 'DEBUG' && /uid/.test(l.message))).toBe(true);
  });

  it('drops the oldest waiting Event when the queue is full, and counts it', async () => {
    const { writer, recorder, log, counts } = setup({ queueLimit: 3 });
    for (const reason of ['First', 'Second', 'Third', 'Fourth', 'Fifth']) recorder.emit(event({ reason }));
    expect(recorder.queued).toBe(3);
    await recorder.flush();
    expect(writer.created.map((c) => c.body.reason)).toEqual(['Third', 'Fourth', 'Fifth']);
    expect(await counts()).toMatchObject({ 'First/dropped': 1, 'Second/dropped': 1, 'Third/created': 1 });
    // One warning for the burst, not one per dropped Event.
    expect(log.lines.filter((l) => l.level === 'WARN')).toHaveLength(1);
  });

  it('writes at most the configured rate after its burst', async () => {
    const { sleeps, writer, recorder } = setup({ burst: 2, writesPerSecond: 10 });
    for (let i = 0; i < 6; i++) recorder.emit(event({ note: `note ${i}` }));
    await recorder.flush();
    expect(writer.created).toHaveLength(6);
    // Two from the burst, then four at 100 ms each.
    expect(sleeps.reduce((a, b) => a + b, 0)).toBe(400);
  });

  it('returns at once from emit while writes are slow, and never throws', async () => {
    const { writer, recorder } = setup();
    let open!: () => void;
    writer.gate = new Promise<void>((resolve) => { open = resolve; });
    const started = performance.now();
    for (let i = 0; i < 100; i++) recorder.emit(event({ note: `note ${i}` }));
    expect(performance.now() - started).toBeLessThan(50);
    expect(writer.created).toHaveLength(0);
    open();
    await recorder.flush();
    expect(writer.created).toHaveLength(100);
  });

  it('gives up waiting in flush(timeoutMs) while a write hangs', async () => {
    const { writer, recorder } = setup();
    writer.gate = new Promise<void>(() => undefined);
    recorder.emit(event());
    const started = performance.now();
    await recorder.flush(50);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(recorder.queued).toBe(0);
    expect(writer.created).toEqual([]);
  });

  it('logs and counts a failed write, and carries on with the next one', async () => {
    const { writer, recorder, log, counts } = setup();
    writer.fail = new Error('createEvent: PERMISSION_DENIED: HTTP 403: forbidden');
    recorder.emit(event());
    await recorder.flush();
    writer.fail = undefined;
    recorder.emit(event({ reason: 'ApprovalRefused', note: 'alice is not an approver' }));
    await recorder.flush();
    expect(writer.created.map((c) => c.body.reason)).toEqual(['ApprovalRefused']);
    expect(await counts()).toMatchObject({ 'NothingToRollBack/failed': 1, 'ApprovalRefused/created': 1 });
    expect(log.lines).toContainEqual(expect.objectContaining({ level: 'WARN', message: 'Failed to write Kubernetes Event' }));
  });

  it('refuses an invalid Event without a request, and a malformed one without throwing', async () => {
    const { writer, recorder, log, counts } = setup();
    recorder.emit(event({ reason: 'not camel case' }));
    expect(() => recorder.emit({ reason: 'Broken' } as unknown as KubeEvent)).not.toThrow();
    await recorder.flush();
    expect(writer.created).toEqual([]);
    expect(await counts()).toMatchObject({ 'not camel case/invalid': 1 });
    expect(log.lines.filter((l) => l.level === 'WARN').map((l) => l.message)).toEqual(['Refused Kubernetes Event', 'Failed to queue Kubernetes Event']);
  });
});
