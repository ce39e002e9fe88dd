// Connections to the real API server: counted through undici's diagnostics
// channel, which the Kubernetes client's undici publishes to.
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import { KeepAliveKubeConfig } from '../../src/integrations/kube-config.ts';

const stack = inject('stack');
let connections = 0;
const counted = () => { connections++; };
beforeEach(() => { connections = 0; subscribe('undici:client:connected', counted); });
afterEach(() => { unsubscribe('undici:client:connected', counted); });

async function tenRequests(kc: KubeConfig): Promise<void> {
  kc.loadFromFile(stack.kubeconfig);
  const api = kc.makeApiClient(CoreV1Api);
  for (let i = 0; i < 10; i++) expect((await api.listNamespace()).items.length).toBeGreaterThan(0);
}

describe('KeepAliveKubeConfig', () => {
  it('(the library alone opens a connection, with its TLS handshake, per request)', async () => {
    await tenRequests(new KubeConfig());
    expect(connections).toBe(10);
  });

  it('reuses one connection for all requests with the same credentials', async () => {
    await tenRequests(new KeepAliveKubeConfig());
    expect(connections).toBe(1);
  });

  it('starts a new connection once the kept one is too old, so rotated certificate files are read again', async () => {
    let now = 0;
    const kc = new KeepAliveKubeConfig({ maxAgeMs: 1000, now: () => (now += 400) });
    await tenRequests(kc);
    // A new dispatcher every third request (400 ms steps against a 1000 ms age)
    expect(connections).toBe(4);
  });
});
