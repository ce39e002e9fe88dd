// The operator, unchanged (src/main.ts as a process), against real Argo CD 3.6 on
// the stack's GitOps cluster (gitops-cluster.ts): real Deployments rolled out by
// kube-controller-manager onto KWOK pods, Argo CD itself computing Healthy and
// Degraded (progressDeadlineSeconds exceeded) and syncing the rollback PR's merge
// commit from the GitHub simulator's bare repository, served by the git daemon.
// Each scenario keeps its Applications, RollbackPolicy and RollbackAttempts in a
// namespace of its own (argocd-apps-*: the shared controller's apps in any
// namespace), its operator watches only that one, under its own etcd prefix on the
// shared etcd; NATS, Prometheus (which scrapes the shared controller's
// argocd_app_info) and Elasticsearch are the stack's.
import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, inject, it } from 'vitest';
import { startApplicationController, prepareArgoCdNamespace } from '../../dev/stack/argocd.ts';
import { startGitHubSim, type GitHubSim } from '../../dev/github-sim/index.ts';
import type { StackEndpoints } from '../../dev/stack/index.ts';
import { BROKEN_RELEASE, FLAKY_RELEASE, RECOVER_AFTER_ANNOTATION, TEST_RELEASE_LABEL } from '../../dev/stack/kwok.ts';
import { freePort } from '../../dev/stack/process.ts';
import type { AttemptRecord } from '../../src/fsm/record.ts';
import type { State } from '../../src/fsm/table.ts';
import { AttemptStore, KEYS } from '../../src/store/attempt-store.ts';
import { EtcdKV } from '../../src/store/etcd.ts';
import { applicationStatus, appInfoLabels, deploymentsIn, type HistoryEntry } from '../../dev/argocd-sim/rules.ts';
import { argocdCmData } from '../../dev/scripts/argocd-cm.ts';
import { grantPatch, installApprovalPolicy } from './support/approvals.ts';
import { runHealthLua } from './support/argocd-health.ts';
import { kubectl, kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';

const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));
const stack = inject('stack');
const argocd = stack.argocd!;
/** The stack as seen from the GitOps cluster: kubectl and the approval helpers go to its API server. */
const gitops: StackEndpoints = { ...stack, kubeUrl: argocd.kubeUrl, kubeconfig: argocd.kubeconfig, kubectl: argocd.kubectl };
const OWNER = 'acme';
const REPO = 'gitops';
/** Short, as users set it: a rollout that makes no progress for 12 s is Degraded. */
const PROGRESS_DEADLINE_SECONDS = 12;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const secondsSince = (t: number) => `${((Date.now() - t) / 1000).toFixed(1)} s`;

type Json = Record<string, any>;
interface AppStatus {
  health?: { status?: string; message?: string };
  sync?: { status?: string; revision?: string; revisions?: string[] };
  history?: Array<{ id: number; revision?: string; revisions?: string[]; deployedAt: string }>;
  resources?: Array<{ kind: string; name: string; namespace?: string; status?: string; health?: { status?: string; message?: string } }>;
  resourceHealthSource?: string;
  sourceHydrator?: unknown;
  operationState?: { phase?: string };
}

async function until<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean, timeoutMs: number, everyMs = 500): Promise<T> {
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
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}; last seen: ${JSON.stringify(last)?.slice(0, 3000)} ${lastError}`);
}

const json = async <T>(args: string[]): Promise<T> => JSON.parse(await kubectlOk(gitops, [...args, '-o', 'json'])) as T;
const apply = (object: unknown) => kubectlOk(gitops, ['apply', '--server-side', '--force-conflicts', '--field-manager=e2e-argocd-real', '-f', '-'], JSON.stringify(object));

/** A release of the app: a plain-YAML Deployment; `release` marks its pods for KWOK's stages (broken: crash-loop for ever, flaky: for a moment). */
function deploymentYaml(app: string, namespace: string, image: string, release?: { label: string; recoverAfterMs?: number }): string {
  return `${JSON.stringify({
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: app, namespace },
    spec: {
      replicas: 2,
      progressDeadlineSeconds: PROGRESS_DEADLINE_SECONDS,
      selector: { matchLabels: { app } },
      template: {
        metadata: {
          labels: { app, ...(release ? { [TEST_RELEASE_LABEL]: release.label } : {}) },
          ...(release?.recoverAfterMs ? { annotations: { [RECOVER_AFTER_ANNOTATION]: String(release.recoverAfterMs) } } : {}),
        },
        spec: { containers: [{ name: app, image: `registry.example/${app}:${image}` }] },
      },
    },
  }, null, 2)}\n`;
}

interface RealScenarioOptions {
  name: string;
  environment: 'staging' | 'production';
  /** A private application controller with --persist-resource-health for this scenario's namespace, instead of the shared one. */
  persistResourceHealth?: boolean;
  /** RollbackPolicy spec fields on top of the scenario's. */
  policy?: Json;
  env?: Record<string, string>;
}

interface RealScenario {
  /** Where the Application, its RollbackPolicy and RollbackAttempts are. */
  namespace: string;
  /** Where its Deployment runs. */
  target: string;
  app: string;
  github: GitHubSim;
  repoURL: string;
  appPath: string;
  store: AttemptStore;
  kv: EtcdKV;
  persistResourceHealth: boolean;
  /** Pushes a release (CI green on it) and returns its commit. */
  release(image: string, kind?: { label: string; recoverAfterMs?: number }): Promise<string>;
  /** Asks Argo CD to look at the repository now (a hard refresh skips the repo server's revision cache). */
  refresh(name?: string): Promise<void>;
  status(name?: string): Promise<AppStatus>;
  createApplication(name: string, spec: Json, labels?: Record<string, string>): Promise<void>;
  startOperator(env?: Record<string, string>): Promise<{ log: string; metrics(): Promise<string> }>;
  attempts(): Promise<AttemptRecord[]>;
  inState(state: State, timeoutMs?: number): Promise<AttemptRecord>;
  firstPull(timeoutMs?: number): Promise<ReturnType<GitHubSim['control']['pulls']>[number]>;
  logs(): string;
  stop(): Promise<void>;
}

/**
 * A GitOps repository in the GitHub simulator under the git daemon's root (the
 * URL Argo CD clones is the repository the PRs merge into), a good release v1,
 * the Application deployed from it by real Argo CD (Synced and Healthy), a
 * RollbackPolicy for it, and the operator (not started yet).
 */
async function givenRealScenario(options: RealScenarioOptions): Promise<RealScenario> {
  const id = `${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
  const stops: Array<() => Promise<void> | void> = [];
  const stop = async () => { for (const s of stops.splice(0).reverse()) await s(); };
  try {
    const persist = options.persistResourceHealth ?? false;
    // Under the shared controller: a namespace its --application-namespaces glob matches; a private one's own namespace otherwise.
    const namespace = persist ? `argocd-private-${options.name}-${id}` : `${argocd.applicationNamespaces.replace(/\*$/, '')}${options.name}-${id}`;
    const target = `${options.name}-${id}-workload`;
    const app = `${options.name}-${id}`;
    const appPath = `apps/${app}`;
    const dir = mkdtempSync(join(tmpdir(), `ai-operator-argocd-real-${options.name}-`));

    if (!persist) await kubectlOk(gitops, ['create', 'namespace', namespace]);
    else {
      // What Argo CD's install puts in its namespace, for a controller of its own.
      await prepareArgoCdNamespace(gitops, namespace);
      const controller = await startApplicationController(dir, {
        kube: gitops, namespace, repoServer: argocd.repoServer, redis: argocd.redis, persistResourceHealth: true, redisDb: 2,
        name: `argocd-controller-${options.name}`,
      });
      stops.push(() => controller.process.stop());
    }

    const github = await startGitHubSim({ validate: true, root: join(argocd.gitRoot, `argocd-real-${id}`) });
    stops.push(async () => {
      const violations = github.violations();
      await github.stop();
      if (violations.length > 0) throw new Error(`the GitHub simulator answered outside GitHub's OpenAPI description:\n${violations.join('\n')}`);
    });
    const { token } = github.control.addUser({ login: 'ai-operator-bot' });
    await github.control.createRepo({ owner: OWNER, repo: REPO, files: { 'README.md': 'x\n', 'apps/other/config.yaml': 'keep: me\n' }, message: 'init' });
    const repoURL = `${argocd.gitUrl}/argocd-real-${id}/${OWNER}/${REPO}.git`;
    const release = async (image: string, kind?: { label: string; recoverAfterMs?: number }) => {
      const { sha } = await github.control.push({ owner: OWNER, repo: REPO, files: { [`${appPath}/deployment.yaml`]: deploymentYaml(app, target, image, kind) }, message: `Release ${image}` });
      github.control.setStatus({ owner: OWNER, repo: REPO, sha, state: 'success', context: 'ci/build' });
      return sha;
    };
    const good = await release('v1');

    const status = async (name = app) => (await json<{ status?: AppStatus }>(['get', 'application', '-n', namespace, name])).status ?? {};
    const createApplication = async (name: string, spec: Json, labels: Record<string, string> = {}) => {
      await apply({ apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name, namespace, labels }, spec: { project: 'default', ...spec } });
    };
    await createApplication(app, {
      source: { repoURL, path: appPath, targetRevision: 'main' },
      destination: { server: 'https://kubernetes.default.svc', namespace: target },
      syncPolicy: { automated: { prune: true, selfHeal: true }, syncOptions: ['CreateNamespace=true'] },
    }, { 'ai-operator.enabled': 'true', environment: options.environment });
    await apply({
      apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name: 'policy', namespace },
      spec: {
        environment: options.environment, detection: { intervalSeconds: 1, persistenceChecks: 3 }, healthRestorationSeconds: 5,
        ...(options.environment === 'production' ? { merge: { approvers: { users: ['alice@example.com'] } } } : {}),
        ...options.policy,
      },
    });
    const t0 = Date.now();
    await until(`${app} Synced and Healthy at v1`, () => status(), (s) => s.sync?.revision === good && s.health?.status === 'Healthy', 90_000);
    console.log(`argocd-real ${options.name}: Application created → Synced+Healthy in ${secondsSince(t0)}`);

    const kv = new EtcdKV([stack.etcd], { prefix: `/e2e-argocd/${namespace}` });
    stops.push(() => kv.close());
    const store = new AttemptStore(kv);
    const logs: string[] = [];
    const startOperator = async (env: Record<string, string> = {}) => {
      const httpPort = await freePort();
      const log = join(dir, `operator-${logs.length + 1}.log`);
      logs.push(log);
      const child = spawn(process.execPath, [MAIN], {
        env: {
          PATH: process.env.PATH, KUBECONFIG: argocd.kubeconfig, ETCD_ENDPOINTS: stack.etcd, ETCD_PREFIX: `/e2e-argocd/${namespace}`, NATS_URL: stack.nats,
          PROMETHEUS_URL: stack.prometheus, ELASTICSEARCH_URL: stack.elasticsearch, GITHUB_API_URL: github.url, GITHUB_ORG: OWNER,
          GITHUB_TOKEN: token, AUDIT_FALLBACK_DIR: join(dir, 'audit'), HTTP_PORT: String(httpPort), POD_NAME: `${options.name}-${logs.length}`,
          POLL_INTERVAL_SEC: '1', WATCH_NAMESPACES: namespace, LOG_LEVEL: 'INFO',
          // The namespace of the controller that syncs the app: Argo CD's tracking names the app by it.
          ARGOCD_NAMESPACE: persist ? namespace : argocd.namespace, ...options.env, ...env,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const out = createWriteStream(log);
      child.stdout!.pipe(out);
      child.stderr!.pipe(out);
      stops.push(() => new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }));
      return { log, metrics: async () => (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text() };
    };
    const attempts = async () => (await store.allAttempts()).filter((r) => r.app.namespace === namespace);
    return {
      namespace, target, app, github, repoURL, appPath, store, kv, persistResourceHealth: persist, release, status, createApplication, startOperator, attempts,
      refresh: async (name = app) => { await kubectlOk(gitops, ['annotate', '--overwrite', 'application', '-n', namespace, name, 'argocd.argoproj.io/refresh=hard']); },
      inState: (state, timeoutMs = 120_000) => eventually(state, async () => (await attempts()).find((r) => r.state === state), timeoutMs, 250),
      firstPull: (timeoutMs = 120_000) => eventually('rollback PR', async () => github.control.pulls({ owner: OWNER, repo: REPO })[0], timeoutMs, 250),
      logs: () => logs.map((file) => `---- ${file}\n${readFileSync(file, 'utf8').split('\n').slice(-60).join('\n')}`).join('\n'),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * Waits until the uptime the operator's default query gives the deployed revision — over its window so
 * far, from argocd_app_info that Prometheus scraped from the shared controller — is at least `min`, over
 * 10 s or more: the window the operator measures ends later, when the next revision deploys, with only
 * more Healthy samples in it.
 */
async function untilUptime(s: RealScenario, min: number): Promise<{ seconds: number; uptime: number }> {
  const deployedAt = Date.parse((await s.status()).history!.at(-1)!.deployedAt);
  const uptimeSoFar = async () => {
    const seconds = Math.floor((Date.now() - deployedAt) / 1000);
    const series = `argocd_app_info{name="${s.app}",job="${argocd.prometheusJob}"`;
    const query = `sum(count_over_time(${series},health_status="Healthy"}[${seconds}s])) / sum(count_over_time(${series}}[${seconds}s]))`;
    const answer = await (await fetch(`${stack.prometheus}/api/v1/query?query=${encodeURIComponent(query)}`)).json() as { data: { result: Array<{ value: [number, string] }> } };
    return { seconds, uptime: Number(answer.data.result[0]?.value[1] ?? 0) };
  };
  return until(`Prometheus has scraped ${s.app} Healthy from Argo CD for 10 s, ${min * 100} % of its deployed window`, uptimeSoFar, (u) => u.seconds >= 10 && u.uptime >= min, 90_000, 1000);
}

/** Degraded as real Argo CD reports it: the broken release synced, its Deployment past the progress deadline. */
async function degradedAt(s: RealScenario, broken: string): Promise<AppStatus> {
  const t = Date.now();
  const degraded = await until(`${s.app} Degraded at the broken commit`, () => s.status(), (x) => x.sync?.revision === broken && x.health?.status === 'Degraded', 120_000);
  console.log(`argocd-real ${s.app}: push → Degraded in ${secondsSince(t)} (progressDeadlineSeconds ${PROGRESS_DEADLINE_SECONDS})`);
  const rollout = await json<{ status: { conditions: Array<{ type: string; status: string; reason: string }> } }>(['get', 'deployment', '-n', s.target, s.app]);
  expect(rollout.status.conditions.find((c) => c.type === 'Progressing')).toMatchObject({ status: 'False', reason: 'ProgressDeadlineExceeded' });
  // Argo CD 3.x keeps each resource's health out of the Application unless the controller persists it.
  const resource = degraded.resources?.find((r) => r.kind === 'Deployment' && r.name === s.app);
  expect(resource?.status).toBe('Synced');
  if (s.persistResourceHealth) {
    expect(resource?.health).toMatchObject({ status: 'Degraded', message: `Deployment "${s.app}" exceeded its progress deadline` });
    // ResourceHealthLocationInline is the empty string: the field is absent.
    expect(degraded.resourceHealthSource).toBeUndefined();
  } else {
    expect(resource?.health).toBeUndefined();
    expect(degraded.resourceHealthSource).toBe('appTree');
  }
  // The app's own message names the resource that made it Degraded, not that resource's message.
  expect(degraded.health).toMatchObject({ status: 'Degraded', message: `Caused by apps/Deployment:${s.target}/${s.app}` });
  // Written on every Application that synced, hydrator or not: the operator looks at spec.sourceHydrator only.
  expect(degraded.sourceHydrator).toEqual({});
  expectSimulatorAgrees(s, degraded, broken);
  return degraded;
}

/**
 * What the Argo CD simulator (dev/argocd-sim/rules.ts) writes for the same app in the same state agrees
 * with what real Argo CD wrote, field for field where the operator or a person reads it.
 */
function expectSimulatorAgrees(s: RealScenario, real: AppStatus & Json, broken: string): void {
  const source = { repoURL: s.repoURL, path: s.appPath, targetRevision: 'main' };
  const deployments = deploymentsIn([{ file: 'deployment.yaml', content: deploymentYaml(s.app, s.target, 'v2') }], s.target).map((d) => ({ ...d, broken: true }));
  const sim = applicationStatus({
    source, destination: { server: 'https://kubernetes.default.svc', namespace: s.target }, revision: broken,
    history: real.history as HistoryEntry[], deployments, now: new Date(), degradeAfterMs: 0, persistResourceHealth: s.persistResourceHealth,
    // A private controller's namespace is its own.
    controllerNamespace: s.persistResourceHealth ? s.namespace : argocd.namespace,
  }) as Json;
  expect(Object.keys(sim).filter((k) => sim[k] !== null && !(k in real))).toEqual([]);
  expect(sim.health).toEqual({ ...real.health, lastTransitionTime: expect.any(String) });
  expect(sim.resources).toEqual(real.resources);
  expect(sim.sync).toEqual(real.sync);
  for (const key of ['resourceHealthSource', 'sourceHydrator', 'controllerNamespace', 'sourceType']) expect([key, sim[key] ?? undefined]).toEqual([key, real[key]]);
  expect(sim.operationState).toMatchObject({ phase: real.operationState?.phase, operation: { initiatedBy: { automated: true } } });
}

/** CI green on the rollback PR's head; the attempt runs to RollbackComplete once Argo CD synced the merge and the app held Healthy. */
async function mergedAndRecovered(s: RealScenario, good: string, options: { approve?: () => Promise<void> } = {}): Promise<{ record: AttemptRecord; merged: AppStatus }> {
  const pr = await s.firstPull();
  s.github.control.setStatus({ owner: OWNER, repo: REPO, sha: pr.headSha, state: 'success', context: 'ci/build' });
  if (options.approve) await options.approve();
  const merged = await s.inState('RollbackMerged', 120_000);
  const mergeSha = await eventually('the merge commit', async () => s.github.control.pulls({ owner: OWNER, repo: REPO })[0]?.mergeCommitSha ?? undefined, 10_000);
  const t = Date.now();
  // Argo CD finds the merge commit by itself (resync and revision cache, 10 s each), and the rollout of the good release finishes.
  const synced = await until('Argo CD Synced and Healthy at the merge commit', () => s.status(), (x) => x.sync?.revision === mergeSha && x.health?.status === 'Healthy', 120_000);
  console.log(`argocd-real ${s.app}: merge → Argo CD Synced+Healthy at the merge commit in ${secondsSince(t)}`);
  expect(synced.history?.at(-1)?.revision).toBe(mergeSha);
  const record = await s.inState('RollbackComplete', 120_000);
  expect(record.transitions.map((t) => t.to)).toContain('RollbackMerged');
  expect(merged.candidate?.revision).toBe(good);
  return { record, merged: synced };
}

describe('the operator on real Argo CD 3.6 (issue 13 §3, §4)', () => {
  it.concurrent('(a) staging, history past its limit of 10, resource health not persisted: Degraded → PR → merge → Argo CD syncs it → RollbackComplete; target by uptime from Argo CD\'s own argocd_app_info', async () => {
    const started = Date.now();
    const s = await givenRealScenario({ name: 'staging', environment: 'staging', policy: { candidate: { minUptime: 0.6, window: '1h' } } });
    try {
      // Given ten more good releases, each synced by Argo CD (eleven in all: the history keeps ten)
      const goods = [(await s.status()).sync!.revision!];
      for (let i = 2; i <= 11; i++) {
        const sha = await s.release(`v${i}`);
        await s.refresh();
        await until(`v${i} synced`, () => s.status(), (x) => x.history?.at(-1)?.revision === sha, 60_000, 250);
        goods.push(sha);
      }
      const last = goods.at(-1)!;
      // v11 runs Healthy, and Prometheus has scraped that from Argo CD's metrics endpoint
      await until('v11 Healthy', () => s.status(), (x) => x.sync?.revision === last && x.health?.status === 'Healthy', 60_000);
      // The uptime the operator will measure over v11's window (it ends when v12 deploys, later: only more Healthy samples)
      const measured = await untilUptime(s, 0.8);
      console.log(`argocd-real staging: v11's uptime so far ${(measured.uptime * 100).toFixed(1)} % over ${measured.seconds} s (argocd_app_info scraped by Prometheus from Argo CD's metrics endpoint)`);
      await s.startOperator();

      // When a release whose pods crash-loop is pushed
      const broken = await s.release('v12', { label: BROKEN_RELEASE });
      await s.refresh();
      const degraded = await degradedAt(s, broken);
      writeFileSync(join(stack.workDir, `argocd-real-degraded-status-${s.app}.json`), JSON.stringify(degraded, null, 2));
      console.log(`argocd-real: the Application status real Argo CD wrote at Degraded:\n${JSON.stringify(degraded, null, 2)}`);
      // Argo CD kept the last ten deployments: v1 and v2 are gone from the history, v3…v11 and v12 remain
      expect(degraded.history).toHaveLength(10);
      expect(degraded.history!.map((h) => h.revision)).toEqual([...goods.slice(2), broken]);
      expect(degraded.history!.map((h) => h.id)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);

      // Then the operator confirms it, picks v11 by its uptime, opens the PR, merges it, and Argo CD deploys it
      const { record, merged } = await mergedAndRecovered(s, last);
      expect(record.candidate).toMatchObject({ revision: last, mode: 'metrics' });
      expect(record.candidate!.uptime).toBeGreaterThanOrEqual(0.6);
      console.log(`argocd-real staging: candidate ${record.candidate!.shortRevision} ${record.candidate!.evidence}`);
      expect(record.transitions.map((t) => t.to)).toEqual(['DegradationDetected', 'CandidateResolved', 'PRCreated', 'AwaitingMergeApproval', 'RollbackMerged', 'RollbackComplete']);
      expect(merged.history).toHaveLength(10);
      // The rollback restored v11's manifest; the crash-looping pods are gone
      const live = await json<{ spec: { template: { spec: { containers: Array<{ image: string }> }; metadata: { labels: Record<string, string> } } } }>(['get', 'deployment', '-n', s.target, s.app]);
      expect(live.spec.template.spec.containers[0]!.image).toBe(`registry.example/${s.app}:v11`);
      expect(live.spec.template.metadata.labels[TEST_RELEASE_LABEL]).toBeUndefined();
      console.log(`argocd-real staging: scenario took ${secondsSince(started)}`);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${s.logs()}`, { cause: error });
    } finally {
      await s.stop();
    }
  }, 420_000);

  it.concurrent('(a) staging with --persist-resource-health (a private controller): the same rollback, CI-only (Prometheus does not scrape that controller)', async () => {
    const started = Date.now();
    const s = await givenRealScenario({ name: 'persist', environment: 'staging', persistResourceHealth: true });
    try {
      const good = (await s.status()).sync!.revision!;
      await s.startOperator();
      const broken = await s.release('v2', { label: BROKEN_RELEASE });
      await s.refresh();
      await degradedAt(s, broken);
      const { record } = await mergedAndRecovered(s, good);
      expect(record.candidate).toMatchObject({ revision: good, mode: 'ci-only' });
      expect(record.transitions.map((t) => t.to)).toEqual(['DegradationDetected', 'CandidateResolved', 'PRCreated', 'AwaitingMergeApproval', 'RollbackMerged', 'RollbackComplete']);
      const healthy = await s.status();
      expect(healthy.resources?.find((r) => r.kind === 'Deployment')?.health?.status).toBe('Healthy');
      console.log(`argocd-real persist: scenario took ${secondsSince(started)}`);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${s.logs()}`, { cause: error });
    } finally {
      await s.stop();
    }
  }, 420_000);

  it.concurrent('(b)+(d) production: waits for an approver the API server checks; the RollbackAttempt\'s health is computed by real Argo CD from the shipped Lua in argocd-cm', async () => {
    const started = Date.now();
    // The shipped health scripts in the real argocd-cm (server-side apply of those keys only: idempotent, other keys untouched).
    await apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'argocd-cm', namespace: argocd.namespace }, data: argocdCmData() });
    const s = await givenRealScenario({ name: 'production', environment: 'production', env: { MERGE_APPROVAL_TIMEOUT: '600' }, policy: { candidate: { minUptime: 0.6, window: '1h' } } });
    try {
      const good = (await s.status()).sync!.revision!;
      // Prometheus scrapes the shared controller: v1 is chosen by its uptime (0.6 is what a few seconds of Progressing after its sync leave)
      await untilUptime(s, 0.8);
      const { bindingName } = await installApprovalPolicy(gitops, s.namespace);
      await grantPatch(gitops, s.namespace, 'alice@example.com');
      await grantPatch(gitops, s.namespace, 'mallory');
      await s.startOperator({ APPROVAL_POLICY_BINDING_NAME: bindingName });
      const broken = await s.release('v2', { label: BROKEN_RELEASE });
      await s.refresh();
      await degradedAt(s, broken);
      const pr = await s.firstPull();
      s.github.control.setStatus({ owner: OWNER, repo: REPO, sha: pr.headSha, state: 'success', context: 'ci/build' });
      const waiting = await s.inState('AwaitingMergeApproval');
      const attemptName = `${s.app}-${waiting.correlationId.replace(/-/g, '').slice(0, 8)}`;

      // (d) An Application whose source holds this RollbackAttempt (as it is, not synced): Argo CD finds the live
      // object, and its health — the shipped Lua's, run by Argo CD's own health code — is the app's.
      const live = await json<Json>(['get', 'rollbackattempt', '-n', s.namespace, attemptName]);
      await s.github.control.createRepo({ owner: OWNER, repo: 'attempts', files: {
        'attempt.yaml': JSON.stringify({ apiVersion: live.apiVersion, kind: live.kind, metadata: { name: attemptName, namespace: s.namespace }, spec: live.spec }),
      } });
      const view = `${s.app}-attempt`;
      await s.createApplication(view, {
        source: { repoURL: s.repoURL.replace(/gitops\.git$/, 'attempts.git'), path: '.', targetRevision: 'main' },
        destination: { server: 'https://kubernetes.default.svc', namespace: s.namespace },
      });
      const viewed = (want: string) => until(`${view} ${want}`, () => s.status(view), (x) => x.health?.status === want, 60_000);
      const suspended = await viewed('Suspended');
      expect(suspended.health?.message).toBe(`Caused by ai-operator.io/RollbackAttempt:${s.namespace}/${attemptName}`);
      // The same script under the project's Lua 5.1 harness gives the same health for the same object
      const lua = readFileSync(fileURLToPath(new URL('../../config/argocd/health/ai-operator.io_RollbackAttempt.lua', import.meta.url)), 'utf8');
      const expected = await runHealthLua(lua, await json<Json>(['get', 'rollbackattempt', '-n', s.namespace, attemptName]));
      expect(expected.status).toBe('Suspended');
      expect(expected.message).toContain('Waiting for an authorized approver');
      console.log(`argocd-real (d): Argo CD computed ${view} ${JSON.stringify(suspended.health)}; the Lua says ${JSON.stringify(expected)}`);

      // Mallory is no approver: the API server refuses her; nothing merges
      const approveAs = (user: string) => kubectl(gitops, ['annotate', '--overwrite', `--as=${user}`, 'rollbackattempt', attemptName, '-n', s.namespace, `ai-operator.io/approve=${user}`]);
      const mallory = await approveAs('mallory');
      expect(mallory.code).not.toBe(0);
      expect(mallory.stderr).toContain('mallory is not an approver of this RollbackAttempt (spec.approvers)');
      await sleep(2000);
      expect(s.github.control.pulls({ owner: OWNER, repo: REPO })[0]!.merged).toBe(false);

      const { record } = await mergedAndRecovered(s, good, { approve: async () => { expect((await approveAs('alice@example.com')).code).toBe(0); } });
      expect(record).toMatchObject({ approval: { approvedBy: 'alice@example.com' }, candidate: { revision: good, mode: 'metrics' } });
      expect(record.transitions.find((t) => t.to === 'RollbackMerged')?.reason).toBe('ApprovedAndMerged');
      // (d) And Argo CD now computes it Healthy: RollbackComplete
      const complete = await viewed('Healthy');
      console.log(`argocd-real (d): after RollbackComplete Argo CD computed ${view} ${JSON.stringify(complete.health)}`);
      console.log(`argocd-real production: scenario took ${secondsSince(started)}`);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${s.logs()}`, { cause: error });
    } finally {
      await s.stop();
    }
  }, 420_000);

  it.concurrent('(c) a transient: a release that crash-loops for a moment and recovers before its deadline is never rolled back; multi-source and source-hydrator apps are refused', async () => {
    const started = Date.now();
    const s = await givenRealScenario({ name: 'transient', environment: 'staging' });
    try {
      // Two more Applications of the same repository that the operator does not handle yet (not synced: Argo CD compares them only)
      await s.github.control.push({ owner: OWNER, repo: REPO, message: 'more apps', files: {
        'apps/multi-a/cm.yaml': JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'multi-a' }, data: { a: '1' } }),
        'apps/multi-b/cm.yaml': JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'multi-b' }, data: { b: '1' } }),
      } });
      const destination = { server: 'https://kubernetes.default.svc', namespace: `${s.target}-more` };
      await s.createApplication('multi', { sources: [{ repoURL: s.repoURL, path: 'apps/multi-a', targetRevision: 'main' }, { repoURL: s.repoURL, path: 'apps/multi-b', targetRevision: 'main' }], destination }, { 'ai-operator.enabled': 'true' });
      await s.createApplication('hydrated', { sourceHydrator: { drySource: { repoURL: s.repoURL, path: 'apps/multi-a', targetRevision: 'main' }, syncSource: { targetBranch: 'env/staging', path: 'apps/multi-a' } }, destination }, { 'ai-operator.enabled': 'true' });
      await s.startOperator();
      // The shapes it does not handle are refused on the policy, as read from what real Argo CD wrote
      // (which also says that the operator governs this namespace's apps before anything else happens)
      const multi = await until('Argo CD compared the multi-source app', () => s.status('multi'), (x) => (x.sync?.revisions?.length ?? 0) === 2, 60_000);
      console.log(`argocd-real (c): the multi-source Application's status as real Argo CD wrote it:\n${JSON.stringify(multi, null, 2)}`);
      const condition = await eventually('ApplicationsRefused condition', async () => {
        const policy = await json<{ status?: { conditions?: Array<{ type: string; status: string; reason: string; message: string }> } }>(['get', 'rollbackpolicy', 'policy', '-n', s.namespace]);
        return policy.status?.conditions?.find((c) => c.type === 'ApplicationsRefused' && c.status === 'True');
      }, 60_000, 500);
      expect(condition).toMatchObject({ reason: 'UnsupportedShape', message: '2 governed Application(s) refused, their shape not handled yet (multi-source or source hydrator): hydrated, multi' });

      // When a release crash-loops for 5 s and then its pods become Ready (well before the 12 s deadline)
      const flaky = await s.release('v2', { label: FLAKY_RELEASE, recoverAfterMs: 5000 });
      await s.refresh();
      const seen = new Set<string>();
      const healthy = await until('Healthy at the flaky release', async () => { const x = await s.status(); seen.add(x.health?.status ?? ''); return x; },
        (x) => x.sync?.revision === flaky && x.operationState?.phase === 'Succeeded' && x.health?.status === 'Healthy' && seen.has('Progressing'), 90_000, 250);
      const pods = await json<{ items: Array<{ status: { containerStatuses?: Array<{ restartCount: number; ready: boolean }> } }> }>(['get', 'pods', '-n', s.target, '-l', `${TEST_RELEASE_LABEL}=${FLAKY_RELEASE}`]);
      expect(pods.items.length).toBe(2);
      expect(pods.items.every((p) => p.status.containerStatuses?.[0]?.ready === true && p.status.containerStatuses[0].restartCount >= 1)).toBe(true);
      expect([...seen]).not.toContain('Degraded');
      expect(healthy.history?.at(-1)?.revision).toBe(flaky);
      // Argo CD's argocd_app_info carries the labels the simulator gives it
      const line = (await (await fetch(argocd.metrics)).text()).split('\n').find((l) => l.startsWith('argocd_app_info{') && l.includes(`name="${s.app}"`));
      const labels = Object.fromEntries([...(line ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
      expect(labels).toEqual(appInfoLabels({
        namespace: s.namespace, name: s.app, automated: true, repoURL: s.repoURL, destServer: 'https://kubernetes.default.svc', destNamespace: s.target,
        syncStatus: 'Synced', healthStatus: 'Healthy', phase: 'Succeeded',
      }));
      // Then, well past persistence (3 checks at 1 s), nothing was started
      await sleep(6000);
      expect(await s.attempts()).toEqual([]);
      expect(await s.kv.get(KEYS.health(`${s.namespace}_${s.app}`))).toBeUndefined();
      expect(s.github.control.pulls({ owner: OWNER, repo: REPO })).toEqual([]);
      console.log(`argocd-real transient: scenario took ${secondsSince(started)}`);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${s.logs()}`, { cause: error });
    } finally {
      await s.stop();
    }
  }, 300_000);
});
