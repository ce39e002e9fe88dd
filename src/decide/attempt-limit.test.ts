// The bound on attempts per app per hour (maxAttemptsPerHour): a flapping app is held for a human, not
// given a pull request per flap (issue 19 §2).
import { describe, expect, it } from 'vitest';
import { decide, startsWithinHour, type Facts } from './machine.ts';
import type { AttemptRecord } from '../fsm/record.ts';
import { Reason, isAllowed } from '../fsm/table.ts';
import { SETTINGS } from '../fsm/testing.ts';

const NOW = new Date('2026-12-06T12:00:00Z');
const ago = (seconds: number) => new Date(NOW.getTime() - seconds * 1000).toISOString();

/** The third Degraded check of a run, 10 s apart: this decide confirms persistence. */
function confirming(attemptStarts: string[] | undefined, maxAttemptsPerHour?: number): Facts {
  return {
    now: NOW, app: { namespace: 'argocd', name: 'web' }, environment: 'production',
    settings: { ...SETTINGS, ...(maxAttemptsPerHour !== undefined ? { maxAttemptsPerHour } : {}) },
    checks: [{ at: ago(20), status: 'Degraded', revision: 'bad' }, { at: ago(10), status: 'Degraded', revision: 'bad' }],
    pendingCorrelationId: 'c-pending',
    health: { status: 'Degraded', revision: 'bad', degradedSince: ago(25) },
    suspended: false, nextCorrelationId: 'c-next', human: {},
    ...(attemptStarts ? { attemptStarts } : {}),
  };
}

describe('maxAttemptsPerHour', () => {
  it('starts an attempt below the bound and counts its start with those of the hour', () => {
    const decision = decide(confirming([ago(3000), ago(1200)], 3));
    expect(decision.transition).toEqual({ from: 'Idle', to: 'DegradationDetected', reason: Reason.DegradationConfirmed });
    expect(decision.app).toEqual({ attemptStarts: [ago(3000), ago(1200), NOW.toISOString()] });
  });

  it('holds the app in Abort once the bound is reached, saying how many and since when', () => {
    const decision = decide(confirming([ago(600), ago(3000), ago(1800)], 3));
    expect(decision.transition).toEqual({ from: 'Idle', to: 'Abort', reason: Reason.AttemptLimitReached });
    expect(decision.record).toMatchObject({ state: 'Abort', reason: 'AttemptLimitReached', correlationId: 'c-pending' });
    expect(decision.record!.message).toMatch(/3 attempt\(s\) already started for this app within the hour \(maxAttemptsPerHour 3, first at 2026-12-06T11:10:00.000Z\).*held for a human; reset/);
    // The held attempt is not an attempt made: the count stays, no PR is asked for.
    expect(decision.app).toBeUndefined();
    expect(decision.intents).toEqual([]);
    expect(decision.events.map((e) => e.type)).toEqual(['degradation.confirmed', 'fsm.transition', 'rollback.aborted']);
    expect(isAllowed('Idle', 'Abort', Reason.AttemptLimitReached)).toBe(true);
  });

  it('forgets starts older than an hour', () => {
    expect(startsWithinHour([ago(3601), ago(3599), ago(10)], NOW)).toEqual([ago(3599), ago(10)]);
    const decision = decide(confirming([ago(7200), ago(3700), ago(3601)], 1));
    expect(decision.transition?.to).toBe('DegradationDetected');
    expect(decision.app).toEqual({ attemptStarts: [NOW.toISOString()] });
  });

  it('has no bound at 0, nor for settings written before the bound existed', () => {
    const many = Array.from({ length: 50 }, (_, i) => ago(60 + i));
    for (const unbounded of [decide(confirming(many, 0)), decide(confirming(many))]) {
      expect(unbounded.transition?.to).toBe('DegradationDetected');
      expect(unbounded.app).toBeUndefined();
    }
  });

  it('is forgotten by a reset: the human has looked, the operator may act again', () => {
    const held = decide(confirming([ago(600), ago(1200), ago(1800)], 3)).record!;
    const reset = decide({ ...confirming([ago(600), ago(1200), ago(1800)], 3), record: held as AttemptRecord, human: { reset: true } });
    expect(reset.transition).toEqual({ from: 'Abort', to: 'Idle', reason: Reason.Reset });
    expect(reset.app).toEqual({ attemptStarts: [] });
    // The next confirmed degradation starts an attempt.
    expect(decide(confirming([], 3)).transition?.to).toBe('DegradationDetected');
  });
});
