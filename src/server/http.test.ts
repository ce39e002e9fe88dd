import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { startHttp } from './http.ts';
import type { HttpResetRequest } from './reset.ts';

const servers: Array<{ close(): void }> = [];
afterEach(() => { for (const s of servers.splice(0)) s.close(); });

async function serve(withReset = true) {
  const seen: HttpResetRequest[] = [];
  const server = await startHttp({
    port: 0, host: '127.0.0.1', registry: new Registry(), readiness: async () => [],
    ...(withReset ? { reset: async (request: HttpResetRequest) => { seen.push(request); return { status: 202, body: { correlationId: 'x', result: 'accepted' as const, message: 'm' }, headers: { 'retry-after': '5' } }; } } : {}),
  });
  servers.push(server);
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

describe('startHttp', () => {
  it('routes POST /reset/{id} to the reset handler with the Authorization header, answering JSON', async () => {
    const { url, seen } = await serve();
    const res = await fetch(`${url}/reset/abc?x=1`, { method: 'POST', headers: { authorization: 'Bearer t' }, body: 'ignored' });
    expect(res.status).toBe(202);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('retry-after')).toBe('5');
    expect(await res.json()).toEqual({ correlationId: 'x', result: 'accepted', message: 'm' });
    expect(seen).toEqual([{ path: '/reset/abc', authorization: 'Bearer t' }]);
  });

  it('answers 405 to any other method on /reset, and on the GET paths', async () => {
    const { url, seen } = await serve();
    const get = await fetch(`${url}/reset/abc`);
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    expect((await fetch(`${url}/reset/abc`, { method: 'PUT' })).status).toBe(405);
    expect((await fetch(`${url}/healthz`, { method: 'POST' })).status).toBe(405);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    expect(seen).toEqual([]);
  });

  it('does not serve /reset without a handler', async () => {
    const { url } = await serve(false);
    expect((await fetch(`${url}/reset/abc`, { method: 'POST' })).status).toBe(405);
    expect((await fetch(`${url}/reset/abc`)).status).toBe(404);
  });
});
