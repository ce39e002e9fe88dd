import { describe, expect, it } from 'vitest';
import { ApiException } from '@kubernetes/client-node';
import { backoffMs, DEFAULT_RETRY, pool, retryAfterMs, verdict, write, WriteFailed, WriteStats } from './writes.ts';

const api = (code: number, headers: Record<string, string> = {}) => new ApiException(code, `HTTP-Code: ${code}`, {}, headers);
/** What undici's fetch throws when kube-apiserver drops the connection under a request. */
const dropped = () => new TypeError('fetch failed', { cause: Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }) });

describe('verdict', () => {
  it('retries a dropped connection, 429 after its retry-after, and 5xx', () => {
    expect(verdict(dropped(), 'patch')).toEqual({ kind: 'retry', reason: 'UND_ERR_SOCKET' });
    expect(verdict(new TypeError('fetch failed', { cause: new Error('other side closed') }), 'create')).toEqual({ kind: 'retry', reason: 'fetch failed' });
    expect(verdict(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), 'patch')).toEqual({ kind: 'retry', reason: 'ECONNRESET' });
    expect(verdict(api(429, { 'Retry-After': '3' }), 'patch')).toEqual({ kind: 'retry', reason: '429', afterMs: 3000 });
    expect(verdict(api(429), 'patch')).toEqual({ kind: 'retry', reason: '429' });
    expect(verdict(api(503), 'create')).toEqual({ kind: 'retry', reason: '503' });
  });

  it('retries the 409 conflict of a patch; a create answered 409 already exists, which is done', () => {
    expect(verdict(api(409), 'patch')).toEqual({ kind: 'retry', reason: '409 conflict' });
    expect(verdict(api(409), 'create')).toEqual({ kind: 'done' });
  });

  it('fails on any other answer, and on an error that is not the connection', () => {
    expect(verdict(api(422), 'patch')).toEqual({ kind: 'fail', reason: 'HTTP 422' });
    expect(verdict(api(404), 'patch')).toEqual({ kind: 'fail', reason: 'HTTP 404' });
    expect(verdict(new RangeError('bad body'), 'create')).toEqual({ kind: 'fail', reason: 'not retryable' });
  });
});

describe('backoff', () => {
  it('doubles from the base up to the cap, jittered within its upper half; retry-after wins, up to its own cap', () => {
    expect([1, 2, 3, 6, 10].map((n) => backoffMs(n, DEFAULT_RETRY, undefined, () => 1))).toEqual([250, 500, 1000, 8000, 10_000]);
    expect(backoffMs(3, DEFAULT_RETRY, undefined, () => 0)).toBe(500);
    expect(backoffMs(1, DEFAULT_RETRY, 4000)).toBe(4000);
    expect(backoffMs(1, DEFAULT_RETRY, 120_000)).toBe(30_000);
  });

  it('reads retry-after as seconds or as an HTTP date', () => {
    expect(retryAfterMs('2')).toBe(2000);
    expect(retryAfterMs(new Date(10_000).toUTCString(), 4000)).toBe(6000);
    expect(retryAfterMs('soon')).toBeUndefined();
    expect(retryAfterMs(undefined)).toBeUndefined();
  });
});

describe('write', () => {
  const noWait = { sleep: async () => undefined };

  it('lands after retries, and counts them by reason', async () => {
    const stats = new WriteStats();
    const failures = [dropped(), api(429, { 'retry-after': '1' })];
    const waits: number[] = [];
    const result = await write('app-00001', 'stall its Deployment', 'patch', async () => {
      const failure = failures.shift();
      if (failure) throw failure;
      return 'ok';
    }, { stats, sleep: async (ms) => void waits.push(ms) });
    expect(result).toBe('ok');
    expect(waits[1]).toBe(1000);
    expect(stats.summary()).toBe('1 writes, 2 retried (UND_ERR_SOCKET × 1, 429 × 1)');
  });

  it('gives up after its tries with an error naming the app and the step', async () => {
    const tries: number[] = [];
    const error = await write('app-00007', 'report the Application Degraded', 'patch', async () => {
      tries.push(1);
      throw dropped();
    }, { ...noWait, policy: { ...DEFAULT_RETRY, tries: 3 } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WriteFailed);
    expect((error as Error).message).toBe('report the Application Degraded of app-00007 failed after 3 tries (last: UND_ERR_SOCKET): fetch failed ← other side closed');
    expect(tries).toHaveLength(3);
  });

  it('fails at once on an answer it cannot retry', async () => {
    let tries = 0;
    await expect(write('app-00002', 'create the Application', 'create', async () => {
      tries++;
      throw api(422);
    }, noWait)).rejects.toThrow(/^create the Application of app-00002 failed \(HTTP 422\)/);
    expect(tries).toBe(1);
  });
});

describe('pool', () => {
  it('runs every task with no more than `concurrency` at once', async () => {
    let running = 0;
    let most = 0;
    const done: number[] = [];
    await pool(100, 7, async (i) => {
      running++;
      most = Math.max(most, running);
      await new Promise((r) => setTimeout(r, i % 3));
      running--;
      done.push(i);
    });
    expect(most).toBe(7);
    expect(done.sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it('stops handing out tasks after a failure, lets those in flight finish, then throws it', async () => {
    const started: number[] = [];
    let finished = 0;
    const error = await pool(100, 4, async (i) => {
      started.push(i);
      await new Promise((r) => setTimeout(r, 5));
      if (i === 5) throw new Error('app 5 failed');
      finished++;
    }).catch((e: unknown) => e);
    expect((error as Error).message).toBe('app 5 failed');
    expect(started.length).toBeLessThan(12);
    expect(finished).toBe(started.length - 1);
  });
});
