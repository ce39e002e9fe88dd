// The Argo CD simulator's declared rules, pure: which manifests are Deployments,
// how healthy a revision is, and the Application status Argo CD would write.
//
// The health rule: a Deployment whose manifest carries the annotation
// `ai-operator.dev/broken: "true"` never gets an available replica, so Argo CD
// reports it (and the app) `Progressing` until its progress deadline —
// `degradeAfterMs` after the sync started — and `Degraded` after. Every other
// Deployment is `Healthy` at once.
import { parseAllDocuments } from 'yaml';
import type { ManifestFile } from './git.ts';

export const BROKEN_ANNOTATION = 'ai-operator.dev/broken';

export interface DeploymentManifest {
  name: string;
  namespace: string;
  replicas: number;
  broken: boolean;
  /** The manifest as written in Git. */
  object: Record<string, unknown> & { metadata: { name: string; namespace?: string; annotations?: Record<string, string>; labels?: Record<string, string> } };
}

export interface Health {
  status: 'Healthy' | 'Progressing' | 'Degraded';
  message?: string;
}

interface Metadata { name?: string; namespace?: string; annotations?: Record<string, string> }

/** The apps/v1 Deployments among the manifests, in file order. */
export function deploymentsIn(files: ManifestFile[], defaultNamespace: string): DeploymentManifest[] {
  const found: DeploymentManifest[] = [];
  for (const { file, content } of files) {
    for (const doc of parseAllDocuments(content)) {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]!.message}`);
      const object = doc.toJS() as { apiVersion?: string; kind?: string; metadata?: Metadata; spec?: { replicas?: number } } | null;
      if (object?.kind !== 'Deployment' || object.apiVersion !== 'apps/v1' || !object.metadata?.name) continue;
      found.push({
        name: object.metadata.name,
        namespace: object.metadata.namespace ?? defaultNamespace,
        replicas: object.spec?.replicas ?? 1,
        broken: object.metadata.annotations?.[BROKEN_ANNOTATION] === 'true',
        object: object as DeploymentManifest['object'],
      });
    }
  }
  return found;
}

/** One Deployment's health, `sinceSyncMs` after its sync started. */
export function deploymentHealth(d: DeploymentManifest, sinceSyncMs: number, degradeAfterMs: number): Health {
  if (!d.broken) return { status: 'Healthy' };
  if (sinceSyncMs < degradeAfterMs) {
    return { status: 'Progressing', message: `Waiting for rollout to finish: 0 of ${d.replicas} updated replicas are available...` };
  }
  return { status: 'Degraded', message: `Deployment "${d.name}" exceeded its progress deadline` };
}

/** The app's health: its worst resource's, as Argo CD aggregates it. An app without Deployments is Healthy. */
export function appHealth(healths: Health[]): Health {
  const rank = { Healthy: 0, Progressing: 1, Degraded: 2 } as const;
  return healths.reduce<Health>((worst, h) => (rank[h.status] > rank[worst.status] ? h : worst), { status: 'Healthy' });
}

/** The replicas a Deployment reports without a controller-manager: a broken one has none available. */
export function deploymentStatus(d: DeploymentManifest, generation: number): Record<string, number> {
  const available = d.broken ? 0 : d.replicas;
  return {
    observedGeneration: generation,
    replicas: d.replicas,
    updatedReplicas: d.replicas,
    readyReplicas: available,
    availableReplicas: available,
    unavailableReplicas: d.replicas - available,
  };
}

export interface HistoryEntry {
  id: number;
  revision: string;
  deployedAt: string;
  deployStartedAt: string;
  source: Record<string, unknown>;
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
}

/** The Application status for what was deployed last, as of `now`. */
export function applicationStatus(input: StatusInput): Record<string, unknown> {
  const last = input.history[input.history.length - 1];
  const sinceSync = last ? input.now.getTime() - Date.parse(last.deployStartedAt) : Number.POSITIVE_INFINITY;
  const healths = input.deployments.map((d) => deploymentHealth(d, sinceSync, input.degradeAfterMs));
  const health = appHealth(healths);
  return {
    sync: { status: 'Synced', revision: input.revision, comparedTo: { source: input.source, destination: input.destination } },
    // A merge patch keeps a field it is not told to drop: an absent message is sent as null.
    health: { status: health.status, message: health.message ?? null },
    history: input.history,
    resources: input.deployments.map((d, i) => ({
      group: 'apps', version: 'v1', kind: 'Deployment', namespace: d.namespace, name: d.name, status: 'Synced',
      health: { status: healths[i]!.status, ...(healths[i]!.message ? { message: healths[i]!.message } : {}) },
    })),
    sourceType: 'Directory',
  };
}
