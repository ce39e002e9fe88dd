// Read-only cluster facts (SPEC §8): the replicas of an application's
// Deployments for I3, and their pods for the PR body. Which Deployments belong to
// the app is Argo CD's answer (status.resources), not a guess from labels.
import { AppsV1Api, CoreV1Api, type KubeConfig, type V1Deployment, type V1LabelSelector, type V1Pod } from '@kubernetes/client-node';
import type { DeploymentReplicas } from '../fsm/record.ts';
import type { ApplicationView } from '../ports/argocd.ts';
import { IntegrationError } from '../ports/errors.ts';
import type { ClusterPort, PodSummary } from '../ports/kubernetes.ts';
import { call, classifyHttpError, type CallMetrics } from './call.ts';

export interface ClusterReaderOptions {
  metrics?: CallMetrics;
  timeoutMs?: number;
  backoffMs?: readonly number[];
}

interface DeploymentRef {
  namespace: string;
  name: string;
}

/** The app's Deployments as Argo CD lists them (kind Deployment of group apps). */
export function deploymentsOf(app: ApplicationView): DeploymentRef[] {
  return app.resources
    // Argo CD always records the namespace of a namespaced resource; one without is not a Deployment we can read.
    .filter((r) => r.kind === 'Deployment' && r.group === 'apps' && r.namespace)
    .map((r) => ({ namespace: r.namespace!, name: r.name }));
}

/** A label selector as the API's `labelSelector` query string. */
export function selectorString(selector: V1LabelSelector): string {
  const terms = Object.entries(selector.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of selector.matchExpressions ?? []) {
    const values = (e.values ?? []).join(',');
    switch (e.operator) {
      case 'In': terms.push(`${e.key} in (${values})`); break;
      case 'NotIn': terms.push(`${e.key} notin (${values})`); break;
      case 'Exists': terms.push(e.key); break;
      case 'DoesNotExist': terms.push(`!${e.key}`); break;
      default: throw new Error(`unknown label selector operator ${e.operator}`);
    }
  }
  return terms.join(',');
}

/** The rollout figures I3 reads, from the status the deployment controller writes (it omits zero counts). */
export function replicasOf(name: string, deployment: V1Deployment | undefined): DeploymentReplicas {
  // A Deployment Argo CD manages but the cluster lacks runs nothing: a real
  // shortage. Its desired count is unknown; Kubernetes' default of 1 stands in.
  if (!deployment) return { name, desired: 1, updated: 0, available: 0, unavailable: 1, progressDeadlineExceeded: false, absent: true };
  const status = deployment.status;
  return {
    name,
    desired: deployment.spec?.replicas ?? 1,
    updated: status?.updatedReplicas ?? 0,
    available: status?.availableReplicas ?? 0,
    unavailable: status?.unavailableReplicas ?? 0,
    progressDeadlineExceeded: status?.conditions?.some((c) => c.type === 'Progressing' && c.reason === 'ProgressDeadlineExceeded') ?? false,
  };
}

export function podSummary(pod: V1Pod): PodSummary {
  const containers = pod.status?.containerStatuses ?? [];
  return {
    name: pod.metadata?.name ?? '',
    phase: pod.status?.phase ?? 'Unknown',
    ready: pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
    restarts: containers.reduce((sum, c) => sum + c.restartCount, 0),
  };
}

export class ClusterReader implements ClusterPort {
  private readonly apps: AppsV1Api;
  private readonly core: CoreV1Api;
  private readonly options: ClusterReaderOptions;

  constructor(kubeConfig: KubeConfig, options: ClusterReaderOptions = {}) {
    this.apps = kubeConfig.makeApiClient(AppsV1Api);
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.options = options;
  }

  async getDeploymentStatus(app: ApplicationView): Promise<DeploymentReplicas[]> {
    return Promise.all(deploymentsOf(app).map(async (ref) => replicasOf(ref.name, await this.readDeployment('getDeploymentStatus', ref))));
  }

  async listPods(app: ApplicationView): Promise<PodSummary[]> {
    const lists = await Promise.all(deploymentsOf(app).map(async (ref) => {
      const deployment = await this.readDeployment('listPods', ref);
      const selector = deployment?.spec?.selector;
      // An empty selector would match every pod of the namespace; no Deployment has one.
      if (!selector || selectorString(selector) === '') return [];
      const pods = await this.call('listPods', () => this.core.listNamespacedPod({ namespace: ref.namespace, labelSelector: selectorString(selector) }));
      return pods.items.map((pod) => [`${ref.namespace}/${pod.metadata?.name}`, podSummary(pod)] as const);
    }));
    // Two Deployments whose selectors overlap would list a pod twice.
    return [...new Map(lists.flat()).values()];
  }

  private async readDeployment(callName: string, ref: DeploymentRef): Promise<V1Deployment | undefined> {
    try {
      return await this.call(callName, () => this.apps.readNamespacedDeployment(ref));
    } catch (error) {
      if (error instanceof IntegrationError && error.code === 'NOT_FOUND') return undefined;
      throw error;
    }
  }

  private call<T>(name: string, run: () => Promise<T>): Promise<T> {
    return call(name, run, { classify: classifyHttpError, metrics: this.options.metrics, timeoutMs: this.options.timeoutMs, backoffMs: this.options.backoffMs });
  }
}
