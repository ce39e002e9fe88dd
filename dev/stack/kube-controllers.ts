// The real kube-controller-manager and kube-scheduler for a local API server:
// Deployments get ReplicaSets and Pods, Pods get a node (KWOK's), garbage
// collection and namespace deletion work, as in a real cluster.
import { request } from 'node:https';
import { join } from 'node:path';
import { binaries } from './binaries.ts';
import type { KubeInstance } from './kube.ts';
import { freePort, spawnManaged, waitHealthy, type ManagedProcess } from './process.ts';

export interface KubeControllers {
  controllerManager: ManagedProcess;
  scheduler: ManagedProcess;
}

/** GET over TLS without verifying the self-signed serving certificate both generate in memory. */
export function httpsOkInsecure(url: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const req = request(url, { rejectUnauthorized: false, timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

export async function startKubeControllers(workDir: string, kube: KubeInstance): Promise<KubeControllers> {
  if (!kube.pki) throw new Error('kube-controller-manager needs the local API server\'s keys (not an existing cluster)');
  const found = await binaries('kube-controllers');
  const [kcmPort, schedulerPort] = [await freePort(), await freePort()];
  const controllerManager = spawnManaged('kube-controller-manager', found['kube-controller-manager']!, [
    `--kubeconfig=${kube.kubeconfig}`,
    '--bind-address=127.0.0.1',
    `--secure-port=${kcmPort}`,
    // Tokens for ServiceAccounts, the CA in every namespace's kube-root-ca.crt,
    // and CSR signing, all from the API server's own PKI.
    `--service-account-private-key-file=${kube.pki.serviceAccountKey}`,
    `--root-ca-file=${kube.pki.caCert}`,
    `--cluster-signing-cert-file=${kube.pki.caCert}`,
    `--cluster-signing-key-file=${kube.pki.caKey}`,
    // All controllers; it leaves out the cloud ones by itself.
    '--controllers=*',
    '--use-service-account-credentials=false',
    '--leader-elect=false',
    '--v=0',
  ], join(workDir, 'kube-controller-manager.log'));
  const scheduler = spawnManaged('kube-scheduler', found['kube-scheduler']!, [
    `--kubeconfig=${kube.kubeconfig}`,
    '--bind-address=127.0.0.1',
    `--secure-port=${schedulerPort}`,
    '--leader-elect=false',
    '--v=0',
  ], join(workDir, 'kube-scheduler.log'));
  const started = await Promise.allSettled([
    waitHealthy(controllerManager, () => httpsOkInsecure(`https://127.0.0.1:${kcmPort}/healthz`), 60_000),
    waitHealthy(scheduler, () => httpsOkInsecure(`https://127.0.0.1:${schedulerPort}/healthz`), 60_000),
  ]);
  const failed = started.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed.length > 0) {
    await Promise.allSettled([controllerManager.stop(), scheduler.stop()]);
    throw new Error(failed.map((f) => (f.reason as Error).message).join('\n'));
  }
  return { controllerManager, scheduler };
}
