// RollbackPolicy objects as the policy reconciler reads and writes them: the
// watched policies, and their status subresource (SPEC §3).
import type { RollbackPolicySpec } from '../policy/settings.ts';

export interface PolicyCondition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
  observedGeneration?: number;
}

export interface RollbackPolicyStatus {
  observedGeneration?: number;
  matchedApplications?: number;
  conditions?: PolicyCondition[];
}

/** A RollbackPolicy as last seen by the watch. */
export interface PolicyObject {
  namespace: string;
  name: string;
  /** metadata.generation: bumped by the API server on every spec change. */
  generation?: number;
  spec: RollbackPolicySpec;
  status?: RollbackPolicyStatus;
}

export interface RollbackPolicyPort {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Every policy the watch knows of, in every namespace. */
  list(): PolicyObject[];
  /** Calls `listener` when a policy is created, changed or deleted. Returns an unsubscribe. */
  onChange(listener: () => void): () => void;
  writeStatus(policy: { namespace: string; name: string }, status: RollbackPolicyStatus): Promise<void>;
}
