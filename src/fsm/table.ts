// The states of a rollback attempt and the transitions between them (SPEC §4).
// This table is the only place that says what may follow what: every transition
// the operator writes is checked against it.

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
  ApprovalTimeout: 'ApprovalTimeout',
  PullRequestClosed: 'PullRequestClosed',
  HealthRestored: 'HealthRestored',
  RecoveryTimeout: 'RecoveryTimeout',
  AbortRequested: 'AbortRequested',
  UnexpectedError: 'UnexpectedError',
  ApplicationDeleted: 'ApplicationDeleted',
  NothingToRollBack: 'NothingToRollBack',
  Reset: 'Reset',
} as const;

export type Reason = (typeof Reason)[keyof typeof Reason];

export interface TransitionRule {
  from: State;
  to: State;
  /** The reasons this transition may carry. */
  reasons: readonly Reason[];
}

const nonTerminal: State[] = ['DegradationDetected', 'CandidateResolved', 'PRCreated', 'AwaitingMergeApproval', 'RollbackMerged'];
const anyAbort: Reason[] = [Reason.AbortRequested, Reason.UnexpectedError, Reason.ApplicationDeleted];

export const TRANSITIONS: readonly TransitionRule[] = [
  // An attempt starts once persistence is confirmed; until then the checks live in the app's health key.
  { from: 'Idle', to: 'DegradationDetected', reasons: [Reason.DegradationConfirmed] },
  { from: 'DegradationDetected', to: 'Idle', reasons: [Reason.TransientDegradation] },
  { from: 'DegradationDetected', to: 'CandidateResolved', reasons: [Reason.StableCandidateFound] },
  { from: 'DegradationDetected', to: 'Abort', reasons: [Reason.NoStableCandidate, Reason.CandidateSearchTimeout, Reason.IntegrationError, Reason.PermissionDenied, ...anyAbort] },
  { from: 'CandidateResolved', to: 'PRCreated', reasons: [Reason.PullRequestOpened, Reason.PullRequestAdopted] },
  // Before a PR opens: an invariant no PR can change already fails, or the path already is the target's.
  { from: 'CandidateResolved', to: 'Abort', reasons: [Reason.InvariantViolated, Reason.NothingToRollBack, Reason.PermissionDenied, Reason.Conflict, Reason.IntegrationError, Reason.DryRun, ...anyAbort] },
  { from: 'CandidateResolved', to: 'Idle', reasons: [Reason.HealthRestoredBeforeMerge] },
  { from: 'PRCreated', to: 'AwaitingMergeApproval', reasons: [Reason.CISucceeded] },
  { from: 'PRCreated', to: 'Abort', reasons: [Reason.CIFailure, Reason.CITimeout, Reason.PullRequestClosed, Reason.IntegrationError, Reason.PermissionDenied, ...anyAbort] },
  { from: 'PRCreated', to: 'Idle', reasons: [Reason.HealthRestoredBeforeMerge] },
  { from: 'AwaitingMergeApproval', to: 'Idle', reasons: [Reason.HealthRestoredBeforeMerge] },
  { from: 'AwaitingMergeApproval', to: 'RollbackMerged', reasons: [Reason.AutoMerged, Reason.ApprovedAndMerged, Reason.MergedByHuman] },
  { from: 'AwaitingMergeApproval', to: 'Abort', reasons: [Reason.InvariantViolated, Reason.ApprovalTimeout, Reason.PullRequestClosed, Reason.IntegrationError, Reason.PermissionDenied, Reason.Conflict, ...anyAbort] },
  { from: 'RollbackMerged', to: 'RollbackComplete', reasons: [Reason.HealthRestored] },
  { from: 'RollbackMerged', to: 'Abort', reasons: [Reason.RecoveryTimeout, Reason.IntegrationError, ...anyAbort] },
  { from: 'Abort', to: 'Idle', reasons: [Reason.Reset] },
];
// "Any non-terminal → Abort" (an abort request, or the fail-safe on an unexpected
// error) is folded into each state's Abort row above through `anyAbort`.

export function isTerminal(state: State): boolean {
  return state === 'RollbackComplete' || state === 'Abort';
}

/** An attempt has ended when it is back at Idle or complete; Abort waits for a reset. */
export function hasEnded(state: State): boolean {
  return state === 'Idle' || state === 'RollbackComplete';
}

export function isActive(state: State): boolean {
  return nonTerminal.includes(state);
}

export function findRule(from: State, to: State): TransitionRule | undefined {
  return TRANSITIONS.find((rule) => rule.from === from && rule.to === to);
}

export function isAllowed(from: State, to: State, reason: Reason): boolean {
  return findRule(from, to)?.reasons.includes(reason) ?? false;
}
