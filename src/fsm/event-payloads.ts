// The payloads of the events a decision publishes (SPEC §9), one constructor per
// type, so the state machine says *which* event and this file says *what is in it*.
import type { EventData, EventType } from './cloud-events.ts';
import type { AppRef, Candidate, Environment, FailsEarly, PullRequestRef } from './record.ts';
import type { Reason, State } from './table.ts';

/** An event to publish; it belongs to the decision's attempt unless it names another correlation id. */
export type PendingEvent = { [T in EventType]: { type: T; data: EventData[T]; correlationId?: string } }[EventType];

/** What every event says about where it happened. */
export interface Where {
  app: AppRef;
  environment: Environment;
}

export const events = {
  transition: (w: Where, from: State, to: State, reason: Reason, version: number): PendingEvent =>
    ({ type: 'fsm.transition', data: { ...w, from, to, reason, version } }),
  aborted: (w: Where, fromState: State, reason: Reason, message: string): PendingEvent =>
    ({ type: 'rollback.aborted', data: { ...w, fromState, reason, message } }),
  /** Before an attempt exists these carry the degradation's own correlation id. */
  /** `signal`: Argo CD said Progressing and the current revision's pods fail early (issue 21), not Degraded. */
  degradationDetected: (w: Where, correlationId: string, revision: string | undefined, signal?: FailsEarly): PendingEvent =>
    ({ type: 'degradation.detected', data: {
      ...w, healthStatus: signal ? 'Progressing' : 'Degraded', ...(revision ? { revision } : {}), checks: 1,
      ...(signal ? { signal: signal.signal, evidence: signal.detail.slice(0, 1024) } : {}),
    }, correlationId }),
  degradationCleared: (w: Where, checks: number, reason: Reason, correlationId?: string): PendingEvent =>
    ({ type: 'degradation.cleared', data: { ...w, checks, reason }, ...(correlationId ? { correlationId } : {}) }),
  degradationConfirmed: (w: Where, checks: number, firstSeenAt: string, signal?: string): PendingEvent =>
    ({ type: 'degradation.confirmed', data: { ...w, checks, firstSeenAt, ...(signal ? { signal } : {}) } }),
  candidateResolved: (w: Where, currentRevision: string, c: Candidate): PendingEvent =>
    ({ type: 'candidate.resolved', data: { ...w, currentRevision, candidateRevision: c.revision, uptime: c.uptime, mode: c.mode, evidence: c.evidence } }),
  pullRequestCreated: (w: Where, pr: PullRequestRef, adopted: boolean): PendingEvent =>
    ({ type: 'pr.created', data: { ...w, number: pr.number, url: pr.url, branch: pr.branch, adopted } }),
  ciCompleted: (w: Where, number: number, headSha: string, state: 'success' | 'failure' | 'timeout'): PendingEvent =>
    ({ type: 'ci.completed', data: { ...w, number, headSha, state } }),
  pullRequestClosed: (w: Where, number: number, reason: Reason): PendingEvent =>
    ({ type: 'pr.closed', data: { ...w, number, reason } }),
  mergeApproved: (w: Where, number: number, approvedBy: string, auto: boolean): PendingEvent =>
    ({ type: 'merge.approved', data: { ...w, number, approvedBy, auto } }),
  pullRequestMerged: (w: Where, number: number, mergeCommitSha: string | undefined, autoMerged: boolean): PendingEvent =>
    ({ type: 'pr.merged', data: { ...w, number, ...(mergeCommitSha ? { mergeCommitSha } : {}), autoMerged } }),
  rollbackCompleted: (w: Where, revision: string, recoverySeconds: number): PendingEvent =>
    ({ type: 'rollback.completed', data: { ...w, revision, recoverySeconds } }),
};
