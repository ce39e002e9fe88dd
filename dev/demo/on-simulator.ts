// The demo on the Argo CD simulator (`make demo SIM=1`): no Argo CD to build,
// so it starts in seconds. The releases' history is backdated (v1 72 h ago, v2
// 48 h ago, v3 24 h ago) with 72 h of argocd_app_info backfilled into
// Prometheus, and the simulator marks a Deployment annotated broken Degraded.
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { BROKEN_ANNOTATION, startArgoCdSim } from '../argocd-sim/index.ts';
import { endpointsOf, type Sample } from '../stack/index.ts';
import { installCrds, kubectlOk } from '../stack/kubectl.ts';
import { APPS, HOUR, RELEASES, REPO, say, type DemoMode } from './story.ts';

function deployment(app: string, image: string, broken = false): string {
  return [
    'apiVersion: apps/v1', 'kind: Deployment', 'metadata:', `  name: ${app}`, `  namespace: ${app}`,
    ...(broken ? ['  annotations:', `    ${BROKEN_ANNOTATION}: "true"`] : []),
    'spec:', '  replicas: 3', '  selector:', '    matchLabels:', `      app: ${app}`, '  template:', '    metadata:', '      labels:', `        app: ${app}`,
    '    spec:', '      containers:', `        - name: ${app}`, `          image: registry.example.com/${app}:${image}`, '',
  ].join('\n');
}

/** 72 h of argocd_app_info, one sample a minute: v1 and v3 solid, v2 flaky. */
function history(now: number): Sample[] {
  const samples: Sample[] = [];
  for (const { name } of APPS) {
    for (let at = now - 72 * HOUR; at < now - 2 * HOUR; at += 60) {
      const inV2 = at >= now - 48 * HOUR && at < now - 24 * HOUR;
      const healthy = inV2 ? at % 1200 >= 120 : at % 86_400 !== 0; // v2: 10 % Degraded
      samples.push({ metric: 'argocd_app_info', labels: { name, namespace: 'argocd', project: 'default', health_status: healthy ? 'Healthy' : 'Degraded', sync_status: 'Synced' }, value: 1, at });
    }
  }
  return samples;
}

const HOURS_AGO: Record<(typeof RELEASES)[number], number> = { v1: 72, v2: 48, v3: 24 };

export const onSimulator: DemoMode = {
  intro: 'Starting the local stack (etcd, kube-apiserver, NATS JetStream, Prometheus with 72 h of history, Elasticsearch); Argo CD is the simulator',
  stackOptions: (now) => ({ prometheusHistory: history(now) }),
  githubRoot: () => undefined,
  async deploy({ stack, github, now, push, onStop }) {
    const endpoints = endpointsOf(stack);
    await installCrds(endpoints);
    await kubectlOk(endpoints, ['create', 'namespace', 'argocd']);
    for (const { name } of APPS) await kubectlOk(endpoints, ['create', 'namespace', name]);

    const revisions: Record<string, string> = {};
    for (const version of RELEASES) {
      const files = Object.fromEntries(APPS.map(({ name }) => [`apps/${name}/deployment.yaml`, deployment(name, version)]));
      revisions[version] = await push(files, `Release ${version}`, 'carol', new Date((now - HOURS_AGO[version] * HOUR) * 1000));
    }

    say('Creating the Argo CD Applications (history: v1 72 h ago, v2 48 h ago, v3 24 h ago) and the Argo CD simulator');
    const kc = new KubeConfig();
    kc.loadFromFile(endpoints.kubeconfig);
    const api = kc.makeApiClient(CustomObjectsApi);
    for (const { name, environment } of APPS) {
      await api.createNamespacedCustomObject({ group: 'argoproj.io', version: 'v1alpha1', namespace: 'argocd', plural: 'applications', body: {
        apiVersion: 'argoproj.io/v1alpha1', kind: 'Application',
        metadata: { name, namespace: 'argocd', labels: { 'ai-operator.enabled': 'true', environment } },
        spec: { project: 'default', source: { repoURL: `https://github.com/${REPO.owner}/${REPO.repo}.git`, path: `apps/${name}`, targetRevision: 'main' }, destination: { server: 'https://kubernetes.default.svc', namespace: name }, syncPolicy: { automated: {} } },
      } });
      const deployed = (version: (typeof RELEASES)[number], id: number) => {
        const at = new Date((now - HOURS_AGO[version] * HOUR) * 1000).toISOString();
        return { id, revision: revisions[version], deployedAt: at, deployStartedAt: at };
      };
      await api.patchNamespacedCustomObjectStatus({ group: 'argoproj.io', version: 'v1alpha1', namespace: 'argocd', plural: 'applications', name, body: {
        status: { sync: { status: 'Synced', revision: revisions.v3 }, health: { status: 'Healthy' }, history: [deployed('v1', 0), deployed('v2', 1), deployed('v3', 2)] },
      } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    }
    const argocd = await startArgoCdSim({ kubeConfig: kc, repoRoot: github.root, intervalMs: 1000, namespaces: ['argocd'] });
    onStop(() => argocd.stop());
    await argocd.syncNow();

    return {
      kube: endpoints,
      prometheusUrl: endpoints.prometheus,
      candidate: { minUptime: 0.99, window: '24h' },
      broken: (app) => deployment(app, 'v4', true),
      brokenNote: 'Argo CD syncs it, the Deployments fall short of replicas',
    };
  },
};
