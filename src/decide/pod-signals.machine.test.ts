// Issue 21 through the real decide(): a Progressing app whose current revision's pods fail early
// is counted like a Degraded one (the same persistence rule), the attempt says which signal
// started it, and a slow start or pods that stop failing never start one.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decide, type Decision, type Facts } from './machine.ts';
import type { FailsEarly, HealthCheck, HealthStatus } from '../fsm/record.ts';
import { SETTINGS } from '../fsm/testing.ts';

const T0 = Date.parse('2026-12-07T10:00:00Z');
const CRASH: FailsEarly = {
  signal: 'CrashLoopBackOff',
  detail: 'the current revision of Deployment/web (revision 7d9f) fails early: Deployment/web web-7d9f-a/web: CrashLoopBackOff, 3 restarts',
  pods: [{ workload: 'Deployment/web', pod: 'web-7d9f-a', container: 'web', reason: 'CrashLoopBackOff', restarts: 3 }],
};

function facts(at: number, status: HealthStatus, failsEarly: FailsEarly | undefined, checks: HealthCheck[], pending?: string): Facts {
  return {
    now: new Date(at), app: { namespace: 'argocd', name: 'web' }, environment: 'staging', settings: SETTINGS, checks,
    health: { status, revision: 'b'.repeat(40), ...(failsEarly ? { failsEarly } : {}) },
    ...(pending ? { pendingCorrelationId: pending } : {}),
    suspended: false, nextCorrelationId: `id-${at}`, human: {},
  };
}

/** Checks every interval, as the reconciler does; returns each decision and the health key as it stands. */
function run(readings: Array<[HealthStatus, FailsEarly | undefined]>): { decisions: Decision[]; checks: HealthCheck[] } {
  let checks: HealthCheck[] = [];
  let pending: string | undefined;
  const decisions: Decision[] = [];
  readings.forEach(([status, early], i) => {
    const d = decide(facts(T0 + i * SETTINGS.intervalSeconds * 1000, status, early, checks, pending));
    decisions.push(d);
    if (d.degradation === null) { checks = []; pending = undefined; }
    if (d.degradation) { checks = d.degradation.checks; pending = d.degradation.correlationId; }
  });
  return { decisions, checks };
}

describe('decide: the pods\' signal feeds the persistence rule (issue 21)', () => {
  it('three checks Progressing with a crash loop start an attempt that names its signal and evidence', () => {
    const { decisions } = run([['Progressing', CRASH], ['Progressing', CRASH], ['Progressing', CRASH]]);
    const detected = decisions[0]!.events.find((e) => e.type === 'degradation.detected');
    expect(detected?.data).toMatchObject({ healthStatus: 'Progressing', signal: 'CrashLoopBackOff', evidence: CRASH.detail });
    expect(decisions[0]!.degradation?.checks).toEqual([{ at: new Date(T0).toISOString(), status: 'Progressing', revision: 'b'.repeat(40), signal: 'CrashLoopBackOff' }]);
    const started = decisions[2]!;
    expect(started.transition).toEqual({ from: 'Idle', to: 'DegradationDetected', reason: 'DegradationConfirmed' });
    expect(started.record?.degradation).toEqual({ firstSeenAt: new Date(T0).toISOString(), checks: 3, signal: CRASH });
    expect(started.record?.message).toMatch(/^degradation confirmed after 3 consecutive failing checks .*; Argo CD reports Progressing, the current revision of Deployment\/web/);
    expect(started.events.find((e) => e.type === 'degradation.confirmed')?.data).toMatchObject({ signal: 'CrashLoopBackOff' });
  });

  it('Argo CD\'s Degraded starts an attempt without a signal, as before', () => {
    const { decisions } = run([['Degraded', undefined], ['Degraded', undefined], ['Degraded', undefined]]);
    expect(decisions[2]!.record?.degradation).toEqual({ firstSeenAt: new Date(T0).toISOString(), checks: 3 });
    expect(decisions[0]!.events.find((e) => e.type === 'degradation.detected')?.data).toMatchObject({ healthStatus: 'Degraded' });
    expect(decisions[0]!.events.find((e) => e.type === 'degradation.detected')?.data).not.toHaveProperty('signal');
  });

  it('pods that stop failing (crashed twice, then Ready) clear the count: no attempt', () => {
    const { decisions } = run([['Progressing', CRASH], ['Progressing', CRASH], ['Progressing', undefined], ['Healthy', undefined]]);
    expect(decisions[2]!.degradation).toBeNull();
    expect(decisions[2]!.events.map((e) => e.type)).toEqual(['degradation.cleared']);
    expect(decisions.some((d) => d.transition)).toBe(false);
  });

  it('a slow start (Progressing, nothing failing) is never counted', () => {
    const { decisions } = run(Array.from({ length: 20 }, () => ['Progressing', undefined] as [HealthStatus, undefined]));
    expect(decisions.every((d) => d.degradation === undefined && d.events.length === 0 && !d.transition)).toBe(true);
  });

  it('a signal read with a health other than Progressing counts only as that health', () => {
    const { decisions } = run([['Healthy', CRASH], ['Healthy', CRASH], ['Healthy', CRASH]]);
    expect(decisions.every((d) => d.degradation === undefined && !d.transition)).toBe(true);
  });

  it('property: an attempt starts only after persistenceChecks consecutive failing checks (Degraded, or Progressing with the signal)', () => {
    const reading = fc.constantFrom<[HealthStatus, FailsEarly | undefined]>(
      ['Progressing', CRASH], ['Progressing', undefined], ['Degraded', undefined], ['Healthy', undefined], ['Healthy', CRASH], ['Unknown', undefined],
    );
    fc.assert(fc.property(fc.array(reading, { minLength: 1, maxLength: 12 }), (readings) => {
      const { decisions } = run(readings);
      const failing = readings.map(([s, e]) => s === 'Degraded' || (s === 'Progressing' && e !== undefined));
      const first = decisions.findIndex((d) => d.transition?.to === 'DegradationDetected');
      let streak = 0;
      let expected = -1;
      failing.forEach((f, i) => { streak = f ? streak + 1 : 0; if (expected < 0 && streak >= SETTINGS.persistenceChecks) expected = i; });
      return first === expected;
    }), { numRuns: 500 });
  });
});

describe('Argo CD turning Degraded under an attempt the pods\' signal started', () => {
  it('goes on: one failure, which Argo CD now reports too (the watch saw its Degraded begin after the signal\'s checks)', () => {
    const { decisions } = run([['Progressing', CRASH], ['Progressing', CRASH], ['Progressing', CRASH]]);
    const record = decisions[2]!.record!;
    const checks = decisions[2]!.checks!;
    const at = T0 + 3 * SETTINGS.intervalSeconds * 1000;
    const degradedSince = new Date(at - 2000).toISOString();
    const next = decide({ ...facts(at, 'Degraded', undefined, checks), record, health: { status: 'Degraded', revision: 'b'.repeat(40), degradedSince } });
    expect(next.transition?.reason).not.toBe('TransientDegradation');
    expect(next.record?.state ?? record.state).toBe('DegradationDetected');
  });

  it('but a Degraded run that began after an earlier Degraded check is a new degradation, as before', () => {
    const { decisions } = run([['Degraded', undefined], ['Degraded', undefined], ['Degraded', undefined]]);
    const record = decisions[2]!.record!;
    const at = T0 + 3 * SETTINGS.intervalSeconds * 1000;
    const next = decide({ ...facts(at, 'Degraded', undefined, decisions[2]!.checks!), record, health: { status: 'Degraded', revision: 'b'.repeat(40), degradedSince: new Date(at - 2000).toISOString() } });
    expect(next.transition).toMatchObject({ to: 'Idle', reason: 'TransientDegradation' });
  });
});
