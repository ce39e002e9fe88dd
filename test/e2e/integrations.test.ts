// The real integrations on the real stack: the Argo CD watcher and the cluster
// reader against kube-apiserver, the Argo CD simulator syncing commits from a
// real bare git repository, and the Prometheus port against real Prometheus
// servers with backfilled history.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { AppsV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions, type RequestContext } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startArgoCdSim, type ArgoCdSim } from '../../dev/argocd-sim/index.ts';
import { startPrometheus, type PrometheusInstance, type Sample } from '../../dev/stack/prometheus.ts';
import { ArgoCdWatcher } from '../../src/integrations/argocd.ts';
import { ClusterReader } from '../../src/integrations/kubernetes.ts';
import { PrometheusHistory } from '../../src/integrations/prometheus.ts';
import { DEFAULT_UPTIME_QUERY } from '../../src/config.ts';
import { renderUptimeQuery } from '../../src/modules/candidate-resolver.ts';
import { createLogger } from '../../src/observability/log.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import type { ApplicationView } from '../../src/ports/argocd.ts';
import { HISTORY_APP, HISTORY_NAMESPACE } from './fixtures/history.ts';
import { freshNamespace, kubeConfig, kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';

const stack = inject('stack');
const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const APP = { group: 'argoproj.io', version: 'v1alpha1', plural: 'applications' } as const;
const FAST = { backoffMs: [50, 100, 200], restartBackoffMs: { initial: 200, max: 1000 } } as const;

/** A KubeConfig that records every request it authenticates: list, get, watch alike. */
class CountingKubeConfig extends KubeConfig {
  readonly requests: string[] = [];
  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    this.requests.push(`${context.getHttpMethod()} ${context.getUrl()}`);
    await super.applySecurityAuthentication(context);
  }
}

function countingKubeConfig(server?: string): CountingKubeConfig {
  const base = kubeConfig(stack);
  const kc = new CountingKubeConfig();
  kc.loadFromOptions({
    clusters: base.clusters.map((c) => ({ ...c, server: server ?? c.server })),
    users: base.users, contexts: base.contexts, currentContext: base.currentContext,
  });
  return kc;
}

/** A TCP proxy in front of the API server that a test can cut, to break the watcher's watch for real. */
async function cuttableProxy(target: URL): Promise<{ url: string; cut(): void; restore(): void; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let open = true;
  const server: Server = createServer((client) => {
    if (!open) return void client.destroy();
    const remote = connect(Number(target.port), target.hostname);
    for (const s of [client, remote]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => s.destroy());
    }
    client.pipe(remote).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as { port: number }).port;
  return {
    url: `https://127.0.0.1:${port}`,
    cut() {
      open = false;
      for (const s of sockets) s.destroy();
    },
    restore() { open = true; },
    close: () => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }),
  };
}

function logSink() {
  const lines: Array<Record<string, unknown>> = [];
  return { lines, log: createLogger('DEBUG', {}, (line) => lines.push(JSON.parse(line) as Record<string, unknown>)) };
}

async function createApplication(namespace: string, name: string, spec: Record<string, unknown>, status?: Record<string, unknown>, labels: Record<string, string> = {}) {
  const api = kubeConfig(stack).makeApiClient(CustomObjectsApi);
  await api.createNamespacedCustomObject({ ...APP, namespace, body: { apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name, namespace, labels }, spec } });
  if (status) await patchStatus(namespace, name, status);
}

async function patchStatus(namespace: string, name: string, status: Record<string, unknown>) {
  const api = kubeConfig(stack).makeApiClient(CustomObjectsApi);
  await api.patchNamespacedCustomObjectStatus({ ...APP, namespace, name, body: { status } }, merge);
}

const source = { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/payment', targetRevision: 'main' };

describe('ArgoCdWatcher on the real API server', () => {
  let namespace: string;
  beforeAll(async () => {
    namespace = await freshNamespace(stack, 'argocd-watch');
    // Given a Degraded Application with two deployments in its history, and a Healthy one.
    await createApplication(namespace, 'payment-service', { project: 'default', source, destination: { namespace: 'payments' } }, {
      health: { status: 'Degraded', message: 'Deployment "api" exceeded its progress deadline' },
      sync: { status: 'Synced', revision: 'b'.repeat(40) },
      history: [
        { id: 0, revision: 'a'.repeat(40), deployedAt: '2026-01-01T00:00:00Z', deployStartedAt: '2026-01-01T00:00:00Z' },
        { id: 1, revision: 'b'.repeat(40), deployedAt: '2026-01-02T00:00:00Z', deployStartedAt: '2026-01-02T00:00:00Z' },
      ],
      resources: [{ group: 'apps', version: 'v1', kind: 'Deployment', namespace: 'payments', name: 'api', status: 'Synced', health: { status: 'Degraded' } }],
    }, { 'ai-operator.enabled': 'true', environment: 'staging' });
    await createApplication(namespace, 'orders', { project: 'default', sources: [{ ...source, path: 'apps/orders' }], destination: { namespace: 'orders' } }, {
      health: { status: 'Healthy' }, sync: { status: 'Synced', revision: 'c'.repeat(40) },
    });
  });

  it('lists the Applications and reads health, revision, history, resources and source from their status', async () => {
    const kc = countingKubeConfig();
    const watcher = new ArgoCdWatcher({ kubeConfig: kc, log: createLogger('ERROR'), namespaces: [namespace], ...FAST });
    try {
      // When the watcher starts
      await watcher.start();
      await watcher.synced();
      expect(watcher.isSynced()).toBe(true);

      // Then it knows both Applications as Argo CD described them
      const apps = await watcher.listApplications();
      expect(apps.map((a) => a.ref.name).sort()).toEqual(['orders', 'payment-service']);
      const payment = await watcher.getApplication({ namespace, name: 'payment-service' });
      expect(payment).toEqual({
        ref: { namespace, name: 'payment-service' },
        labels: { 'ai-operator.enabled': 'true', environment: 'staging' },
        health: 'Degraded',
        syncRevision: 'b'.repeat(40),
        // Argo CD's UI lists an Application's Events by it.
        uid: expect.any(String),
        history: [{ id: 0, revision: 'a'.repeat(40), deployedAt: '2026-01-01T00:00:00Z' }, { id: 1, revision: 'b'.repeat(40), deployedAt: '2026-01-02T00:00:00Z' }],
        resources: [{ group: 'apps', kind: 'Deployment', namespace: 'payments', name: 'api', health: 'Degraded' }],
        destinationNamespace: 'payments',
        source,
        // What the source set reads of the spec (issue 18 §1).
        rendered: { source },
      } satisfies ApplicationView);
      expect((await watcher.getApplication({ namespace, name: 'orders' }))?.source?.path).toBe('apps/orders');
      expect(await watcher.getApplicationSyncStatus({ namespace, name: 'orders' })).toEqual({ status: 'Synced', revision: 'c'.repeat(40) });

      // And a thousand health checks cost no API request: they read the cache
      const before = kc.requests.filter((r) => !r.includes('watch=true')).length;
      for (let i = 0; i < 1000; i++) {
        expect(await watcher.getApplicationHealth({ namespace, name: 'payment-service' })).toEqual({ status: 'Degraded', revision: 'b'.repeat(40) });
      }
      expect(kc.requests.filter((r) => !r.includes('watch=true')).length).toBe(before);
      expect(await watcher.getApplicationHealth({ namespace, name: 'no-such-app' })).toBeUndefined();
      // I2's read before a merge is not the cache: one GET of the Application each time.
      expect(await watcher.readApplicationHealth({ namespace, name: 'payment-service' })).toEqual({ status: 'Degraded', revision: 'b'.repeat(40) });
      expect(kc.requests.filter((r) => !r.includes('watch=true')).length).toBe(before + 1);
      expect(kc.requests.at(-1)).toContain(`/namespaces/${namespace}/applications/payment-service`);
    } finally {
      await watcher.stop();
    }
  });

  it('calls onChange when an Application\'s status changes, and not for changes the engine does not read', async () => {
    const watcher = new ArgoCdWatcher({ kubeConfig: kubeConfig(stack), log: createLogger('ERROR'), namespaces: [namespace], ...FAST });
    const changed: string[] = [];
    watcher.onChange((ref) => changed.push(`${ref.namespace}/${ref.name}`));
    try {
      await watcher.start();
      await watcher.synced();
      changed.length = 0;

      // When Argo CD only stamps reconciledAt, nobody is woken
      await patchStatus(namespace, 'orders', { reconciledAt: '2026-01-05T00:00:00Z' });
      // When Argo CD reports orders Degraded
      await patchStatus(namespace, 'orders', { health: { status: 'Degraded' } });

      // Then the listener hears of orders once, and the cache says Degraded
      await eventually('orders Degraded in the cache', async () => (await watcher.getApplicationHealth({ namespace, name: 'orders' }))?.status === 'Degraded', 10_000);
      expect(changed).toEqual([`${namespace}/orders`]);
      await patchStatus(namespace, 'orders', { health: { status: 'Healthy' } });
      await eventually('orders Healthy again', async () => changed.length === 2, 10_000);
    } finally {
      await watcher.stop();
    }
  });

  it('restarts a broken watch with backoff, relists, and catches up on what changed meanwhile', async () => {
    const proxy = await cuttableProxy(new URL(kubeConfig(stack).getCurrentCluster()!.server));
    const { lines, log } = logSink();
    const watcher = new ArgoCdWatcher({ kubeConfig: countingKubeConfig(proxy.url), log, namespaces: [namespace], ...FAST });
    const changed: string[] = [];
    watcher.onChange((ref) => changed.push(ref.name));
    try {
      await createApplication(namespace, 'short-lived', { project: 'default', source: { ...source, path: 'apps/short' }, destination: { namespace: 'x' } });
      await watcher.start();
      await watcher.synced();
      expect((await watcher.listApplications()).map((a) => a.ref.name)).toContain('short-lived');

      // Given the connection to the API server is cut
      proxy.cut();
      // When, while the watcher cannot see it, an Application turns Progressing and another is deleted
      await patchStatus(namespace, 'payment-service', { health: { status: 'Progressing' } });
      await kubeConfig(stack).makeApiClient(CustomObjectsApi).deleteNamespacedCustomObject({ ...APP, namespace, name: 'short-lived' });
      await eventually('a logged watch failure', async () => lines.some((l) => l.message === 'Application watch failed; restarting it'), 15_000);
      await new Promise((r) => setTimeout(r, 500));
      expect((await watcher.getApplication({ namespace, name: 'payment-service' }))?.health).toBe('Degraded');

      // And the connection comes back
      proxy.restore();

      // Then the watcher catches up: the change is seen and the deleted Application is gone
      await eventually('Progressing seen after the restart', async () => (await watcher.getApplication({ namespace, name: 'payment-service' }))?.health === 'Progressing', 20_000);
      await eventually('short-lived dropped', async () => !(await watcher.listApplications()).some((a) => a.ref.name === 'short-lived'), 5_000);
      expect(changed).toEqual(expect.arrayContaining(['payment-service', 'short-lived']));
      const failure = lines.find((l) => l.message === 'Application watch failed; restarting it');
      expect(failure).toMatchObject({ level: 'WARN', namespace, restartInMs: expect.any(Number) });

      // And the watch is live again: a later change arrives without another restart
      await patchStatus(namespace, 'payment-service', { health: { status: 'Degraded' } });
      await eventually('Degraded again', async () => (await watcher.getApplication({ namespace, name: 'payment-service' }))?.health === 'Degraded', 10_000);
    } finally {
      await watcher.stop();
      await proxy.close();
    }
  });

  it('relists periodically', async () => {
    const kc = countingKubeConfig();
    const watcher = new ArgoCdWatcher({ kubeConfig: kc, log: createLogger('ERROR'), namespaces: [namespace], relistIntervalMs: 300, ...FAST });
    try {
      await watcher.start();
      await watcher.synced();
      const lists = () => kc.requests.filter((r) => r.startsWith('GET') && !r.includes('watch=true') && r.includes('/applications')).length;
      expect(lists()).toBe(1);
      await eventually('two relists', async () => lists() >= 3, 5_000);
      expect((await watcher.listApplications()).map((a) => a.ref.name).sort()).toEqual(['orders', 'payment-service']);
    } finally {
      await watcher.stop();
    }
  });
});

describe('ClusterReader on the real API server', () => {
  let namespace: string;
  beforeAll(async () => {
    namespace = await freshNamespace(stack, 'cluster-read');
    const kc = kubeConfig(stack);
    const apps = kc.makeApiClient(AppsV1Api);
    const core = kc.makeApiClient(CoreV1Api);
    // Given two Deployments Argo CD applied for the app `shop` (its tracking id on each), whose status a controller
    // would have written: api's rollout stuck past its deadline, worker fine; and one of nobody's, stuck too
    for (const [name, replicas, updated, available, stuck] of [['api', 3, 1, 1, true], ['worker', undefined, 1, 1, false], ['stranger', 2, 0, 0, true]] as const) {
      const tracking = name === 'stranger' ? {} : { annotations: { 'argocd.argoproj.io/tracking-id': `shop:apps/Deployment:${namespace}/${name}` } };
      await apps.createNamespacedDeployment({ namespace, body: {
        metadata: { name, ...tracking },
        spec: { ...(replicas ? { replicas } : {}), selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'c', image: 'nginx' }] } } },
      } });
      await apps.patchNamespacedDeploymentStatus({ namespace, name, body: { status: {
        replicas: replicas ?? 1, updatedReplicas: updated, availableReplicas: available, readyReplicas: available, unavailableReplicas: (replicas ?? 1) - available,
        conditions: [stuck ? { type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded' } : { type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' }],
      } } }, merge);
    }
    // And pods: two of api (one crash-looping), one of worker, one that belongs to nobody
    for (const [name, app, ready, restarts] of [['api-1', 'api', true, 0], ['api-2', 'api', false, 7], ['worker-1', 'worker', true, 1], ['stray', 'other', true, 0]] as const) {
      await core.createNamespacedPod({ namespace, body: { metadata: { name, labels: { app } }, spec: { containers: [{ name: 'c', image: 'nginx' }] } } });
      await core.patchNamespacedPodStatus({ namespace, name, body: { status: {
        phase: 'Running',
        conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }],
        containerStatuses: [{ name: 'c', image: 'nginx', imageID: '', ready, restartCount: restarts, started: true, state: { running: {} } }],
      } } }, merge);
    }
  });

  // A status anyone who may patch the Application can write: it names a Deployment that does not exist, omits worker.
  const view = (namespace: string): ApplicationView => ({
    ref: { namespace: 'argocd', name: 'shop' }, labels: {}, history: [], destinationNamespace: namespace,
    resources: [
      { group: 'apps', kind: 'Deployment', namespace, name: 'api' },
      { group: '', kind: 'Service', namespace, name: 'api' },
      { group: 'apps', kind: 'Deployment', namespace, name: 'ghost' },
    ],
  });

  it('reads the rollout figures of the Deployments Argo CD tracks as the app\'s, whatever the status lists', async () => {
    const reader = new ClusterReader(kubeConfig(stack), { argocdNamespace: 'argocd', backoffMs: FAST.backoffMs });
    expect(await reader.getDeploymentStatus(view(namespace))).toEqual([
      { name: 'api', desired: 3, updated: 1, available: 1, unavailable: 2, progressDeadlineExceeded: true },
      { name: 'worker', desired: 1, updated: 1, available: 1, unavailable: 0, progressDeadlineExceeded: false },
    ]);
  });

  it('lists the pods each of those Deployments selects', async () => {
    const metrics = new Metrics();
    const reader = new ClusterReader(kubeConfig(stack), { argocdNamespace: 'argocd', metrics, backoffMs: FAST.backoffMs });
    const pods = await reader.listPods(view(namespace));
    expect(pods.sort((a, b) => a.name.localeCompare(b.name))).toEqual([
      { name: 'api-1', phase: 'Running', ready: true, restarts: 0 },
      { name: 'api-2', phase: 'Running', ready: false, restarts: 7 },
      { name: 'worker-1', phase: 'Running', ready: true, restarts: 1 },
    ]);
    expect(await metrics.registry.metrics()).toMatch(/ai_operator_mcp_call_duration_seconds_count\{call_name="listPods"\} \d+/);
  });

  it('fails with a typed error when the API server refuses', async () => {
    const kc = new KubeConfig();
    kc.loadFromFile(stack.kubeconfig);
    kc.loadFromOptions({ clusters: kc.clusters, contexts: kc.contexts, currentContext: kc.currentContext, users: [{ name: kc.users[0]!.name }] });
    const error = await new ClusterReader(kc, { argocdNamespace: 'argocd', backoffMs: FAST.backoffMs }).getDeploymentStatus(view(namespace)).catch((e: unknown) => e);
    // Anonymous requests are refused (401 or 403): a permission error, never retried.
    expect(error).toMatchObject({ name: 'IntegrationError', code: 'PERMISSION_DENIED', call: 'getDeploymentStatus' });
  });
});

// ---- the Argo CD simulator ------------------------------------------------------

/** A bare GitOps repository where the GitHub simulator keeps it, and a clone to commit through. */
function gitopsRepository(root: string) {
  const bare = join(root, 'acme', 'gitops.git');
  const work = join(root, 'work');
  execFileSync('git', ['init', '-q', '--bare', '--initial-branch=main', bare]);
  execFileSync('git', ['clone', '-q', bare, work], { stdio: 'ignore' });
  const git = (...args: string[]) => execFileSync('git', ['-C', work, ...args], { encoding: 'utf8' }).trim();
  return {
    /** Writes (or, with null, deletes) files, commits and pushes to main; returns the SHA. */
    commit(message: string, files: Record<string, string | null>): string {
      for (const [path, content] of Object.entries(files)) {
        if (content === null) git('rm', '-q', path);
        else {
          mkdirSync(dirname(join(work, path)), { recursive: true });
          writeFileSync(join(work, path), content);
        }
      }
      git('add', '-A');
      git('-c', 'user.name=Dev', '-c', 'user.email=dev@example.com', 'commit', '-q', '-m', message);
      git('push', '-q', 'origin', 'HEAD:main');
      return git('rev-parse', 'HEAD');
    },
  };
}

function deploymentYaml(name: string, namespace: string | undefined, replicas: number, broken = false): string {
  return [
    'apiVersion: apps/v1', 'kind: Deployment', 'metadata:', `  name: ${name}`, ...(namespace ? [`  namespace: ${namespace}`] : []),
    ...(broken ? ['  annotations:', '    ai-operator.dev/broken: "true"'] : []),
    'spec:', `  replicas: ${replicas}`, `  selector: {matchLabels: {app: ${name}}}`,
    `  template: {metadata: {labels: {app: ${name}}}, spec: {containers: [{name: app, image: "shop:${broken ? 'bad' : 'good'}"}]}}`, '',
  ].join('\n');
}

describe('the Argo CD simulator', () => {
  let root: string;
  let appNamespace: string;
  let deployNamespace: string;
  let repo: ReturnType<typeof gitopsRepository>;
  let sim: ArgoCdSim;
  let watcher: ArgoCdWatcher;
  let reader: ClusterReader;
  const ref = () => ({ namespace: appNamespace, name: 'shop' });
  const app = async () => watcher.getApplication(ref());

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'argocd-sim-e2e-'));
    appNamespace = await freshNamespace(stack, 'sim-apps');
    deployNamespace = await freshNamespace(stack, 'sim-shop');
    repo = gitopsRepository(root);
    watcher = new ArgoCdWatcher({ kubeConfig: kubeConfig(stack), log: createLogger('ERROR'), namespaces: [appNamespace], ...FAST });
    reader = new ClusterReader(kubeConfig(stack), { argocdNamespace: 'argocd', backoffMs: FAST.backoffMs });
    await watcher.start();
    // Persisted, as with --persist-resource-health (Argo CD 3.x's default keeps it out): the tests below read each resource's health.
    sim = await startArgoCdSim({ kubeConfig: kubeConfig(stack), repoRoot: root, intervalMs: 200, degradeAfterMs: 1500, namespaces: [appNamespace], metricsPort: 0, persistResourceHealth: true });
  });

  afterAll(async () => {
    await sim?.stop();
    await watcher?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  let first: string;

  it('syncs an Application on first sight: revision, history, resources, Healthy, and real Deployments', async () => {
    // Given a repository whose app path holds one Deployment
    first = repo.commit('shop v1', { 'apps/shop/deploy.yaml': deploymentYaml('shop-api', deployNamespace, 2), 'apps/other/x.yaml': 'a: 1\n' });
    // When an Application tracks it
    await createApplication(appNamespace, 'shop', { project: 'default', source: { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/shop', targetRevision: 'main' }, destination: { server: 'https://kubernetes.default.svc', namespace: deployNamespace }, syncPolicy: { automated: { prune: true } } });

    // Then the simulator syncs it the way Argo CD does
    const synced = await eventually('shop synced', async () => ((await app())?.syncRevision === first ? app() : undefined), 15_000);
    expect(synced).toMatchObject({
      health: 'Healthy', syncRevision: first,
      history: [{ id: 0, revision: first, deployedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/) }],
      resources: [{ group: 'apps', kind: 'Deployment', namespace: deployNamespace, name: 'shop-api', health: 'Healthy' }],
    });
    expect(await watcher.getApplicationSyncStatus(ref())).toEqual({ status: 'Synced', revision: first });
    // And the Deployment exists in the API server, rolled out in full
    expect(await reader.getDeploymentStatus(synced!)).toEqual([{ name: 'shop-api', desired: 2, updated: 2, available: 2, unavailable: 0, progressDeadlineExceeded: false }]);
  });

  it('moves only sync.revision for a commit that leaves the app\'s path alone', async () => {
    const elsewhere = repo.commit('other only', { 'apps/other/x.yaml': 'a: 2\n' });
    await eventually('revision moved', async () => (await app())?.syncRevision === elsewhere, 15_000);
    expect((await app())?.history.map((h) => h.revision)).toEqual([first]);
  });

  let broken: string;

  it('marks a commit with a broken Deployment Progressing, then Degraded, its rollout stuck as the controller-manager leaves it', async () => {
    const seen: string[] = [];
    const unsubscribe = watcher.onChange(async () => { const h = (await app())?.health; if (h && seen.at(-1) !== h) seen.push(h); });
    broken = repo.commit('shop v2 (broken)', {
      'apps/shop/deploy.yaml': deploymentYaml('shop-api', deployNamespace, 2, true),
      'apps/shop/worker.yaml': deploymentYaml('shop-worker', deployNamespace, 1),
    });
    const degraded = await eventually('shop Degraded', async () => ((await app())?.health === 'Degraded' ? app() : undefined), 15_000);
    unsubscribe();
    expect(seen).toEqual(['Progressing', 'Degraded']);
    expect(degraded).toMatchObject({
      syncRevision: broken,
      history: [{ id: 0, revision: first }, { id: 1, revision: broken }],
      resources: [
        { kind: 'Deployment', name: 'shop-api', health: 'Degraded' },
        { kind: 'Deployment', name: 'shop-worker', health: 'Healthy' },
      ],
    });
    // Default RollingUpdate of 2: the old ReplicaSet keeps both pods, one new pod never ready, the deadline passed.
    expect(await reader.getDeploymentStatus(degraded!)).toEqual([
      { name: 'shop-api', desired: 2, updated: 1, available: 2, unavailable: 1, progressDeadlineExceeded: true }, { name: 'shop-worker', desired: 1, updated: 1, available: 1, unavailable: 0, progressDeadlineExceeded: false },
    ]);
  });

  it('marks a later good commit Healthy and prunes the Deployment it removed', async () => {
    const good = repo.commit('shop v3', { 'apps/shop/deploy.yaml': deploymentYaml('shop-api', deployNamespace, 3), 'apps/shop/worker.yaml': null });
    const healthy = await eventually('shop Healthy', async () => ((await app())?.syncRevision === good && (await app())?.health === 'Healthy' ? app() : undefined), 15_000);
    expect(healthy!.history.map((h) => [h.id, h.revision])).toEqual([[0, first], [1, broken], [2, good]]);
    const times = healthy!.history.map((h) => Date.parse(h.deployedAt));
    expect(times).toEqual([...times].sort((a, b) => a - b));
    expect(healthy!.resources.map((r) => r.name)).toEqual(['shop-api']);
    expect(await reader.getDeploymentStatus(healthy!)).toEqual([{ name: 'shop-api', desired: 3, updated: 3, available: 3, unavailable: 0, progressDeadlineExceeded: false }]);
    const deployments = await kubeConfig(stack).makeApiClient(AppsV1Api).listNamespacedDeployment({ namespace: deployNamespace });
    expect(deployments.items.map((d) => d.metadata?.name)).toEqual(['shop-api']);
  });

  it('adopts an Application whose history was written before it ran: Deployments created, history kept', async () => {
    // Given an Application whose status already says the head was deployed a day ago (as the demo seeds it),
    // written in full before a simulator watches its namespace: the create and the status are two requests,
    // and a simulator polling in between would sync it as new (history id 0).
    const head = repo.commit('seeded app', { 'apps/seeded/deploy.yaml': deploymentYaml('seeded-api', undefined, 2) });
    const dayAgo = new Date(Date.now() - 86_400_000).toISOString();
    const destination = await freshNamespace(stack, 'sim-seeded');
    const seededApps = await freshNamespace(stack, 'sim-seeded-apps');
    await createApplication(seededApps, 'seeded', { project: 'default', source: { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/seeded', targetRevision: 'main' }, destination: { namespace: destination } }, {
      sync: { status: 'Synced', revision: head }, health: { status: 'Healthy' }, history: [{ id: 7, revision: head, deployedAt: dayAgo, deployStartedAt: dayAgo }],
    });
    const seededWatcher = new ArgoCdWatcher({ kubeConfig: kubeConfig(stack), log: createLogger('ERROR'), namespaces: [seededApps], ...FAST });
    await seededWatcher.start();
    // When the simulator starts
    const seededSim = await startArgoCdSim({ kubeConfig: kubeConfig(stack), repoRoot: root, intervalMs: 200, degradeAfterMs: 1500, namespaces: [seededApps], persistResourceHealth: true });
    try {
      // Then it puts its Deployments in the cluster (in the destination namespace) and lists them, without a new sync
      const seeded = await eventually('seeded adopted', async () => {
        const view = await seededWatcher.getApplication({ namespace: seededApps, name: 'seeded' });
        return view && view.resources.length > 0 ? view : undefined;
      }, 15_000);
      expect(seeded.history).toEqual([{ id: 7, revision: head, deployedAt: dayAgo }]);
      expect(seeded.resources).toEqual([{ group: 'apps', kind: 'Deployment', namespace: destination, name: 'seeded-api', health: 'Healthy' }]);
      expect(await reader.getDeploymentStatus(seeded)).toEqual([{ name: 'seeded-api', desired: 2, updated: 2, available: 2, unavailable: 0, progressDeadlineExceeded: false }]);
    } finally {
      await seededSim.stop();
      await seededWatcher.stop();
    }
  });

  it('renders a Kustomize overlay with kustomize build: a change to its base outside the path is deployed, a commit elsewhere only moves sync.revision (issue 18 §7)', async () => {
    // Given an overlay over a shared base (resources: [../../base]), and an Application of the overlay
    const overlay = 'apps/k/overlays/staging';
    const base = (broken: boolean) => deploymentYaml('k-api', undefined, 2, broken);
    const v1 = repo.commit('k v1', {
      'apps/k/base/deployment.yaml': base(false), 'apps/k/base/kustomization.yaml': 'resources: [deployment.yaml]\n',
      [`${overlay}/kustomization.yaml`]: 'resources: [../../base]\ncommonLabels: {stage: staging}\n',
    });
    const destination = await freshNamespace(stack, 'sim-kustomize');
    const apps = await freshNamespace(stack, 'sim-kustomize-apps');
    await createApplication(apps, 'k', { project: 'default', source: { repoURL: 'https://github.com/acme/gitops.git', path: overlay, targetRevision: 'main' }, destination: { namespace: destination } });
    const kSim = await startArgoCdSim({ kubeConfig: kubeConfig(stack), repoRoot: root, intervalMs: 200, degradeAfterMs: 1500, namespaces: [apps], persistResourceHealth: true });
    const status = async () => (JSON.parse(await kubectlOk(stack, ['get', 'application', '-n', apps, 'k', '-o', 'json'])) as { status?: { sourceType?: string; sync?: { revision?: string }; health?: { status?: string }; history?: Array<{ revision: string }>; resources?: Array<{ name: string }> } }).status;
    try {
      // Then it is synced as Kustomize, with the base's Deployment as the overlay makes it
      const synced = await eventually('k synced', async () => { const s = await status(); return s?.sync?.revision === v1 && s.health?.status === 'Healthy' ? s : undefined; }, 15_000);
      expect(synced).toMatchObject({ sourceType: 'Kustomize', resources: [{ name: 'k-api' }] });
      const live = JSON.parse(await kubectlOk(stack, ['get', 'deployment', '-n', destination, 'k-api', '-o', 'json'])) as { metadata: { labels?: Record<string, string> } };
      expect(live.metadata.labels?.stage).toBe('staging');
      // When a commit changes nothing the overlay renders: only sync.revision moves
      const elsewhere = repo.commit('k: docs', { 'apps/k/README.md': '# k\n' });
      await eventually('revision moved', async () => (await status())?.sync?.revision === elsewhere, 15_000);
      expect((await status())?.history?.map((h) => h.revision)).toEqual([v1]);
      // When the base (outside the app's path) gets a broken release: it is deployed, and the app turns Degraded
      const broken = repo.commit('k base v2 (broken)', { 'apps/k/base/deployment.yaml': base(true) });
      const degraded = await eventually('k Degraded at the base change', async () => { const s = await status(); return s?.sync?.revision === broken && s.health?.status === 'Degraded' ? s : undefined; }, 15_000);
      expect(degraded.history?.map((h) => h.revision)).toEqual([v1, broken]);
    } finally {
      await kSim.stop();
    }
  });

  it('exports argocd_app_info, which a real Prometheus scrapes', async () => {
    const text = await (await fetch(sim.metricsUrl!)).text();
    expect(text).toMatch(new RegExp(`argocd_app_info\\{[^}]*name="shop"[^}]*health_status="Healthy"[^}]*\\} 1`));
    expect(text).toContain(`namespace="${appNamespace}"`);

    const workDir = mkdtempSync(join(tmpdir(), 'prometheus-sim-'));
    const prometheus = await startPrometheus(workDir, [], [new URL(sim.metricsUrl!).host]);
    try {
      const history = new PrometheusHistory({ url: prometheus.url, backoffMs: FAST.backoffMs });
      const query = `sum(argocd_app_info{name="shop",namespace="${appNamespace}",health_status="Healthy",sync_status="Synced"})`;
      expect(await eventually('a scraped sample', async () => history.uptime(query, Date.now() / 1000), 30_000, 500)).toBe(1);
    } finally {
      await prometheus.process.stop();
      rmSync(workDir, { recursive: true, force: true });
    }
  });
});

// ---- Prometheus ------------------------------------------------------------------

describe('PrometheusHistory on a real Prometheus', () => {
  it('evaluates the default uptime query over the backfilled history', async () => {
    const at = inject('historyEnd');
    const history = new PrometheusHistory({ url: stack.prometheus });
    // 23 of the last 24 hours were Healthy.
    expect(await history.uptime(renderUptimeQuery(DEFAULT_UPTIME_QUERY, { name: HISTORY_APP, namespace: HISTORY_NAMESPACE }, 24 * 3600), at)).toBeCloseTo(23 / 24, 3);
    // Of the last 2 hours, the first was Degraded.
    expect(await history.uptime(renderUptimeQuery(DEFAULT_UPTIME_QUERY, { name: HISTORY_APP, namespace: HISTORY_NAMESPACE }, 2 * 3600), at)).toBeCloseTo(1 / 2, 3);
    // The Degraded hour alone: 0, not "no data" (the Healthy count is empty then; read as no data, a revision
    // Degraded throughout would fall through to CI-only selection).
    expect(await history.uptime(renderUptimeQuery(DEFAULT_UPTIME_QUERY, { name: HISTORY_APP, namespace: HISTORY_NAMESPACE }, 1800), at - 3700)).toBe(0);
    // No history at all: no answer, not zero.
    expect(await history.uptime(renderUptimeQuery(DEFAULT_UPTIME_QUERY, { name: 'never-deployed', namespace: 'argocd' }, 24 * 3600), at)).toBeUndefined();
  });

  describe('with an application name that needs escaping, then stopped', () => {
    const tricky = 'pay"ment\\svc';
    let workDir: string;
    let prometheus: PrometheusInstance;
    let end: number;

    beforeAll(async () => {
      // Given 12 h of history for `pay"ment\svc` (9 h Healthy), for a prefix of its name (never Healthy), and for
      // an app of the same name in another namespace (apps in any namespace; 3 h Healthy)
      end = Math.floor(Date.now() / 1000) - 3 * 3600;
      const samples: Sample[] = [];
      for (let at = end - 12 * 3600; at < end; at += 60) {
        const healthy = at < end - 3 * 3600;
        samples.push({ metric: 'argocd_app_info', labels: { name: tricky, namespace: 'argocd', health_status: healthy ? 'Healthy' : 'Degraded' }, value: 1, at });
        samples.push({ metric: 'argocd_app_info', labels: { name: 'pay', namespace: 'argocd', health_status: 'Degraded' }, value: 1, at });
        samples.push({ metric: 'argocd_app_info', labels: { name: tricky, namespace: 'team-b', health_status: at < end - 9 * 3600 ? 'Healthy' : 'Degraded' }, value: 1, at });
      }
      workDir = mkdtempSync(join(tmpdir(), 'prometheus-escape-'));
      prometheus = await startPrometheus(workDir, samples);
    });

    afterAll(async () => {
      await prometheus?.process.stop();
      rmSync(workDir, { recursive: true, force: true });
    });

    it('escapes the label value, so the query parses and matches exactly that app instance: not the same name in another namespace (issue 18 §6)', async () => {
      const history = new PrometheusHistory({ url: prometheus.url });
      const query = renderUptimeQuery(DEFAULT_UPTIME_QUERY, { name: tricky, namespace: 'argocd' }, 12 * 3600);
      // Counting team-b's samples too would give (9 h + 3 h Healthy) / (24 h of samples) = 0.5.
      expect(await history.uptime(query, end)).toBeCloseTo(9 / 12, 3);
      expect(query).toContain('name="pay\\"ment\\\\svc"');
      expect(query).toContain('namespace="argocd"');
      // And the other instance is measured on its own: 3 h of 12 Healthy.
      expect(await history.uptime(renderUptimeQuery(DEFAULT_UPTIME_QUERY, { name: tricky, namespace: 'team-b' }, 12 * 3600), end)).toBeCloseTo(3 / 12, 3);
    });

    it('says UNAVAILABLE once Prometheus is gone, after three retries, each counted', async () => {
      await prometheus.process.stop();
      const metrics = new Metrics();
      const history = new PrometheusHistory({ url: prometheus.url, metrics, backoffMs: [10, 20, 40] });
      const error = await history.uptime(renderUptimeQuery(DEFAULT_UPTIME_QUERY, { name: tricky, namespace: 'argocd' }, 3600), end).catch((e: unknown) => e);
      expect(error).toMatchObject({ name: 'IntegrationError', code: 'UNAVAILABLE', call: 'queryPrometheus' });
      const text = await metrics.registry.metrics();
      expect(text).toMatch(/ai_operator_mcp_call_errors_total\{call_name="queryPrometheus",error_code="UNAVAILABLE"\} 4/);
      expect(text).toMatch(/ai_operator_mcp_call_duration_seconds_count\{call_name="queryPrometheus"\} 4/);
    });
  });
});
