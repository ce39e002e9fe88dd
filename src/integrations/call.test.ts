import { describe, expect, it } from 'vitest';
import { Metrics } from '../observability/metrics.ts';
import { IntegrationError } from '../ports/errors.ts';
import { call, classifyHttpError } from './call.ts';

const httpError = (status: number, headers: Record<string, string> = {}) => Object.assign(new Error(`status ${status}`), { status, response: { headers } });

function harness() {
  const sleeps: number[] = [];
  const metrics = new Metrics();
  return { sleeps, metrics, options: { metrics, classify: classifyHttpError, sleep: async (ms: number) => { sleeps.push(ms); }, random: () => 1 } };
}

describe('call', () => {
  it('retries transient errors 1 s / 2 s / 4 s, then succeeds, counting each error', async () => {
    const h = harness();
    let tries = 0;
    const result = await call('getPullRequestStatus', async () => { if (++tries < 4) throw httpError(502); return 'ok'; }, h.options);
    expect(result).toBe('ok');
    expect(h.sleeps).toEqual([1000, 2000, 4000]);
    expect(await h.metrics.registry.metrics()).toMatch(/ai_operator_mcp_call_errors_total\{call_name="getPullRequestStatus",error_code="UNAVAILABLE"\} 3/);
  });

  it('gives up after three retries with a typed error', async () => {
    const h = harness();
    const error = await call('x', async () => { throw httpError(503); }, h.options).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IntegrationError);
    expect(error).toMatchObject({ code: 'UNAVAILABLE', call: 'x' });
    expect(h.sleeps).toHaveLength(3);
  });

  it('honours retry-after on 429 and on a secondary rate limit', async () => {
    const h = harness();
    let tries = 0;
    await call('x', async () => { if (++tries === 1) throw httpError(429, { 'retry-after': '7' }); if (tries === 2) throw httpError(403, { 'retry-after': '3' }); return 1; }, h.options);
    expect(h.sleeps).toEqual([7000, 3000]);
  });

  it('does not retry permission, not-found, conflict or bad-input errors', async () => {
    for (const [status, code] of [[403, 'PERMISSION_DENIED'], [404, 'NOT_FOUND'], [422, 'CONFLICT'], [400, 'INVALID_ARGUMENT']] as const) {
      const h = harness();
      let tries = 0;
      const error = await call('x', async () => { tries++; throw httpError(status); }, h.options).catch((e: unknown) => e);
      expect(error).toMatchObject({ code });
      expect(tries).toBe(1);
    }
  });

  it('times out a call that does not answer', async () => {
    const h = harness();
    const error = await call('slow', () => new Promise(() => undefined), { ...h.options, timeoutMs: 20, backoffMs: [] }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'TIMEOUT' });
  });

  it('turns a call that throws before it returns a promise into its error, leaving no timeout armed to reject later', async () => {
    const h = harness();
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const error = await call('sync', () => { throw httpError(400); }, { ...h.options, timeoutMs: 20, backoffMs: [] }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'INVALID_ARGUMENT' });
      await new Promise((r) => setTimeout(r, 60));
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
  });

  it('looks before it retries a non-idempotent call', async () => {
    const h = harness();
    let created = 0;
    const result = await call('createPullRequest', async () => { created++; throw httpError(502); }, { ...h.options, lookBeforeRetry: async () => (created > 0 ? 'found #1' : undefined) });
    expect(result).toBe('found #1');
    expect(created).toBe(1);
  });

  it('treats a connection failure as UNAVAILABLE', () => {
    expect(classifyHttpError(new TypeError('fetch failed'))).toMatchObject({ code: 'UNAVAILABLE' });
  });
});
