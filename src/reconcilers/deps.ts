// What the application reconciler is wired with (operator.ts builds it), shared by
// its three parts: observe.ts (the reads), execute.ts (the intents' effects) and
// application.ts (decide, commit, say, project).
import type { Logger } from '../observability/log.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { MonitoredApp } from '../policy/settings.ts';
import type { ApplicationView, ArgoCdPort } from '../ports/argocd.ts';
import type { AuditPort } from '../ports/audit.ts';
import type { GitHubPort } from '../ports/github.ts';
import type { ApprovalEnforcementPort, AttemptObjectsPort, ClusterPort, EventRecorderPort } from '../ports/kubernetes.ts';
import type { MetricsHistoryPort } from '../ports/prometheus.ts';
import type { AttemptStorePort } from '../ports/attempt-store.ts';

/** The reconciler writes audit records outside a commit through the audit port. */
export type AuditSink = AuditPort;

export interface ApplicationReconcilerDeps {
  store: AttemptStorePort;
  argocd: ArgoCdPort;
  github: GitHubPort;
  cluster: ClusterPort;
  history: MetricsHistoryPort;
  attempts: AttemptObjectsPort;
  monitoring: (app: ApplicationView) => MonitoredApp | undefined;
  audit: AuditSink;
  /** The audit log's chain (AuditLog.chainId): the one that records this replica's audit outbox entries. */
  auditChain?: string;
  metrics: Metrics;
  log: Logger;
  argocdNamespace: string;
  /**
   * Whether the app has state in etcd (an active attempt, or a degradation being
   * counted), from an index the operator keeps off the etcd watch; undefined when
   * unknown. Lets a quiet app (nothing stored, not Degraded) be checked from the
   * watch cache alone, with no etcd read.
   */
  hasStoredState?: (storeKey: string) => boolean | undefined;
  /** Kubernetes Events on the Application and the RollbackAttempt (best effort). */
  events?: EventRecorderPort;
  /** GITHUB_ORG: the owner of every repository the operator may open pull requests on. */
  allowedOwner?: string;
  /** The hosts of that GitHub's repositories (governance/repository.ts githubHosts): another host is refused. */
  githubHosts?: readonly string[];
  /** Whether the API server enforces who may approve; without it no production approval is ever recorded. */
  approvalEnforcement?: ApprovalEnforcementPort;
  /** Called after a commit that wrote events, so the outbox relay publishes them at once. */
  onEventsWritten?: () => void;
  clock?: () => Date;
  newId?: () => string;
}

/** Who asked for a reset, and through what (`POST /reset`). */
export interface ResetRequested {
  username: string;
  via: string;
}
