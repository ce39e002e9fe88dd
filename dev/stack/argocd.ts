// Real Argo CD (v3.6, built by provision.sh from the module proxy): the repo
// server and application controllers, run out of cluster against a kubeconfig.
// What Argo CD's install would give them in cluster is made here: the CRDs
// from the module that was built, and per namespace the three settings objects
// and the default AppProject. Intervals are short so a push is seen in seconds.
import { mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { binaries } from './binaries.ts';
import { kubectlOk, type KubectlTarget } from './kubectl.ts';
import { freePort, httpOk, spawnManaged, waitHealthy, type ManagedProcess } from './process.ts';

/** How often a controller re-reads each app's source (--app-resync, no jitter). */
export const APP_RESYNC_SECONDS = 10;
/** How long the repo server trusts a branch's resolved revision (--revision-cache-expiration). */
export const REVISION_CACHE_EXPIRATION = '10s';

export interface RepoServer {
  /** host:port of its gRPC API (plaintext). */
  address: string;
  metricsUrl: string;
  process: ManagedProcess;
}

export interface ApplicationController {
  /** Where its Applications, AppProjects and settings live. */
  namespace: string;
  /** Globs of the other namespaces whose Applications it reconciles. */
  applicationNamespaces: string[];
  /** Its Prometheus endpoint: argocd_app_info and the rest. */
  metricsUrl: string;
  persistResourceHealth: boolean;
  process: ManagedProcess;
}

/** Applies the Application and AppProject CRDs server-side (the Application CRD is too large for a client-side apply) and waits until they are served. */
export async function installArgoCdCrds(kube: KubectlTarget): Promise<void> {
  const dir = (await binaries('argocd'))['argocd-crds']!;
  const files = readdirSync(dir).filter((f) => f.endsWith('.yaml')).flatMap((f) => ['-f', join(dir, f)]);
  await kubectlOk(kube, ['apply', '--server-side', '--force-conflicts', ...files]);
  // Not `kubectl wait` (nor a jsonpath filter): on a CRD with no status yet they fail instead of waiting.
  const deadline = Date.now() + 60_000;
  for (const crd of ['applications.argoproj.io', 'appprojects.argoproj.io']) {
    for (;;) {
      const { status } = JSON.parse(await kubectlOk(kube, ['get', 'crd', crd, '-o', 'json'])) as { status?: { conditions?: Array<{ type: string; status: string }> } };
      if (status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) break;
      if (Date.now() > deadline) throw new Error(`CRD ${crd} not Established after 60 s`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** What Argo CD's install puts in its namespace and the controller reads: settings (found by their part-of label) and the default project, which only the API server would otherwise create. */
export async function prepareArgoCdNamespace(kube: KubectlTarget, namespace: string): Promise<void> {
  const labels = { 'app.kubernetes.io/part-of': 'argocd' };
  const objects = [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } },
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'argocd-cm', namespace, labels: { ...labels, 'app.kubernetes.io/name': 'argocd-cm' } }, data: {} },
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'argocd-rbac-cm', namespace, labels: { ...labels, 'app.kubernetes.io/name': 'argocd-rbac-cm' } }, data: {} },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'argocd-secret', namespace, labels: { ...labels, 'app.kubernetes.io/name': 'argocd-secret' } }, type: 'Opaque' },
    {
      apiVersion: 'argoproj.io/v1alpha1', kind: 'AppProject', metadata: { name: 'default', namespace },
      // sourceNamespaces: Applications outside Argo CD's namespace may use it (a controller's --application-namespaces).
      spec: { sourceRepos: ['*'], sourceNamespaces: ['*'], destinations: [{ server: '*', namespace: '*' }], clusterResourceWhitelist: [{ group: '*', kind: '*' }] },
    },
  ];
  await kubectlOk(kube, ['apply', '--server-side', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
}

function argoEnv(bin: string, extra: Record<string, string>): NodeJS.ProcessEnv {
  // The repo server execs git-verify-wrapper.sh and gpg-wrapper.sh from PATH on
  // every manifest generation, and git runs GIT_ASKPASS=argocd: all in bin.
  return { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}`, ARGOCD_GPG_ENABLED: 'false', ...extra };
}

/** `redis`: host:port. */
export async function startRepoServer(workDir: string, redis: string, name = 'argocd-repo-server'): Promise<RepoServer> {
  const found = await binaries('argocd');
  // A Helm source (charts/ai-operator: config/samples/argocd-application.yaml) is rendered by `helm template`
  // from PATH, a Kustomize source (a kustomization.yaml at the path) by `kustomize build`: Argo CD 3.6 ships
  // neither, and without them every such app is a ComparisonError.
  const helmBin = dirname((await binaries('helm')).helm!);
  const kustomizeBin = dirname((await binaries('kustomize')).kustomize!);
  const dir = join(workDir, name);
  const tmp = join(dir, 'tmp');
  mkdirSync(tmp, { recursive: true });
  const [port, metricsPort] = [await freePort(), await freePort()];
  const proc = spawnManaged(name, found['argocd-repo-server']!, [
    '--address=127.0.0.1', `--port=${port}`,
    '--metrics-address=127.0.0.1', `--metrics-port=${metricsPort}`,
    `--redis=${redis}`,
    // Plaintext gRPC; an empty client CA path, or it insists on its in-cluster mTLS file.
    '--disable-tls', '--client-ca-path=',
    // Default 3 min: a push would only be seen that late.
    `--revision-cache-expiration=${REVISION_CACHE_EXPIRATION}`,
    '--logformat=text', '--loglevel=info',
  ], join(workDir, `${name}.log`), {
    env: argoEnv(`${found['argocd-bin']!}:${helmBin}:${kustomizeBin}`, {
      // Clones go to $TMPDIR/_argocd-repo; the ask-pass socket is /tmp's fixed
      // name unless this says otherwise (two repo servers would share it).
      TMPDIR: tmp,
      ARGOCD_ASK_PASS_SOCK: join(dir, 'askpass.sock'),
    }),
  });
  const metricsUrl = `http://127.0.0.1:${metricsPort}`;
  await waitHealthy(proc, () => httpOk(`${metricsUrl}/healthz?full=true`), 60_000);
  return { address: `127.0.0.1:${port}`, metricsUrl: `${metricsUrl}/metrics`, process: proc };
}

export interface ApplicationControllerOptions {
  /** Its kubeconfig's cluster is the one it deploys to (in cluster) and reads Applications from. */
  kube: KubectlTarget;
  namespace: string;
  /** host:port of a plaintext repo server. */
  repoServer: string;
  /** host:port. */
  redis: string;
  /** --persist-resource-health: write status.resources[].health (off by default since Argo CD 3.0). */
  persistResourceHealth?: boolean;
  /**
   * --application-namespaces: further namespaces (globs) whose Applications it reconciles ("apps in any
   * namespace"), so tests can each keep theirs in a namespace of their own.
   */
  applicationNamespaces?: string[];
  /** A redis database of its own, when another controller shares the redis and might have apps of the same name. */
  redisDb?: number;
  name?: string;
}

/** One application controller for the Applications in `namespace` (prepare it first), deploying in cluster (the kubeconfig's cluster is its https://kubernetes.default.svc). */
export async function startApplicationController(workDir: string, options: ApplicationControllerOptions): Promise<ApplicationController> {
  const found = await binaries('argocd');
  const name = options.name ?? 'argocd-application-controller';
  const persist = options.persistResourceHealth ?? false;
  const metricsPort = await freePort();
  mkdirSync(join(workDir, name), { recursive: true });
  const proc = spawnManaged(name, found['argocd-application-controller']!, [
    `--kubeconfig=${options.kube.kubeconfig}`,
    `--namespace=${options.namespace}`,
    `--repo-server=${options.repoServer}`,
    '--repo-server-plaintext',
    `--redis=${options.redis}`,
    `--redisdb=${options.redisDb ?? 0}`,
    `--app-resync=${APP_RESYNC_SECONDS}`, '--app-resync-jitter=0',
    `--metrics-port=${metricsPort}`,
    '--status-processors=4', '--operation-processors=2',
    ...(persist ? ['--persist-resource-health'] : []),
    ...(options.applicationNamespaces?.length ? [`--application-namespaces=${options.applicationNamespaces.join(',')}`] : []),
    '--logformat=text', '--loglevel=info',
  ], join(workDir, `${name}.log`), {
    // Out of cluster, the in-cluster destination's REST config comes from
    // $KUBECONFIG (else ~/.kube/config), not from --kubeconfig.
    env: argoEnv(found['argocd-bin']!, { ARGOCD_FAKE_IN_CLUSTER: 'true', KUBECONFIG: options.kube.kubeconfig, TMPDIR: join(workDir, name) }),
  });
  const metricsUrl = `http://127.0.0.1:${metricsPort}`;
  await waitHealthy(proc, () => httpOk(`${metricsUrl}/healthz`), 60_000);
  return { namespace: options.namespace, applicationNamespaces: options.applicationNamespaces ?? [], metricsUrl: `${metricsUrl}/metrics`, persistResourceHealth: persist, process: proc };
}
