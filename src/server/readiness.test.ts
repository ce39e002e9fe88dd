import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { readinessProbe, type ReadinessCheck } from './readiness.ts';

const never = () => new Promise<undefined>(() => undefined);

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('readinessProbe', () => {
  it('is ready when every check is', async () => {
    const probe = readinessProbe([
      { name: 'etcd', run: async () => undefined },
      { name: 'Application watch', run: () => undefined },
    ]);
    await expect(probe()).resolves.toEqual([]);
  });

  it('names the dependency of each problem, a rejection included, in the order of the checks', async () => {
    const probe = readinessProbe([
      { name: 'Application watch', run: () => 'not synced yet' },
      { name: 'etcd', run: async () => { throw new Error('get /ai-operator/leader: connection refused'); } },
      { name: 'NATS', run: () => { throw new Error('closed'); } },
      { name: 'elsewhere', run: async () => undefined },
    ]);
    await expect(probe()).resolves.toEqual([
      'Application watch: not synced yet',
      'etcd: get /ai-operator/leader: connection refused',
      'NATS: closed',
    ]);
  });

  it('answers within one timeout when a check never settles, and reports the others meanwhile', async () => {
    const probe = readinessProbe([
      { name: 'etcd', run: never },
      { name: 'NATS', run: () => 'disconnected' },
    ], { timeoutMs: 1000 });
    let answer: string[] | undefined;
    void probe().then((a) => { answer = a; });
    await vi.advanceTimersByTimeAsync(999);
    expect(answer).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(answer).toEqual(['etcd: no answer within 1000 ms', 'NATS: disconnected']);
  });

  it('runs the checks side by side: two slow checks cost one timeout, not two', async () => {
    const probe = readinessProbe([{ name: 'etcd', run: never }, { name: 'NATS', run: never }], { timeoutMs: 500 });
    let answer: string[] | undefined;
    void probe().then((a) => { answer = a; });
    await vi.advanceTimersByTimeAsync(500);
    expect(answer).toEqual(['etcd: no answer within 500 ms', 'NATS: no answer within 500 ms']);
  });

  it('joins a check still running from an earlier probe instead of calling the dependency again, and calls it anew once it settled', async () => {
    let release: (() => void) | undefined;
    const run = vi.fn(() => new Promise<undefined>((resolve) => { release = () => resolve(undefined); }));
    const checks: ReadinessCheck[] = [{ name: 'etcd', run }];
    const probe = readinessProbe(checks, { timeoutMs: 1000 });

    const first = probe();
    await vi.advanceTimersByTimeAsync(1000);
    await expect(first).resolves.toEqual(['etcd: no answer within 1000 ms']);
    const second = probe();
    await vi.advanceTimersByTimeAsync(1000);
    await expect(second).resolves.toEqual(['etcd: no answer within 1000 ms']);
    expect(run).toHaveBeenCalledTimes(1);

    // The dependency answers the call it was holding: the next probe asks afresh and is ready.
    release!();
    await vi.advanceTimersByTimeAsync(0);
    const third = probe();
    await vi.advanceTimersByTimeAsync(0);
    release!();
    await expect(third).resolves.toEqual([]);
    expect(run).toHaveBeenCalledTimes(2);
  });

  it('a late answer of a joined call serves the probe waiting on it', async () => {
    let release: ((problem: string | undefined) => void) | undefined;
    const probe = readinessProbe([{ name: 'etcd', run: () => new Promise((resolve) => { release = resolve; }) }], { timeoutMs: 1000 });
    const first = probe();
    await vi.advanceTimersByTimeAsync(1000);
    await expect(first).resolves.toEqual(['etcd: no answer within 1000 ms']);
    const second = probe();
    await vi.advanceTimersByTimeAsync(200);
    release!(undefined);
    await expect(second).resolves.toEqual([]);
  });
});
