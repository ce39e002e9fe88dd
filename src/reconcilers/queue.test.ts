import { describe, expect, it } from 'vitest';
import { createLogger } from '../observability/log.ts';
import { KeyQueue, type ReconcileResult } from './queue.ts';

const log = createLogger('ERROR');

/** A queue whose reconciles wait until released, recording the order they started in. */
function gatedQueue(concurrency: number) {
  const started: string[] = [];
  const gates = new Map<string, () => void>();
  const queue = new KeyQueue(async (key) => {
    started.push(key);
    await new Promise<void>((resolve) => gates.set(key, resolve));
    return {};
  }, log, { concurrency });
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
