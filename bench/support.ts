// What bench/run.ts (`make bench`) and bench/soak.ts share: the GitHub simulator
// in its own process, the Argo CD and Deployment statuses the harness writes as
// Argo CD and kube-controller-manager would, the Applications, the operator
// process, and reading /proc and /metrics.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request, type RequestOptions } from 'node:https';
import { createInterface } from 'node:readline';
import { AppsV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { StackEndpoints } from '../dev/stack/index.ts';

export const name = (i: number) => `app-${String(i).padStart(5, '0')}`;

export async function metricSum(text: Promise<string>, metric: string): Promise<number> {
  let sum = 0;
  for (const line of (await text).split('\n')) {
    if (line.startsWith(`${metric}{`) || line.startsWith(`${metric} `)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

export async function apiserverMetrics(kc: KubeConfig, url: string): Promise<string> {
  const options: RequestOptions = {};
  await kc.applyToHTTPSOptions(options);
  return new Promise((resolve, reject) => {
    request(`${url}/metrics`, options, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c)).on('end', () => resolve(body));
    }).on('error', reject).end();
  });
}

export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks of 1/100 s
}

export function peakRssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmHWM:'))!;
  return Number(line.replace(/\D+/g, '')) / 1024;
}

/** The resident set now (VmRSS), in MiB. */
export function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'))!;
  return Number(line.replace(/\D+/g, '')) / 1024;
}

// Argo CD's entry for the app's Deployment in status.resources (its namespace is the app's destination).
export const deploymentResource = (app: string, health: { status: string; message?: string }) => (
  { group: 'apps', version: 'v1', kind: 'Deployment', namespace: app, name: app, status: 'Synced', health }
);

/** A 2-replica Deployment of the default strategy, as Git declares it. */
export const deployment = (app: string) => ({
  apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: app, namespace: app, labels: { 'app.kubernetes.io/instance': app } },
  spec: {
    replicas: 2, selector: { matchLabels: { app } },
    template: { metadata: { labels: { app } }, spec: { containers: [{ name: 'web', image: 'registry.example/web:v2' }] } },
  },
});

const condition = (type: string, status: string, reason: string, message: string, at: string) => ({ type, status, reason, message, lastUpdateTime: at, lastTransitionTime: at });

/** The status kube-controller-manager writes once a rollout finished. */
export const rolledOut = (app: string, at: string) => ({
  observedGeneration: 1, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2,
  conditions: [
    condition('Available', 'True', 'MinimumReplicasAvailable', 'Deployment has minimum availability.', at),
    condition('Progressing', 'True', 'NewReplicaSetAvailable', `ReplicaSet "${app}-5d8f7c9b64" has successfully progressed.`, at),
  ],
});

/**
 * Where it leaves a release whose pods never become ready under the default
 * RollingUpdate of 2 replicas: 25 % surge rounds up to one new pod, 25 %
 * unavailable down to none, so the old ReplicaSet keeps both of its pods.
 */
export const stuckRollout = (app: string, at: string) => ({
  observedGeneration: 1, replicas: 3, updatedReplicas: 1, readyReplicas: 2, availableReplicas: 2, unavailableReplicas: 1,
  conditions: [
    condition('Available', 'True', 'MinimumReplicasAvailable', 'Deployment has minimum availability.', at),
    condition('Progressing', 'False', 'ProgressDeadlineExceeded', `ReplicaSet "${app}-7c6b9f8d5" has timed out progressing.`, at),
  ],
});

/** The simulator in its own process, driven through its control API (POST /_sim/<method>). */
export async function startSimProcess(): Promise<{ url: string; child: ChildProcess; control<T = unknown>(method: string, arg?: unknown): Promise<T> }> {
  const child = spawn(process.execPath, [new URL('../dev/github-sim/main.ts', import.meta.url).pathname, '--no-validate', '--rate-limit', '1000000'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const first = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`the GitHub simulator exited (${code})`)));
  });
  const { url } = JSON.parse(first) as { url: string };
  return {
    url, child,
    control: async <T>(method: string, arg?: unknown) => {
      const res = await fetch(`${url}/_sim/${method}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(arg ?? {}) });
      if (!res.ok) throw new Error(`simulator ${method}: ${res.status} ${await res.text()}`);
      return await res.json() as T;
    },
  };
}

export type SimProcess = Awaited<ReturnType<typeof startSimProcess>>;
export const REPO = { owner: 'acme', repo: 'gitops' };

/** The operator's GitHub user, and the GitOps repository: the first `paths` apps' paths at a good release (CI green), then a bad one. */
export async function gitopsRepo(sim: SimProcess, paths: number): Promise<{ token: string; good: string; bad: string }> {
  const { token } = await sim.control<{ token: string }>('addUser', { login: 'ai-operator-bot' });
  await sim.control('createRepo', { ...REPO, files: { 'README.md': '# GitOps\n' }, message: 'Initial commit' });
  const files = (tag: string) => Object.fromEntries(Array.from({ length: paths }, (_, i) => [`apps/${name(i)}/deployment.yaml`, `image: ${tag}\n`]));
  const { sha: good } = await sim.control<{ sha: string }>('push', { ...REPO, files: files('v1'), message: 'Release v1' });
  const { sha: bad } = await sim.control<{ sha: string }>('push', { ...REPO, files: files('v2'), message: 'Release v2 (broken)' });
  await sim.control('setStatus', { ...REPO, sha: good, state: 'success', context: 'ci/build' });
  return { token, good, bad };
}

export interface BenchCluster {
  kc: KubeConfig;
  api: CustomObjectsApi;
  apps: AppsV1Api;
  core: CoreV1Api;
  mergePatch: ReturnType<typeof setHeaderOptions>;
}

export function benchCluster(endpoints: StackEndpoints): BenchCluster {
  const kc = new KubeConfig();
  kc.loadFromFile(endpoints.kubeconfig);
  return { kc, api: kc.makeApiClient(CustomObjectsApi), apps: kc.makeApiClient(AppsV1Api), core: kc.makeApiClient(CoreV1Api), mergePatch: setHeaderOptions('Content-Type', PatchStrategy.MergePatch) };
}

/**
 * `count` staging Applications, Healthy on `bad` after `good`, each listing its
 * Deployment; the first `withDeployments` also get their namespace and a
 * rolled-out Deployment in the cluster (the ones that will degrade).
 */
export async function createApps(cluster: BenchCluster, count: number, withDeployments: number, good: string, bad: string): Promise<void> {
  const { api, apps, core, mergePatch } = cluster;
  const deployedAt = new Date(Date.now() - 24 * 3600_000).toISOString();
  const batch = 50;
  for (let from = 0; from < count; from += batch) {
    await Promise.all(Array.from({ length: Math.min(batch, count - from) }, async (_, k) => {
      const app = name(from + k);
      if (from + k < withDeployments) {
        await core.createNamespace({ body: { metadata: { name: app } } });
        await apps.createNamespacedDeployment({ namespace: app, body: deployment(app) });
        await apps.patchNamespacedDeploymentStatus({ namespace: app, name: app, body: { status: rolledOut(app, deployedAt) } }, mergePatch);
      }
      await api.createNamespacedCustomObject({ group: 'argoproj.io', version: 'v1alpha1', namespace: 'argocd', plural: 'applications', body: {
        apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name: app, namespace: 'argocd', labels: { 'ai-operator.enabled': 'true', environment: 'staging' } },
        spec: { project: 'default', source: { repoURL: 'https://github.com/acme/gitops.git', path: `apps/${app}`, targetRevision: 'main' }, destination: { server: 'https://kubernetes.default.svc', namespace: app } },
      } });
      await api.patchNamespacedCustomObjectStatus({ group: 'argoproj.io', version: 'v1alpha1', namespace: 'argocd', plural: 'applications', name: app, body: {
        status: {
          health: { status: 'Healthy' }, sync: { status: 'Synced', revision: bad },
          history: [{ id: 0, revision: good, deployedAt }, { id: 1, revision: bad, deployedAt: new Date().toISOString() }],
          resources: [deploymentResource(app, { status: 'Healthy' })],
        },
      } }, mergePatch);
    }));
  }
}

/** The rollout of `app` stalls, as kube-controller-manager leaves a release whose pods never become ready. */
export async function stall(cluster: BenchCluster, app: string, at: string): Promise<void> {
  await cluster.apps.patchNamespacedDeploymentStatus({ namespace: app, name: app, body: { status: stuckRollout(app, at) } }, cluster.mergePatch);
}

/** Argo CD reports what it reads of a stalled rollout: the app Degraded. */
export async function reportDegraded(cluster: BenchCluster, app: string): Promise<void> {
  await cluster.api.patchNamespacedCustomObjectStatus({ group: 'argoproj.io', version: 'v1alpha1', namespace: 'argocd', plural: 'applications', name: app, body: { status: {
    health: { status: 'Degraded' },
    resources: [deploymentResource(app, { status: 'Degraded', message: `Deployment "${app}" exceeded its progress deadline` })],
  } } }, cluster.mergePatch);
}

/** Turns `app` Degraded: its rollout stalls, then Argo CD reports it. */
export async function degrade(cluster: BenchCluster, app: string): Promise<void> {
  await stall(cluster, app, new Date().toISOString());
  await reportDegraded(cluster, app);
}

/** The operator (src/main.ts) on the stack, against the simulator, every 10 s; resolves once it is ready. */
export async function startOperator(endpoints: StackEndpoints, options: { github: string; token: string; auditDir: string; httpPort: number; env?: Record<string, string>; execArgv?: string[] }): Promise<ChildProcess> {
  const operator = spawn(process.execPath, [...(options.execArgv ?? []), new URL('../src/main.ts', import.meta.url).pathname], {
    env: {
      PATH: process.env.PATH, KUBECONFIG: endpoints.kubeconfig, ETCD_ENDPOINTS: endpoints.etcd, NATS_URL: endpoints.nats,
      PROMETHEUS_URL: endpoints.prometheus, ELASTICSEARCH_URL: endpoints.elasticsearch, GITHUB_API_URL: options.github,
      GITHUB_ORG: 'acme', GITHUB_TOKEN: options.token, AUDIT_FALLBACK_DIR: options.auditDir, HTTP_PORT: String(options.httpPort),
      POLL_INTERVAL_SEC: '10', LOG_LEVEL: 'WARN', ...options.env,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  for (;;) {
    if (operator.exitCode !== null) throw new Error(`the operator exited (${operator.exitCode}) before it was ready`);
    const ready = await fetch(`http://127.0.0.1:${options.httpPort}/readyz`).then((r) => r.ok, () => false);
    if (ready) return operator;
    await new Promise((r) => setTimeout(r, 500));
  }
}
