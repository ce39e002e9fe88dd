import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import type { AttemptRecord } from '../fsm/record.ts';
import { createLogger } from '../observability/log.ts';
import { RollbackAttemptObjects, statusOf } from './rollback-attempts.ts';

const record: AttemptRecord = {
  correlationId: '0a1b2c3d-0000-4000-8000-000000000001', app: { namespace: 'argocd', name: 'payment-service' },
  environment: 'staging', state: 'PRCreated', reason: 'PullRequestOpened', message: 'opened #4', since: '2026-03-01T10:00:00.000Z',
  version: 3, createdAt: '2026-03-01T09:59:00.000Z', degradation: { firstSeenAt: '2026-03-01T09:58:00.000Z', checks: 3 }, invariants: [], transitions: [],
  settings: { approvers: { users: [], groups: [] } } as unknown as AttemptRecord['settings'],
};
const OBJECT_PATH = '/apis/ai-operator.io/v1alpha1/namespaces/argocd/rollbackattempts';
const NAME = 'payment-service-0a1b2c3d';

interface Seen {
  method: string;
  path: string;
  body: unknown;
}

describe('RollbackAttemptObjects against an API server', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = undefined;
  });

  /** A Kubernetes API that answers each request with `reply`; the watch is never started. */
  async function api(reply: (request: Seen) => { status: number; body?: unknown }) {
    const seen: Seen[] = [];
    server = createServer((req, res) => {
      let text = '';
      req.on('data', (chunk: Buffer) => (text += chunk.toString()));
      req.on('end', () => {
        const request = { method: req.method!, path: new URL(req.url!, 'http://x').pathname, body: text ? JSON.parse(text) as unknown : undefined };
        seen.push(request);
        const { status, body } = reply(request);
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body ?? { kind: 'Status', code: status }));
      });
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', () => resolve()));
    const kc = new KubeConfig();
    kc.loadFromClusterAndUser({ name: 'fake', server: `http://127.0.0.1:${(server!.address() as AddressInfo).port}`, skipTLSVerify: true }, { name: 'fake' });
    return { objects: new RollbackAttemptObjects(kc, createLogger('ERROR'), () => {}, { backoffMs: [1, 1, 1] }), seen };
  }

  it('fails a refused read with a classified IntegrationError, not a client error the engine calls unexpected', async () => {
    const { objects, seen } = await api(() => ({ status: 403 }));
    const error = await objects.requests(record).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'IntegrationError', code: 'PERMISSION_DENIED', call: 'getRollbackAttempt' });
    expect(seen).toHaveLength(1);
  });

  it('reads no requests from an object that does not exist', async () => {
    const { objects } = await api(() => ({ status: 404 }));
    expect(await objects.requests(record)).toEqual({});
  });

  it('creates the object, retries a status write the server failed, and writes the created object\'s generation', async () => {
    let patches = 0;
    const { objects, seen } = await api((r) => {
      if (r.method === 'POST') return { status: 201, body: { ...(r.body as object), metadata: { name: NAME, namespace: 'argocd', uid: 'u-1', generation: 1 } } };
      return ++patches < 3 ? { status: 503 } : { status: 200, body: {} };
    });
    await objects.project(record);
    expect(seen.map((r) => `${r.method} ${r.path}`)).toEqual([
      `POST ${OBJECT_PATH}`, `PATCH ${OBJECT_PATH}/${NAME}/status`, `PATCH ${OBJECT_PATH}/${NAME}/status`, `PATCH ${OBJECT_PATH}/${NAME}/status`,
    ]);
    expect((seen[3]!.body as { status: Record<string, unknown> }).status).toEqual(statusOf(record, 1));
    expect(objects.uidOf(record)).toBe('u-1');
    // An unchanged projection costs no request
    await objects.project(record);
    expect(seen).toHaveLength(4);
  });

  it('sets Stalled beside the other conditions, and the next projection writes again and clears it', async () => {
    const existing = { metadata: { name: NAME, namespace: 'argocd', generation: 1 }, status: { conditions: [{ type: 'Active', status: 'True' }, { type: 'Stalled', status: 'True', reason: 'Old' }] } };
    const { objects, seen } = await api((r) => (r.method === 'GET' ? { status: 200, body: existing } : { status: 200, body: {} }));
    await objects.markStalled(record, 'CorruptRecord', 'stopped retrying until repaired: … is not JSON');
    expect(seen.map((r) => `${r.method} ${r.path}`)).toEqual([`GET ${OBJECT_PATH}/${NAME}`, `PATCH ${OBJECT_PATH}/${NAME}/status`]);
    expect((seen[1]!.body as { status: { conditions: unknown[] } }).status.conditions).toEqual([
      { type: 'Active', status: 'True' },
      { type: 'Stalled', status: 'True', reason: 'CorruptRecord', message: 'stopped retrying until repaired: … is not JSON', lastTransitionTime: expect.stringMatching(/Z$/) },
    ]);
    // The attempt's own projection (conditions from the record, without Stalled) is written even if it was written before.
    const status = statusOf(record, 1) as { conditions: Array<{ type: string }> };
    expect(status.conditions.map((c) => c.type)).not.toContain('Stalled');
  });

  it('keeps nothing of 1,000 attempts released in Abort (their apps deleted): the memory is bounded by the apps holding one', async () => {
    const { objects } = await api((r) => (r.method === 'POST' ? { status: 201, body: { ...(r.body as object), metadata: { uid: 'u', generation: 1 } } } : { status: 200, body: {} }));
    const before = objects.memorySizes();
    for (let i = 0; i < 1000; i++) {
      const released: AttemptRecord = { ...record, correlationId: `0a1b2c3d-0000-4000-8000-${String(i).padStart(12, '0')}`, app: { namespace: 'argocd', name: `app-${i}` }, state: 'Abort', reason: 'ApplicationDeleted' };
      await objects.project(released, { final: true });
    }
    // `created` keeps uids until the watch shows the objects (it never runs here); bounded at 1,000 on its own.
    expect(objects.memorySizes()).toEqual({ ...before, created: 1000 });
    // An aborted attempt that holds its app is remembered (its status is not written again every resync).
    await objects.project({ ...record, state: 'Abort', reason: 'CIFailure' });
    expect(objects.memorySizes().written).toBe((before.written ?? 0) + 1);
  }, 60_000);

  it('takes an object that already exists (409 on create) as created', async () => {
    const { objects, seen } = await api((r) => (r.method === 'POST' ? { status: 409 } : { status: 200, body: {} }));
    await objects.project(record);
    expect(seen.map((r) => r.method)).toEqual(['POST', 'PATCH']);
    // Its generation unknown, the status leaves observedGeneration as it was
    expect((seen[1]!.body as { status: Record<string, unknown> }).status).not.toHaveProperty('observedGeneration');
  });
});

describe('statusOf', () => {
  it('says which generation of the object it describes', () => {
    expect(statusOf(record, 2)).toMatchObject({ observedGeneration: 2, phase: 'PRCreated' });
    expect(statusOf(record)).not.toHaveProperty('observedGeneration');
  });
});
