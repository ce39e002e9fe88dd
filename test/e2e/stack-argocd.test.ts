// Given the stack started with argocd (global-setup.ts), real Argo CD 3.6 syncs
// a plain-YAML Deployment from a bare repository on the stack's git daemon,
// onto the GitOps cluster where kube-controller-manager rolls it out and
// KWOK's pods become Ready — or crash-loop, for a release whose pod template
// carries the broken label — and Argo CD itself computes Healthy, Degraded
// (the Deployment exceeds its progressDeadlineSeconds) and Healthy again after
// a revert. What it wrote at Degraded is printed and saved for the record.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { prepareArgoCdNamespace, startApplicationController } from '../../dev/stack/argocd.ts';
import { BROKEN_RELEASE, FLAKY_RELEASE, RECOVER_AFTER_ANNOTATION, TEST_RELEASE_LABEL } from '../../dev/stack/kwok.ts';
import { kubectlOk, type KubectlTarget } from '../../dev/stack/kubectl.ts';
import { renderSource } from '../../dev/argocd-sim/render.ts';
import { deploymentsIn } from '../../dev/argocd-sim/rules.ts';

const run = promisify(execFile);
const stack = inject('stack');
const argocd = stack.argocd;

interface Pod {
  metadata: { name: string; labels?: Record<string, string> };
  spec: { nodeName?: string };
  status: {
    phase?: string;
    conditions?: Array<{ type: string; status: string }>;
    containerStatuses?: Array<{ ready: boolean; restartCount: number; state: { waiting?: { reason?: string }; running?: object } }>;
  };
}
interface AppStatus {
  health?: { status?: string; message?: string };
  sync?: { status?: string; revision?: string };
  history?: Array<{ revision: string; id: number; deployedAt: string }>;
  resources?: Array<{ kind: string; name: string; namespace?: string; status?: string; health?: { status?: string; message?: string } }>;
  operationState?: { phase?: string; syncResult?: { revision?: string } };
}

async function until<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  let lastError = '';
  while (Date.now() < deadline) {
    try {
      last = await read();
      if (done(last)) return last;
    } catch (error) {
      lastError = (error as Error).message;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}; last seen: ${JSON.stringify(last)?.slice(0, 3000)} ${lastError}`);
}

function deployment(namespace: string, release: { image: string; label?: string; annotations?: Record<string, string> }): string {
  const labels = { app: 'web', ...(release.label ? { [TEST_RELEASE_LABEL]: release.label } : {}) };
  return `${JSON.stringify({
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace },
    spec: {
      replicas: 2,
      // Short, as users set it: Degraded 15 s after a rollout stops progressing.
      progressDeadlineSeconds: 15,
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: { labels, ...(release.annotations ? { annotations: release.annotations } : {}) },
        spec: { containers: [{ name: 'web', image: release.image }] },
      },
    },
  }, null, 2)}\n`;
}

describe('real Argo CD on the stack', () => {
  // global-setup.ts always starts it.
  it('is part of the stack', () => {
    expect(argocd).toBeDefined();
  });
  const gitops: KubectlTarget = { kubectl: argocd?.kubectl ?? '', kubeconfig: argocd?.kubeconfig ?? '' };
  let work = '';
  beforeAll(() => { work = mkdtempSync(join(tmpdir(), 'stack-argocd-')); });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  const git = async (cwd: string, ...args: string[]) =>
    (await run('git', ['-c', 'user.name=Test', '-c', 'user.email=test@example.com', ...args], { cwd })).stdout.trim();
  const json = async <T>(args: string[]): Promise<T> => JSON.parse(await kubectlOk(gitops, [...args, '-o', 'json'])) as T;
  const appStatus = async (name: string, argoNamespace = argocd!.namespace) =>
    (await json<{ status?: AppStatus }>(['get', 'application', '-n', argoNamespace, name])).status ?? {};
  const pods = async (namespace: string, selector: string) => (await json<{ items: Pod[] }>(['get', 'pods', '-n', namespace, '-l', selector])).items;
  const appInfo = async (name: string) => (await (await fetch(argocd!.metrics)).text()).split('\n')
    .filter((line) => line.startsWith('argocd_app_info{') && line.includes(`name="${name}"`));

  /** A bare repo under the git daemon's root with the Deployment at app/web.yaml; returns the work clone, the URL and the first commit. */
  async function repository(owner: string, name: string, namespace: string): Promise<{ clone: string; url: string; first: string }> {
    const bare = join(argocd!.gitRoot, owner, `${name}.git`);
    mkdirSync(join(argocd!.gitRoot, owner), { recursive: true });
    await run('git', ['init', '--quiet', '--bare', '--initial-branch=main', bare]);
    const clone = join(work, name);
    await run('git', ['clone', '--quiet', bare, clone]);
    mkdirSync(join(clone, 'app'));
    writeFileSync(join(clone, 'app', 'web.yaml'), deployment(namespace, { image: 'registry.example/web:v1' }));
    await git(clone, 'checkout', '--quiet', '-b', 'main');
    await git(clone, 'add', '.');
    await git(clone, 'commit', '--quiet', '-m', 'web v1');
    await git(clone, 'push', '--quiet', 'origin', 'main');
    return { clone, url: `${argocd!.gitUrl}/${owner}/${name}.git`, first: await git(clone, 'rev-parse', 'HEAD') };
  }

  async function application(name: string, url: string, namespace: string, argoNamespace = argocd!.namespace): Promise<void> {
    await kubectlOk(gitops, ['create', 'namespace', namespace]);
    await kubectlOk(gitops, ['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name, namespace: argoNamespace },
      spec: {
        project: 'default',
        source: { repoURL: url, path: 'app', targetRevision: 'main' },
        destination: { server: 'https://kubernetes.default.svc', namespace },
        syncPolicy: { automated: { prune: true, selfHeal: true } },
      },
    }));
  }

  it('Healthy, then Degraded after a push of a crash-looping release, then Healthy after its revert', async () => {
    const name = `web-${process.pid}`;
    const namespace = `web-${process.pid}`;
    const owner = `stack-argocd-${process.pid}`;
    const { clone, url, first } = await repository(owner, name, namespace);
    console.log(`stack-argocd: the GitOps cluster and Argo CD were healthy ${(argocd!.startupMs / 1000).toFixed(1)} s after their start`);
    const t0 = Date.now();
    await application(name, url, namespace);

    const healthy = await until('Synced and Healthy at the first commit', () => appStatus(name),
      (s) => s.sync?.status === 'Synced' && s.sync.revision === first && s.health?.status === 'Healthy', 90_000);
    console.log(`stack-argocd: Application created → Synced+Healthy in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    expect(healthy.history?.map((h) => h.revision)).toEqual([first]);
    const ready = await pods(namespace, 'app=web');
    expect(ready).toHaveLength(2);
    for (const pod of ready) {
      expect(pod.spec.nodeName).toBe(argocd!.node);
      expect(pod.status.phase).toBe('Running');
      expect(pod.status.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
    }
    expect((await appInfo(name)).join('\n')).toMatch(/health_status="Healthy".*sync_status="Synced"/);

    writeFileSync(join(clone, 'app', 'web.yaml'), deployment(namespace, { image: 'registry.example/web:v2', label: BROKEN_RELEASE }));
    await git(clone, 'commit', '--quiet', '-am', 'web v2 (crash-loops)');
    await git(clone, 'push', '--quiet', 'origin', 'main');
    const broken = await git(clone, 'rev-parse', 'HEAD');
    const t1 = Date.now();

    const degraded = await until('Degraded at the broken commit', () => appStatus(name),
      (s) => s.sync?.revision === broken && s.health?.status === 'Degraded', 120_000);
    console.log(`stack-argocd: push → Degraded in ${((Date.now() - t1) / 1000).toFixed(1)} s; status.health=${JSON.stringify(degraded.health)}`);
    console.log(`stack-argocd: Application status at Degraded (real Argo CD ${argocd!.persistResourceHealth ? 'with' : 'without'} --persist-resource-health):\n${JSON.stringify(degraded, null, 2)}`);
    // Kept with the stack's data under KEEP_STACK_DATA=1.
    writeFileSync(join(stack.workDir, `argocd-degraded-status-${process.pid}.json`), JSON.stringify(degraded, null, 2));
    expect(degraded.sync?.status).toBe('Synced');
    expect(degraded.history?.map((h) => h.revision)).toEqual([first, broken]);
    const resource = degraded.resources?.find((r) => r.kind === 'Deployment' && r.name === 'web');
    expect(resource?.status).toBe('Synced');
    // Argo CD 3.x keeps per-resource health out of the Application unless told to persist it.
    if (argocd!.persistResourceHealth) expect(resource?.health?.status).toBe('Degraded');
    else expect(resource?.health).toBeUndefined();
    const rollout = await json<{ status: { conditions: Array<{ type: string; status: string; reason: string }> } }>(['get', 'deployment', '-n', namespace, 'web']);
    expect(rollout.status.conditions.find((c) => c.type === 'Progressing')).toMatchObject({ status: 'False', reason: 'ProgressDeadlineExceeded' });
    expect((await appInfo(name)).join('\n')).toMatch(/health_status="Degraded"/);

    // KWOK's stage: the broken release's pods crash-loop, restarts going up.
    const crashing = await until('broken pods with two restarts or more', () => pods(namespace, `${TEST_RELEASE_LABEL}=${BROKEN_RELEASE}`),
      (ps) => ps.length > 0 && ps.every((p) => (p.status.containerStatuses?.[0]?.restartCount ?? 0) >= 2), 30_000);
    for (const pod of crashing) {
      expect(pod.status.phase).toBe('Running');
      expect(pod.status.conditions?.find((c) => c.type === 'Ready')?.status).toBe('False');
      expect(pod.status.containerStatuses?.[0]).toMatchObject({ ready: false, state: { waiting: { reason: 'CrashLoopBackOff' } } });
    }
    // The old release keeps serving: maxUnavailable rounds down to 0 of 2.
    expect((await pods(namespace, `app=web,!${TEST_RELEASE_LABEL}`)).length).toBe(2);

    await git(clone, 'revert', '--no-edit', 'HEAD');
    await git(clone, 'push', '--quiet', 'origin', 'main');
    const reverted = await git(clone, 'rev-parse', 'HEAD');
    const t2 = Date.now();
    const recovered = await until('Healthy at the revert', () => appStatus(name),
      (s) => s.sync?.revision === reverted && s.health?.status === 'Healthy', 120_000);
    console.log(`stack-argocd: revert → Healthy in ${((Date.now() - t2) / 1000).toFixed(1)} s`);
    expect(recovered.history?.map((h) => h.revision)).toEqual([first, broken, reverted]);
    await until('the broken pods gone', () => pods(namespace, `${TEST_RELEASE_LABEL}=${BROKEN_RELEASE}`), (ps) => ps.length === 0, 60_000);
  }, 360_000);

  it('renders a Kustomize overlay over a shared base and a Helm chart with values outside it, with the kustomize and helm on its PATH; the simulator renders the same (issue 18 §7)', async () => {
    // Given a repository with apps/shop/base, an overlay with resources: [../../base], and charts/shop with envs/staging/values.yaml
    const owner = `stack-argocd-shapes-${process.pid}`;
    const bare = join(argocd!.gitRoot, owner, 'shapes.git');
    mkdirSync(join(argocd!.gitRoot, owner), { recursive: true });
    await run('git', ['init', '--quiet', '--bare', '--initial-branch=main', bare]);
    const clone = join(work, 'shapes');
    await run('git', ['clone', '--quiet', bare, clone]);
    const [kustomized, templated] = [`shop-kustomize-${process.pid}`, `shop-helm-${process.pid}`];
    const files: Record<string, string> = {
      'apps/shop/base/deployment.yaml': deployment('placeholder', { image: 'registry.example/shop:v1' }),
      'apps/shop/base/kustomization.yaml': 'resources: [deployment.yaml]\n',
      'apps/shop/overlays/staging/kustomization.yaml': `resources: [../../base]\nnamespace: ${kustomized}\ncommonAnnotations: {stage: staging}\n`,
      'charts/shop/Chart.yaml': 'apiVersion: v2\nname: shop\nversion: 0.1.0\n',
      'charts/shop/values.yaml': 'image: registry.example/shop:chart-default\n',
      'charts/shop/templates/deployment.yaml': deployment('{{ .Release.Namespace }}', { image: '{{ .Values.image }}' }),
      'envs/staging/values.yaml': 'image: registry.example/shop:v2\n',
    };
    for (const [path, content] of Object.entries(files)) {
      mkdirSync(join(clone, path, '..'), { recursive: true });
      writeFileSync(join(clone, path), content);
    }
    await git(clone, 'checkout', '--quiet', '-b', 'main');
    await git(clone, 'add', '.');
    await git(clone, 'commit', '--quiet', '-m', 'shop: kustomize and helm');
    await git(clone, 'push', '--quiet', 'origin', 'main');
    const revision = await git(clone, 'rev-parse', 'HEAD');
    const url = `${argocd!.gitUrl}/${owner}/shapes.git`;

    // When Argo CD syncs an Application of each
    const sources = {
      [kustomized]: { repoURL: url, path: 'apps/shop/overlays/staging', targetRevision: 'main' },
      [templated]: { repoURL: url, path: 'charts/shop', targetRevision: 'main', helm: { valueFiles: ['../../envs/staging/values.yaml'] } },
    };
    for (const [name, source] of Object.entries(sources)) {
      await kubectlOk(gitops, ['create', 'namespace', name]);
      await kubectlOk(gitops, ['apply', '-f', '-'], JSON.stringify({
        apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name, namespace: argocd!.namespace },
        spec: { project: 'default', source, destination: { server: 'https://kubernetes.default.svc', namespace: name }, syncPolicy: { automated: { prune: true } } },
      }));
    }

    // Then it reports each source type and renders it: the overlay's namespace and annotation over the base's Deployment,
    // the chart with the values file outside it
    const expected = { [kustomized]: { type: 'Kustomize', image: 'registry.example/shop:v1' }, [templated]: { type: 'Helm', image: 'registry.example/shop:v2' } };
    for (const [name, want] of Object.entries(expected)) {
      const status = await until(`${name} Synced and Healthy`, () => json<{ status?: AppStatus & { sourceType?: string; conditions?: unknown[] } }>(['get', 'application', '-n', argocd!.namespace, name]),
        (a) => a.status?.sync?.revision === revision && a.status.health?.status === 'Healthy', 90_000);
      expect([name, status.status?.sourceType]).toEqual([name, want.type]);
      const live = await json<{ metadata: { annotations?: Record<string, string> }; spec: { template: { spec: { containers: Array<{ image: string }> } } } }>(['get', 'deployment', '-n', name, 'web']);
      expect(live.spec.template.spec.containers[0]!.image).toBe(want.image);
      if (want.type === 'Kustomize') expect(live.metadata.annotations?.stage).toBe('staging');
      // And the Argo CD simulator renders the same Deployment from the same repository with the same binaries
      const simulated = await renderSource(bare, revision, sources[name]!, { name, namespace: name });
      expect(simulated.type).toBe(want.type);
      const [d] = deploymentsIn(simulated.files, name);
      expect(d).toMatchObject({ name: 'web', namespace: name });
      expect((d!.object as unknown as { spec: { template: { spec: { containers: Array<{ image: string }> } } } }).spec.template.spec.containers[0]!.image).toBe(want.image);
    }
  }, 240_000);

  it('a flaky release crash-loops for a moment and then its pods become Ready', async () => {
    const namespace = `flaky-${process.pid}`;
    await kubectlOk(gitops, ['create', 'namespace', namespace]);
    await kubectlOk(gitops, ['apply', '-f', '-'], deployment(namespace, {
      image: 'registry.example/web:v3', label: FLAKY_RELEASE, annotations: { [RECOVER_AFTER_ANNOTATION]: '6000' },
    }));
    const selector = `${TEST_RELEASE_LABEL}=${FLAKY_RELEASE}`;
    const looping = await until('flaky pods crash-looping', () => pods(namespace, selector),
      (ps) => ps.length === 2 && ps.every((p) => p.status.containerStatuses?.[0]?.state.waiting?.reason === 'CrashLoopBackOff'), 30_000);
    expect(looping.every((p) => p.status.conditions?.find((c) => c.type === 'Ready')?.status === 'False')).toBe(true);
    const recovered = await until('flaky pods Ready', () => pods(namespace, selector),
      (ps) => ps.length === 2 && ps.every((p) => p.status.conditions?.find((c) => c.type === 'Ready')?.status === 'True'), 30_000);
    for (const pod of recovered) expect(pod.status.containerStatuses?.[0]).toMatchObject({ ready: true, restartCount: 1, state: { running: {} } });
    const rollout = await until('the Deployment available', () => json<{ status: { availableReplicas?: number } }>(['get', 'deployment', '-n', namespace, 'web']),
      (d) => d.status.availableReplicas === 2, 30_000);
    expect(rollout.status.availableReplicas).toBe(2);
  }, 120_000);

  it('a private application controller with --persist-resource-health writes each resource\'s health, next to the shared one', async () => {
    const argoNamespace = `argocd-persist-${process.pid}`;
    const name = `persist-${process.pid}`;
    await prepareArgoCdNamespace(gitops, argoNamespace);
    const controller = await startApplicationController(work, {
      kube: gitops, namespace: argoNamespace, repoServer: argocd!.repoServer, redis: argocd!.redis,
      persistResourceHealth: true, redisDb: 1, name: `argocd-controller-${argoNamespace}`,
    });
    try {
      const { url, first } = await repository(`stack-argocd-persist-${process.pid}`, name, name);
      await application(name, url, name, argoNamespace);
      const healthy = await until('Synced and Healthy', () => appStatus(name, argoNamespace),
        (s) => s.sync?.revision === first && s.health?.status === 'Healthy', 90_000);
      expect(healthy.resources?.find((r) => r.kind === 'Deployment' && r.name === 'web')?.health?.status).toBe('Healthy');
    } finally {
      await controller.process.stop();
    }
  }, 180_000);
});
