import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { LAST_APPLIED_ANNOTATION, objectSource, stripUnread, type ListPage } from './custom-objects.ts';
import type { KubeObject, WireEvent } from './watch.ts';

interface Thing extends KubeObject {
  metadata?: KubeObject['metadata'] & { annotations?: Record<string, string>; managedFields?: unknown[]; uid?: string };
  spec?: { size?: number; note?: string };
}

const full = (name: string, resourceVersion: string): Thing => ({
  metadata: {
    name, namespace: 'a', resourceVersion, uid: `uid-${name}`,
    annotations: { [LAST_APPLIED_ANNOTATION]: '{"spec":{}}', keep: 'me' },
    managedFields: [{ manager: 'kubectl', fieldsV1: { 'f:spec': {} } }],
  },
  spec: { size: 3, note: 'not read' },
});

describe('stripUnread', () => {
  it('drops managedFields and the last-applied-configuration annotation, and nothing else', () => {
    expect(stripUnread(full('x', '1'))).toEqual({ metadata: { name: 'x', namespace: 'a', resourceVersion: '1', uid: 'uid-x', annotations: { keep: 'me' } }, spec: { size: 3, note: 'not read' } });
    // No annotation left: none at all.
    expect(stripUnread({ metadata: { name: 'x', annotations: { [LAST_APPLIED_ANNOTATION]: '{}' } } })).toEqual({ metadata: { name: 'x' } });
  });

  it('hands back an object with nothing to drop as it is, and never changes its input', () => {
    const bare = { metadata: { name: 'x', annotations: { keep: 'me' } } };
    expect(stripUnread(bare)).toBe(bare);
    const input = full('x', '1');
    stripUnread(input);
    expect(input.metadata?.managedFields).toHaveLength(1);
    expect(stripUnread({} as Thing)).toEqual({});
  });
});

describe('objectSource', () => {
  let server: Server | undefined;
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = undefined;
  });

  /** An API server that answers the watch of /things with `events`, one JSON line each. */
  async function apiServer(events: Array<WireEvent<Thing>>): Promise<KubeConfig> {
    server = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      for (const event of events) res.write(`${JSON.stringify(event)}\n`);
      res.end();
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', () => resolve()));
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromClusterAndUser({ name: 'test', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }, { name: 'test' });
    return kubeConfig;
  }

  const transform = (object: Thing): Thing => ({ metadata: object.metadata, spec: { size: object.spec?.size } });

  it('cuts each listed object down, page by page, to what stripUnread and the kind\'s transform keep', async () => {
    const pages: Array<ListPage<Thing>> = [
      { items: [full('one', '1'), full('two', '2')], metadata: { resourceVersion: '5', continue: 'next' } },
      { items: [full('three', '3')], metadata: { resourceVersion: '5' } },
    ];
    const source = objectSource<Thing>({
      kubeConfig: await apiServer([]), calls: { list: 'listThings', watch: 'watchThings' }, path: () => '/things', transform,
      listPage: async (_namespace, page) => {
        return structuredClone(pages[page._continue ? 1 : 0]!);
      },
    });
    const { items, resourceVersion } = await source.list(undefined);
    expect(resourceVersion).toBe('5');
    expect(items).toEqual(['one', 'two', 'three'].map((name, i) => ({ metadata: { name, namespace: 'a', resourceVersion: String(i + 1), uid: `uid-${name}`, annotations: { keep: 'me' } }, spec: { size: 3 } })));
  });

  it('cuts each watched object down the same way, and passes bookmarks and errors on as they came', async () => {
    const bookmark = { type: 'BOOKMARK' as const, object: { metadata: { resourceVersion: '9' } } };
    const error = { type: 'ERROR' as const, object: { code: 410, message: 'too old' } };
    const kubeConfig = await apiServer([{ type: 'ADDED', object: full('one', '6') }, { type: 'DELETED', object: full('one', '7') }, bookmark, error]);
    const source = objectSource<Thing>({ kubeConfig, calls: { list: 'listThings', watch: 'watchThings' }, path: () => '/things', transform, listPage: async () => ({ items: [] }) });
    const events: Array<WireEvent<Thing>> = [];
    const ended = new Promise<void>((resolve) => void source.watch(undefined, '5', (event) => events.push(event), () => resolve()));
    await ended;
    const kept = (resourceVersion: string) => ({ metadata: { name: 'one', namespace: 'a', resourceVersion, uid: 'uid-one', annotations: { keep: 'me' } }, spec: { size: 3 } });
    expect(events).toEqual([{ type: 'ADDED', object: kept('6') }, { type: 'DELETED', object: kept('7') }, bookmark, error]);
  });
});
