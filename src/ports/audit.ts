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
  prevHash: string;
  hash: string;
}

/** Where the reconcilers write audit records outside a commit (the chain, then Elasticsearch and the file). */
export interface AuditPort {
  record(input: AuditInput): Promise<unknown>;
}
