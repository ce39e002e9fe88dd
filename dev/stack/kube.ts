// A real kube-apiserver started the way controller-runtime's envtest does it,
// or an existing cluster when USE_EXISTING_CLUSTER / KUBECONFIG say so.
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { binaries } from './binaries.ts';
import { createClientCert, createPki, type Pki } from './pki.ts';
import { freePort, spawnManaged, waitHealthy, type ManagedProcess } from './process.ts';

export interface KubeInstance {
  /** The API server's URL. */
  url: string;
  /** A kubeconfig for an admin (group system:masters). */
  kubeconfig: string;
  kubectl: string;
  /** Writes a kubeconfig that authenticates as `user` in `groups` (for authorization tests). */
  kubeconfigFor(user: string, groups: string[]): string;
  process?: ManagedProcess;
  existing: boolean;
  /** The local API server's CA, serving and service-account keys (absent for an existing cluster). */
  pki?: Pki;
}

function kubeconfigYaml(server: string, caCert: string, cert: string, key: string, user: string): string {
  const b64 = (file: string) => readFileSync(file).toString('base64');
  return [
    'apiVersion: v1', 'kind: Config', `current-context: ${user}`,
    'clusters:', '- name: local', '  cluster:', `    server: ${server}`, `    certificate-authority-data: ${b64(caCert)}`,
    'users:', `- name: ${user}`, '  user:', `    client-certificate-data: ${b64(cert)}`, `    client-key-data: ${b64(key)}`,
    'contexts:', `- name: ${user}`, '  context:', '    cluster: local', `    user: ${user}`, '',
  ].join('\n');
}

function readyz(url: string, ca: Buffer): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/readyz`, { ca, timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

export function useExistingCluster(): boolean {
  return /^(1|true|yes)$/i.test(process.env.USE_EXISTING_CLUSTER ?? '');
}

export async function startKube(workDir: string, etcdEndpoint: string): Promise<KubeInstance> {
  const found = await binaries('kube');
  if (useExistingCluster()) {
    const kubeconfig = process.env.KUBECONFIG ?? join(process.env.HOME ?? '/root', '.kube', 'config');
    const server = /server:\s*(\S+)/.exec(readFileSync(kubeconfig, 'utf8'))?.[1] ?? '';
    return {
      url: server, kubeconfig, kubectl: found.kubectl!, existing: true,
      kubeconfigFor: () => { throw new Error('kubeconfigFor needs the local API server (USE_EXISTING_CLUSTER is set)'); },
    };
  }
  const pki: Pki = createPki(join(workDir, 'pki'));
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  const proc = spawnManaged('kube-apiserver', found['kube-apiserver']!, [
    `--etcd-servers=${etcdEndpoint}`,
    `--cert-dir=${pki.dir}`,
    `--tls-cert-file=${pki.servingCert}`,
    `--tls-private-key-file=${pki.servingKey}`,
    `--client-ca-file=${pki.caCert}`,
    `--secure-port=${port}`,
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    '--service-cluster-ip-range=10.0.0.0/24',
    '--allow-privileged=true',
    '--disable-admission-plugins=ServiceAccount',
    '--authorization-mode=RBAC',
    '--service-account-issuer=https://127.0.0.1/',
    `--service-account-key-file=${pki.serviceAccountPub}`,
    `--service-account-signing-key-file=${pki.serviceAccountKey}`,
    '--enable-priority-and-fairness=false',
    '--v=0',
  ], join(workDir, 'kube-apiserver.log'));
  const ca = readFileSync(pki.caCert);
  await waitHealthy(proc, () => readyz(url, ca), 90_000);

  const kubeconfigFor = (user: string, groups: string[]): string => {
    const { cert, key } = createClientCert(pki, user, groups);
    const file = join(workDir, `kubeconfig-${user.replace(/[^a-zA-Z0-9-]/g, '_')}`);
    writeFileSync(file, kubeconfigYaml(url, pki.caCert, cert, key, user), { mode: 0o600 });
    return file;
  };
  return { url, kubeconfig: kubeconfigFor('admin', ['system:masters']), kubectl: found.kubectl!, kubeconfigFor, process: proc, existing: false, pki };
}
