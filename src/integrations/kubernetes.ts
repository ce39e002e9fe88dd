// Read-only cluster facts (SPEC §8): the replicas of an application's
// Deployments for I3, and their pods for the PR body. Which Deployments belong to
// the app is what Argo CD marks on them when it applies them (its resource
// tracking), not the names in the Application's status: that status has no
// subresource in Argo CD's CRD, so anyone who may patch the Application may write it.
import { AppsV1Api, CoreV1Api, type KubeConfig, type V1Deployment, type V1LabelSelector, type V1Pod } from '@kubernetes/client-node';
import type { DeploymentReplicas, RevisionPods } from '../fsm/record.ts';
import type { Logger } from '../observability/log.ts';
import type { ApplicationView } from '../ports/argocd.ts';
import type { ClusterPort, PodSummary } from '../ports/kubernetes.ts';
import { call, classifyHttpError, type CallMetrics } from './call.ts';
import { managedBy, namespacesOf, trackingName } from './kube/tracking.ts';
import { RevisionPodsWatch } from './revision-pods.ts';

export interface ClusterReaderOptions {
  /** ARGOCD_NAMESPACE: Argo CD's tracking names an Application outside it `<namespace>_<name>`. */
  argocdNamespace: string;
  metrics?: CallMetrics;
  timeoutMs?: number;
  backoffMs?: readonly number[];
  /** Where the pod watches say what they do (revision-pods.ts); silent when absent. */
  log?: Logger;
}

export { INSTANCE_LABEL, managedBy, namespacesOf, parseTrackingId, TRACKING_ID_ANNOTATION, trackingName, type TrackingId } from './kube/tracking.ts';

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
export function replicasOf(deployment: V1Deployment): DeploymentReplicas {
  const status = deployment.status;
  return {
    name: deployment.metadata?.name ?? '',
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
  private readonly revisionPods: RevisionPodsWatch;

  constructor(kubeConfig: KubeConfig, options: ClusterReaderOptions) {
    this.apps = kubeConfig.makeApiClient(AppsV1Api);
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.options = options;
    this.revisionPods = new RevisionPodsWatch(kubeConfig, options);
  }

  /** From watches of the namespaces the app deploys to, started on first use and stopped once idle (revision-pods.ts). */
  currentRevisionPods(app: ApplicationView): Promise<RevisionPods[]> {
    return this.revisionPods.currentRevisionPods(app);
  }

  /** Stops the pod watches. */
  stop(): Promise<void> {
    return this.revisionPods.stop();
  }

  async getDeploymentStatus(app: ApplicationView): Promise<DeploymentReplicas[]> {
    return (await this.managedDeployments('getDeploymentStatus', app)).map(replicasOf);
  }

  async listPods(app: ApplicationView): Promise<PodSummary[]> {
    const deployments = await this.managedDeployments('listPods', app);
    const lists = await Promise.all(deployments.map(async (deployment) => {
      const selector = deployment.spec?.selector;
      // An empty selector would match every pod of the namespace; no Deployment has one.
      if (!selector || selectorString(selector) === '') return [];
      const namespace = deployment.metadata!.namespace!;
      const pods = await this.call('listPods', () => this.core.listNamespacedPod({ namespace, labelSelector: selectorString(selector) }));
      return pods.items.map((pod) => [`${namespace}/${pod.metadata?.name}`, podSummary(pod)] as const);
    }));
    // Two Deployments whose selectors overlap would list a pod twice.
    return [...new Map(lists.flat()).values()];
  }

  /** The Deployments Argo CD's tracking gives the app, in the namespaces it may use, by namespace and name. */
  private async managedDeployments(callName: string, app: ApplicationView): Promise<V1Deployment[]> {
    const instance = trackingName(app.ref, this.options.argocdNamespace);
    const lists = await Promise.all(namespacesOf(app).map((namespace) => this.call(callName, () => this.apps.listNamespacedDeployment({ namespace }))));
    return lists.flatMap((list) => list.items.filter((d) => managedBy(d, instance)))
      .sort((a, b) => `${a.metadata?.namespace}/${a.metadata?.name}`.localeCompare(`${b.metadata?.namespace}/${b.metadata?.name}`));
  }

  private call<T>(name: string, run: () => Promise<T>): Promise<T> {
    return call(name, run, { classify: classifyHttpError, metrics: this.options.metrics, timeoutMs: this.options.timeoutMs, backoffMs: this.options.backoffMs });
  }
}
