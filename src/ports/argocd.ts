// What the engine reads of an Argo CD Application (SPEC §6.1, §8). The real
// adapter watches Applications through the Kubernetes API and answers from its
// cache; tests use fakes of this port.
import type { AppRef, HealthStatus } from '../fsm/record.ts';

export interface DeploymentHistoryEntry {
  id: number;
  revision: string;
  deployedAt: string;
}

export interface ResourceRef {
  group?: string;
  kind: string;
  namespace?: string;
  name: string;
  health?: string;
}

export interface ApplicationView {
  ref: AppRef;
  /** metadata.uid: Argo CD's UI lists an Application's Events by it. */
  uid?: string;
  labels: Record<string, string>;
  /**
   * Why the operator cannot yet read this Application's shape right (multi-source,
   * source hydrator): it is refused, never half-understood.
   */
  unsupported?: string;
  health?: HealthStatus;
  /**
   * When the watch saw the current run of Degraded begin; absent when not Degraded
   * or when it was Degraded already when first seen (fsm/persistence.ts).
   */
  degradedSince?: string;
  syncRevision?: string;
  history: DeploymentHistoryEntry[];
  /**
   * `status.resources` as written. Argo CD's CRD has no status subresource, so
   * whoever may patch the Application may write this: never the answer to which
   * Deployments are the app's (integrations/kubernetes.ts asks Argo CD's tracking).
   */
  resources: ResourceRef[];
  /** `spec.destination.namespace`: where Argo CD puts the app's namespaced resources that name none. */
  destinationNamespace?: string;
  source?: { repoURL: string; path: string; targetRevision: string };
}

export interface ArgoCdPort {
  /** The Application as last seen, or undefined when it does not exist (or is not watched). */
  getApplication(ref: AppRef): Promise<ApplicationView | undefined>;
  /** A fresh read from the API server, past the watch cache: undefined only when it does not exist. */
  readApplication(ref: AppRef): Promise<ApplicationView | undefined>;
  /** Health as last seen: the watch cache, or Argo CD's REST API when ARGOCD_URL is set. */
  getApplicationHealth(ref: AppRef): Promise<{ status: HealthStatus; revision?: string } | undefined>;
  /**
   * Health read now, for I2 ("Degraded now") just before a merge decision: Argo CD's
   * REST API when ARGOCD_URL is set, else a GET from the API server — never the cache.
   */
  readApplicationHealth(ref: AppRef): Promise<{ status: HealthStatus; revision?: string } | undefined>;
  getApplicationSyncStatus(ref: AppRef): Promise<{ status: string; revision?: string } | undefined>;
  /** Every Application the operator watches. */
  listApplications(): Promise<ApplicationView[]>;
}
