// The Argo CD simulator's declared rules, pure: which manifests are Deployments,
// how healthy a revision is, and the Application status Argo CD would write.
//
// The rollout rule, in place of a kube-controller-manager: the pods of a
// Deployment whose manifest carries the annotation `ai-operator.dev/broken: "true"`
// never become ready, so its rollout stops where the deployment controller would
// leave it under the manifest's strategy (under the default RollingUpdate the old
// ReplicaSet keeps most of its pods), with `Progressing` reason
// `ProgressDeadlineExceeded` once `degradeAfterMs` have passed since the sync
// started. Every other Deployment is rolled out in full at once. The health is
// Argo CD's own rule over that status: `Progressing`, then `Degraded`; `Healthy`.
import { createHash } from 'node:crypto';
import { parseAllDocuments } from 'yaml';
import type { ManifestFile } from './git.ts';

export const BROKEN_ANNOTATION = 'ai-operator.dev/broken';

/** `spec.strategy` as written (an int or a percent string per field); absent fields take Kubernetes' defaults. */
export interface Strategy {
  type: 'RollingUpdate' | 'Recreate';
  maxSurge?: number | string;
  maxUnavailable?: number | string;
}

export interface DeploymentManifest {
  name: string;
  namespace: string;
  replicas: number;
  strategy: Strategy;
  broken: boolean;
  /** The new ReplicaSet's name, `{name}-{pod-template-hash}`, as the controller's condition messages name it. */
  replicaSet: string;
  /** The manifest as written in Git. */
  object: Record<string, unknown> & { metadata: { name: string; namespace?: string; annotations?: Record<string, string>; labels?: Record<string, string> } };
}

export interface Health {
  status: 'Healthy' | 'Progressing' | 'Degraded';
  message?: string;
}

interface Metadata { name?: string; namespace?: string; annotations?: Record<string, string> }
interface DeploymentSpec {
  replicas?: number;
  template?: unknown;
  strategy?: { type?: string; rollingUpdate?: { maxSurge?: unknown; maxUnavailable?: unknown } };
}

const INT_OR_PERCENT = /^\d+%$/;

function strategyOf(where: string, strategy: DeploymentSpec['strategy']): Strategy {
  const type = strategy?.type ?? 'RollingUpdate';
  if (type === 'Recreate') return { type };
  if (type !== 'RollingUpdate') throw new Error(`${where}: spec.strategy.type ${JSON.stringify(type)} is neither RollingUpdate nor Recreate`);
  const result: Strategy = { type };
  for (const field of ['maxSurge', 'maxUnavailable'] as const) {
    const value = strategy?.rollingUpdate?.[field];
    if (value === undefined) continue;
    if (!(Number.isInteger(value) && (value as number) >= 0) && !(typeof value === 'string' && INT_OR_PERCENT.test(value))) {
      throw new Error(`${where}: spec.strategy.rollingUpdate.${field} ${JSON.stringify(value)} is neither a non-negative integer nor a percentage`);
    }
    result[field] = value as number | string;
  }
  return result;
}

/** A stand-in for the controller's pod-template-hash: stable per template, in its alphabet (no vowels). */
function podTemplateHash(template: unknown): string {
  const alphabet = 'bcdfghjklmnpqrstvwxz2456789';
  return [...createHash('sha1').update(JSON.stringify(template ?? null)).digest().subarray(0, 10)].map((b) => alphabet[b % alphabet.length]).join('');
}

/** The apps/v1 Deployments among the manifests, in file order. */
export function deploymentsIn(files: ManifestFile[], defaultNamespace: string): DeploymentManifest[] {
  const found: DeploymentManifest[] = [];
  for (const { file, content } of files) {
    for (const doc of parseAllDocuments(content)) {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]!.message}`);
      const object = doc.toJS() as { apiVersion?: string; kind?: string; metadata?: Metadata; spec?: DeploymentSpec } | null;
      if (object?.kind !== 'Deployment' || object.apiVersion !== 'apps/v1' || !object.metadata?.name) continue;
      const name = object.metadata.name;
      found.push({
        name,
        namespace: object.metadata.namespace ?? defaultNamespace,
        replicas: object.spec?.replicas ?? 1,
        strategy: strategyOf(`${file}: Deployment ${name}`, object.spec?.strategy),
        broken: object.metadata.annotations?.[BROKEN_ANNOTATION] === 'true',
        replicaSet: `${name}-${podTemplateHash(object.spec?.template)}`,
        object: object as DeploymentManifest['object'],
      });
    }
  }
  return found;
}

/** An int-or-percent of `total` as the controller scales it (intstr.GetScaledValueFromIntOrPercent). */
function scaled(value: number | string, total: number, roundUp: boolean): number {
  if (typeof value === 'number') return value;
  const exact = (Number.parseInt(value, 10) * total) / 100;
  return roundUp ? Math.ceil(exact) : Math.floor(exact);
}

export interface Rollout {
  /** How far the rolling update may go over / under `spec.replicas` (0 / 0 for Recreate). */
  maxSurge: number;
  maxUnavailable: number;
  /** Pods of the old ReplicaSet (all ready) and of the new one. */
  old: number;
  new: number;
  replicas: number;
  updatedReplicas: number;
  availableReplicas: number;
  unavailableReplicas: number;
}

/**
 * Where the deployment controller leaves a rollout of `replicas` pods under
 * `strategy`. A good release finishes: every pod updated and available. A broken
 * one (its pods never ready) stops where the controller can go no further: the
 * new ReplicaSet is scaled up to `maxSurge` over the desired count, the old one
 * down only as far as `maxUnavailable` allows, and since no new pod ever counts
 * as available the old one is never scaled down further — old = N − maxUnavailable,
 * new = min(N, maxSurge + maxUnavailable). Recreate scales the old one to 0 first
 * and then creates all N new pods, none of which become available.
 */
export function rollout(replicas: number, strategy: Strategy, broken: boolean): Rollout {
  let maxSurge = 0;
  let maxUnavailable = 0;
  if (strategy.type === 'RollingUpdate') {
    // Kubernetes' defaults, surge rounded up, unavailable down; both 0 would never progress, so the controller takes 1 unavailable (ResolveFenceposts).
    maxSurge = scaled(strategy.maxSurge ?? '25%', replicas, true);
    maxUnavailable = scaled(strategy.maxUnavailable ?? '25%', replicas, false);
    if (maxSurge === 0 && maxUnavailable === 0) maxUnavailable = 1;
    maxUnavailable = Math.min(maxUnavailable, replicas);
  }
  let old = 0;
  let fresh = replicas;
  if (broken && strategy.type === 'RollingUpdate') {
    old = replicas - maxUnavailable;
    fresh = Math.min(replicas, maxSurge + maxUnavailable);
  }
  const available = broken ? old : replicas;
  const total = old + fresh;
  return {
    maxSurge, maxUnavailable, old, new: fresh,
    replicas: total, updatedReplicas: fresh, availableReplicas: available,
    // calculateStatus: total minus available, never negative (surplus old pods while scaling down).
    unavailableReplicas: Math.max(0, total - available),
  };
}

export interface DeploymentCondition {
  type: 'Available' | 'Progressing';
  status: 'True' | 'False';
  reason: string;
  message: string;
  lastUpdateTime: string;
  lastTransitionTime: string;
}

/** A Deployment's status without observedGeneration (the API server's generation is the caller's). */
export interface DeploymentStatus {
  replicas: number;
  updatedReplicas: number;
  readyReplicas: number;
  availableReplicas: number;
  unavailableReplicas: number;
  conditions: DeploymentCondition[];
}

/**
 * The status the deployment controller writes, `nowMs` for a rollout whose sync
 * started at `startedAtMs`: the figures of rollout(), and the two conditions —
 * `Available` (minimum availability: available ≥ N − maxUnavailable) and
 * `Progressing` (ReplicaSetUpdated while rolling, NewReplicaSetAvailable once
 * done, False with ProgressDeadlineExceeded once `degradeAfterMs` have passed).
 * Times come from the sync start, so a status is rewritten only when it changes.
 */
export function deploymentStatus(d: DeploymentManifest, startedAtMs: number, nowMs: number, degradeAfterMs: number): DeploymentStatus {
  const r = rollout(d.replicas, d.strategy, d.broken);
  const started = argoTime(new Date(startedAtMs));
  const minimum = r.availableReplicas >= d.replicas - r.maxUnavailable;
  const done = r.updatedReplicas === d.replicas && r.replicas === d.replicas && r.availableReplicas === d.replicas;
  const deadline = startedAtMs + degradeAfterMs;
  const progressing: DeploymentCondition = done
    ? { type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable', message: `ReplicaSet "${d.replicaSet}" has successfully progressed.`, lastUpdateTime: started, lastTransitionTime: started }
    : nowMs >= deadline
      ? { type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: `ReplicaSet "${d.replicaSet}" has timed out progressing.`, lastUpdateTime: argoTime(new Date(deadline)), lastTransitionTime: argoTime(new Date(deadline)) }
      : { type: 'Progressing', status: 'True', reason: 'ReplicaSetUpdated', message: `ReplicaSet "${d.replicaSet}" is progressing.`, lastUpdateTime: started, lastTransitionTime: started };
  return {
    replicas: r.replicas,
    updatedReplicas: r.updatedReplicas,
    readyReplicas: r.availableReplicas,
    availableReplicas: r.availableReplicas,
    unavailableReplicas: r.unavailableReplicas,
    conditions: [
      minimum
        ? { type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable', message: 'Deployment has minimum availability.', lastUpdateTime: started, lastTransitionTime: started }
        : { type: 'Available', status: 'False', reason: 'MinimumReplicasUnavailable', message: 'Deployment does not have minimum availability.', lastUpdateTime: started, lastTransitionTime: started },
      progressing,
    ],
  };
}

/** Argo CD's health of a Deployment from its status (gitops-engine's getAppsv1DeploymentHealth; the simulator always observes the generation). */
export function deploymentHealth(d: DeploymentManifest, status: DeploymentStatus): Health {
  if (status.conditions.some((c) => c.type === 'Progressing' && c.reason === 'ProgressDeadlineExceeded')) {
    return { status: 'Degraded', message: `Deployment "${d.name}" exceeded its progress deadline` };
  }
  if (status.updatedReplicas < d.replicas) {
    return { status: 'Progressing', message: `Waiting for rollout to finish: ${status.updatedReplicas} out of ${d.replicas} new replicas have been updated...` };
  }
  if (status.replicas > status.updatedReplicas) {
    return { status: 'Progressing', message: `Waiting for rollout to finish: ${status.replicas - status.updatedReplicas} old replicas are pending termination...` };
  }
  if (status.availableReplicas < status.updatedReplicas) {
    return { status: 'Progressing', message: `Waiting for rollout to finish: ${status.availableReplicas} of ${status.updatedReplicas} updated replicas are available...` };
  }
  return { status: 'Healthy' };
}

/** The app's health: its worst resource's, as Argo CD aggregates it. An app without Deployments is Healthy. */
export function appHealth(healths: Health[]): Health {
  const rank = { Healthy: 0, Progressing: 1, Degraded: 2 } as const;
  return healths.reduce<Health>((worst, h) => (rank[h.status] > rank[worst.status] ? h : worst), { status: 'Healthy' });
}

/**
 * The app-level message Argo CD 3.x writes (controller/health.go formatHealthCauses): not the
 * resource's own message but which resources of the worst health caused it, three at most;
 * none when Healthy.
 */
export function appHealthMessage(deployments: Array<{ namespace: string; name: string }>, healths: Health[]): string | undefined {
  const worst = appHealth(healths).status;
  if (worst === 'Healthy') return undefined;
  const causes = deployments.filter((_, i) => healths[i]!.status === worst).map((d) => `apps/Deployment:${d.namespace}/${d.name}`);
  const shown = causes.slice(0, 3).join(', ');
  return `Caused by ${causes.length > 3 ? `${shown} and ${causes.length - 3} more` : shown}`;
}

export interface HistoryEntry {
  id: number;
  revision: string;
  deployedAt: string;
  deployStartedAt: string;
  source: Record<string, unknown>;
  /** Who started the sync: `{ automated: true }` for auto-sync (absent in a history someone else wrote). */
  initiatedBy?: { automated?: boolean; username?: string };
}

/** Argo CD keeps `spec.revisionHistoryLimit` entries (10 by default), oldest first, ids counting up. */
export function appendHistory(history: HistoryEntry[], entry: Omit<HistoryEntry, 'id'>, limit = 10): HistoryEntry[] {
  const id = history.length > 0 ? history[history.length - 1]!.id + 1 : 0;
  return [...history, { id, ...entry }].slice(-Math.max(1, limit));
}

/** Argo CD writes times with second precision (metav1.Time). */
export function argoTime(at: Date): string {
  return at.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export interface StatusInput {
  source: Record<string, unknown>;
  destination: Record<string, unknown>;
  /** The revision last compared with the cluster (the branch head). */
  revision: string;
  history: HistoryEntry[];
  deployments: DeploymentManifest[];
  now: Date;
  degradeAfterMs: number;
  /**
   * The controller's --persist-resource-health: write each resource's health into
   * `status.resources` (Argo CD 3.x: off by default; the health lives in the resource tree).
   */
  persistResourceHealth?: boolean;
  /** The app's health as last written: its lastTransitionTime is kept while the status stays. */
  previousHealth?: { status?: string; lastTransitionTime?: string };
  /** Argo CD's namespace (status.controllerNamespace); 'argocd' by default. */
  controllerNamespace?: string;
  /** How the source was rendered (render.ts sourceTypeOf); 'Directory' by default. */
  sourceType?: 'Directory' | 'Kustomize' | 'Helm';
}

/** When the last sync started; with no history, long ago (past any progress deadline). */
export function syncStartedAt(history: HistoryEntry[]): number {
  const last = history[history.length - 1];
  return last ? Date.parse(last.deployStartedAt) : 0;
}

/** The Application status for what was deployed last, as of `now`: each Deployment's health from its status. */
export function applicationStatus(input: StatusInput, statuses: DeploymentStatus[] = deploymentStatuses(input)): Record<string, unknown> {
  const healths = input.deployments.map((d, i) => deploymentHealth(d, statuses[i]!));
  const health = appHealth(healths);
  const persist = input.persistResourceHealth ?? false;
  const last = input.history[input.history.length - 1];
  return {
    sync: { status: 'Synced', revision: input.revision, comparedTo: { source: input.source, destination: input.destination } },
    // A merge patch keeps a field it is not told to drop: an absent message is sent as null.
    health: {
      status: health.status, message: appHealthMessage(input.deployments, healths) ?? null,
      lastTransitionTime: input.previousHealth?.status === health.status && input.previousHealth.lastTransitionTime ? input.previousHealth.lastTransitionTime : argoTime(input.now),
    },
    history: input.history,
    // The last sync, as the history's last entry tells it (every simulated sync succeeds at once).
    ...(last ? {
      operationState: {
        phase: 'Succeeded', message: 'successfully synced (all tasks run)', startedAt: last.deployStartedAt, finishedAt: last.deployedAt,
        operation: { sync: { revision: last.revision, source: last.source }, initiatedBy: last.initiatedBy ?? { automated: true } },
        syncResult: { revision: last.revision, source: last.source },
      },
    } : {}),
    controllerNamespace: input.controllerNamespace ?? 'argocd',
    resources: input.deployments.map((d, i) => ({
      group: 'apps', version: 'v1', kind: 'Deployment', namespace: d.namespace, name: d.name, status: 'Synced',
      // A merge patch replaces the whole list: no health left from an earlier write.
      ...(persist ? { health: { status: healths[i]!.status, ...(healths[i]!.message ? { message: healths[i]!.message } : {}) } } : {}),
    })),
    // Inline is Argo CD's empty value: the field is left out (null drops an earlier appTree in a merge patch).
    resourceHealthSource: persist ? null : 'appTree',
    // Argo CD 3.x writes it on every Application, with a hydrator or not.
    sourceHydrator: {},
    sourceType: input.sourceType ?? 'Directory',
  };
}

/** The status of each of `input.deployments`, as of `input.now`. */
export function deploymentStatuses(input: StatusInput): DeploymentStatus[] {
  const startedAt = syncStartedAt(input.history);
  return input.deployments.map((d) => deploymentStatus(d, startedAt, input.now.getTime(), input.degradeAfterMs));
}

/** Argo CD's util/git NormalizeGitURL for an https URL: lower case, `.git` stripped (what `argocd_app_info{repo}` carries). */
export function normalizeGitUrl(url: string): string {
  return url.trim().toLowerCase().replace(/\.git$/, '');
}

export interface AppInfoInput {
  namespace: string;
  name: string;
  project?: string;
  automated: boolean;
  repoURL?: string;
  destServer?: string;
  destNamespace?: string;
  syncStatus: string;
  healthStatus: string;
  /** The last sync operation's phase; undefined before any. */
  phase?: string;
}

/** The labels of `argocd_app_info` as Argo CD 3.6's controller/metrics/metrics.go sets them (the simulator runs no hydrator and no operation outlives a poll). */
export function appInfoLabels(app: AppInfoInput): Record<string, string> {
  return {
    namespace: app.namespace, name: app.name, project: app.project ?? 'default',
    autosync_enabled: String(app.automated), repo: normalizeGitUrl(app.repoURL ?? ''),
    dest_server: app.destServer ?? '', dest_namespace: app.destNamespace ?? '',
    sync_status: app.syncStatus || 'Unknown', health_status: app.healthStatus || 'Unknown',
    hydrator_status: '', operation: '', phase: app.phase ?? '',
  };
}
