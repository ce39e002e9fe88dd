// Given the local stack, each real component answers a real request.
import { Client as Elasticsearch } from '@elastic/elasticsearch';
import { CoreV1Api } from '@kubernetes/client-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { Etcd3 } from 'etcd3';
import { describe, expect, inject, it } from 'vitest';
import { HISTORY_APP } from './fixtures/history.ts';
import { apiGet, kubeConfig } from './support/kube.ts';
import { eventually } from './support/operator.ts';

const stack = inject('stack');

describe('the local stack', () => {
  it('etcd stores and returns a key', async () => {
    const etcd = new Etcd3({ hosts: stack.etcd });
    try {
      await etcd.put('/ai-operator/test/stack').value('hello');
      expect(await etcd.get('/ai-operator/test/stack').string()).toBe('hello');
    } finally {
      etcd.close();
    }
  });

  it('kube-apiserver is ready and creates a namespace', async () => {
    expect(await apiGet(stack, '/readyz')).toEqual({ status: 200, body: 'ok' });
    const kc = kubeConfig(stack);
    const core = kc.makeApiClient(CoreV1Api);
    const name = `stack-${Date.now()}`;
    await core.createNamespace({ body: { metadata: { name } } });
    const read = await core.readNamespace({ name });
    expect(read.metadata?.name).toBe(name);
  });

  it('JetStream creates a stream, takes a message and hands it to a consumer', async () => {
    const nc = await connect({ servers: stack.nats });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: 'STACK_TEST', subjects: ['stack-test.>'] });
      const js = jetstream(nc);
      const ack = await js.publish('stack-test.hello', JSON.stringify({ n: 1 }), { msgID: 'stack-test-1' });
      expect(ack.duplicate).toBe(false);
      const again = await js.publish('stack-test.hello', JSON.stringify({ n: 1 }), { msgID: 'stack-test-1' });
      expect(again.duplicate).toBe(true);
      await jsm.consumers.add('STACK_TEST', { durable_name: 'reader', ack_policy: 'explicit' });
      const consumer = await js.consumers.get('STACK_TEST', 'reader');
      const message = await consumer.next({ expires: 5000 });
      expect(message?.json()).toEqual({ n: 1 });
      message?.ack();
    } finally {
      await nc.close();
    }
  });

  it('Prometheus answers a query over the backfilled history', async () => {
    const at = inject('historyEnd');
    const query = `sum(count_over_time(argocd_app_info{name="${HISTORY_APP}",health_status="Healthy"}[24h])) / sum(count_over_time(argocd_app_info{name="${HISTORY_APP}"}[24h]))`;
    const response = await fetch(`${stack.prometheus}/api/v1/query?${new URLSearchParams({ query, time: String(at) })}`);
    const body = await response.json() as { status: string; data: { result: Array<{ value: [number, string] }> } };
    expect(body.status).toBe('success');
    // 23 of the 24 hours were Healthy.
    expect(Number(body.data.result[0]?.value[1])).toBeCloseTo(23 / 24, 3);
  });

  it('Elasticsearch indexes a document and finds it', async () => {
    const es = new Elasticsearch({ node: stack.elasticsearch });
    try {
      await es.index({ index: 'stack-test', id: 'doc-1', document: { message: 'hello audit' }, refresh: 'wait_for' });
      const found = await es.search<{ message: string }>({ index: 'stack-test', query: { match: { message: 'audit' } } });
      expect(found.hits.hits.map((h) => h._source?.message)).toEqual(['hello audit']);
    } finally {
      await es.close();
    }
  });

  it('Jaeger takes a span over OTLP/HTTP and returns it from its query API', async () => {
    const traceId = Array.from({ length: 32 }, () => Math.floor(Math.random() * 16).toString(16)).join('').replace(/^0/, '1');
    const now = BigInt(Date.now()) * 1_000_000n;
    const span = { traceId, spanId: '00f067aa0ba902b7', name: 'stack-test', kind: 1, startTimeUnixNano: String(now), endTimeUnixNano: String(now + 1_000_000n) };
    const sent = await fetch(`${stack.jaeger.otlp}/v1/traces`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ resourceSpans: [{ resource: { attributes: [{ key: 'service.name', value: { stringValue: 'stack-test' } }] }, scopeSpans: [{ spans: [span] }] }] }),
    });
    expect(sent.status).toBe(200);
    const found = await eventually('span in Jaeger', async () => {
      const response = await fetch(`${stack.jaeger.query}/api/traces/${traceId}`);
      return response.ok ? (await response.json() as { data: Array<{ spans: Array<{ operationName: string; spanID: string }> }> }).data[0]?.spans : undefined;
    }, 10_000, 200);
    expect(found).toEqual([expect.objectContaining({ operationName: 'stack-test', spanID: '00f067aa0ba902b7' })]);
  });
});
