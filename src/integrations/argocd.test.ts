import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../observability/log.ts';
import { ArgoCdWatcher, applicationView, healthOf, type ApplicationObject } from './argocd.ts';

const application = (status: ApplicationObject['status'], spec: ApplicationObject['spec'] = { source: { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/payment', targetRevision: 'main' } }): ApplicationObject => ({
  apiVersion: 'argoproj.io/v1alpha1', kind: 'Application',
  metadata: { namespace: 'argocd', name: 'payment-service', labels: { 'ai-operator.enabled': 'true', environment: 'staging' } },
  spec, status,
});

describe('applicationView', () => {
  it('reads health, revision, history, resources and source from the Application', () => {
    const view = applicationView(application({
      health: { status: 'Degraded' },
      sync: { status: 'Synced', revision: 'b2' },
      history: [{ id: 0, revision: 'a1', deployedAt: '2026-01-01T00:00:00Z' }, { id: 1, revision: 'b2', deployedAt: '2026-01-02T00:00:00Z' }],
      resources: [
        { group: 'apps', kind: 'Deployment', namespace: 'payments', name: 'api', health: { status: 'Degraded' } },
        { kind: 'Service', namespace: 'payments', name: 'api' },
      ],
    }));
    expect(view).toEqual({
      ref: { namespace: 'argocd', name: 'payment-service' },
      labels: { 'ai-operator.enabled': 'true', environment: 'staging' },
      health: 'Degraded',
      syncRevision: 'b2',
      history: [{ id: 0, revision: 'a1', deployedAt: '2026-01-01T00:00:00Z' }, { id: 1, revision: 'b2', deployedAt: '2026-01-02T00:00:00Z' }],
      resources: [
        { group: 'apps', kind: 'Deployment', namespace: 'payments', name: 'api', health: 'Degraded' },
        { kind: 'Service', namespace: 'payments', name: 'api' },
      ],
      source: { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/payment', targetRevision: 'main' },
      rendered: { source: { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/payment', targetRevision: 'main' } },
    });
  });

  it('takes the first of several sources, and their first revision', () => {
    const view = applicationView(application(
      { sync: { revisions: ['c3', 'x9'] }, history: [{ id: 4, revisions: ['c3', 'x9'], deployedAt: '2026-01-03T00:00:00Z' }] },
      { sources: [{ repoURL: 'https://github.com/acme/gitops.git', path: 'apps/a' }, { repoURL: 'https://charts.example.com', chart: 'redis' }] },
    ));
    expect(view.syncRevision).toBe('c3');
    expect(view.history).toEqual([{ id: 4, revision: 'c3', deployedAt: '2026-01-03T00:00:00Z' }]);
    // Argo CD's defaults: the repository root, HEAD.
    expect(view.source).toEqual({ repoURL: 'https://github.com/acme/gitops.git', path: 'apps/a', targetRevision: 'HEAD' });
    // One Git repository (issue 18 §1): supported; the chart's version is kept to compare deployments with.
    expect(view.unsupported).toBeUndefined();
    expect(view.rendered).toEqual({
      sources: [{ repoURL: 'https://github.com/acme/gitops.git', path: 'apps/a' }, { repoURL: 'https://charts.example.com', chart: 'redis' }],
      charts: ['https://charts.example.com redis@'],
    });
  });

  it('reads a multi-source app by its first Git source with a path, and each deployment\'s chart versions', () => {
    const view = applicationView(application(
      { sync: { revisions: ['9.1.0', 'c3', 'c3'] }, history: [{ id: 4, revisions: ['9.1.0', 'c3', 'c3'], deployedAt: '2026-01-03T00:00:00Z',
        sources: [{ repoURL: 'https://charts.example.com', chart: 'redis', targetRevision: '9.1.0' }, { repoURL: 'https://github.com/acme/gitops.git', path: 'charts/shop' }, { repoURL: 'https://github.com/acme/gitops.git', ref: 'values' }] }] },
      { sources: [
        { repoURL: 'https://charts.example.com', chart: 'redis', targetRevision: '9.2.0' },
        { repoURL: 'https://github.com/acme/gitops.git', path: 'charts/shop', targetRevision: 'main', helm: { valueFiles: ['$values/envs/staging/values.yaml'], releaseName: 7 } },
        { repoURL: 'https://github.com/acme/gitops.git', targetRevision: 'main', ref: 'values' },
      ] },
    ));
    expect(view.unsupported).toBeUndefined();
    expect(view.source).toEqual({ repoURL: 'https://github.com/acme/gitops.git', path: 'charts/shop', targetRevision: 'main' });
    expect(view.syncRevision).toBe('c3');
    expect(view.history).toEqual([{ id: 4, revision: 'c3', deployedAt: '2026-01-03T00:00:00Z', charts: ['https://charts.example.com redis@9.1.0'] }]);
    expect(view.rendered?.charts).toEqual(['https://charts.example.com redis@9.2.0']);
    // Only what the source set reads is kept, of the right types.
    expect(view.rendered?.sources?.[1]).toEqual({ repoURL: 'https://github.com/acme/gitops.git', path: 'charts/shop', targetRevision: 'main', helm: { valueFiles: ['$values/envs/staging/values.yaml'] } });
  });

  it('marks a source-hydrator Application unsupported, and a single-source one not', () => {
    const source = { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/a' };
    const hydrated = applicationView(application(undefined, { sourceHydrator: { drySource: source, syncSource: { targetBranch: 'env/prod', path: 'apps/a' } } }));
    expect(hydrated.unsupported).toMatch(/^spec\.sourceHydrator is set: source-hydrator Applications are not handled yet/);
    expect(applicationView(application(undefined, { source })).unsupported).toBeUndefined();
  });

  it('leaves out what Argo CD has not written yet', () => {
    const view = applicationView(application(undefined, {}));
    expect(view).toEqual({ ref: { namespace: 'argocd', name: 'payment-service' }, labels: { 'ai-operator.enabled': 'true', environment: 'staging' }, history: [], resources: [],
      // Without a source there is nothing to roll back in: refused, not guessed (argocd.bad-input.test.ts).
      unsupported: 'spec.source is missing: there is no repository to roll back in' });
  });

  it('reads an unknown health status as Unknown, never as a reason to act', () => {
    expect(healthOf('Degraded')).toBe('Degraded');
    expect(healthOf('SomethingNew')).toBe('Unknown');
    expect(healthOf(undefined)).toBeUndefined();
  });
});

describe('ArgoCdWatcher with the Argo CD REST API as source', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  });

  async function argocdApi(reply: (url: URL) => { status: number; body: unknown }) {
    const seen: Array<{ url: URL; headers: IncomingHttpHeaders }> = [];
    server = createServer((req, res) => {
      const url = new URL(req.url!, 'http://x');
      seen.push({ url, headers: req.headers });
      const { status, body } = reply(url);
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', () => resolve()));
    const kubeConfig = new KubeConfig();
    // Never contacted: without start() the watcher makes no Kubernetes request.
    kubeConfig.loadFromClusterAndUser({ name: 'none', server: 'https://127.0.0.1:1', skipTLSVerify: true }, { name: 'none' });
    const watcher = new ArgoCdWatcher({
      kubeConfig, log: createLogger('ERROR'), backoffMs: [1, 1, 1],
      rest: { url: `http://127.0.0.1:${(server!.address() as AddressInfo).port}/`, token: 'secret-token' },
    });
    return { watcher, seen };
  }

  it('asks GET /api/v1/applications/{name}?appNamespace= with the bearer token', async () => {
    const { watcher, seen } = await argocdApi(() => ({ status: 200, body: application({ health: { status: 'Progressing' }, sync: { status: 'OutOfSync', revision: 'd4' } }) }));
    expect(await watcher.getApplicationHealth({ namespace: 'team-a', name: 'payment service' })).toEqual({ status: 'Progressing', revision: 'd4' });
    expect(await watcher.getApplicationSyncStatus({ namespace: 'team-a', name: 'payment service' })).toEqual({ status: 'OutOfSync', revision: 'd4' });
    // I2's fresh read asks the same source: a second source of health, as ARGOCD_URL promises.
    expect(await watcher.readApplicationHealth({ namespace: 'team-a', name: 'payment service' })).toEqual({ status: 'Progressing', revision: 'd4' });
    expect(seen).toHaveLength(3);
    expect(seen[0]!.url.pathname).toBe('/api/v1/applications/payment%20service');
    expect(seen[0]!.url.searchParams.get('appNamespace')).toBe('team-a');
    expect(seen[0]!.headers.authorization).toBe('Bearer secret-token');
  });

  it('answers undefined for an Application Argo CD does not know', async () => {
    const { watcher } = await argocdApi(() => ({ status: 404, body: { error: 'not found', code: 5 } }));
    expect(await watcher.getApplicationHealth({ namespace: 'argocd', name: 'gone' })).toBeUndefined();
  });

  it('fails a refused token with PERMISSION_DENIED, without retrying and without the token in the message', async () => {
    const { watcher, seen } = await argocdApi(() => ({ status: 403, body: { error: 'permission denied', code: 7, message: 'permission denied' } }));
    const error = await watcher.getApplicationHealth({ namespace: 'argocd', name: 'a' }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'PERMISSION_DENIED', call: 'getApplicationHealth' });
    expect(String((error as Error).message)).not.toContain('secret-token');
    expect(seen).toHaveLength(1);
  });

  it('retries a 502 and succeeds', async () => {
    let n = 0;
    const { watcher, seen } = await argocdApi(() => (++n < 3 ? { status: 502, body: {} } : { status: 200, body: application({ health: { status: 'Healthy' } }) }));
    expect(await watcher.getApplicationHealth({ namespace: 'argocd', name: 'a' })).toEqual({ status: 'Healthy' });
    expect(seen).toHaveLength(3);
  });
});
