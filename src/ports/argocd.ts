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
  labels: Record<string, string>;
  health?: HealthStatus;
  syncRevision?: string;
  history: DeploymentHistoryEntry[];
  resources: ResourceRef[];
  source?: { repoURL: string; path: string; targetRevision: string };
}

export interface ArgoCdPort {
  /** The Application as last seen, or undefined when it does not exist (or is not watched). */
  getApplication(ref: AppRef): Promise<ApplicationView | undefined>;
  getApplicationHealth(ref: AppRef): Promise<{ status: HealthStatus; revision?: string } | undefined>;
  getApplicationSyncStatus(ref: AppRef): Promise<{ status: string; revision?: string } | undefined>;
  /** Every Application the operator watches. */
  listApplications(): Promise<ApplicationView[]>;
}
