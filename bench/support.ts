// What bench/run.ts (`make bench`) and bench/soak.ts share: the GitHub simulator
// and the operator in their own processes, tethered like the stack's (a bench
// killed outright leaves neither behind), the Argo CD and Deployment statuses the
// harness writes as Argo CD and kube-controller-manager would (through writes.ts:
// a bounded pool of workers, retried), the Applications, and reading /proc,
// /metrics and etcd's leader key.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request, type RequestOptions } from 'node:https';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { AppsV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { StackEndpoints } from '../dev/stack/index.ts';
import { GITHUB_LIMITS, type GitHubLimits } from '../src/integrations/github-budget.ts';
import { KeepAliveKubeConfig } from '../src/integrations/kube-config.ts';
import { pool, write, type WriteStats } from './writes.ts';

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

const tetherScript = fileURLToPath(new URL('../dev/scripts/tether.sh', import.meta.url));

/** A child process of the bench, run under dev/scripts/tether.sh: it is stopped within a second of the bench going away, however it goes. */
export interface BenchProcess {
  /** The process itself, not its tether: what /proc is read for and signals go to. */
  readonly pid: number;
  /** Its exit code (128 + the signal for one it died of), null while it runs. */
  exitCode(): number | null;
  /** Resolves with exitCode() once it and its tether are gone. */
  readonly exited: Promise<number | null>;
  /** Sends `signal` to the process itself (SIGKILL included: its tether then exits, nothing is orphaned). */
  kill(signal: NodeJS.Signals): void;
  /** SIGTERM, SIGKILL 20 s later if it is still there; resolves once it is gone. */
  stop(): Promise<void>;
  /** The tether's stdout (the process's own, passed through), when stdout is 'pipe'. */
  readonly stdout: ChildProcess['stdout'];
}

/** The pid of `tether`'s child once it runs `command` (the tether forks, then the child execs). */
async function tetheredPid(tether: ChildProcess, command: string): Promise<number> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (tether.exitCode !== null || tether.signalCode !== null) throw new Error(`${command}: its tether exited (${tether.exitCode ?? tether.signalCode}) before it started`);
    try {
      const children = readFileSync(`/proc/${tether.pid}/task/${tether.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
      for (const pid of children) {
        const argv0 = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0];
        if (argv0 === command) return pid;
      }
    } catch {
      // The tether or its child is between fork and exec, or gone (the next pass says which).
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${command}: not started under its tether (pid ${tether.pid}) within 10 s`);
}

/** `node args…` under the tether; stderr is the bench's, stdout piped or ignored. */
export async function spawnTethered(name: string, args: string[], options: { env?: NodeJS.ProcessEnv; stdout: 'pipe' | 'ignore' }): Promise<BenchProcess> {
  const tether = spawn(tetherScript, [String(process.pid), process.execPath, ...args], { env: options.env ?? process.env, stdio: ['ignore', options.stdout, 'inherit'] });
  let code: number | null = null;
  const exited = new Promise<number | null>((resolve) => tether.once('exit', (c, signal) => {
    code = c ?? (signal ? 128 : 1);
    resolve(code);
  }));
  const pid = await tetheredPid(tether, process.execPath);
  const kill = (signal: NodeJS.Signals) => {
    try {
      process.kill(pid, signal);
    } catch { /* already gone */ }
  };
  return {
    pid, exited, kill, stdout: tether.stdout,
    exitCode: () => code,
    stop: async () => {
      if (code !== null) return;
      kill('SIGTERM');
      const killer = setTimeout(() => {
        process.stderr.write(`${name} still running 20 s after SIGTERM: SIGKILL\n`);
        kill('SIGKILL');
      }, 20_000);
      await exited;
      clearTimeout(killer);
    },
  };
}

export interface SimProcess {
  url: string;
  process: BenchProcess;
  /** A control method (POST /_sim/<method>); fails on any answer but 2xx. */
  control<T = unknown>(method: string, arg?: unknown): Promise<T>;
  /** The same, undefined when the simulator answers 4xx (a method it does not have). */
  controlIfAny<T = unknown>(method: string, arg?: unknown): Promise<T | undefined>;
}

/**
 * BENCH_GITHUB_LIMITS: `github` for github.com's numbers; by default an Enterprise Server whose admin raised the
 * content limits to what `burst` rollbacks opened within a minute need (five writes each, with room to spare),
 * the concurrency staying GitHub's 100. The same numbers go to the simulator and to the operator.
 */
export function githubLimitsFor(burst: number): { name: string; limits: GitHubLimits } {
  if (process.env.BENCH_GITHUB_LIMITS === 'github') return { name: 'github.com\'s documented secondary limits', limits: GITHUB_LIMITS };
  const limits = { writesPerMinute: Math.max(80, burst * 6), writesPerHour: Math.max(500, burst * 30), pointsPerMinute: Math.max(900, burst * 30), maxInFlight: GITHUB_LIMITS.maxInFlight };
  return { name: 'an Enterprise Server\'s secondary limits raised for the burst', limits };
}

/** The operator's settings for `limits`. */
export const operatorLimitsEnv = (limits: GitHubLimits): Record<string, string> => ({
  GITHUB_WRITES_PER_MINUTE: String(limits.writesPerMinute), GITHUB_WRITES_PER_HOUR: String(limits.writesPerHour), GITHUB_POINTS_PER_MINUTE: String(limits.pointsPerMinute),
});

/** The simulator in its own process, driven through its control API (POST /_sim/<method>); with `limits`, it enforces them. */
export async function startSimProcess(limits?: GitHubLimits): Promise<SimProcess> {
  const enforced = limits ? ['--secondary-content-per-minute', String(limits.writesPerMinute), '--secondary-content-per-hour', String(limits.writesPerHour),
    '--secondary-points-per-minute', String(limits.pointsPerMinute), '--secondary-concurrency', String(limits.maxInFlight)] : [];
  const child = await spawnTethered('the GitHub simulator', [fileURLToPath(new URL('../dev/github-sim/main.ts', import.meta.url)), '--no-validate', '--rate-limit', '1000000', ...enforced], { stdout: 'pipe' });
  const first = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    void child.exited.then((code) => reject(new Error(`the GitHub simulator exited (${code})`)));
  });
  const { url } = JSON.parse(first) as { url: string };
  const call = async (method: string, arg: unknown) => fetch(`${url}/_sim/${method}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(arg ?? {}) });
  return {
    url, process: child,
    control: async <T>(method: string, arg?: unknown) => {
      const res = await call(method, arg);
      if (!res.ok) throw new Error(`simulator ${method}: ${res.status} ${await res.text()}`);
      return await res.json() as T;
    },
    controlIfAny: async <T>(method: string, arg?: unknown) => {
      const res = await call(method, arg);
      if (res.status >= 400 && res.status < 500) return void await res.arrayBuffer();
      if (!res.ok) throw new Error(`simulator ${method}: ${res.status} ${await res.text()}`);
      return await res.json() as T;
    },
  };
}

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

/** The API clients of one connection. */
export interface KubeClients {
  api: CustomObjectsApi;
  apps: AppsV1Api;
  core: CoreV1Api;
}

/** How the harness writes: `writers` at once, `perConnection` of them on each connection to kube-apiserver (0: a connection per request). */
export interface Writers {
  writers: number;
  perConnection: number;
  stats?: WriteStats;
}

/**
 * BENCH_WRITERS (32) and BENCH_WRITERS_PER_CONNECTION (all of them on one
 * connection; 0: the client library's own way, a new connection per request).
 */
export function writersFromEnv(stats?: WriteStats): Writers {
  const writers = Math.max(1, Number(process.env.BENCH_WRITERS ?? 32));
  const perConnection = Math.max(0, Number(process.env.BENCH_WRITERS_PER_CONNECTION ?? writers));
  return { writers, perConnection, ...(stats ? { stats } : {}) };
}

export interface BenchCluster extends KubeClients {
  kc: KubeConfig;
  mergePatch: ReturnType<typeof setHeaderOptions>;
  /** The clients writer `worker` uses: one connection per `perConnection` writers. */
  lane(worker: number): KubeClients;
}

/**
 * The harness's clients. @kubernetes/client-node 2.x opens a new connection for
 * each request; the operator's KeepAliveKubeConfig keeps one, and the harness
 * opens one per `perConnection` of its writers.
 */
export function benchCluster(endpoints: StackEndpoints, writers: Pick<Writers, 'writers' | 'perConnection'> = { writers: 1, perConnection: 1 }): BenchCluster {
  const perRequest = writers.perConnection === 0;
  const clients = (): KubeClients & { kc: KubeConfig } => {
    const kc = perRequest ? new KubeConfig() : new KeepAliveKubeConfig();
    kc.loadFromFile(endpoints.kubeconfig);
    return { kc, api: kc.makeApiClient(CustomObjectsApi), apps: kc.makeApiClient(AppsV1Api), core: kc.makeApiClient(CoreV1Api) };
  };
  const lanes = Array.from({ length: perRequest ? 1 : Math.ceil(writers.writers / writers.perConnection) }, clients);
  const first = lanes[0]!;
  return {
    ...first, mergePatch: setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    lane: (worker) => (perRequest ? first : lanes[Math.floor(worker / writers.perConnection) % lanes.length]!),
  };
}

const APPLICATIONS = { group: 'argoproj.io', version: 'v1alpha1', namespace: 'argocd', plural: 'applications' } as const;

/**
 * `count` staging Applications, Healthy on `bad` after `good`, each listing its
 * Deployment; the first `withDeployments` also get their namespace and a
 * rolled-out Deployment in the cluster (the ones that will degrade).
 */
export async function createApps(cluster: BenchCluster, count: number, withDeployments: number, good: string, bad: string, writers: Writers): Promise<void> {
  const { mergePatch } = cluster;
  const deployedAt = new Date(Date.now() - 24 * 3600_000).toISOString();
  const options = writers.stats ? { stats: writers.stats } : {};
  await pool(count, writers.writers, async (i, worker) => {
    const { api, apps, core } = cluster.lane(worker);
    const app = name(i);
    if (i < withDeployments) {
      await write(app, 'create its namespace', 'create', () => core.createNamespace({ body: { metadata: { name: app } } }), options);
      await write(app, 'create its Deployment', 'create', () => apps.createNamespacedDeployment({ namespace: app, body: deployment(app) }), options);
      await write(app, 'roll its Deployment out (status)', 'patch', () => apps.patchNamespacedDeploymentStatus({ namespace: app, name: app, body: { status: rolledOut(app, deployedAt) } }, mergePatch), options);
    }
    await write(app, 'create the Application', 'create', () => api.createNamespacedCustomObject({ ...APPLICATIONS, body: {
      apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name: app, namespace: 'argocd', labels: { 'ai-operator.enabled': 'true', environment: 'staging' } },
      spec: { project: 'default', source: { repoURL: 'https://github.com/acme/gitops.git', path: `apps/${app}`, targetRevision: 'main' }, destination: { server: 'https://kubernetes.default.svc', namespace: app } },
    } }), options);
    await write(app, 'report the Application Healthy (status)', 'patch', () => api.patchNamespacedCustomObjectStatus({ ...APPLICATIONS, name: app, body: {
      status: {
        health: { status: 'Healthy' }, sync: { status: 'Synced', revision: bad },
        history: [{ id: 0, revision: good, deployedAt }, { id: 1, revision: bad, deployedAt: new Date().toISOString() }],
        resources: [deploymentResource(app, { status: 'Healthy' })],
      },
    } }, mergePatch), options);
  });
}

/** The rollout of `app` stalls, as kube-controller-manager leaves a release whose pods never become ready. */
export async function stall(cluster: BenchCluster, app: string, at: string, clients: KubeClients = cluster, stats?: WriteStats): Promise<void> {
  await write(app, 'stall its Deployment (status)', 'patch', () => clients.apps.patchNamespacedDeploymentStatus({ namespace: app, name: app, body: { status: stuckRollout(app, at) } }, cluster.mergePatch), stats ? { stats } : {});
}

/** Argo CD reports what it reads of a stalled rollout: the app Degraded. */
export async function reportDegraded(cluster: BenchCluster, app: string, clients: KubeClients = cluster, stats?: WriteStats): Promise<void> {
  await write(app, 'report the Application Degraded (status)', 'patch', () => clients.api.patchNamespacedCustomObjectStatus({ ...APPLICATIONS, name: app, body: { status: {
    health: { status: 'Degraded' },
    resources: [deploymentResource(app, { status: 'Degraded', message: `Deployment "${app}" exceeded its progress deadline` })],
  } } }, cluster.mergePatch), stats ? { stats } : {});
}

/** Turns `app` Degraded: its rollout stalls, then Argo CD reports it. */
export async function degrade(cluster: BenchCluster, app: string): Promise<void> {
  await stall(cluster, app, new Date().toISOString());
  await reportDegraded(cluster, app);
}

/** The operator (src/main.ts) on the stack, against the simulator, every 10 s; resolves once it is ready. */
export async function startOperator(endpoints: StackEndpoints, options: { github: string; token: string; auditDir: string; httpPort: number; identity?: string; env?: Record<string, string>; execArgv?: string[] }): Promise<BenchProcess> {
  const operator = await spawnTethered(`the operator${options.identity ? ` ${options.identity}` : ''}`, [...(options.execArgv ?? []), fileURLToPath(new URL('../src/main.ts', import.meta.url))], {
    env: {
      PATH: process.env.PATH, KUBECONFIG: endpoints.kubeconfig, ETCD_ENDPOINTS: endpoints.etcd, NATS_URL: endpoints.nats,
      PROMETHEUS_URL: endpoints.prometheus, ELASTICSEARCH_URL: endpoints.elasticsearch, GITHUB_API_URL: options.github,
      GITHUB_ORG: 'acme', GITHUB_TOKEN: options.token, AUDIT_FALLBACK_DIR: options.auditDir, HTTP_PORT: String(options.httpPort),
      POLL_INTERVAL_SEC: '10', LOG_LEVEL: 'WARN', ...(options.identity ? { POD_NAME: options.identity } : {}), ...options.env,
    },
    stdout: 'ignore',
  });
  const deadline = Date.now() + 15 * 60_000;
  for (;;) {
    if (operator.exitCode() !== null) throw new Error(`the operator exited (${operator.exitCode()}) before it was ready`);
    if (Date.now() > deadline) {
      await operator.stop();
      throw new Error('the operator was not ready within 15 minutes');
    }
    const ready = await fetch(`http://127.0.0.1:${options.httpPort}/readyz`).then((r) => r.ok, () => false);
    if (ready) return operator;
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** A key of etcd read through its HTTP gateway (/v3/kv/range): its value and create revision, undefined when absent. */
export async function etcdGet(endpoint: string, key: string): Promise<{ value: string; createRevision: string } | undefined> {
  const res = await fetch(`${endpoint}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: Buffer.from(key).toString('base64') }), signal: AbortSignal.timeout(2000) });
  if (!res.ok) throw new Error(`etcd range ${key}: ${res.status} ${await res.text()}`);
  const body = await res.json() as { kvs?: Array<{ value?: string; create_revision?: string }> };
  const kv = body.kvs?.[0];
  return kv ? { value: Buffer.from(kv.value ?? '', 'base64').toString('utf8'), createRevision: kv.create_revision ?? '' } : undefined;
}
