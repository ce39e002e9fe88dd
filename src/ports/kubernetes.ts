// Read-only cluster facts for I3 and the PR body (SPEC §8), and the
// RollbackAttempt objects through which humans see and steer attempts.
import type { AttemptRecord } from '../fsm/record.ts';
import type { DeploymentReplicas } from '../governance/invariants.ts';
import type { ApplicationView } from './argocd.ts';

export interface PodSummary {
  name: string;
  phase: string;
  ready: boolean;
  restarts: number;
}

export interface ClusterPort {
  getDeploymentStatus(app: ApplicationView): Promise<DeploymentReplicas[]>;
  listPods(app: ApplicationView): Promise<PodSummary[]>;
}

/** What a human asked for on a RollbackAttempt, by annotation. */
export interface HumanRequests {
  approve?: string;
  reset?: boolean;
  abort?: string;
}

export const ANNOTATIONS = {
  approve: 'ai-operator.io/approve',
  reset: 'ai-operator.io/reset',
  abort: 'ai-operator.io/abort',
} as const;

export interface AttemptObjectsPort {
  /** Creates the RollbackAttempt if missing and writes its status from the record. */
  project(record: AttemptRecord): Promise<void>;
  requests(record: AttemptRecord): Promise<HumanRequests>;
}
