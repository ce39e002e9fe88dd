// The machinery of the e2e files that run the operator (src/main.ts as a process)
// against real Argo CD 3.6 on the stack's GitOps cluster (gitops-cluster.ts):
// a GitHub simulator whose bare repositories the git daemon serves to Argo CD,
// a namespace per scenario (argocd-apps-*: the shared controller's apps in any
// namespace, or a private controller's own), the operator watching only that
// namespace under its own etcd prefix, and waits on what Argo CD writes.
// Used by argocd-real.test.ts (one plain-YAML app per scenario) and
// argocd-source-shapes.test.ts (Kustomize, Helm, multi-source, monorepo apps).
import { execFile, spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { inject } from 'vitest';
import { prepareArgoCdNamespace, startApplicationController } from '../../../dev/stack/argocd.ts';
import { startGitHubSim, type GitHubSim } from '../../../dev/github-sim/index.ts';
import type { StackEndpoints } from '../../../dev/stack/index.ts';
import { RECOVER_AFTER_ANNOTATION, TEST_RELEASE_LABEL } from '../../../dev/stack/kwok.ts';
import { freePort } from '../../../dev/stack/process.ts';
import { attemptName, type AttemptRecord } from '../../../src/fsm/record.ts';
import type { State } from '../../../src/fsm/table.ts';
import { AttemptStore } from '../../../src/store/attempt-store.ts';
import { EtcdKV } from '../../../src/store/etcd.ts';
import { kubectlOk } from './kube.ts';
import { eventually, inheritedEnv } from './operator.ts';

const MAIN = fileURLToPath(new URL('../../../src/main.ts', import.meta.url));
export const stack = inject('stack');
export const argocd = stack.argocd!;
/** The stack as seen from the GitOps cluster: kubectl and the approval helpers go to its API server. */
export const gitops: StackEndpoints = { ...stack, kubeUrl: argocd.kubeUrl, kubeconfig: argocd.kubeconfig, kubectl: argocd.kubectl };
export const OWNER = 'acme';
/** Short, as users set it: a rollout that makes no progress for 12 s is Degraded. */
export const PROGRESS_DEADLINE_SECONDS = 12;
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const secondsSince = (t: number) => `${((Date.now() - t) / 1000).toFixed(1)} s`;

export type Json = Record<string, any>;
export interface AppStatus {
  health?: { status?: string; message?: string };
  sync?: { status?: string; revision?: string; revisions?: string[] };
  history?: Array<{ id: number; revision?: string; revisions?: string[]; deployedAt: string }>;
  resources?: Array<{ kind: string; name: string; namespace?: string; status?: string; health?: { status?: string; message?: string } }>;
  resourceHealthSource?: string;
  sourceHydrator?: unknown;
  sourceType?: string;
  sourceTypes?: string[];
  operationState?: { phase?: string };
}

/** The revision Argo CD compared last: `sync.revision`, or for a multi-source app the first source's of `sync.revisions`. */
export const syncedRevision = (s: AppStatus) => s.sync?.revision ?? s.sync?.revisions?.[0];
/** The revision of the last deployment (a sync operation) Argo CD recorded. */
export const deployedRevision = (s: AppStatus) => s.history?.at(-1)?.revision ?? s.history?.at(-1)?.revisions?.[0];

export async function until<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean, timeoutMs: number, everyMs = 500): Promise<T> {
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

export const json = async <T>(args: string[]): Promise<T> => JSON.parse(await kubectlOk(gitops, [...args, '-o', 'json'])) as T;
export const apply = (object: unknown) => kubectlOk(gitops, ['apply', '--server-side', '--force-conflicts', '--field-manager=e2e-argocd-real', '-f', '-'], JSON.stringify(object));

/**
 * A release of an app: a plain-YAML Deployment; `release` marks its pods for KWOK's stages (broken: crash-loop for ever,
 * flaky: for a moment; kwok-stages.yaml has the others). `defaultDeadline`: no progressDeadlineSeconds, so the API
 * server's default (600 s) applies, as in most manifests.
 */
export function deploymentYaml(app: string, namespace: string | undefined, image: string, release?: { label: string; recoverAfterMs?: number }, options: { defaultDeadline?: boolean } = {}): string {
  return `${JSON.stringify({
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: app, ...(namespace ? { namespace } : {}) },
    spec: {
      replicas: 2,
      ...(options.defaultDeadline ? {} : { progressDeadlineSeconds: PROGRESS_DEADLINE_SECONDS }),
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

export type SimPull = ReturnType<GitHubSim['control']['pulls']>[number];
export interface PullFile { filename: string; status: string; additions: number; deletions: number; patch?: string }
export interface PolicyCondition { type: string; status: string; reason: string; message: string }

export interface GitOpsRepoOptions {
  /** Names the namespace, the workload namespaces and the temporary directory. */
  name: string;
  /** A private application controller with --persist-resource-health for this namespace, instead of the shared one. */
  persistResourceHealth?: boolean;
  /** The repository's first commit (CI green on it). */
  files: Record<string, string>;
  message?: string;
  defaultBranch?: string;
  /** Operator environment for every start. */
  env?: Record<string, string>;
}

export interface GitOpsRepo {
  id: string;
  /**
   * The main repository's name: unique per scenario (gitops-<name>-<id>), so no other test's Application is
   * ever of the same owner/repository (what the operator's blast radius compares).
   */
  repo: string;
  /** Where the Applications, RollbackPolicies and RollbackAttempts are. */
  namespace: string;
  /** A prefix for the namespaces workloads run in. */
  target: string;
  github: GitHubSim;
  /** The operator's token on the simulator. */
  token: string;
  /** What Argo CD clones: `repoUrl()` of the main repository. */
  repoURL: string;
  /** The URL Argo CD clones for another repository of the same simulator (created with `github.control.createRepo`). */
  repoUrl(repo: string): string;
  firstCommit: string;
  store: AttemptStore;
  kv: EtcdKV;
  persistResourceHealth: boolean;
  /** A commit status on a commit of the main repository (ci/build, green unless said). */
  ci(sha: string, state?: 'success' | 'failure' | 'pending'): void;
  /** A commit on the default branch (or `branch`), CI green on it unless `ci: false`. */
  push(files: Record<string, string | null>, message: string, options?: { branch?: string; ci?: boolean }): Promise<string>;
  /** A file's content at a ref, from the bare repository (null when absent). */
  fileAt(ref: string, path: string): Promise<string | null>;
  /** Asks Argo CD to look at the repository now (a hard refresh skips the repo server's revision cache). */
  refresh(name: string): Promise<void>;
  status(name: string): Promise<AppStatus>;
  createApplication(name: string, spec: Json, labels?: Record<string, string>): Promise<void>;
  createPolicy(name: string, spec: Json): Promise<void>;
  policyCondition(name: string, type: string): Promise<PolicyCondition | undefined>;
  startOperator(env?: Record<string, string>): Promise<{ log: string; metrics(): Promise<string> }>;
  /** The attempts of this namespace (of one app when named). */
  attempts(app?: string): Promise<AttemptRecord[]>;
  inState(state: State, options?: { app?: string; timeoutMs?: number }): Promise<AttemptRecord>;
  /** The RollbackAttempt object of an attempt, as the operator wrote it. */
  attemptObject(record: AttemptRecord): Promise<Json>;
  /** The pull requests of the main repository (or `repo`). */
  pulls(repo?: string): SimPull[];
  firstPull(timeoutMs?: number): Promise<SimPull>;
  /** GET /repos/{owner}/{repo}/pulls/{n}/files, through the REST API as a client reads it. */
  pullFiles(number: number, repo?: string): Promise<PullFile[]>;
  /** The last lines of each operator log, and the namespace's attempts: for a failure's message. */
  logs(): Promise<string>;
  onStop(step: () => Promise<void> | void): void;
  stop(): Promise<void>;
}

/**
 * A GitOps repository in the GitHub simulator under the git daemon's root (the URL Argo CD clones is
 * the repository the PRs merge into) with `files` as its first commit, a namespace for the scenario's
 * Applications and RollbackPolicies, and the operator (not started yet).
 */
export async function givenGitOpsRepo(options: GitOpsRepoOptions): Promise<GitOpsRepo> {
  const id = `${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
  const stops: Array<() => Promise<void> | void> = [];
  const stop = async () => { for (const s of stops.splice(0).reverse()) await s(); };
  try {
    const persist = options.persistResourceHealth ?? false;
    // Under the shared controller: a namespace its --application-namespaces glob matches; a private one's own namespace otherwise.
    const namespace = persist ? `argocd-private-${options.name}-${id}` : `${argocd.applicationNamespaces.replace(/\*$/, '')}${options.name}-${id}`;
    const target = `${options.name}-${id}-workload`;
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
    const repoName = `gitops-${options.name}-${id}`;
    const ci = (sha: string, state: 'success' | 'failure' | 'pending' = 'success') => { github.control.setStatus({ owner: OWNER, repo: repoName, sha, state, context: 'ci/build' }); };
    const created = await github.control.createRepo({
      owner: OWNER, repo: repoName, files: options.files, message: options.message ?? 'init', ...(options.defaultBranch ? { defaultBranch: options.defaultBranch } : {}),
    });
    const firstCommit = created.sha!;
    ci(firstCommit);
    const repoUrl = (repo: string) => `${argocd.gitUrl}/argocd-real-${id}/${OWNER}/${repo}.git`;

    const push = async (files: Record<string, string | null>, message: string, pushOptions: { branch?: string; ci?: boolean } = {}) => {
      const { sha } = await github.control.push({ owner: OWNER, repo: repoName, files, message, ...(pushOptions.branch ? { branch: pushOptions.branch } : {}) });
      if (pushOptions.ci !== false) ci(sha);
      return sha;
    };
    const fileAt = async (ref: string, path: string) => {
      try {
        return (await promisify(execFile)('git', ['--git-dir', created.dir, 'show', `${ref}:${path}`])).stdout;
      } catch {
        return null;
      }
    };
    const status = async (name: string) => (await json<{ status?: AppStatus }>(['get', 'application', '-n', namespace, name])).status ?? {};
    const createApplication = async (name: string, spec: Json, labels: Record<string, string> = {}) => {
      await apply({ apiVersion: 'argoproj.io/v1alpha1', kind: 'Application', metadata: { name, namespace, labels }, spec: { project: 'default', ...spec } });
    };
    const createPolicy = async (name: string, spec: Json) => {
      await apply({ apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name, namespace }, spec });
    };
    const policyCondition = async (name: string, type: string) => {
      const policy = await json<{ status?: { conditions?: PolicyCondition[] } }>(['get', 'rollbackpolicy', name, '-n', namespace]);
      return policy.status?.conditions?.find((c) => c.type === type);
    };

    const kv = new EtcdKV([stack.etcd], { prefix: `/e2e-argocd/${namespace}` });
    stops.push(() => kv.close());
    const store = new AttemptStore(kv);
    const logFiles: string[] = [];
    const startOperator = async (env: Record<string, string> = {}) => {
      const httpPort = await freePort();
      const log = join(dir, `operator-${logFiles.length + 1}.log`);
      logFiles.push(log);
      const child = spawn(process.execPath, [MAIN], {
        env: {
          ...inheritedEnv(), KUBECONFIG: argocd.kubeconfig, ETCD_ENDPOINTS: stack.etcd, ETCD_PREFIX: `/e2e-argocd/${namespace}`, NATS_URL: stack.nats,
          PROMETHEUS_URL: stack.prometheus, ELASTICSEARCH_URL: stack.elasticsearch, GITHUB_API_URL: github.url, GITHUB_ORG: OWNER,
          GITHUB_TOKEN: token, AUDIT_FALLBACK_DIR: join(dir, 'audit'), HTTP_PORT: String(httpPort), POD_NAME: `${options.name}-${logFiles.length}`,
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
    const attempts = async (app?: string) => (await store.allAttempts()).filter((r) => r.app.namespace === namespace && (app === undefined || r.app.name === app));
    const pulls = (repo = repoName) => github.control.pulls({ owner: OWNER, repo });
    return {
      id, repo: repoName, ci, namespace, target, github, token, repoURL: repoUrl(repoName), repoUrl, firstCommit, store, kv, persistResourceHealth: persist,
      push, fileAt, status, createApplication, createPolicy, policyCondition, startOperator, attempts, pulls,
      refresh: async (name) => { await kubectlOk(gitops, ['annotate', '--overwrite', 'application', '-n', namespace, name, 'argocd.argoproj.io/refresh=hard']); },
      inState: (state, { app, timeoutMs = 120_000 } = {}) => eventually(`${app ?? 'an attempt'} in ${state}`, async () => (await attempts(app)).find((r) => r.state === state), timeoutMs, 250),
      attemptObject: (record) => json<Json>(['get', 'rollbackattempt', '-n', namespace, attemptName(record.app, record.correlationId)]),
      firstPull: (timeoutMs = 120_000) => eventually('rollback PR', async () => pulls()[0], timeoutMs, 250),
      pullFiles: async (number, repo = repoName) => {
        const response = await fetch(`${github.url}/repos/${OWNER}/${repo}/pulls/${number}/files?per_page=100`, { headers: { authorization: `token ${token}`, accept: 'application/vnd.github+json' } });
        if (!response.ok) throw new Error(`GET pulls/${number}/files: ${response.status} ${await response.text()}`);
        return (await response.json()) as PullFile[];
      },
      logs: async () => {
        const records = await attempts().catch((error: Error) => `(attempts unreadable: ${error.message})`);
        const summary = typeof records === 'string' ? records : records.map((r) => `${r.app.name} ${r.state} ${r.reason}: ${r.message}`).join('\n');
        return `---- attempts in ${namespace}\n${summary || '(none)'}\n${logFiles.map((file) => `---- ${file}\n${readFileSync(file, 'utf8').split('\n').slice(-60).join('\n')}`).join('\n')}`;
      },
      onStop: (step) => { stops.push(step); },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Synced at `revision` and Healthy, as Argo CD reports it. */
export async function untilHealthyAt(repo: GitOpsRepo, app: string, revision: string, timeoutMs = 90_000): Promise<AppStatus> {
  return until(`${app} Synced and Healthy at ${revision.slice(0, 7)}`, () => repo.status(app),
    (s) => syncedRevision(s) === revision && s.sync?.status === 'Synced' && s.health?.status === 'Healthy', timeoutMs);
}

/** Argo CD compared `revision` and the app is Degraded (its Deployment past the progress deadline). */
export async function untilDegradedAt(repo: GitOpsRepo, app: string, revision: string, timeoutMs = 120_000): Promise<AppStatus> {
  const t = Date.now();
  const degraded = await until(`${app} Degraded at ${revision.slice(0, 7)}`, () => repo.status(app), (s) => syncedRevision(s) === revision && s.health?.status === 'Degraded', timeoutMs);
  console.log(`argocd-real ${repo.namespace}/${app}: push → Degraded in ${secondsSince(t)} (progressDeadlineSeconds ${PROGRESS_DEADLINE_SECONDS})`);
  return degraded;
}

/**
 * Waits until the uptime the operator's default query gives the deployed revision — over its window so
 * far, from argocd_app_info that Prometheus scraped from the shared controller — is at least `min`, over
 * 10 s or more: the window the operator measures ends later, when the next revision deploys, with only
 * more Healthy samples in it.
 */
export async function untilUptime(repo: Pick<GitOpsRepo, 'namespace' | 'status'>, app: string, min: number): Promise<{ seconds: number; uptime: number }> {
  const deployedAt = Date.parse((await repo.status(app)).history!.at(-1)!.deployedAt);
  const uptimeSoFar = async () => {
    const seconds = Math.floor((Date.now() - deployedAt) / 1000);
    const series = `argocd_app_info{name="${app}",namespace="${repo.namespace}",job="${argocd.prometheusJob}"`;
    const query = `sum(count_over_time(${series},health_status="Healthy"}[${seconds}s])) / sum(count_over_time(${series}}[${seconds}s]))`;
    const answer = await (await fetch(`${stack.prometheus}/api/v1/query?query=${encodeURIComponent(query)}`)).json() as { data: { result: Array<{ value: [number, string] }> } };
    return { seconds, uptime: Number(answer.data.result[0]?.value[1] ?? 0) };
  };
  return until(`Prometheus has scraped ${app} Healthy from Argo CD for 10 s, ${min * 100} % of its deployed window`, uptimeSoFar, (u) => u.seconds >= 10 && u.uptime >= min, 90_000, 1000);
}

/**
 * CI green on the rollback PR's head; approval when asked; the attempt runs to RollbackComplete once Argo CD
 * synced the merge and the app held Healthy.
 */
export async function mergedAndRecovered(repo: GitOpsRepo, app: string, options: { approve?: () => Promise<void> } = {}): Promise<{ record: AttemptRecord; merged: AppStatus; pull: SimPull }> {
  const pr = await repo.firstPull();
  repo.ci(pr.headSha);
  if (options.approve) await options.approve();
  await repo.inState('RollbackMerged', { app, timeoutMs: 120_000 });
  const mergeSha = await eventually('the merge commit', async () => repo.pulls().find((p) => p.number === pr.number)?.mergeCommitSha ?? undefined, 10_000);
  const t = Date.now();
  // Argo CD finds the merge commit by itself (resync and revision cache, 10 s each), and the rollout of the good release finishes.
  const synced = await until(`Argo CD Synced and Healthy at the merge commit ${mergeSha.slice(0, 7)}`, () => repo.status(app),
    (s) => syncedRevision(s) === mergeSha && s.health?.status === 'Healthy', 120_000);
  console.log(`argocd-real ${repo.namespace}/${app}: merge → Argo CD Synced+Healthy at the merge commit in ${secondsSince(t)}`);
  if (synced.history) {
    const last = synced.history.at(-1)!;
    if ((last.revision ?? last.revisions?.[0]) !== mergeSha) throw new Error(`${app}'s last deployment is ${JSON.stringify(last)}, not the merge commit ${mergeSha}`);
  }
  const record = await repo.inState('RollbackComplete', { app, timeoutMs: 120_000 });
  return { record, merged: synced, pull: repo.pulls().find((p) => p.number === pr.number)! };
}
