import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Metrics } from '../observability/metrics.ts';
import { IntegrationError } from '../ports/errors.ts';
import { PrometheusHistory, valueOf } from './prometheus.ts';

const vector = (...values: string[]) => ({ status: 'success' as const, data: { resultType: 'vector', result: values.map((v) => ({ metric: {}, value: [1700000000, v] })) } });

let server: Server | undefined;
afterEach(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

/** A stand-in Prometheus answering each request with the handler's reply. */
async function prometheus(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  server = createServer(handler);
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', () => resolve()));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('valueOf', () => {
  it('reads one sample, a scalar, and nothing', () => {
    expect(valueOf(vector('0.9583'))).toBe(0.9583);
    expect(valueOf({ status: 'success', data: { resultType: 'scalar', result: [1, '1'] } })).toBe(1);
    expect(valueOf(vector())).toBeUndefined();
  });

  it('reads NaN and infinities (an empty window divided) as no data', () => {
    for (const v of ['NaN', '+Inf', '-Inf']) expect(valueOf(vector(v))).toBeUndefined();
  });

  it('refuses several series: which one is the uptime cannot be known', () => {
    expect(() => valueOf(vector('1', '0.5'))).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describe('PrometheusHistory', () => {
  it('asks for the query at the given time and returns the value', async () => {
    const asked: URL[] = [];
    const url = await prometheus((req, res) => {
      asked.push(new URL(req.url!, 'http://x'));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(vector('0.5')));
    });
    const history = new PrometheusHistory({ url: `${url}/prefix/` });
    expect(await history.uptime('sum(up{job="a\\"b"})', 1700000123)).toBe(0.5);
    expect(asked[0]?.pathname).toBe('/prefix/api/v1/query');
    expect(asked[0]?.searchParams.get('query')).toBe('sum(up{job="a\\"b"})');
    expect(asked[0]?.searchParams.get('time')).toBe('1700000123');
  });

  it('fails a bad query at once with INVALID_ARGUMENT and Prometheus\' explanation', async () => {
    let requests = 0;
    const url = await prometheus((_req, res) => {
      requests++;
      res.writeHead(400).end(JSON.stringify({ status: 'error', errorType: 'bad_data', error: 'parse error: unexpected "}"' }));
    });
    const error = await new PrometheusHistory({ url, backoffMs: [1, 1, 1] }).uptime('sum(', 1).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IntegrationError);
    expect(error).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('parse error') });
    expect(requests).toBe(1);
  });

  it('retries a 503 three times, then says UNAVAILABLE, counting each failure', async () => {
    let requests = 0;
    const url = await prometheus((_req, res) => {
      requests++;
      res.writeHead(503).end('overloaded');
    });
    const metrics = new Metrics();
    const error = await new PrometheusHistory({ url, metrics, backoffMs: [1, 1, 1] }).uptime('up', 1).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'UNAVAILABLE' });
    expect(requests).toBe(4);
    expect(await metrics.registry.metrics()).toMatch(/ai_operator_mcp_call_errors_total\{call_name="queryPrometheus",error_code="UNAVAILABLE"\} 4/);
  });

  it('says UNAVAILABLE when nothing listens', async () => {
    const url = await prometheus(() => undefined);
    await new Promise<void>((resolve) => server!.close(() => resolve()));
    server = undefined;
    const error = await new PrometheusHistory({ url, backoffMs: [1, 1, 1] }).uptime('up', 1).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'UNAVAILABLE' });
  });

  it('times out a Prometheus that does not answer', async () => {
    const url = await prometheus(() => undefined);
    const error = await new PrometheusHistory({ url, timeoutMs: 50, backoffMs: [] }).uptime('up', 1).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'TIMEOUT' });
    server!.closeAllConnections();
  });
});
