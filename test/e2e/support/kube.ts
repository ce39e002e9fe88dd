// Helpers for tests against the real API server: kubectl and a client-node client.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import type { StackEndpoints } from '../../../dev/stack/index.ts';

const run = promisify(execFile);
export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

export interface KubectlResult { stdout: string; stderr: string; code: number }

export async function kubectl(stack: StackEndpoints, args: string[], input?: string, kubeconfig = stack.kubeconfig): Promise<KubectlResult> {
  const child = run(stack.kubectl, [`--kubeconfig=${kubeconfig}`, ...args], { cwd: repoRoot, maxBuffer: 16 << 20, timeout: 60_000 });
  if (input !== undefined) {
    child.child.stdin?.end(input);
  }
  try {
    const { stdout, stderr } = await child;
    return { stdout, stderr, code: 0 };
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; code?: number };
    return { stdout: e.stdout ?? '', stderr: e.stderr ?? '', code: typeof e.code === 'number' ? e.code : 1 };
  }
}

export async function kubectlOk(stack: StackEndpoints, args: string[], input?: string): Promise<string> {
  const result = await kubectl(stack, args, input);
  if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout;
}

export function kubeConfig(stack: StackEndpoints): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(stack.kubeconfig);
  return kc;
}

/** Applies the project's CRDs and the Argo CD Application CRD, and waits until they are served. */
export async function installCrds(stack: StackEndpoints): Promise<void> {
  await kubectlOk(stack, ['apply', '--server-side', '-f', 'crds/', '-f', 'dev/crds/']);
  await kubectlOk(stack, ['wait', '--for=condition=Established', '--timeout=60s',
    'crd/rollbackpolicies.ai-operator.io', 'crd/rollbackattempts.ai-operator.io', 'crd/applications.argoproj.io']);
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
