// The states of a rollback attempt and the transitions between them (SPEC §4).
// This table is the only place that says what may follow what: every transition
// the operator writes is checked against it. Each row says when it is taken; the
// merge verdict and the deadlines it names are in governance/merge-verdict.ts.

export const STATES = [
  'Idle',
  'DegradationDetected',
  'CandidateResolved',
  'PRCreated',
  'AwaitingMergeApproval',
  'RollbackMerged',
  'RollbackComplete',
  'Abort',
] as const;

export type State = (typeof STATES)[number];

/** Reasons recorded with a transition: CamelCase, one constant each. */
export const Reason = {
  /** Kept for records written before persistence was confirmed ahead of the attempt. */
  DegradationObserved: 'DegradationObserved',
  TransientDegradation: 'TransientDegradation',
  DegradationConfirmed: 'DegradationConfirmed',
  StableCandidateFound: 'StableCandidateFound',
  NoStableCandidate: 'NoStableCandidate',
  CandidateSearchTimeout: 'CandidateSearchTimeout',
  PullRequestOpened: 'PullRequestOpened',
  PullRequestAdopted: 'PullRequestAdopted',
  DryRun: 'DryRun',
  PermissionDenied: 'PermissionDenied',
  Conflict: 'Conflict',
  IntegrationError: 'IntegrationError',
  CISucceeded: 'CISucceeded',
  CIFailure: 'CIFailure',
  CITimeout: 'CITimeout',
  HealthRestoredBeforeMerge: 'HealthRestoredBeforeMerge',
  AutoMerged: 'AutoMerged',
  ApprovedAndMerged: 'ApprovedAndMerged',
  MergedByHuman: 'MergedByHuman',
  InvariantViolated: 'InvariantViolated',
  /** The PR is no longer the operator's rollback: its head moved, its base was retargeted, or it was never the operator's. */
  PullRequestChanged: 'PullRequestChanged',
  ApprovalTimeout: 'ApprovalTimeout',
  PullRequestClosed: 'PullRequestClosed',
  HealthRestored: 'HealthRestored',
  RecoveryTimeout: 'RecoveryTimeout',
  AbortRequested: 'AbortRequested',
  UnexpectedError: 'UnexpectedError',
  ApplicationDeleted: 'ApplicationDeleted',
  NothingToRollBack: 'NothingToRollBack',
  /** The Application's spec.source changed mid-attempt: the rollback was built for the old one. */
  SourceChanged: 'SourceChanged',
  /** A policy made the staging app production mid-attempt: staging's auto-merge no longer applies. */
  EnvironmentChanged: 'EnvironmentChanged',
  Reset: 'Reset',
  /** maxAttemptsPerHour attempts already started for the app within the hour (it flaps): held until a reset. */
  AttemptLimitReached: 'AttemptLimitReached',
} as const;

export type Reason = (typeof Reason)[keyof typeof Reason];

export interface TransitionRule {
  from: State;
  to: State;
  /** The reasons this transition may carry. */
  reasons: readonly Reason[];
  /** When it is taken, as SPEC §4 says it. */
  when: string;
}

const nonTerminal: State[] = ['DegradationDetected', 'CandidateResolved', 'PRCreated', 'AwaitingMergeApproval', 'RollbackMerged'];
// The app's attempt ends wherever it is when the app is deleted, or changes under it in a way the attempt was not built for.
const anyAbort: Reason[] = [Reason.AbortRequested, Reason.UnexpectedError, Reason.ApplicationDeleted, Reason.SourceChanged, Reason.EnvironmentChanged];

export const TRANSITIONS: readonly TransitionRule[] = [
  { from: 'Idle', to: 'DegradationDetected', reasons: [Reason.DegradationConfirmed],
    when: 'persistenceChecks consecutive Degraded checks (counted in the health key, before any attempt), nothing holds the app, not in cooldown, not suspended or refused' },
  { from: 'Idle', to: 'Abort', reasons: [Reason.AttemptLimitReached],
    when: 'persistence confirmed, but maxAttemptsPerHour attempts already started for the app within the hour: the app flaps, and is held until a reset' },
  { from: 'DegradationDetected', to: 'Idle', reasons: [Reason.TransientDegradation],
    when: 'health left Degraded before the candidate search began' },
  { from: 'DegradationDetected', to: 'CandidateResolved', reasons: [Reason.StableCandidateFound],
    when: 'persistence confirmed (I4) and a stable candidate found, never a revision rolled back from' },
  { from: 'DegradationDetected', to: 'Abort', reasons: [Reason.NoStableCandidate, Reason.CandidateSearchTimeout, Reason.IntegrationError, Reason.PermissionDenied, ...anyAbort],
    when: 'no stable candidate, the search budget spent, or an integration error after retries' },
  { from: 'CandidateResolved', to: 'PRCreated', reasons: [Reason.PullRequestOpened, Reason.PullRequestAdopted],
    when: 'the rollback PR opened, or this attempt\'s own PR adopted' },
  { from: 'CandidateResolved', to: 'Abort', reasons: [Reason.InvariantViolated, Reason.NothingToRollBack, Reason.PermissionDenied, Reason.Conflict, Reason.IntegrationError, Reason.DryRun, Reason.PullRequestChanged, ...anyAbort],
    when: 'an invariant no PR can change already fails (I3, I4, I5), the path already is the target\'s, a dry run, the PR could not be opened, or a PR of the attempt\'s branch is not the operator\'s rollback' },
  { from: 'CandidateResolved', to: 'Idle', reasons: [Reason.HealthRestoredBeforeMerge],
    when: 'Healthy again before a PR was opened' },
  { from: 'PRCreated', to: 'AwaitingMergeApproval', reasons: [Reason.CISucceeded],
    when: 'every required check passed on the rollback commit (the base branch\'s required status checks and merge.requiredChecks)' },
  { from: 'PRCreated', to: 'Abort', reasons: [Reason.CIFailure, Reason.CITimeout, Reason.PullRequestClosed, Reason.PullRequestChanged, Reason.IntegrationError, Reason.PermissionDenied, ...anyAbort],
    when: 'a required check failed, or CI still pending after ciTimeoutSeconds, or a human closed the PR, or its head moved off the rollback commit or its base was retargeted' },
  { from: 'PRCreated', to: 'Idle', reasons: [Reason.HealthRestoredBeforeMerge],
    when: 'Healthy again before the merge: the PR closed with a comment' },
  { from: 'AwaitingMergeApproval', to: 'Idle', reasons: [Reason.HealthRestoredBeforeMerge],
    when: 'Healthy again before the merge: the PR closed with a comment' },
  { from: 'AwaitingMergeApproval', to: 'RollbackMerged', reasons: [Reason.AutoMerged, Reason.ApprovedAndMerged, Reason.MergedByHuman],
    when: 'the merge verdict says merge (staging: all eight PASS on fresh reads; production: an authenticated approval and I2–I8 PASS), or a human merged it' },
  { from: 'AwaitingMergeApproval', to: 'Abort', reasons: [Reason.InvariantViolated, Reason.CIFailure, Reason.ApprovalTimeout, Reason.PullRequestClosed, Reason.PullRequestChanged, Reason.IntegrationError, Reason.PermissionDenied, Reason.Conflict, ...anyAbort],
    when: 'an invariant other than I1, I2 fails (a required check failing: CIFailure), or no merge possible within approvalTimeoutSeconds, or a human closed the PR, or its head moved or its base was retargeted' },
  { from: 'RollbackMerged', to: 'RollbackComplete', reasons: [Reason.HealthRestored],
    when: 'Healthy on a revision other than the bad one, continuously for healthRestorationSeconds' },
  { from: 'RollbackMerged', to: 'Abort', reasons: [Reason.RecoveryTimeout, Reason.IntegrationError, ...anyAbort],
    when: 'not restored within recoveryTimeoutSeconds of the merge' },
  { from: 'Abort', to: 'Idle', reasons: [Reason.Reset],
    when: 'a reset: the annotation, or POST /reset/{correlationId} by an authenticated user' },
];
// "Any non-terminal → Abort" (an abort request, or the fail-safe on an unexpected
// error) is folded into each state's Abort row above through `anyAbort`.

export function isTerminal(state: State): boolean {
  return state === 'RollbackComplete' || state === 'Abort';
}

/** The attempt is under way: the machine works on it and checks it every interval. */
export function inProgress(state: State): boolean {
  return nonTerminal.includes(state);
}

/**
 * The attempt holds its app — the etcd `active` key (SPEC §5) names it — and no
 * other attempt may start: while in progress, and in Abort until a reset. Idle
 * and RollbackComplete release it.
 */
export function holdsApp(state: State): boolean {
  return state !== 'Idle' && state !== 'RollbackComplete';
}

/** After a rollback merged, no new attempt starts for `cooldownSeconds` (SPEC §12). */
export function cooldownEnds(lastRollbackAt: string | undefined, cooldownSeconds: number): string | undefined {
  return lastRollbackAt ? new Date(Date.parse(lastRollbackAt) + cooldownSeconds * 1000).toISOString() : undefined;
}

export function findRule(from: State, to: State): TransitionRule | undefined {
  return TRANSITIONS.find((rule) => rule.from === from && rule.to === to);
}

export function isAllowed(from: State, to: State, reason: Reason): boolean {
  return findRule(from, to)?.reasons.includes(reason) ?? false;
}
