// When a rollback may merge: the eight invariants of SPEC §7 as pure functions
// of gathered facts, and the verdict they feed (SPEC §4, AwaitingMergeApproval),
// with the deadlines of every waiting state. A fact that could not be read is
// `undefined` and yields UNKNOWN, which never counts as PASS. The same results
// feed the merge decision, the status, the PR body and the audit record.
import type { CheckResult, CheckRun, CiState, DeploymentReplicas, Environment, FailsEarly, HealthCheck, HealthStatus, InvariantId, InvariantResult, Settings } from '../fsm/record.ts';
import { formatDuration } from '../fsm/format.ts';
import { INVARIANT_IDS } from '../fsm/record.ts';

export type { CheckRun, DeploymentReplicas } from '../fsm/record.ts';

export interface InvariantFacts {
  environment: Environment;
  /** What else the rollback changes beyond staging (record.ts affectsBeyondStaging): a staging rollback that says so waits for an approver. */
  alsoChanges?: string;
  /** A fresh read of Argo CD health. */
  health?: HealthStatus;
  /**
   * Read with it, while health is Progressing: the current revision's pods fail early
   * (modules/pod-signals.ts). Undefined when they do not, or were not read.
   */
  failsEarly?: FailsEarly;
  deployments?: DeploymentReplicas[];
  checks?: HealthCheck[];
  persistenceChecks: number;
  intervalSeconds: number;
  /** `evidence` says why CI-only selection was used (Prometheus down, or without data). */
  candidate?: { uptime: number | null; minUptime: number; mode: 'metrics' | 'ci-only'; ciState: CiState | 'unknown'; evidence: string };
  /** CI on the rollback commit, judged against the required checks (ciVerdict). */
  ci?: CiVerdict;
  /** The PR's head is the operator's own rollback commit (a head that moved never gets this far: it aborts first). */
  headIsRollbackCommit?: boolean;
  /** Other open pull requests touching this app's path on the target branch. */
  otherOpenPullRequests?: Array<{ number: number; title: string }>;
  mergeability?: { mergeable: boolean | null; mergeableState: string };
  /**
   * Evaluated for the PR body, before the PR exists: I6 and I8 cannot be known yet,
   * and I7 (every open PR of the repository listed) is left to the fresh reads before
   * a merge, off the path that opens the PR.
   */
  beforePullRequest?: boolean;
}

type Verdict = [CheckResult, string];

/** `web: 1/2 updated, 2 available, 1 unavailable, ProgressDeadlineExceeded` — I3's detail and the PR body's. */
export function rolloutFigures(d: DeploymentReplicas): string {
  return `${d.name}: ${d.updated}/${d.desired} updated, ${d.available} available, ${d.unavailable} unavailable${d.progressDeadlineExceeded ? ', ProgressDeadlineExceeded' : ''}`;
}
const unknown = (what: string): Verdict => ['UNKNOWN', `${what} could not be read`];

const rules: Record<InvariantId, (f: InvariantFacts) => Verdict> = {
  I1_environment: (f) => {
    if (f.environment !== 'staging') return ['FAIL', `environment is ${f.environment}: a human approves`];
    return f.alsoChanges ? ['FAIL', `environment is staging, but the rollback ${f.alsoChanges}: a human approves`] : ['PASS', 'environment is staging'];
  },

  I2_health_degraded: (f) => {
    if (f.health === undefined || f.health === 'Unknown') return unknown('Argo CD health');
    if (f.health === 'Degraded') return ['PASS', 'Argo CD reports Degraded now'];
    // Argo CD reads a Deployment's health from its status alone: Progressing until the progress deadline, however the pods fail.
    if (f.health === 'Progressing' && f.failsEarly) return ['PASS', `Argo CD reports Progressing now, and ${f.failsEarly.signal}: ${f.failsEarly.detail}`];
    return ['FAIL', `Argo CD reports ${f.health} now${f.health === 'Progressing' ? ', and no pod of the current revision fails early' : ''}`];
  },

  I3_replica_shortage: (f) => {
    if (f.deployments === undefined) return unknown('Deployment status');
    if (f.deployments.length === 0) return ['FAIL', 'the application has no Deployments'];
    // Of the current revision: under the default RollingUpdate a bad release keeps
    // the old ReplicaSet at full strength, so total available replicas alone can
    // read "all there" while no pod of the new revision ever became ready.
    // Only Deployments that exist and Argo CD tracks as the app's: a name in the
    // Application's status that is not in the cluster is nobody's shortage.
    const short = f.deployments.filter((d) => d.updated < d.desired || d.unavailable > 0 || d.progressDeadlineExceeded);
    return short.length > 0
      ? ['PASS', `short of the current revision: ${short.map(rolloutFigures).join('; ')}`]
      : ['FAIL', `every Deployment runs its current revision in full: ${f.deployments.map(rolloutFigures).join('; ')}`];
  },

  I4_persistence: (f) => {
    if (f.checks === undefined) return unknown('health check history');
    return persistence(f.checks, f.persistenceChecks, f.intervalSeconds);
  },

  I5_stable_previous: (f) => {
    const c = f.candidate;
    if (c === undefined) return unknown('the rollback target');
    if (c.mode === 'ci-only') {
      return c.ciState === 'success'
        ? ['PASS', c.evidence]
        : c.ciState === 'unknown' ? unknown('the target commit\'s CI') : ['FAIL', `CI-only selection: the target commit's CI is ${c.ciState}`];
    }
    if (c.uptime === null) return unknown('the target\'s uptime');
    const figure = `${(c.uptime * 100).toFixed(2)}% uptime (minimum ${(c.minUptime * 100).toFixed(2)}%)`;
    return c.uptime >= c.minUptime ? ['PASS', figure] : ['FAIL', figure];
  },

  I6_ci_success: (f) => {
    if (f.beforePullRequest) return ['UNKNOWN', 'checked on this pull request once CI reports'];
    if (f.headIsRollbackCommit === false) return ['FAIL', 'the PR head is not the operator\'s rollback commit'];
    if (f.ci === undefined || f.headIsRollbackCommit === undefined) return unknown('CI on the rollback commit');
    // Pending (not reported yet, or re-run) waits: UNKNOWN, bounded by the state's deadline.
    return [f.ci.state === 'success' ? 'PASS' : f.ci.state === 'failure' ? 'FAIL' : 'UNKNOWN', f.ci.detail];
  },

  I7_no_conflicts: (f) => {
    if (f.beforePullRequest) return ['UNKNOWN', 'checked on fresh reads before any merge'];
    if (f.otherOpenPullRequests === undefined) return unknown('open pull requests');
    return f.otherOpenPullRequests.length === 0
      ? ['PASS', 'no other open PR touches this path']
      : ['FAIL', `other open PRs touch this path: ${f.otherOpenPullRequests.map((p) => `#${p.number}`).join(', ')}`];
  },

  I8_branch_protection: (f) => {
    if (f.beforePullRequest) return ['UNKNOWN', 'checked on this pull request before any merge'];
    const m = f.mergeability;
    if (m === undefined || m.mergeable === null) return unknown('mergeability (GitHub still computing)');
    if (!m.mergeable) return ['FAIL', `not mergeable (state ${m.mergeableState})`];
    if (m.mergeableState === 'clean') return ['PASS', 'mergeable, state clean'];
    if (m.mergeableState === 'unstable' && f.ci?.state === 'success') return ['PASS', 'mergeable, state unstable but required checks pass'];
    return ['FAIL', `mergeable state ${m.mergeableState}`];
  },
};

/**
 * Whether a check counts towards persistence: Argo CD read Degraded, or Progressing while the current
 * revision's pods failed early (its `signal`, SPEC §7 I2).
 */
export function failingCheck(check: Pick<HealthCheck, 'status' | 'signal'>): boolean {
  return check.status === 'Degraded' || (check.status === 'Progressing' && check.signal !== undefined);
}

/** I4 on its own: the StabilityAnalyzer uses it to confirm persistence. */
export function persistence(checks: HealthCheck[], required: number, intervalSeconds: number): Verdict {
  const recent = checks.slice(-required);
  if (recent.length < required) return ['FAIL', `${recent.length} of ${required} checks so far`];
  const notDegraded = recent.find((c) => !failingCheck(c));
  if (notDegraded) return ['FAIL', `check at ${notDegraded.at} read ${notDegraded.status}`];
  for (let i = 1; i < recent.length; i++) {
    const gap = (Date.parse(recent[i]!.at) - Date.parse(recent[i - 1]!.at)) / 1000;
    if (gap > 2 * intervalSeconds) return ['FAIL', `checks ${gap.toFixed(0)} s apart, more than 2 intervals`];
  }
  const signals = [...new Set(recent.flatMap((c) => (c.signal ? [c.signal] : [])))];
  const what = signals.length === 0 ? 'Degraded' : `failing (Progressing with pods failing early: ${signals.join(', ')}${recent.some((c) => c.status === 'Degraded') ? '; or Degraded' : ''})`;
  return ['PASS', `${required} consecutive ${what} checks from ${recent[0]!.at} to ${recent.at(-1)!.at}`];
}

// ---- CI: the checks a merge requires (I6, and PRCreated's wait) ------------------

export interface CiVerdict {
  state: 'success' | 'failure' | 'pending';
  detail: string;
  /** Required contexts that failed, by name (CIFailure names them). */
  failed: string[];
}

/**
 * CI on the rollback commit. The checks that must pass are the base branch's required status checks
 * plus the policy's `merge.requiredChecks`; each must have reported success on that commit. A required
 * check that failed fails CI; one not reported yet or re-run and pending again is waited for. Without any
 * required check, every check reported must pass, and a commit with no check at all waits — unless the
 * policy says `requiredChecks: []` (a repository without CI, explicitly). Pure.
 */
export function ciVerdict(runs: CheckRun[], required: { branch: string[]; policy?: string[] }, sha: string): CiVerdict {
  const at = ` on ${sha.slice(0, 7)}`;
  // The same context may come as a status and a check run, or twice: the worst of them stands.
  const states = new Map<string, CiState>();
  const rank: Record<CiState, number> = { success: 0, pending: 1, error: 2, failure: 3 };
  for (const run of runs) {
    const before = states.get(run.name);
    if (!before || rank[run.state] > rank[before]) states.set(run.name, run.state);
  }
  const contexts = [...new Set([...required.branch, ...(required.policy ?? [])])].sort();
  const judged = contexts.length > 0 ? contexts : [...states.keys()].sort();
  const failed = judged.filter((c) => states.get(c) === 'failure' || states.get(c) === 'error');
  if (failed.length > 0) return { state: 'failure', failed, detail: `required check${failed.length > 1 ? 's' : ''} failed${at}: ${failed.join(', ')}` };
  if (contexts.length === 0 && judged.length === 0) {
    return required.policy !== undefined
      ? { state: 'success', failed: [], detail: 'no check required (the base branch requires none; merge.requiredChecks: [])' }
      : { state: 'pending', failed: [], detail: `no status or check run${at} yet, and none required: waiting (merge.requiredChecks: [] merges without CI)` };
  }
  const waiting = judged.filter((c) => states.get(c) === undefined || states.get(c) === 'pending');
  if (waiting.length > 0) {
    return { state: 'pending', failed: [], detail: `waiting for ${waiting.map((c) => `${c} (${states.has(c) ? 'pending' : 'not reported'})`).join(', ')}${at}` };
  }
  const others = [...states].filter(([c, state]) => !judged.includes(c) && state !== 'success').map(([c, state]) => `${c}=${state}`);
  return {
    state: 'success', failed: [],
    detail: `${contexts.length > 0 ? 'required' : 'every'} check${judged.length > 1 ? 's' : ''} passed${at}: ${judged.join(', ')}${others.length > 0 ? ` (not required: ${others.join(', ')})` : ''}`,
  };
}

export function evaluateInvariants(facts: InvariantFacts, now: Date): InvariantResult[] {
  const checkedAt = now.toISOString();
  return INVARIANT_IDS.map((id) => {
    const [result, detail] = rules[id](facts);
    return { id, result, detail, checkedAt };
  });
}

export function allPass(results: InvariantResult[], ids: readonly InvariantId[] = INVARIANT_IDS): boolean {
  return ids.every((id) => results.find((r) => r.id === id)?.result === 'PASS');
}

/** I2–I8: what production needs besides the approval (I1 fails there by design). */
export const PRODUCTION_MERGE_INVARIANTS: readonly InvariantId[] = INVARIANT_IDS.filter((id) => id !== 'I1_environment');

/**
 * Facts about the cluster, the degradation and the target that no pull request can
 * change: failing before the PR opens, they would fail at the merge too.
 */
export const PRE_PULL_REQUEST_INVARIANTS: readonly InvariantId[] = ['I3_replica_shortage', 'I4_persistence', 'I5_stable_previous'];

/** Invariants whose FAIL aborts a waiting attempt: not I1 (production's normal) nor I2 (health restored). */
export function violations(results: InvariantResult[]): InvariantResult[] {
  return results.filter((r) => r.result === 'FAIL' && r.id !== 'I1_environment' && r.id !== 'I2_health_degraded');
}

export function summary(results: InvariantResult[]): Record<string, CheckResult> {
  return Object.fromEntries(results.map((r) => [r.id, r.result]));
}

// ---- Deadlines (SPEC §4): each counts the time the current state was observed ---
// (fsm/record.ts `observed`), not wall-clock time since it began: a timeout must
// never fire on time the operator could not see — etcd down, GitHub down, no leader.

/** PRCreated: CI on the PR head is still not done (`CITimeout`). */
export function ciTimedOut(observedSeconds: number, settings: Pick<Settings, 'ciTimeoutSeconds'>): boolean {
  return observedSeconds > settings.ciTimeoutSeconds;
}

/** AwaitingMergeApproval: no merge became possible (`ApprovalTimeout`, or `InvariantViolated` while UNKNOWN). */
export function approvalTimedOut(observedSeconds: number, settings: Pick<Settings, 'approvalTimeoutSeconds'>): boolean {
  return observedSeconds > settings.approvalTimeoutSeconds;
}

/** RollbackMerged: health did not come back (`RecoveryTimeout`). */
export function recoveryTimedOut(observedSeconds: number, settings: Pick<Settings, 'recoveryTimeoutSeconds'>): boolean {
  return observedSeconds > settings.recoveryTimeoutSeconds;
}

/** RollbackMerged: Healthy long enough, without a break, to call it restored (`HealthRestored`). */
export function restorationHeld(healthySince: string, now: Date, settings: Pick<Settings, 'healthRestorationSeconds'>): boolean {
  return (now.getTime() - Date.parse(healthySince)) / 1000 >= settings.healthRestorationSeconds;
}

// ---- The merge verdict ---------------------------------------------------------

export interface MergeQuestion {
  environment: Environment;
  /** The invariants, evaluated on fresh reads this reconcile. */
  invariants: InvariantResult[];
  /** A production approval the API server authenticated (governance/approval.ts), recorded for the commit merged. */
  approval?: { approvedBy: string };
  /** How long AwaitingMergeApproval has been observed (see the deadlines above). */
  observedSeconds: number;
  settings: Pick<Settings, 'approvalTimeoutSeconds'>;
}

export type MergeVerdict =
  | { verdict: 'merge'; detail: string }
  | { verdict: 'wait'; detail: string }
  | { verdict: 'abort'; reason: 'InvariantViolated' | 'CIFailure' | 'ApprovalTimeout'; detail: string };

/**
 * Staging merges when all eight invariants PASS; production when an authorized
 * approval is recorded and I2–I8 PASS (I1 fails there by design). A FAIL other
 * than I1 or I2 aborts at once (I2 failing means health came back, which the
 * machine handles before asking). Otherwise the attempt waits, until the
 * approval deadline.
 */
export function mergeVerdict(q: MergeQuestion): MergeVerdict {
  const violated = violations(q.invariants);
  if (violated.length > 0) {
    // A required check that failed is a CI failure, named as one.
    const ciOnly = violated.every((v) => v.id === 'I6_ci_success');
    return { verdict: 'abort', reason: ciOnly ? 'CIFailure' : 'InvariantViolated', detail: violated.map((v) => `${v.id}: ${v.detail}`).join('; ') };
  }
  const staging = q.environment === 'staging';
  const required = staging ? INVARIANT_IDS : PRODUCTION_MERGE_INVARIANTS;
  const invariantsPass = allPass(q.invariants, required);
  if (invariantsPass && staging) return { verdict: 'merge', detail: 'staging: all eight invariants PASS on fresh reads' };
  if (invariantsPass && q.approval) return { verdict: 'merge', detail: `production: approved by ${q.approval.approvedBy}; I2–I8 PASS` };
  const unknown = q.invariants.filter((i) => i.result === 'UNKNOWN').map((i) => i.id).join(', ') || 'none';
  const awaitingApproval = !staging && !q.approval;
  if (approvalTimedOut(q.observedSeconds, q.settings)) {
    const window = formatDuration(q.settings.approvalTimeoutSeconds);
    return awaitingApproval
      ? { verdict: 'abort', reason: 'ApprovalTimeout', detail: `no authorized approval within ${window}` }
      : { verdict: 'abort', reason: 'InvariantViolated', detail: `invariants still not all PASS after ${window} (UNKNOWN: ${unknown})` };
  }
  return { verdict: 'wait', detail: awaitingApproval ? `waiting for an authorized approval (UNKNOWN: ${unknown})` : `waiting for the invariants to PASS (UNKNOWN: ${unknown})` };
}
