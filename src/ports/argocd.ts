// What the engine reads of an Argo CD Application (SPEC §6.1, §8). The real
// adapter watches Applications through the Kubernetes API and answers from its
// cache; tests use fakes of this port.
import type { AppRef, HealthStatus } from '../fsm/record.ts';

export interface DeploymentHistoryEntry {
  id: number;
  /** The commit of the app's Git source (a multi-source app's: of its first Git source) this deployment synced. */
  revision: string;
  deployedAt: string;
  /**
   * The Helm-repository charts this deployment synced (`repoURL chart@version`, sorted), for a multi-source
   * app with such a source: their versions live in the Application's spec, not in Git. Absent when none, or
   * when Argo CD did not record the deployment's sources.
   */
  charts?: string[];
}

/** One `spec.source` (or entry of `spec.sources`): what the source set (modules/source-set.ts) reads of it. */
export interface AppSource {
  repoURL: string;
  path?: string;
  targetRevision?: string;
  chart?: string;
  ref?: string;
  helm?: { valueFiles?: string[]; fileParameters?: Array<{ name?: string; path?: string }> } & Record<string, unknown>;
  kustomize?: { components?: string[] } & Record<string, unknown>;
  directory?: { recurse?: boolean; include?: string; exclude?: string; disableExtensionFilter?: boolean } & Record<string, unknown>;
  plugin?: unknown;
}

/** What Argo CD renders the app from, as written in its spec: the source set is computed from it. */
export interface RenderedSources {
  source?: AppSource;
  sources?: AppSource[];
  /** The `argocd.argoproj.io/manifest-generate-paths` annotation, when set. */
  manifestGeneratePaths?: string;
  /** The Helm-repository charts the spec names now (`repoURL chart@version`, sorted): compared with a deployment's. */
  charts?: string[];
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
  /** The app's Git source (a multi-source app's first Git source with a path): its repository and branch are the rollback's. */
  source?: { repoURL: string; path: string; targetRevision: string };
  /** Everything the source set reads of the spec. */
  rendered?: RenderedSources;
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
