import { describe, expect, it } from 'vitest';
import { transition, TransitionRefused } from '../decide/machine.ts';
import type { AttemptRecord } from './record.ts';
import { Reason, STATES, TRANSITIONS, cooldownEnds, holdsApp, inProgress, isAllowed, isTerminal, type State } from './table.ts';
import { SETTINGS } from './testing.ts';

function recordIn(state: State): AttemptRecord {
  return {
    correlationId: '00000000-0000-4000-8000-000000000001', app: { namespace: 'argocd', name: 'app' }, environment: 'staging', settings: SETTINGS,
    state, reason: Reason.DegradationObserved, message: '', since: '2026-11-22T00:00:00.000Z', version: 4, createdAt: '2026-11-22T00:00:00.000Z',
    degradation: { firstSeenAt: '2026-11-22T00:00:00.000Z', checks: 1 }, invariants: [], transitions: [],
  };
}

const now = new Date('2026-11-22T01:00:00Z');

describe('the transition table', () => {
  const rows = TRANSITIONS.flatMap((rule) => rule.reasons.map((reason) => [rule.from, rule.to, reason] as const));

  it.each(rows)('%s -> %s (%s) is taken and recorded', (from, to, reason) => {
    const next = transition(recordIn(from), to, reason, now, 'why');
    expect(next).toMatchObject({ state: to, reason, message: 'why', since: now.toISOString(), version: 5 });
    expect(next.transitions.at(-1)).toEqual({ from, to, at: now.toISOString(), reason });
  });

  const refused = STATES.flatMap((from) => STATES.map((to) => [from, to] as const)).filter(([from, to]) => !TRANSITIONS.some((r) => r.from === from && r.to === to));
  it.each(refused)('%s -> %s is refused', (from, to) => {
    expect(() => transition(recordIn(from), to, Reason.AbortRequested, now, 'x')).toThrow(TransitionRefused);
  });

  it('refuses a listed transition with a reason it does not carry', () => {
    expect(isAllowed('PRCreated', 'Abort', Reason.ApprovalTimeout)).toBe(false);
    expect(() => transition(recordIn('RollbackMerged'), 'RollbackComplete', Reason.AutoMerged, now, 'x')).toThrow(TransitionRefused);
  });

  it('lets every non-terminal state abort on request and on an unexpected error', () => {
    for (const from of ['DegradationDetected', 'CandidateResolved', 'PRCreated', 'AwaitingMergeApproval', 'RollbackMerged'] as const) {
      expect(isAllowed(from, 'Abort', Reason.AbortRequested)).toBe(true);
      expect(isAllowed(from, 'Abort', Reason.UnexpectedError)).toBe(true);
    }
  });

  it('leaves the terminal states only by reset', () => {
    expect(STATES.filter(isTerminal)).toEqual(['RollbackComplete', 'Abort']);
    expect(TRANSITIONS.filter((r) => isTerminal(r.from))).toMatchObject([{ from: 'Abort', to: 'Idle', reasons: [Reason.Reset] }]);
  });

  it('says when each transition is taken, once per pair of states', () => {
    for (const rule of TRANSITIONS) expect(rule.when.length, `${rule.from} -> ${rule.to}`).toBeGreaterThan(10);
    expect(new Set(TRANSITIONS.map((r) => `${r.from}->${r.to}`)).size).toBe(TRANSITIONS.length);
  });

  it('names two kinds of "active": in progress, and holding the app (Abort holds it until reset)', () => {
    expect(STATES.filter(inProgress)).toEqual(['DegradationDetected', 'CandidateResolved', 'PRCreated', 'AwaitingMergeApproval', 'RollbackMerged']);
    expect(STATES.filter(holdsApp)).toEqual([...STATES.filter(inProgress), 'Abort']);
    // Every state an attempt can be left in by a transition either holds the app or released it.
    for (const rule of TRANSITIONS) if (!holdsApp(rule.to)) expect(['Idle', 'RollbackComplete']).toContain(rule.to);
  });

  it('ends the cooldown cooldownSeconds after the last rollback merged', () => {
    expect(cooldownEnds('2026-11-22T00:00:00.000Z', 900)).toBe('2026-11-22T00:15:00.000Z');
    expect(cooldownEnds(undefined, 900)).toBeUndefined();
  });

  it('uses CamelCase reasons', () => {
    for (const reason of Object.values(Reason)) expect(reason).toMatch(/^[A-Z][A-Za-z0-9]*$/);
  });
});
