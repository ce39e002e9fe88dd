// Read-only cluster facts (SPEC §8): the replicas of an application's
// Deployments for I3, and their pods for the PR body. Which Deployments belong to
// the app is what Argo CD marks on them when it applies them (its resource
// tracking), not the names in the Application's status: that status has no
// subresource in Argo CD's CRD, so anyone who may patch the Application may write it.
import { AppsV1Api, CoreV1Api, type KubeConfig, type V1Deployment, type V1LabelSelector, type V1Pod } from '@kubernetes/client-node';
import type { AppRef, DeploymentReplicas } from '../fsm/record.ts';
import type { ApplicationView } from '../ports/argocd.ts';
import type { ClusterPort, PodSummary } from '../ports/kubernetes.ts';
import { call, classifyHttpError, type CallMetrics } from './call.ts';

export interface ClusterReaderOptions {
  /** ARGOCD_NAMESPACE: Argo CD's tracking names an Application outside it `<namespace>_<name>`. */
  argocdNamespace: string;
  metrics?: CallMetrics;
  timeoutMs?: number;
  backoffMs?: readonly number[];
}

/**
 * Argo CD's resource tracking (argo-cd v3 `common/common.go`, `util/argo/resource_tracking.go`):
 * annotation tracking, the default since 3.0, writes `<app>:<group>/<kind>:<namespace>/<name>`;
 * label tracking writes the app alone in the instance label.
 */
export const TRACKING_ID_ANNOTATION = 'argocd.argoproj.io/tracking-id';
export const INSTANCE_LABEL = 'app.kubernetes.io/instance';

/**
 * The app's name in Argo CD's tracking (`Application.InstanceName`): its name in
 * Argo CD's own namespace, `<namespace>_<name>` in any other.
 */
export function trackingName(app: AppRef, argocdNamespace: string): string {
  return app.namespace === argocdNamespace ? app.name : `${app.namespace}_${app.name}`;
}

export interface TrackingId {
  app: string;
  group: string;
  kind: string;
  namespace: string;
  name: string;
}

/** A tracking id as Argo CD's ParseAppInstanceValue reads it; undefined when it is not one. */
export function parseTrackingId(value: string): TrackingId | undefined {
  const [app, groupKind, namespaceName, ...rest] = value.split(':');
  if (rest.length > 0 || app === undefined || groupKind === undefined || namespaceName === undefined) return undefined;
  const [group, kind, ...g] = groupKind.split('/');
  const [namespace, name, ...n] = namespaceName.split('/');
  if (g.length > 0 || n.length > 0 || kind === undefined || name === undefined) return undefined;
  return { app, group: group!, kind, namespace: namespace!, name };
}

/**
 * Whether Argo CD manages this Deployment for the app (`instance`: trackingName).
 * By its tracking id when it has one, which must also name this very object, as
 * Argo CD's isSelfReferencedObj requires (an annotation copied onto another
 * object does not make it the app's); by the instance label only when it has
 * none (label tracking, the default before 3.0). Pure.
 */
export function managedBy(deployment: V1Deployment, instance: string): boolean {
  const metadata = deployment.metadata ?? {};
  const id = metadata.annotations?.[TRACKING_ID_ANNOTATION];
  if (id !== undefined) {
    const tracked = parseTrackingId(id);
    return tracked !== undefined && tracked.app === instance && tracked.group === 'apps' && tracked.kind === 'Deployment'
      && tracked.namespace === metadata.namespace && tracked.name === metadata.name;
  }
  return metadata.labels?.[INSTANCE_LABEL] === instance;
}

/**
 * Where the app's Deployments may be: its destination namespace, and the
 * namespaces its status names for Deployments (a manifest may set its own).
 * Only where to look: what is found there counts only if Argo CD's tracking says
 * it is the app's, so a status naming other namespaces adds no Deployment. Pure.
 */
export function namespacesOf(app: ApplicationView): string[] {
  const named = app.resources.filter((r) => r.kind === 'Deployment' && r.group === 'apps' && r.namespace).map((r) => r.namespace!);
  return [...new Set([...(app.destinationNamespace ? [app.destinationNamespace] : []), ...named])].sort();
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

  constructor(kubeConfig: KubeConfig, options: ClusterReaderOptions) {
    this.apps = kubeConfig.makeApiClient(AppsV1Api);
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.options = options;
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
