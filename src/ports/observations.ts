// What a decision moves in the operator's metrics (SPEC §11), as data: the
// record-keeping derives these (decide/record-keeping.ts), observability/metrics.ts
// applies them.
import type { Environment } from '../fsm/record.ts';
import type { State } from '../fsm/table.ts';

export type MetricObservation =
  | { metric: 'fsmState'; app: string; state: State }
  | { metric: 'degradationDetected'; app: string; environment: Environment }
  | { metric: 'rollbackProposed'; app: string; environment: Environment; success: boolean }
  | { metric: 'rollbackMerged'; app: string; environment: Environment; auto: boolean }
  | { metric: 'rollbackAborted'; app: string; environment: Environment; reason: string }
  | { metric: 'invariantViolated'; invariant: string }
  | { metric: 'recovery'; app: string; environment: Environment; seconds: number };
