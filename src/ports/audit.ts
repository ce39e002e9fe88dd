// What the operator's audit trail takes (SPEC §10): the shape of a record and of
// what a caller supplies, and the port the reconcilers write through. Sealing,
// the hash chain and the sinks are audit/'s.
import type { CheckResult } from '../fsm/record.ts';

export const LEVELS = ['INFO', 'WARN', 'ERROR'] as const;
export type AuditLevel = (typeof LEVELS)[number];

export const MODULES = [
  'DegradationDetector',
  'StabilityAnalyzer',
  'RollbackCandidateResolver',
  'PRGenerator',
  'MergeController',
  'HealthMonitor',
  'Reconciler',
  'EventBus',
  'StateStore',
  'Server',
  'Operator',
] as const;
export type AuditModule = (typeof MODULES)[number];

export const ACTION_TYPES = [
  'DEGRADATION_DETECTED',
  'DEGRADATION_CONFIRMED',
  'DEGRADATION_CLEARED',
  'DEGRADATION_IGNORED',
  'CANDIDATE_RESOLVED',
  'FSM_TRANSITION',
  'INVARIANT_CHECK',
  'MCP_CALL',
  'PR_CREATED',
  'PR_MERGED',
  'PR_CLOSED',
  'APPROVAL',
  'RESET',
  'ABORT',
  'EVENT_REJECTED',
  'EVENT_DEAD_LETTERED',
  'LEADER_ELECTED',
  'LEADER_LOST',
] as const;
export type ActionType = (typeof ACTION_TYPES)[number];

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export interface AuditMetadata {
  appName?: string;
  prNumber?: number;
  environment?: string;
  [key: string]: JsonValue | undefined;
}

/** What a caller supplies; the audit log fills in the rest. */
export interface AuditInput {
  level?: AuditLevel;
  module: AuditModule;
  /** Empty for operator-level records (leader election, start-up). */
  correlationId?: string;
  actionType: ActionType;
  message: string;
  reasoning?: string;
  invariantsChecked?: Record<string, CheckResult>;
  metadata?: Record<string, unknown>;
  /** Supply a deterministic id when the same action may be recorded again (a retried reconcile). */
  eventId?: string;
  /** The trace and span of the reconcile that decided it (filled in by the audit log while tracing is on). */
  trace_id?: string;
  span_id?: string;
}

/** One JSON line of the file, one document of the Elasticsearch index; keys in the order of SPEC §10. */
export interface AuditRecord {
  timestamp: string;
  level: AuditLevel;
  module: AuditModule;
  correlationId: string;
  actionType: ActionType;
  message: string;
  reasoning?: string;
  invariantsChecked?: Record<string, CheckResult>;
  metadata: AuditMetadata;
  eventId: string;
  /** The attempt's trace (its correlationId's 128 bits) and the reconcile span, while tracing is on. */
  trace_id?: string;
  span_id?: string;
  prevHash: string;
  hash: string;
}

/** Where the reconcilers write audit records outside a commit (the chain, then Elasticsearch and the file). */
export interface AuditPort {
  record(input: AuditInput): Promise<unknown>;
}

/** The audit records of one committed write, as etcd keeps them until they are recorded. */
export interface AuditOutboxEntry {
  /** The chain (AuditLog.chainId) that is to record them. */
  chainId: string;
  /** When the write committed (ISO 8601). */
  committedAt: string;
  records: AuditInput[];
}

export interface StoredAuditOutboxEntry {
  key: string;
  modRevision: string;
  /** The stored value as read (what a dead letter keeps). */
  raw?: string;
  entry?: AuditOutboxEntry;
  /** Why the stored value is not an entry, naming the field. */
  unreadable?: string;
}

/** Where the audit outbox entries of committed writes wait for their chain (the attempt store, in etcd). */
export interface AuditOutboxStore {
  /** Entries of one chain, or of every chain when `chainId` is undefined, oldest key first. */
  pendingAuditOutbox(chainId: string | undefined, limit: number): Promise<StoredAuditOutboxEntry[]>;
  /** Deletes an entry if it is still the one read (another adopter may have taken it). */
  removeAuditOutbox(entry: Pick<StoredAuditOutboxEntry, 'key' | 'modRevision'>): Promise<boolean>;
  /** Moves an unreadable entry aside (the audit outbox's dead letters); its new key, or undefined if it changed meanwhile. */
  deadLetterAuditOutbox(letter: { key: string; raw: string; reason: string; at: string; modRevision: string }): Promise<string | undefined>;
}
