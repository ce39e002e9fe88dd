import { describe, expect, it, vi } from 'vitest';
import { createLogger } from '../observability/log.ts';
import { Metrics } from '../observability/metrics.ts';
import { TerminalError } from '../ports/errors.ts';
import { KeyQueue, type QueueOptions, type ReconcileResult } from './queue.ts';

const log = createLogger('ERROR');
/** For the tests whose reconciles fail on purpose. */
const quiet = { ...log, error: () => {}, child: () => quiet };

/** The value of one series of the registry (a histogram's `_sum` or `_count` by its full name). */
async function value(metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const base = name.replace(/_(sum|count|bucket)$/, '');
  const metric = metrics.registry.getSingleMetric(base);
  if (!metric) throw new Error(`no metric ${base}`);
  const { values } = await metric.get();
  const found = values.find((v) => ((v as { metricName?: string }).metricName ?? base) === name && Object.entries(labels).every(([k, l]) => String(v.labels[k]) === l));
  return found?.value ?? Number.NaN;
}

const Q = { name: 'application', controller: 'application' };
const depth = (metrics: Metrics, priority: '0' | '-100') => value(metrics, 'workqueue_depth', { ...Q, priority });

/** A queue whose reconciles wait until released, recording the order they started in. */
function gatedQueue(concurrency: number, options: QueueOptions = {}) {
  const started: string[] = [];
  const gates = new Map<string, () => void>();
  const queue = new KeyQueue(async (key) => {
    started.push(key);
    await new Promise<void>((resolve) => gates.set(key, resolve));
    return {};
  }, log, { concurrency, ...options });
  const release = async (key: string) => {
    gates.get(key)!();
    gates.delete(key);
    await new Promise((r) => setImmediate(r));
  };
  return { queue, started, release };
}

describe('KeyQueue', () => {
  it('queues a key once however often it is added, and never runs it twice at once', async () => {
    const { queue, started, release } = gatedQueue(2);
    queue.add('a');
    queue.add('a');
    queue.add('b');
    queue.add('a'); // while running: it runs again afterwards, once
    queue.add('a');
    expect(started).toEqual(['a', 'b']);
    await release('a');
    expect(started).toEqual(['a', 'b', 'a']);
    await release('a');
    await release('b');
    await queue.idle();
    expect(started).toEqual(['a', 'b', 'a']);
  });

  it('runs keys added at normal priority before those of the low-priority sweep', async () => {
    const { queue, started, release } = gatedQueue(1);
    queue.add('busy');
    for (const key of ['s1', 's2', 's3']) queue.add(key, 'low');
    queue.add('event');
    queue.add('s3'); // an event for a key the sweep queued: promoted
    queue.add('s1', 'low'); // already queued: unchanged
    for (const key of ['busy', 'event', 's3', 's1', 's2']) await release(key);
    await queue.idle();
    expect(started).toEqual(['busy', 'event', 's3', 's1', 's2']);
  });

  it('keeps a requeue due at normal priority when the sweep adds the key at low priority', async () => {
    const { queue, started, release } = gatedQueue(1);
    queue.add('busy');
    queue.addAfter('due', 20);
    queue.add('s1', 'low');
    queue.add('due', 'low'); // ignored: the requeue stands, and puts it ahead of the sweep
    queue.add('s2', 'low');
    await new Promise((r) => setTimeout(r, 50));
    for (const key of ['busy', 'due', 's1', 's2']) await release(key);
    await queue.idle();
    expect(started).toEqual(['busy', 'due', 's1', 's2']);
  });

  it('retries a failing key until it succeeds and honours a requested requeue', async () => {
    const runs: Array<{ key: string; at: number }> = [];
    let failures = 2;
    const queue = new KeyQueue(async (key): Promise<ReconcileResult> => {
      runs.push({ key, at: Date.now() });
      if (key === 'flaky' && failures-- > 0) throw new Error('not yet');
      return key === 'again' && runs.filter((r) => r.key === 'again').length === 1 ? { requeueAfterMs: 30 } : {};
    }, log, { concurrency: 2, baseBackoffMs: 20, maxBackoffMs: 1000 });
    queue.add('flaky');
    queue.add('again');
    await new Promise((r) => setTimeout(r, 300));
    const flaky = runs.filter((r) => r.key === 'flaky');
    expect(flaky).toHaveLength(3);
    expect(runs.filter((r) => r.key === 'again')).toHaveLength(2);
    await queue.stop();
  });
});

describe('KeyQueue metrics', () => {
  it('counts a key as added when it enters a lane, keeps the depth of each lane, and moves a promoted key without a second add', async () => {
    const metrics = new Metrics();
    const { queue, release } = gatedQueue(1, { metrics: metrics.queue('application') });
    queue.add('busy'); // taken at once
    queue.add('s1', 'low');
    queue.add('s2', 'low');
    queue.add('event');
    expect(await value(metrics, 'workqueue_adds_total', Q)).toBe(4);
    expect([await depth(metrics, '0'), await depth(metrics, '-100')]).toEqual([1, 2]);
    queue.add('s2'); // promoted: one lane to the other, no add
    queue.add('s1', 'low'); // already queued: nothing
    queue.add('event'); // already queued: nothing
    queue.add('busy'); // running: it goes again once done, and is added then
    expect(await value(metrics, 'workqueue_adds_total', Q)).toBe(4);
    expect([await depth(metrics, '0'), await depth(metrics, '-100')]).toEqual([2, 1]);
    await release('busy'); // busy re-enters; event is taken
    expect(await value(metrics, 'workqueue_adds_total', Q)).toBe(5);
    expect([await depth(metrics, '0'), await depth(metrics, '-100')]).toEqual([2, 1]);
    for (const key of ['event', 's2', 'busy', 's1']) await release(key);
    await queue.idle();
    expect([await depth(metrics, '0'), await depth(metrics, '-100')]).toEqual([0, 0]);
    expect(await value(metrics, 'controller_runtime_reconcile_total', { controller: 'application', result: 'success' })).toBe(5);
    expect(await value(metrics, 'workqueue_queue_duration_seconds_count', Q)).toBe(5);
  });

  it('measures the wait in the queue and the work on the queue\'s clock', async () => {
    const metrics = new Metrics();
    let now = 0;
    const queue = new KeyQueue(async (key) => {
      if (key === 'busy') await new Promise<void>((resolve) => setTimeout(resolve, 20));
      now += key === 'busy' ? 1500 : 250; // busy works 1.5 s (a waits all that time), a 0.25 s
      return {};
    }, log, { concurrency: 1, metrics: metrics.queue('application'), now: () => now });
    queue.add('busy');
    queue.add('a');
    await new Promise((r) => setTimeout(r, 60));
    await queue.idle();
    expect(await value(metrics, 'workqueue_queue_duration_seconds_sum', Q)).toBeCloseTo(1.5); // busy 0, a 1.5
    expect(await value(metrics, 'workqueue_work_duration_seconds_sum', Q)).toBeCloseTo(1.75);
    expect(await value(metrics, 'controller_runtime_reconcile_time_seconds_sum', { controller: 'application' })).toBeCloseTo(1.75);
    expect(await value(metrics, 'workqueue_queue_duration_seconds_bucket', { ...Q, le: '1' })).toBe(1);
    expect(await value(metrics, 'workqueue_queue_duration_seconds_bucket', { ...Q, le: '10' })).toBe(2);
  });

  it('counts errors, requeues after a delay, and every delayed add as a retry', async () => {
    const metrics = new Metrics();
    let failures = 2;
    let again = 0;
    const queue = new KeyQueue(async (key): Promise<ReconcileResult> => {
      if (key === 'flaky' && failures-- > 0) throw new Error('not yet');
      return key === 'again' && again++ === 0 ? { requeueAfterMs: 30 } : {};
    }, log, { concurrency: 2, baseBackoffMs: 20, maxBackoffMs: 1000, metrics: metrics.queue('application') });
    queue.add('flaky');
    queue.add('again');
    await new Promise((r) => setTimeout(r, 300));
    await queue.idle();
    const total = (result: string) => value(metrics, 'controller_runtime_reconcile_total', { controller: 'application', result });
    expect({ success: await total('success'), error: await total('error'), requeue_after: await total('requeue_after'), requeue: await total('requeue') })
      .toEqual({ success: 2, error: 2, requeue_after: 1, requeue: 0 });
    expect(await value(metrics, 'controller_runtime_reconcile_errors_total', { controller: 'application' })).toBe(2);
    expect(await value(metrics, 'workqueue_retries_total', Q)).toBe(3); // two backoffs, one requeue
    expect(await value(metrics, 'workqueue_adds_total', Q)).toBe(5); // each delayed key is added again when due
    await queue.stop();
  });

  it('takes the keys stop() drops out of the depth', async () => {
    const metrics = new Metrics();
    const { queue, release } = gatedQueue(1, { metrics: metrics.queue('application') });
    queue.add('busy');
    queue.add('a');
    queue.add('b', 'low');
    const stopped = queue.stop();
    expect([await depth(metrics, '0'), await depth(metrics, '-100')]).toEqual([0, 0]);
    await release('busy');
    await stopped;
  });
});

describe('KeyQueue and terminal errors', () => {
  it('does not retry a key whose reconcile threw a TerminalError, counts it, and runs it again when it is added again', async () => {
    // Given a reconcile that fails for good on one key, and a logger that keeps what it is told
    const metrics = new Metrics();
    const errors: Array<{ message: string; fields: Record<string, unknown> | undefined }> = [];
    const logged = { ...log, error: (message: string, fields?: Record<string, unknown>) => { errors.push({ message, fields }); } };
    const runs: string[] = [];
    const queue = new KeyQueue(async (key) => {
      runs.push(key);
      if (key === 'ns/corrupt') throw new TerminalError('CorruptRecord', 'the stored attempt is not JSON');
      return {};
    }, logged, { baseBackoffMs: 10, maxBackoffMs: 20, metrics: metrics.queue('application') });

    // When it is reconciled
    queue.add('ns/corrupt');
    await new Promise((r) => setTimeout(r, 100)); // five backoffs' worth

    // Then it ran once: no backoff, no retry
    expect(runs).toEqual(['ns/corrupt']);
    expect(await value(metrics, 'controller_runtime_terminal_reconcile_errors_total', { controller: 'application' })).toBe(1);
    // And, as controller-runtime counts it, it is an error too, but not a retry
    expect(await value(metrics, 'controller_runtime_reconcile_errors_total', { controller: 'application' })).toBe(1);
    expect(await value(metrics, 'controller_runtime_reconcile_total', { controller: 'application', result: 'error' })).toBe(1);
    expect(await value(metrics, 'workqueue_retries_total', Q)).toBe(0);
    // And it was logged as an error with its reason
    expect(errors).toEqual([{ message: expect.stringContaining('retrying cannot fix'), fields: expect.objectContaining({ key: 'ns/corrupt', reason: 'CorruptRecord', error: 'the stored attempt is not JSON' }) }]);

    // When a new event adds the key
    queue.add('ns/corrupt');
    await queue.idle();
    // Then it runs again
    expect(runs).toEqual(['ns/corrupt', 'ns/corrupt']);
    await queue.stop();
  });

  it('finds a TerminalError among the causes of what was thrown, and retries anything else', async () => {
    const runs: string[] = [];
    const queue = new KeyQueue(async (key) => {
      runs.push(key);
      if (key === 'ns/wrapped') throw new Error('reconcile failed', { cause: new TerminalError('TransitionRefused', 'Abort -> PRCreated is not in the table') });
      if (key === 'ns/flaky' && runs.filter((k) => k === key).length < 3) throw new Error('etcd down');
      return {};
    }, quiet, { baseBackoffMs: 5, maxBackoffMs: 10 });
    queue.add('ns/wrapped');
    queue.add('ns/flaky');
    await new Promise((r) => setTimeout(r, 100));
    expect(runs.filter((k) => k === 'ns/wrapped')).toHaveLength(1);
    expect(runs.filter((k) => k === 'ns/flaky')).toHaveLength(3);
    await queue.stop();
  });

  it('forgets the failures before a terminal error: the next error backs off from the start', async () => {
    vi.useFakeTimers();
    try {
      const runs: number[] = [];
      let script = ['transient', 'transient', 'terminal', 'transient', 'ok'];
      const queue = new KeyQueue(async () => {
        runs.push(Date.now());
        const step = script[0];
        script = script.slice(1);
        if (step === 'transient') throw new Error('etcd down');
        if (step === 'terminal') throw new TerminalError('CorruptRecord', 'not JSON');
        return {};
      }, quiet, { baseBackoffMs: 100, maxBackoffMs: 10_000, now: () => Date.now() });
      queue.add('ns/a');
      await vi.advanceTimersByTimeAsync(1000); // 100 + 200 ms of backoff, then the terminal error, then nothing
      expect(runs).toHaveLength(3);
      queue.add('ns/a'); // a new event: it fails transiently again
      await vi.advanceTimersByTimeAsync(150);
      // Retried after 100 ms, the first step of the backoff (not 400, the third)
      expect(runs).toHaveLength(5);
      expect(runs[4]! - runs[3]!).toBe(100);
      await queue.stop();
    } finally {
      vi.useRealTimers();
    }
  });
});
