// The real GitOps loop as one part of the stack: a cluster of its own (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, KWOK's fake node),
// a git daemon over a directory of bare repositories, redis, and Argo CD's repo
// server and application controller syncing Applications in `namespace`.
//
// A cluster of its own, not the stack's API server: with a controller-manager
// there, the deployment controller would race the Argo CD simulator (which
// writes Deployment status itself) and garbage collection and namespace
// deletion would change what the simulator-based tests see.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { installArgoCdCrds, prepareArgoCdNamespace, startApplicationController, startRepoServer, type ApplicationController, type RepoServer } from './argocd.ts';
import { startEtcd } from './etcd.ts';
import { startGitServer, type GitServer } from './git-server.ts';
import { startKubeControllers } from './kube-controllers.ts';
import { startKube, type KubeInstance } from './kube.ts';
import { kubectlOk } from './kubectl.ts';
import { startKwok, type KwokInstance } from './kwok.ts';
import type { ManagedProcess } from './process.ts';
import { startRedis, type RedisInstance } from './redis.ts';

/**
 * Namespaces matching this glob hold Applications the shared controller reconciles too (Argo CD's apps
 * in any namespace): a test that starts an operator of its own keeps its Applications, RollbackPolicies
 * and RollbackAttempts in one of them, so other tests' operators (WATCH_NAMESPACES) never see them.
 */
export const APPLICATION_NAMESPACES = 'argocd-apps-*';

export interface GitOpsOptions {
  /** Argo CD's namespace: its Applications, AppProject and settings ('argocd'). */
  namespace?: string;
  /** Run the controller with --persist-resource-health (Argo CD 3.x: off by default). */
  persistResourceHealth?: boolean;
}

export interface GitOpsCluster {
  kube: KubeInstance;
  kwok: KwokInstance;
  git: GitServer;
  redis: RedisInstance;
  repoServer: RepoServer;
  controller: ApplicationController;
  /** Milliseconds from the start of this cluster to a healthy application controller. */
  startupMs: number;
}

/** Waits for every start to settle, so a failure leaves none running unseen; `track` gets each process as it comes up. */
async function settled<T extends unknown[]>(starts: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const results = await Promise.allSettled(starts);
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failures.length > 0) throw new Error(failures.map((f) => (f.reason as Error).message).join('\n'));
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as T;
}

export async function startGitOpsCluster(workDir: string, options: GitOpsOptions, track: (p: ManagedProcess) => void): Promise<GitOpsCluster> {
  const started = Date.now();
  const namespace = options.namespace ?? 'argocd';
  const dir = join(workDir, 'gitops');
  mkdirSync(dir, { recursive: true });
  const add = <T extends { process: ManagedProcess }>(instance: T): T => { track(instance.process); return instance; };

  const kube = startEtcd(dir, 'etcd-gitops').then(add).then((etcd) => startKube(dir, etcd.endpoint))
    .then((k) => { if (k.process) track(k.process); return k; });
  const git = startGitServer(dir, join(workDir, 'git')).then(add);
  const redis = startRedis(dir).then(add);
  const repoServer = redis.then((r) => startRepoServer(dir, r.address)).then(add);
  const controllers = kube.then((k) => startKubeControllers(dir, k)).then((c) => { track(c.controllerManager); track(c.scheduler); return c; });
  const kwok = Promise.all([kube, controllers]).then(([k]) => startKwok(dir, k)).then(add);
  const argo = kube.then(async (k) => {
    await installArgoCdCrds(k);
    await prepareArgoCdNamespace(k, namespace);
    // The operator's own CRDs, for operators run against this cluster. Not dev/crds/: its copy of
    // the Application CRD would replace the one from the Argo CD that was built.
    await kubectlOk(k, ['apply', '--server-side', '-f', 'crds/ai-operator.io_rollbackpolicies.yaml', '-f', 'crds/ai-operator.io_rollbackattempts.yaml']);
    await kubectlOk(k, ['wait', '--for=condition=Established', '--timeout=60s', 'crd/rollbackpolicies.ai-operator.io', 'crd/rollbackattempts.ai-operator.io']);
    return k;
  });
  const controller = Promise.all([argo, repoServer, redis]).then(([k, repo, r]) =>
    startApplicationController(dir, {
      kube: k, namespace, repoServer: repo.address, redis: r.address, persistResourceHealth: options.persistResourceHealth ?? false,
      applicationNamespaces: [APPLICATION_NAMESPACES],
    })).then(add);
  const [k, kw, g, r, repo, c] = await settled<[KubeInstance, KwokInstance, GitServer, RedisInstance, RepoServer, ApplicationController, unknown]>(
    [kube, kwok, git, redis, repoServer, controller, controllers]);
  return { kube: k, kwok: kw, git: g, redis: r, repoServer: repo, controller: c, startupMs: Date.now() - started };
}
