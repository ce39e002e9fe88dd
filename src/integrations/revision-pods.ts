// The pods of the current revision of an app's Deployments and StatefulSets (issue 21), for
// modules/pod-signals.ts to judge while Argo CD reports the app Progressing. Read from the
// operator's one watch mechanism (kube/watch.ts): Pods, ReplicaSets, Deployments and
// StatefulSets, watched per namespace, only in namespaces a Progressing app deploys to, started
// on the first question about one and stopped once nobody asked for a while. A healthy fleet
// costs no watch at all; a check of a Progressing app reads caches, not the API server.
//
// The current revision: a Deployment's new ReplicaSet is the one it controls whose
// `deployment.kubernetes.io/revision` annotation is the Deployment's own (what the deployment
// controller writes on both, and what `kubectl rollout status` reads), once the controller has
// observed the Deployment's latest generation; its pods are the ones it controls (their
// pod-template-hash is its). A StatefulSet's is its status.updateRevision, the
// controller-revision-hash label of its pods. Pods being deleted are not counted.
import { AppsV1Api, CoreV1Api, type KubeConfig, type V1ContainerStatus, type V1Deployment, type V1ObjectMeta, type V1OwnerReference, type V1Pod, type V1ReplicaSet, type V1StatefulSet } from '@kubernetes/client-node';
import type { ContainerFacts, PodFacts, RevisionPods } from '../fsm/record.ts';
import { createLogger, type Logger } from '../observability/log.ts';
import type { ApplicationView } from '../ports/argocd.ts';
import { IntegrationError } from '../ports/errors.ts';
import type { CallMetrics } from './call.ts';
import { objectSource, type ListPage } from './kube/custom-objects.ts';
import { Watch } from './kube/watch.ts';
import { managedBy, namespacesOf, trackingName } from './kube/tracking.ts';

export const REVISION_ANNOTATION = 'deployment.kubernetes.io/revision';
export const POD_TEMPLATE_HASH = 'pod-template-hash';
export const CONTROLLER_REVISION_HASH = 'controller-revision-hash';

export interface RevisionPodsOptions {
  /** ARGOCD_NAMESPACE: Argo CD's tracking names an Application outside it `<namespace>_<name>`. */
  argocdNamespace: string;
  log?: Logger;
  metrics?: CallMetrics;
  timeoutMs?: number;
  backoffMs?: readonly number[];
  /** A namespace nobody asked about for this long has its watches stopped; 10 minutes by default. */
  idleMs?: number;
  /** How long a first question waits for a namespace's first lists; 15 s by default. */
  syncTimeoutMs?: number;
  relistIntervalMs?: number;
  clock?: () => number;
}

/** What is watched in one namespace. */
export interface NamespaceObjects {
  deployments: V1Deployment[];
  replicaSets: V1ReplicaSet[];
  statefulSets: V1StatefulSet[];
  pods: V1Pod[];
}

const controllerOf = (metadata: V1ObjectMeta | undefined): V1OwnerReference | undefined => metadata?.ownerReferences?.find((o) => o.controller === true);
const deleting = (metadata: V1ObjectMeta | undefined): boolean => metadata?.deletionTimestamp !== undefined && metadata.deletionTimestamp !== null;
/** Timestamps are strings on the wire and Dates from a typed list: an ISO string either way. */
const time = (value: unknown): string | undefined => (value instanceof Date ? value.toISOString() : typeof value === 'string' && value !== '' ? value : undefined);
/** The controller acted on the latest spec: otherwise its status still describes an older revision. */
const observedLatest = (w: { metadata?: V1ObjectMeta; status?: { observedGeneration?: number } }): boolean =>
  (w.status?.observedGeneration ?? -1) >= (w.metadata?.generation ?? 0);

/** One pod as modules/pod-signals.ts reads it. */
export function podFacts(pod: V1Pod): PodFacts {
  const containers = (statuses: V1ContainerStatus[] | undefined, init: boolean): ContainerFacts[] =>
    (statuses ?? []).map((c) => {
      const waiting = c.state?.waiting;
      const terminated = c.state?.terminated;
      const last = c.lastState?.terminated;
      return {
        name: c.name, ready: c.ready === true, restartCount: c.restartCount ?? 0, ...(init ? { init: true as const } : {}),
        ...(waiting?.reason ? { waiting: { reason: waiting.reason, ...(waiting.message ? { message: waiting.message } : {}) } } : {}),
        ...(terminated ? { terminated: { ...(terminated.reason ? { reason: terminated.reason } : {}), exitCode: terminated.exitCode, ...(time(terminated.finishedAt) ? { finishedAt: time(terminated.finishedAt)! } : {}) } } : {}),
        ...(last ? { lastTerminated: { ...(last.reason ? { reason: last.reason } : {}), exitCode: last.exitCode, ...(time(last.finishedAt) ? { finishedAt: time(last.finishedAt)! } : {}) } } : {}),
      };
    });
  const startedAt = time(pod.status?.startTime) ?? time(pod.metadata?.creationTimestamp);
  return {
    name: pod.metadata?.name ?? '',
    ready: pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
    ...(startedAt ? { startedAt } : {}),
    containers: [...containers(pod.status?.initContainerStatuses, true), ...containers(pod.status?.containerStatuses, false)],
  };
}

/**
 * The current revision of each Deployment and StatefulSet that Argo CD's tracking gives `instance`
 * (kubernetes.ts managedBy), with its pods. A workload whose controller has not observed its latest
 * spec, or whose new ReplicaSet does not exist yet, says nothing. Pure.
 */
export function currentRevisions(objects: NamespaceObjects, instance: string): RevisionPods[] {
  const out: RevisionPods[] = [];
  const podsOf = (uid: string | undefined, match: (pod: V1Pod) => boolean) =>
    objects.pods.filter((p) => uid !== undefined && controllerOf(p.metadata)?.uid === uid && !deleting(p.metadata) && match(p)).map(podFacts)
      .sort((a, b) => a.name.localeCompare(b.name));
  for (const d of objects.deployments) {
    if (!managedBy(d, instance, 'Deployment') || !observedLatest(d)) continue;
    const revision = d.metadata?.annotations?.[REVISION_ANNOTATION];
    if (revision === undefined) continue;
    const rs = objects.replicaSets.find((r) => controllerOf(r.metadata)?.uid === d.metadata?.uid && r.metadata?.annotations?.[REVISION_ANNOTATION] === revision);
    if (!rs) continue;
    const hash = rs.metadata?.labels?.[POD_TEMPLATE_HASH] ?? rs.metadata?.name ?? '';
    out.push({ kind: 'Deployment', namespace: d.metadata!.namespace!, name: d.metadata!.name!, revision: hash, pods: podsOf(rs.metadata?.uid, () => true) });
  }
  for (const s of objects.statefulSets) {
    if (!managedBy(s, instance, 'StatefulSet') || !observedLatest(s)) continue;
    const revision = s.status?.updateRevision;
    if (!revision) continue;
    out.push({ kind: 'StatefulSet', namespace: s.metadata!.namespace!, name: s.metadata!.name!, revision, pods: podsOf(s.metadata?.uid, (p) => p.metadata?.labels?.[CONTROLLER_REVISION_HASH] === revision) });
  }
  return out.sort((a, b) => `${a.kind}/${a.namespace}/${a.name}`.localeCompare(`${b.kind}/${b.namespace}/${b.name}`));
}

interface NamespaceWatches {
  deployments: Watch<V1Deployment>;
  replicaSets: Watch<V1ReplicaSet>;
  statefulSets: Watch<V1StatefulSet>;
  pods: Watch<V1Pod>;
  synced: Promise<void>;
  lastUsed: number;
}

/** The list of a typed API as the wire has it (timestamps as strings), so listed and watched objects look alike. */
const plain = async <T>(page: Promise<{ items: T[]; metadata?: { resourceVersion?: string; _continue?: string } }>): Promise<ListPage<T>> => {
  const list = await page;
  return { items: JSON.parse(JSON.stringify(list.items)) as T[], metadata: { resourceVersion: list.metadata?.resourceVersion ?? '', ...(list.metadata?._continue ? { continue: list.metadata._continue } : {}) } };
};

export class RevisionPodsWatch {
  private readonly kubeConfig: KubeConfig;
  private readonly options: RevisionPodsOptions;
  private readonly log: Logger;
  private readonly clock: () => number;
  private readonly namespaces = new Map<string, NamespaceWatches>();
  private sweeper?: NodeJS.Timeout;

  constructor(kubeConfig: KubeConfig, options: RevisionPodsOptions) {
    this.kubeConfig = kubeConfig;
    this.options = options;
    this.log = options.log ?? createLogger('ERROR');
    this.clock = options.clock ?? Date.now;
  }

  async currentRevisionPods(app: ApplicationView): Promise<RevisionPods[]> {
    const instance = trackingName(app.ref, this.options.argocdNamespace);
    const watched = await Promise.all(namespacesOf(app, ['Deployment', 'StatefulSet']).map((namespace) => this.watchesOf(namespace)));
    return watched.flatMap((w) => currentRevisions({ deployments: w.deployments.list(), replicaSets: w.replicaSets.list(), statefulSets: w.statefulSets.list(), pods: w.pods.list() }, instance));
  }

  /** The namespaces watched now (tests, and the idle cost: none while every app is Healthy). */
  watchedNamespaces(): string[] {
    return [...this.namespaces.keys()].sort();
  }

  async stop(): Promise<void> {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    const all = [...this.namespaces.values()];
    this.namespaces.clear();
    await Promise.all(all.flatMap((w) => [w.deployments.stop(), w.replicaSets.stop(), w.statefulSets.stop(), w.pods.stop()]));
  }

  private async watchesOf(namespace: string): Promise<NamespaceWatches> {
    let watches = this.namespaces.get(namespace);
    if (!watches) {
      watches = this.start(namespace);
      this.namespaces.set(namespace, watches);
    }
    watches.lastUsed = this.clock();
    const timeoutMs = this.options.syncTimeoutMs ?? 15_000;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => { timer = setTimeout(() => resolve('late'), timeoutMs); });
    try {
      if (await Promise.race([watches.synced.then(() => 'synced' as const), late]) === 'late') {
        throw new IntegrationError('listPods', 'UNAVAILABLE', `the pods and workloads of namespace ${namespace} could not be listed within ${timeoutMs / 1000} s`);
      }
    } finally {
      clearTimeout(timer);
    }
    return watches;
  }

  private start(namespace: string): NamespaceWatches {
    const apps = this.kubeConfig.makeApiClient(AppsV1Api);
    const core = this.kubeConfig.makeApiClient(CoreV1Api);
    const { metrics, timeoutMs, backoffMs, relistIntervalMs } = this.options;
    const common = { kubeConfig: this.kubeConfig, metrics, timeoutMs, backoffMs };
    const watch = <T extends { metadata?: V1ObjectMeta }>(kind: string, plural: string, path: string, list: (page: { labelSelector?: string; limit: number; _continue?: string }) => Promise<ListPage<T>>) => new Watch<T>({
      kind, log: this.log, namespaces: [namespace], relistIntervalMs,
      source: objectSource<T>({ ...common, calls: { list: `list${plural}`, watch: `watch${plural}` }, path: () => path, listPage: (_ns, page) => list(page) }),
    });
    const watches: Omit<NamespaceWatches, 'synced' | 'lastUsed'> = {
      deployments: watch<V1Deployment>('Deployment', 'Deployments', `/apis/apps/v1/namespaces/${namespace}/deployments`, (page) => plain(apps.listNamespacedDeployment({ namespace, ...page }))),
      replicaSets: watch<V1ReplicaSet>('ReplicaSet', 'ReplicaSets', `/apis/apps/v1/namespaces/${namespace}/replicasets`, (page) => plain(apps.listNamespacedReplicaSet({ namespace, ...page }))),
      statefulSets: watch<V1StatefulSet>('StatefulSet', 'StatefulSets', `/apis/apps/v1/namespaces/${namespace}/statefulsets`, (page) => plain(apps.listNamespacedStatefulSet({ namespace, ...page }))),
      pods: watch<V1Pod>('Pod', 'Pods', `/api/v1/namespaces/${namespace}/pods`, (page) => plain(core.listNamespacedPod({ namespace, ...page }))),
    };
    const all = Object.values(watches);
    for (const w of all) void w.start();
    this.log.info('Watching pods of a Progressing application\'s namespace', { namespace });
    this.sweeper ??= setInterval(() => this.sweep(), Math.max(1000, (this.options.idleMs ?? 600_000) / 4));
    this.sweeper.unref();
    return { ...watches, synced: Promise.all(all.map((w) => w.synced())).then(() => undefined), lastUsed: this.clock() };
  }

  /** Stops the watches of namespaces nobody asked about for `idleMs`. */
  sweep(): void {
    const idleMs = this.options.idleMs ?? 600_000;
    for (const [namespace, w] of this.namespaces) {
      if (this.clock() - w.lastUsed < idleMs) continue;
      this.namespaces.delete(namespace);
      void Promise.all([w.deployments.stop(), w.replicaSets.stop(), w.statefulSets.stop(), w.pods.stop()]);
      this.log.info('Stopped watching pods of a namespace no Progressing application asked about', { namespace, idleMs });
    }
    if (this.namespaces.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }
}
