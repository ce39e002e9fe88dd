// Prometheus answers that are not the one vector an uptime query must return
// (issue 12 §4): each is a typed error naming what is wrong — never a TypeError
// and never a number that is not a ratio — so the candidate search falls back to
// CI-only selection and I5 says why. A fake Prometheus over real HTTP answers each.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ErrorCode } from '../ports/errors.ts';
import { PrometheusHistory } from './prometheus.ts';

interface Answer {
  status?: number;
  contentType?: string;
  /** The body as sent: JSON.stringify of it unless it is a string already. */
  body: unknown;
}

type Expect = { value: number | undefined } | { code: ErrorCode; message: RegExp; requests: number };

interface PrometheusBadInputCase {
  name: string;
  input: Answer;
  expect: Expect;
}

const sample = (value: unknown) => ({ status: 'success', data: { resultType: 'vector', result: [{ metric: {}, value: [1700000000, value] }] } });
const invalid = (message: RegExp): Expect => ({ code: 'INVALID_ARGUMENT', message, requests: 1 });

const PROMETHEUS_BAD_INPUT: PrometheusBadInputCase[] = [
  { name: 'a matrix (a range selector in the template)', input: { body: { status: 'success', data: { resultType: 'matrix', result: [{ metric: {}, values: [[1, '1'], [2, '1']] }] } } },
    expect: invalid(/the query returned a matrix; an uptime query must return a vector or a scalar/) },
  { name: 'a string', input: { body: { status: 'success', data: { resultType: 'string', result: [1700000000, 'up'] } } },
    expect: invalid(/the query returned a string; an uptime query must return a vector or a scalar/) },
  { name: 'a scalar', input: { body: { status: 'success', data: { resultType: 'scalar', result: [1700000000, '0.995'] } } }, expect: { value: 0.995 } },
  { name: 'no resultType', input: { body: { status: 'success', data: { result: [] } } }, expect: invalid(/the query returned resultType missing/) },
  { name: 'two series (no aggregation)', input: { body: { status: 'success', data: { resultType: 'vector', result: [{ metric: { a: '1' }, value: [1, '1'] }, { metric: { a: '2' }, value: [1, '0.5'] }] } } },
    expect: invalid(/the query returned 2 series; an uptime query must return one/) },
  { name: 'a vector whose result is not a list', input: { body: { status: 'success', data: { resultType: 'vector', result: { value: [1, '1'] } } } },
    expect: invalid(/data\.result of a vector is .*not a list/) },
  { name: 'a sample without its value', input: { body: { status: 'success', data: { resultType: 'vector', result: [{ metric: {} }] } } },
    expect: invalid(/data\.result\[0\]\.value is missing, not a \[time, "value"\] pair/) },
  { name: 'a sample value that is a JSON number, not a string', input: { body: sample(0.5) },
    expect: invalid(/data\.result\[0\]\.value is \[1700000000,0\.5\], not a \[time, "value"\] pair/) },
  { name: 'a sample value that is not a number', input: { body: sample('high') }, expect: invalid(/the sample value "high" is not a number/) },
  { name: 'an empty sample value (Number() would read 0)', input: { body: sample('') }, expect: invalid(/the sample value "" is not a number/) },
  { name: 'a count instead of a ratio', input: { body: sample('8640') }, expect: invalid(/the query returned 8640, not a ratio from 0 to 1/) },
  { name: 'a negative ratio', input: { body: sample('-0.1') }, expect: invalid(/the query returned -0.1, not a ratio from 0 to 1/) },
  { name: 'NaN (0/0 over an empty window)', input: { body: sample('NaN') }, expect: { value: undefined } },
  { name: 'an empty vector (no data)', input: { body: { status: 'success', data: { resultType: 'vector', result: [] } } }, expect: { value: undefined } },
  { name: 'status "error" in a 200', input: { body: { status: 'error', errorType: 'execution', error: 'query timed out' } },
    expect: invalid(/status is "error" \(query timed out\), not "success"/) },
  { name: 'a success without data', input: { body: { status: 'success' } }, expect: invalid(/data is missing from a "success" answer/) },
  { name: 'JSON that is not an object', input: { body: [1, 2] }, expect: invalid(/the answer is \[1,2\], not a JSON object/) },
  // Not JSON at all may be a proxy's page or a cut connection: transient, retried, then said.
  { name: 'a 200 with an HTML body (a proxy\'s login page)', input: { contentType: 'text/html', body: '<!DOCTYPE html><html><body>Sign in</body></html>' },
    expect: { code: 'UNAVAILABLE', message: /answered 200 with a body that is not JSON \(content-type text\/html, 48 bytes, starting "<!DOCTYPE html>/, requests: 4 } },
  { name: 'truncated JSON', input: { contentType: 'application/json', body: JSON.stringify(sample('0.99')).slice(0, 40) },
    expect: { code: 'UNAVAILABLE', message: /answered 200 with a body that is not JSON \(content-type application\/json, 40 bytes/, requests: 4 } },
];

describe('Prometheus answers outside its API description', () => {
  let server: Server;
  let url: string;
  let answer: Answer;
  let requests = 0;
  beforeAll(async () => {
    server = createServer((_req, res) => {
      requests++;
      const body = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body);
      res.writeHead(answer.status ?? 200, { 'content-type': answer.contentType ?? 'application/json' }).end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it.each(PROMETHEUS_BAD_INPUT.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    answer = c.input;
    requests = 0;
    const result = await new PrometheusHistory({ url, backoffMs: [1, 1, 1] }).uptime('sum(x{name="a"})', 1700000000)
      .then((value) => ({ value }), (error: unknown) => ({ error }));
    if ('value' in c.expect) {
      expect(result).toEqual({ value: c.expect.value });
      return;
    }
    expect(result).toHaveProperty('error');
    const error = (result as { error: { name: string; code: string; message: string } }).error;
    expect(error.name).toBe('IntegrationError');
    expect(error).toMatchObject({ code: c.expect.code, call: 'queryPrometheus' });
    expect(error.message).toMatch(c.expect.message);
    expect(requests).toBe(c.expect.requests);
  });
});
