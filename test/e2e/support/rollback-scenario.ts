// The set-up every rollback scenario on the simulators shares: a GitOps repo in the
// GitHub simulator with a good release, an Argo CD Application deployed from it
// 24 h ago, the Argo CD simulator syncing it, and the real operator (src/main.ts)
// watching only this test's namespace under its own etcd prefix — so scenarios
// in different files run side by side on the one stack.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { startArgoCdSim, BROKEN_ANNOTATION, type ArgoCdSim } from '../../../dev/argocd-sim/index.ts';
import { startGitHubSim, type GitHubSim } from '../../../dev/github-sim/index.ts';
import type { SimPull } from '../../../dev/github-sim/world.ts';
import type { StackEndpoints } from '../../../dev/stack/index.ts';
import { freePort } from '../../../dev/stack/process.ts';
import type { State } from '../../../src/fsm/table.ts';
import { installationNameFrom } from '../../../src/config.ts';
import { streamNameFor } from '../../../src/fsm/cloud-events.ts';
import type { AttemptRecord } from '../../../src/fsm/record.ts';
import { AttemptStore } from '../../../src/store/attempt-store.ts';
import { EtcdKV } from '../../../src/store/etcd.ts';
import { freshNamespace, kubeConfig, kubectlOk } from './kube.ts';
import { eventually, inheritedEnv } from './operator.ts';

const MAIN = fileURLToPath(new URL('../../../src/main.ts', import.meta.url));
export const REPO = { owner: 'acme', repo: 'gitops' } as const;
export const APP_PATH = 'apps/cart';

/** A Deployment's shape: `replicas` (2 by default) and `spec.strategy` as written (Kubernetes' default RollingUpdate when absent). */
export interface DeploymentShape {
  replicas?: number;
  strategy?: { type?: 'RollingUpdate' | 'Recreate'; rollingUpdate?: { maxSurge?: number | string; maxUnavailable?: number | string } };
}

/** A Deployment manifest; `broken` makes the Argo CD simulator's rollout of it never become ready (Degraded). */
export function deployment(app: string, namespace: string, image: string, broken = false, shape: DeploymentShape = {}): string {
  return [
    'apiVersion: apps/v1', 'kind: Deployment', 'metadata:', `  name: ${app}`, `  namespace: ${namespace}`,
    ...(broken ? ['  annotations:', `    ${BROKEN_ANNOTATION}: "true"`] : []),
    'spec:', `  replicas: ${shape.replicas ?? 2}`,
    // JSON is YAML's flow style.
    ...(shape.strategy ? [`  strategy: ${JSON.stringify(shape.strategy)}`] : []),
    '  selector:', '    matchLabels:', `      app: ${app}`, '  template:', '    metadata:', '      labels:', `        app: ${app}`,
    '    spec:', '      containers:', `        - name: ${app}`, `          image: example/${app}:${image}`, '',
  ].join('\n');
}

export interface ScenarioOptions {
  environment: 'staging' | 'production';
  /** The Application's name (Prometheus history is looked up by it). */
  app?: string;
  /** The name of the app's Deployment (and its pods' `app` label); the app's by default. */
  workload?: string;
  /** Operator variables on top of the scenario's (short intervals, this namespace, this prefix). */
  env?: Record<string, string>;
  /** A namespace of this name instead of a fresh one (created here; for history kept under a known namespace). */
  namespace?: string;
  /** Start the operator now (default) or leave it to the test. */
  startOperator?: boolean;
  /** How the operator runs with the scenario's environment: `node src/main.ts` here by default; image.test.ts runs the image under podman. */
  launch?: (env: Record<string, string>) => ChildProcess;
}

export interface OperatorHandle {
  child: ChildProcess;
  httpPort: number;
  log: string;
  /** The operator's /metrics text. */
  metrics(): Promise<string>;
}

export interface Scenario {
  namespace: string;
  /** Where the app's Deployments run. */
  target: string;
  app: string;
  github: GitHubSim;
  /** The Argo CD simulator syncing this namespace (stop it to write the Application's status by hand). */
  argocd: ArgoCdSim;
  good: string;
  dir: string;
  store: AttemptStore;
  /** The JetStream stream of the operator's events: its installation's own, named from the scenario's etcd prefix. */
  stream: string;
  startOperator(env?: Record<string, string>): Promise<OperatorHandle>;
  /** CI (ci/build) reports this state on a commit, e.g. a rollback PR's head. */
  ci(sha: string, state: 'success' | 'failure'): void;
  /** Pushes a release of the app's manifest (broken or not), CI green on it. */
  release(image: string, broken: boolean, extraFiles?: Record<string, string>): Promise<string>;
  attempts(): Promise<AttemptRecord[]>;
  inState(state: State, timeoutMs?: number): Promise<AttemptRecord>;
  firstPull(timeoutMs?: number): Promise<SimPull>;
  /** Every operator log so far, for a failure message. */
  logs(): string;
  /** Creates the scenario's Application (again, after a test deleted it) as it was at the start; its uid. */
  createApplication(): Promise<string>;
}

export interface DeployedApplication {
  namespace: string;
  name: string;
  environment: 'staging' | 'production';
  /** The app's path in REPO. */
  path: string;
  /** Where its Deployments run. */
  target: string;
  /** The revision Argo CD deployed 24 h ago. */
  good: string;
  labels?: Record<string, string>;
}

/**
 * An Application of REPO that Argo CD deployed from `good` 24 h ago: created, then its status written as Argo CD
 * left it. An Argo CD simulator watching its namespace syncs it to the branch's head from there. Its uid.
 */
export async function createDeployedApplication(stack: StackEndpoints, a: DeployedApplication): Promise<string> {
  const api = kubeConfig(stack).makeApiClient(CustomObjectsApi);
  const created = await api.createNamespacedCustomObject({ group: 'argoproj.io', version: 'v1alpha1', namespace: a.namespace, plural: 'applications', body: {
    apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name: a.name, namespace: a.namespace, labels: { 'ai-operator.enabled': 'true', environment: a.environment, ...a.labels } },
    spec: { project: 'default', source: { repoURL: `https://github.com/${REPO.owner}/${REPO.repo}.git`, path: a.path, targetRevision: 'main' }, destination: { namespace: a.target } },
  } }) as { metadata: { uid: string } };
  const dayAgo = new Date(Date.now() - 24 * 3600_000).toISOString();
  await api.patchNamespacedCustomObjectStatus({ group: 'argoproj.io', version: 'v1alpha1', namespace: a.namespace, plural: 'applications', name: a.name, body: {
    status: { sync: { status: 'Synced', revision: a.good }, health: { status: 'Healthy' }, history: [{ id: 0, revision: a.good, deployedAt: dayAgo, deployStartedAt: dayAgo }] },
  } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  return created.metadata.uid;
}

export type Stopper = () => Promise<void> | void;

export async function givenRollbackScenario(stack: StackEndpoints, name: string, options: ScenarioOptions, stoppers: Stopper[]): Promise<Scenario> {
  const namespace = options.namespace ?? await freshNamespace(stack, name);
  if (options.namespace) await kubectlOk(stack, ['create', 'namespace', options.namespace]);
  const target = `${namespace}-workload`;
  const app = options.app ?? 'cart';
  const dir = mkdtempSync(join(tmpdir(), `ai-operator-${name}-`));
  const prefix = `/e2e/${namespace}`;

  // Given a GitOps repo with a good release, CI green on it
  const github = await startGitHubSim({ validate: true });
  stoppers.push(async () => {
    // Every answer of the scenario must be one GitHub could have sent.
    const violations = github.violations();
    await github.stop();
    if (violations.length > 0) throw new Error(`the GitHub simulator answered outside GitHub's OpenAPI description:\n${violations.join('\n')}`);
  });
  const { token } = github.control.addUser({ login: 'ai-operator-bot' });
  await github.control.createRepo({ ...REPO, files: { 'README.md': 'x\n', 'apps/other/config.yaml': 'keep: me\n' }, message: 'init' });
  const release = async (image: string, broken: boolean, extraFiles: Record<string, string> = {}) => {
    const { sha } = await github.control.push({ ...REPO, files: { [`${APP_PATH}/deployment.yaml`]: deployment(options.workload ?? app, target, image, broken), ...extraFiles }, message: `Release ${image}` });
    github.control.setStatus({ ...REPO, sha, state: 'success', context: 'ci/build' });
    return sha;
  };
  const good = await release('v1', false);

  // And an Application that Argo CD deployed from it 24 h ago, kept in sync by the simulator
  const kc = kubeConfig(stack);
  const createApplication = () => createDeployedApplication(stack, { namespace, name: app, environment: options.environment, path: APP_PATH, target, good });
  await createApplication();
  const argocd: ArgoCdSim = await startArgoCdSim({ kubeConfig: kc, repoRoot: github.root, intervalMs: 500, namespaces: [namespace] });
  stoppers.push(() => argocd.stop());
  await argocd.syncNow();

  const kv = new EtcdKV([stack.etcd], { prefix });
  stoppers.push(() => kv.close());
  const store = new AttemptStore(kv);
  const logs: string[] = [];

  const startOperator = async (env: Record<string, string> = {}): Promise<OperatorHandle> => {
    const httpPort = await freePort();
    const log = join(dir, `operator-${logs.length + 1}.log`);
    logs.push(log);
    const operatorEnv: Record<string, string> = {
      ...inheritedEnv(), KUBECONFIG: stack.kubeconfig, ETCD_ENDPOINTS: stack.etcd, ETCD_PREFIX: prefix, NATS_URL: stack.nats,
      PROMETHEUS_URL: stack.prometheus, ELASTICSEARCH_URL: stack.elasticsearch, GITHUB_API_URL: github.url, GITHUB_ORG: REPO.owner,
      GITHUB_TOKEN: token, AUDIT_FALLBACK_DIR: join(dir, 'audit'), HTTP_PORT: String(httpPort), POD_NAME: `${name}-${logs.length}`,
      POLL_INTERVAL_SEC: '1', HEALTH_RESTORATION_DURATION: '3', WATCH_NAMESPACES: namespace, LOG_LEVEL: 'INFO',
      ...options.env, ...env,
    };
    const child = options.launch ? options.launch(operatorEnv) : spawn(process.execPath, [MAIN], { env: operatorEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = createWriteStream(log);
    child.stdout!.pipe(out);
    child.stderr!.pipe(out);
    stoppers.push(() => { child.kill('SIGTERM'); });
    return {
      child, httpPort, log,
      metrics: async () => (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text(),
    };
  };
  if (options.startOperator !== false) await startOperator();

  const attempts = async () => (await store.allAttempts()).filter((r) => r.app.namespace === namespace);
  return {
    namespace, target, app, github, argocd, good, dir, store, startOperator, attempts, release, createApplication,
    stream: streamNameFor(installationNameFrom(prefix)!),
    ci: (sha, state) => { github.control.setStatus({ ...REPO, sha, state, context: 'ci/build' }); },
    inState: (state, timeoutMs = 60_000) => eventually(state, async () => (await attempts()).find((r) => r.state === state), timeoutMs, 250),
    firstPull: (timeoutMs = 60_000) => eventually('rollback PR', async () => github.control.pulls(REPO)[0], timeoutMs, 100),
    logs: () => logs.map((file) => `---- ${file}\n${readFileSync(file, 'utf8').split('\n').slice(-40).join('\n')}`).join('\n'),
  };
}
