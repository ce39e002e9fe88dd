import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { AUDIT_TEMPLATE, bulkOperations, bulkOutcome, codeOfStatus, ElasticsearchAuditIndex, type AuditDocument } from './elasticsearch-sink.ts';
import { GENESIS_HASH, sealRecord } from './record.ts';

const doc = (at: string, seq: number, eventId?: string): AuditDocument => ({
  ...sealRecord({ module: 'Reconciler', actionType: 'FSM_TRANSITION', correlationId: 'c', message: `m${seq}`, ...(eventId && { eventId }) }, GENESIS_HASH, new Date(at)),
  chainId: 'chain-1',
  chainSeq: seq,
});

describe('bulkOperations', () => {
  it('creates each record with _id = eventId in the index of its UTC day', () => {
    const docs = [doc('2026-02-27T23:59:59.999Z', 0, 'a'), doc('2026-02-28T00:00:00.000Z', 1, 'b')];
    expect(bulkOperations(docs)).toEqual([
      { create: { _index: 'ai-operator-audit-2026.02.27', _id: 'a' } }, docs[0],
      { create: { _index: 'ai-operator-audit-2026.02.28', _id: 'b' } }, docs[1],
    ]);
  });
});

describe('bulkOutcome', () => {
  it('counts created and 409 (already there) as shipped', () => {
    expect(bulkOutcome([{ status: 201 }, { status: 409, error: { type: 'version_conflict_engine_exception' } }, { status: 201 }], 3))
      .toEqual({ shipped: 3, created: 2, duplicates: 1 });
  });

  it('ends the shipped prefix at the first other failure, whatever follows it', () => {
    const outcome = bulkOutcome([{ status: 201 }, { status: 429, error: { type: 'es_rejected_execution_exception', reason: 'queue full' } }, { status: 201 }], 3);
    expect(outcome).toMatchObject({ shipped: 1, created: 1, duplicates: 0 });
    expect(outcome.error?.code).toBe('RATE_LIMITED');
    expect(outcome.error?.message).toContain('item 1 refused with 429: es_rejected_execution_exception: queue full');
  });

  it('treats a mapping refusal as not shipped', () => {
    const outcome = bulkOutcome([{ status: 400, error: { type: 'document_parsing_exception', reason: 'failed to parse field [timestamp]' } }], 1);
    expect(outcome).toMatchObject({ shipped: 0, error: { code: 'INVALID_ARGUMENT' } });
  });

  it('does not count items the response left out', () => {
    expect(bulkOutcome([{ status: 201 }], 2)).toMatchObject({ shipped: 1, error: { code: 'UNAVAILABLE' } });
  });

  it('maps statuses onto port error codes', () => {
    expect([401, 403, 404, 408, 429, 400, 500, 503, undefined].map(codeOfStatus))
      .toEqual(['PERMISSION_DENIED', 'PERMISSION_DENIED', 'NOT_FOUND', 'TIMEOUT', 'RATE_LIMITED', 'INVALID_ARGUMENT', 'UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE']);
  });
});

describe('AUDIT_TEMPLATE', () => {
  it('maps every record field explicitly and leaves nothing to dynamic mapping', () => {
    const { mappings } = AUDIT_TEMPLATE.template;
    expect(mappings.dynamic).toBe(false);
    const record = doc('2026-02-27T10:00:00Z', 0);
    // The optional fields included: reasoning, invariantsChecked, and the trace of a record made while tracing is on.
    const fields = Object.keys({ ...record, reasoning: 'x', invariantsChecked: {}, trace_id: 't', span_id: 's' });
    expect(Object.keys(mappings.properties).sort()).toEqual(fields.sort());
    expect(mappings.properties.timestamp.type).toBe('date');
    expect(mappings.properties.metadata.type).toBe('flattened');
    for (const key of ['level', 'module', 'correlationId', 'actionType', 'eventId', 'trace_id', 'span_id', 'prevHash', 'hash', 'chainId'] as const) {
      expect(mappings.properties[key].type).toBe('keyword');
    }
    expect(AUDIT_TEMPLATE.index_patterns).toEqual(['ai-operator-audit-*']);
  });
});

// The real client against a small HTTP server that answers as Elasticsearch does.
describe('ElasticsearchAuditIndex', () => {
  let server: Server | undefined;
  afterEach(async () => {
    const running = server;
    server = undefined;
    if (running) await new Promise((r) => running.close(r));
  });
  const body = async (req: IncomingMessage) => {
    let text = '';
    for await (const chunk of req) text += chunk;
    return text;
  };
  async function fakeElasticsearch(answer: (req: IncomingMessage, body: string) => { status: number; json: unknown }): Promise<string> {
    server = createServer(async (req, res) => {
      const { status, json } = answer(req, await body(req));
      res.writeHead(status, { 'content-type': 'application/json', 'x-elastic-product': 'Elasticsearch' });
      res.end(JSON.stringify(json));
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(server!.address() as AddressInfo).port}`;
  }

  it('authenticates with the API key, creates by _id, and reads a 409 as already shipped', async () => {
    const seen: { method?: string; url?: string; auth?: string; lines: unknown[] }[] = [];
    const url = await fakeElasticsearch((req, text) => {
      seen.push({ method: req.method, url: req.url, auth: req.headers.authorization, lines: text.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) });
      if (req.url?.startsWith('/_index_template/')) return { status: 200, json: { acknowledged: true } };
      return { status: 200, json: { errors: true, took: 1, items: [{ create: { _index: 'x', _id: 'a', status: 201 } }, { create: { _index: 'x', _id: 'b', status: 409, error: { type: 'version_conflict_engine_exception', reason: 'exists' } } }] } };
    });
    const index = new ElasticsearchAuditIndex({ url, apiKey: 'c2VjcmV0LWtleQ==' });
    await index.ensureTemplate();
    const outcome = await index.ship([doc('2026-02-27T10:00:00Z', 0, 'a'), doc('2026-02-27T10:00:01Z', 1, 'b')]);
    await index.close();
    expect(outcome).toEqual({ shipped: 2, created: 1, duplicates: 1 });
    expect(seen.map((s) => `${s.method} ${s.url?.split('?')[0]}`)).toEqual(['PUT /_index_template/ai-operator-audit', 'POST /_bulk']);
    expect(seen.every((s) => s.auth === 'ApiKey c2VjcmV0LWtleQ==')).toBe(true);
    expect(seen[0]!.lines[0]).toMatchObject({ index_patterns: ['ai-operator-audit-*'], template: { mappings: { dynamic: false } } });
    expect(seen[1]!.lines[0]).toEqual({ create: { _index: 'ai-operator-audit-2026.02.27', _id: 'a' } });
  });

  it('returns a refusal of the whole request as nothing shipped, without the API key in the message', async () => {
    const url = await fakeElasticsearch(() => ({ status: 401, json: { error: { type: 'security_exception', reason: 'unable to authenticate with provided credentials' }, status: 401 } }));
    const index = new ElasticsearchAuditIndex({ url, apiKey: 'c2VjcmV0LWtleQ==' });
    const outcome = await index.ship([doc('2026-02-27T10:00:00Z', 0)]);
    await expect(index.ensureTemplate()).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    await index.close();
    expect(outcome).toMatchObject({ shipped: 0, error: { code: 'PERMISSION_DENIED' } });
    expect(outcome.error!.message).toContain('security_exception');
    expect(outcome.error!.message).not.toContain('c2VjcmV0LWtleQ');
  });

  it('returns a connection failure as nothing shipped', async () => {
    const index = new ElasticsearchAuditIndex({ url: 'http://127.0.0.1:1', requestTimeoutMs: 2000 });
    const outcome = await index.ship([doc('2026-02-27T10:00:00Z', 0)]);
    await index.close();
    expect(outcome).toMatchObject({ shipped: 0, created: 0, error: { code: 'UNAVAILABLE' } });
  });

  it('reads a window back page by page in chain order', async () => {
    const docs = Array.from({ length: 1500 }, (_, i) => doc('2026-02-27T10:00:00Z', i));
    const requests: Record<string, unknown>[] = [];
    const url = await fakeElasticsearch((_req, text) => {
      const query = JSON.parse(text) as { search_after?: [string, number, string] };
      requests.push(query);
      const start = query.search_after === undefined ? 0 : query.search_after[1] + 1;
      const page = docs.slice(start, start + 1000);
      return { status: 200, json: { took: 1, timed_out: false, hits: { hits: page.map((d) => ({ _index: 'x', _id: d.eventId, _source: d, sort: [d.chainId, d.chainSeq, d.eventId] })) } } };
    });
    const index = new ElasticsearchAuditIndex({ url });
    const read: AuditDocument[] = [];
    for await (const d of index.read(new Date('2026-02-27T00:00:00Z'), new Date('2026-02-28T00:00:00Z'))) read.push(d);
    await index.close();
    expect(read.map((d) => d.chainSeq)).toEqual(docs.map((d) => d.chainSeq));
    expect(requests).toHaveLength(2);
    expect(requests[0]).toMatchObject({
      query: { range: { timestamp: { gte: '2026-02-27T00:00:00.000Z', lte: '2026-02-28T00:00:00.000Z' } } },
      sort: [{ chainId: 'asc' }, { chainSeq: 'asc' }, { eventId: 'asc' }],
    });
  });
});
