// Helpers for tests against the real API server: kubectl and a client-node client.
import { KubeConfig } from '@kubernetes/client-node';
import type { StackEndpoints } from '../../../dev/stack/index.ts';
import { kubectlOk } from '../../../dev/stack/kubectl.ts';

export { installCrds, kubectl, kubectlOk, repoRoot } from '../../../dev/stack/kubectl.ts';

export function kubeConfig(stack: StackEndpoints): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(stack.kubeconfig);
  return kc;
}

let counter = 0;
/** A fresh namespace per test: without a controller-manager, namespaces never finish deleting. */
export async function freshNamespace(stack: StackEndpoints, prefix: string): Promise<string> {
  const name = `${prefix}-${process.pid}-${++counter}-${Math.random().toString(36).slice(2, 7)}`;
  await kubectlOk(stack, ['create', 'namespace', name]);
  return name;
}

/** GET on the API server with the admin credentials, returning status and body. */
export async function apiGet(stack: StackEndpoints, path: string): Promise<{ status: number; body: string }> {
  const { request } = await import('node:https');
  const options: import('node:https').RequestOptions = {};
  await kubeConfig(stack).applyToHTTPSOptions(options);
  return new Promise((resolve, reject) => {
    const req = request(`${stack.kubeUrl}${path}`, { ...options, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}
