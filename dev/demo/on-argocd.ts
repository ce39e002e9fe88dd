// The demo on real Argo CD (the default): Argo CD 3.6's repo server and
// application controller sync the GitHub simulator's repository (served by a
// git daemon, so what the rollback PR merges is what Argo CD clones) onto a
// cluster of its own, where kube-controller-manager rolls Deployments out as
// ReplicaSets and KWOK plays the kubelet: the bad release's pods crash-loop
// (their pod template carries the broken label, kwok-stages.yaml). The
// manifests keep the default progressDeadlineSeconds (600 s), as most do: Argo
// CD reports the app Progressing for ten minutes, and the operator reads the
// new ReplicaSet's pods instead (issue 21).
// Nothing is backdated: v1..v3 are deployed by Argo CD as the demo starts, and
// the uptime of each comes from Argo CD's own argocd_app_info, which the
// stack's Prometheus scrapes every 2 s.
import { APP_RESYNC_SECONDS, REVISION_CACHE_EXPIRATION } from '../stack/argocd.ts';
import { BROKEN_RELEASE, TEST_RELEASE_LABEL } from '../stack/kwok.ts';
import { kubectlOk, type KubectlTarget } from '../stack/kubectl.ts';
import { APPS, RELEASES, REPO, say, show, type DemoMode } from './story.ts';

/** How long the last good release runs before the bad one is pushed. */
const V3_RUNS_MS = 30_000;

function deployment(app: string, image: string, broken = false): string {
  return [
    'apiVersion: apps/v1', 'kind: Deployment', 'metadata:', `  name: ${app}`, `  namespace: ${app}`,
    // No progressDeadlineSeconds: the API server's default, 600 s.
    'spec:', '  replicas: 3', '  selector:', '    matchLabels:', `      app: ${app}`,
    '  template:', '    metadata:', '      labels:', `        app: ${app}`,
    // What a bad image or config would do to the pods, said to KWOK.
    ...(broken ? [`        ${TEST_RELEASE_LABEL}: ${BROKEN_RELEASE}`] : []),
    '    spec:', '      containers:', `        - name: ${app}`, `          image: registry.example.com/${app}:${image}`, '',
  ].join('\n');
}

interface AppStatus {
  sync?: { status?: string; revision?: string };
  health?: { status?: string; message?: string };
  history?: Array<{ id: number; revision: string; deployedAt: string }>;
}

async function statuses(kube: KubectlTarget): Promise<Map<string, AppStatus>> {
  const list = JSON.parse(await kubectlOk(kube, ['get', 'applications', '-n', 'argocd', '-o', 'json'])) as { items: Array<{ metadata: { name: string }; status?: AppStatus }> };
  return new Map(list.items.map((item) => [item.metadata.name, item.status ?? {}]));
}

async function until(what: string, done: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

export const onArgoCd: DemoMode = {
  intro: 'Starting the local stack (etcd, kube-apiserver, NATS JetStream, Prometheus, Elasticsearch) and the real GitOps loop on a cluster of its own: '
    + 'etcd, kube-apiserver, kube-controller-manager, kube-scheduler, KWOK with one fake node, redis, a git daemon, and Argo CD 3.6 (repo server and application controller)',
  stackOptions: () => ({ argocd: {} }),
  upNote: (stack) => `the GitOps cluster and Argo CD were up ${(stack.argocd!.startupMs / 1000).toFixed(1)} s after their start; `
    + `Argo CD re-reads each app every ${APP_RESYNC_SECONDS} s and trusts a branch's resolved revision for ${REVISION_CACHE_EXPIRATION}`,
  githubRoot: (stack) => stack.argocd!.git.root,
  async deploy({ stack, push }) {
    const cluster = stack.argocd!;
    const kube: KubectlTarget = cluster.kube;
    // The GitOps cluster comes with the operator's CRDs and Argo CD's namespace.
    for (const { name } of APPS) await kubectlOk(kube, ['create', 'namespace', name]);

    const repoURL = `${cluster.git.url}/${REPO.owner}/${REPO.repo}.git`;
    say(`Releases v1, v2, v3, each deployed by real Argo CD from ${repoURL} before the next (the demo asks Argo CD to refresh instead of waiting for its poll)`);
    let lastDeployed = 0;
    for (const version of RELEASES) {
      const started = Date.now();
      const files = Object.fromEntries(APPS.map(({ name }) => [`apps/${name}/deployment.yaml`, deployment(name, version)]));
      const sha = await push(files, `Release ${version}`, 'carol');
      for (const { name, environment } of APPS) {
        if (version === RELEASES[0]) {
          await kubectlOk(kube, ['apply', '-f', '-'], JSON.stringify({
            apiVersion: 'argoproj.io/v1alpha1', kind: 'Application',
            metadata: { name, namespace: 'argocd', labels: { 'ai-operator.enabled': 'true', environment } },
            spec: { project: 'default', source: { repoURL, path: `apps/${name}`, targetRevision: 'main' }, destination: { server: 'https://kubernetes.default.svc', namespace: name }, syncPolicy: { automated: {} } },
          }));
        } else {
          await kubectlOk(kube, ['annotate', '--overwrite', 'application', name, '-n', 'argocd', 'argocd.argoproj.io/refresh=hard']);
        }
      }
      await until(`${version} Synced and Healthy`, async () => {
        const all = await statuses(kube);
        return APPS.every(({ name }) => all.get(name)?.sync?.revision === sha && all.get(name)?.sync?.status === 'Synced' && all.get(name)?.health?.status === 'Healthy');
      }, 180_000);
      lastDeployed = Date.now();
      process.stdout.write(`  ${version} ${sha.slice(0, 7)}: synced, rolled out, Healthy ${((lastDeployed - started) / 1000).toFixed(1)} s after the push\n`);
    }
    show('kubectl get applications -n argocd', await kubectlOk(kube, ['get', 'applications', '-n', 'argocd']));
    const historyPath = '{range .status.history[*]}{.id}{"  "}{.revision}{"  "}{.deployedAt}{"\\n"}{end}';
    show(`kubectl get application ${APPS[0].name} -n argocd -o jsonpath='${historyPath}'`,
      await kubectlOk(kube, ['get', 'application', APPS[0].name, '-n', 'argocd', '-o', `jsonpath=${historyPath}`]));

    return {
      kube,
      prometheusUrl: stack.prometheus.url,
      // Each release here was deployed seconds ago, and its first seconds Progressing (its
      // rollout) are not Healthy: over so short a window 99 % would reject every release.
      candidate: { minUptime: 0.8, window: '24h' },
      // v3 then has about 30 s of Healthy behind it, so a slow rollout of a few seconds stays within the 80 %.
      badPushNotBefore: lastDeployed + V3_RUNS_MS,
      broken: (app) => deployment(app, 'v4', true),
      brokenNote: 'Argo CD syncs it; the new ReplicaSet\'s pods crash-loop. With the default progressDeadlineSeconds (600 s) Argo CD will say Progressing '
        + 'for ten minutes: the operator reads the pods of the current revision instead',
      async showDegraded(app) {
        show(`kubectl get deployments,replicasets,pods -n ${app}`, await kubectlOk(kube, ['get', 'deployments,replicasets,pods', '-n', app]));
      },
      async showEnd() {
        show('kubectl get applications -n argocd', await kubectlOk(kube, ['get', 'applications', '-n', 'argocd']));
        for (const { name } of APPS) show(`kubectl get pods -n ${name}`, await kubectlOk(kube, ['get', 'pods', '-n', name]));
      },
    };
  },
};
