// KWOK (kubernetes-sigs' kubelet stand-in) with one fake Node: pods scheduled
// onto it get their status from the Stages in kwok-stages.yaml — Ready, or a
// crash loop for a release labelled broken (see that file).
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { binaries } from './binaries.ts';
import type { KubeInstance } from './kube.ts';
import { kubectl, kubectlOk } from './kubectl.ts';
import { freePort, httpOk, spawnManaged, waitHealthy, type ManagedProcess } from './process.ts';

export const KWOK_STAGES = fileURLToPath(new URL('./kwok-stages.yaml', import.meta.url));
/** The pod-template label that marks a release bad, and its values (kwok-stages.yaml). */
export const TEST_RELEASE_LABEL = 'ai-operator.io/test-release';
export const BROKEN_RELEASE = 'broken';
export const FLAKY_RELEASE = 'flaky';
/** Issue 21's releases (kwok-stages.yaml): crash twice then run; an image that cannot be pulled; a slow pull (its test-recover-after-ms, 80 s by default). */
export const CRASH_TWICE_RELEASE = 'crash-twice';
export const UNPULLABLE_RELEASE = 'unpullable';
export const SLOW_RELEASE = 'slow';
/** On a flaky pod: how long it crash-loops before it becomes Ready (10 s by default); on a slow pod, how long it pulls (80 s by default). */
export const RECOVER_AFTER_ANNOTATION = 'ai-operator.io/test-recover-after-ms';
export const KWOK_NODE = 'kwok-node-0';

export interface KwokInstance {
  node: string;
  process: ManagedProcess;
}

// The annotation is what this kwok manages; nothing else would schedule here
// on a real cluster, but on the stack's own cluster this is the only node.
const nodeManifest = (name: string) => JSON.stringify({
  apiVersion: 'v1', kind: 'Node',
  metadata: {
    name,
    annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
    labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64', type: 'kwok' },
  },
  spec: {},
});

async function nodeSchedulable(kube: KubeInstance, name: string): Promise<boolean> {
  const result = await kubectl(kube, ['get', 'node', name, '-o', 'json']);
  if (result.code !== 0) return false;
  const node = JSON.parse(result.stdout) as { spec?: { taints?: unknown[] }; status?: { conditions?: Array<{ type: string; status: string }> } };
  const ready = node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
  // kube-controller-manager taints a node not-ready until it saw it Ready.
  return ready && (node.spec?.taints ?? []).length === 0;
}

/** Needs kube-controller-manager running for the node to lose its not-ready taint. */
export async function startKwok(workDir: string, kube: KubeInstance): Promise<KwokInstance> {
  const { kwok } = await binaries('kwok');
  await kubectlOk(kube, ['apply', '-f', '-'], nodeManifest(KWOK_NODE));
  const port = await freePort();
  const proc = spawnManaged('kwok', kwok!, [
    `--kubeconfig=${kube.kubeconfig}`,
    `--config=${KWOK_STAGES}`,
    '--manage-all-nodes=false',
    '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
    // Its default pod CIDR (10.0.0.1/24) overlaps the API server's service range.
    '--cidr=10.244.0.0/16',
    '--node-ip=10.244.0.1',
    // Heartbeat through a Lease: the status heartbeat's jitter came close to
    // kube-controller-manager's node-monitor grace period (a NotReady node
    // makes every Deployment on it look Degraded).
    '--node-lease-duration-seconds=40',
    `--server-address=127.0.0.1:${port}`,
  ], join(workDir, 'kwok.log'));
  await waitHealthy(proc, async () => await httpOk(`http://127.0.0.1:${port}/healthz`) && await nodeSchedulable(kube, KWOK_NODE), 60_000);
  return { node: KWOK_NODE, process: proc };
}
