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
  /**
   * The installation that acts on the policy's Applications and alone writes this status: the one
   * spec.installation names, else the first to claim it (policy/installation.ts).
   */
  installation?: string;
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
  /** metadata.resourceVersion: a status write carries it, so one made on a stale read is refused (a claim race lost). */
  resourceVersion?: string;
  uid?: string;
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
  /**
   * Merge-patches the status. With `resourceVersion` the API server refuses it (CONFLICT) when the policy
   * changed since that read: how one of two installations claiming a policy at once loses.
   */
  writeStatus(policy: { namespace: string; name: string; resourceVersion?: string }, status: RollbackPolicyStatus): Promise<void>;
}
