// The etcd key layout (SPEC §5). Keys are written under ETCD_PREFIX, which the
// KV adds; these are the names below it.

export const KEYS = {
  root: '/ai-operator/',
  rollbackPrefix: '/ai-operator/rollback/',
  /**
   * correlationId → where its attempt is (`{appKey, namespace}`), written in the
   * transaction of every write of the attempt, with the attempt's lease: it lives
   * exactly as long as the record. POST /reset finds an id here, not by a scan.
   */
  attemptIndexPrefix: '/ai-operator/attempt-index/',
  appsPrefix: '/ai-operator/apps/',
  outboxPrefix: '/ai-operator/outbox/',
  /** Outbox entries that can never be published, under the same suffix as their outbox key. */
  outboxDeadPrefix: '/ai-operator/outbox-dead/',
  /** Audit records of committed writes not yet in their chain, under `{chainId}/` (audit/outbox.ts). */
  auditOutboxPrefix: '/ai-operator/audit-outbox/',
  /** Audit outbox entries that cannot be read, under the same suffix, for a person to look at. */
  auditOutboxDeadPrefix: '/ai-operator/audit-outbox-dead/',
  leader: '/ai-operator/leader',
  /** Since when the API server has enforced who may approve, with the objects' uid and generation then. */
  approvalEnforcement: '/ai-operator/approval-enforcement',
  /** state, attempt: owner the attempt; no lease while it holds its app, the retention's (ATTEMPT_RETENTION) from its end. */
  state: (app: string, cid: string) => `/ai-operator/rollback/${app}/${cid}/state`,
  attempt: (app: string, cid: string) => `/ai-operator/rollback/${app}/${cid}/attempt`,
  attemptIndex: (cid: string) => `/ai-operator/attempt-index/${cid}`,
  /** Owner: the app's attempt in progress (or aborted, until reset); deleted in the transaction that ends or releases it. */
  active: (app: string) => `/ai-operator/apps/${app}/active`,
  /** Owner: the degradation being counted, then the attempt; deleted when the count clears or the attempt ends. */
  health: (app: string) => `/ai-operator/apps/${app}/health`,
  /** Owner: the app (its cooldown); on a lease of the longer of the retention and the cooldown. */
  lastRollback: (app: string) => `/ai-operator/apps/${app}/last-rollback`,
  /** Owner: the app (revisions never chosen again); on a lease of the longer of the retention and the cooldown. */
  rolledBackFrom: (app: string, sha: string) => `/ai-operator/apps/${app}/rolled-back-from/${sha}`,
  /** Owner: the app (maxAttemptsPerHour counts it); on a lease of an hour from the last start, deleted by a reset. */
  attemptStarts: (app: string) => `/ai-operator/apps/${app}/attempt-starts`,
} as const;
