import { describe, expect, it } from 'vitest';
import type { CheckResult, InvariantId } from '../fsm/record.ts';
import {
  allPass, approvalTimedOut, ciTimedOut, ciVerdict, evaluateInvariants, mergeVerdict, PRODUCTION_MERGE_INVARIANTS, recoveryTimedOut, restorationHeld, violations,
  type InvariantFacts, type MergeQuestion,
} from './merge-verdict.ts';

const t0 = Date.parse('2026-11-22T00:00:00Z');
const at = (s: number) => new Date(t0 + s * 1000).toISOString();
const now = new Date(t0 + 60_000);

const crashLoop: NonNullable<InvariantFacts['failsEarly']> = {
  signal: 'CrashLoopBackOff',
  detail: 'the current revision of Deployment/web (revision 7d9f) fails early: Deployment/web web-7d9f-a/web: CrashLoopBackOff, 4 restarts',
  pods: [{ workload: 'Deployment/web', pod: 'web-7d9f-a', container: 'web', reason: 'CrashLoopBackOff', restarts: 4 }],
};

const passing: InvariantFacts = {
  environment: 'staging',
  health: 'Degraded',
  // A default RollingUpdate of 3 stuck on a bad release: the old ReplicaSet keeps its 3 pods, 1 new pod never ready.
  deployments: [{ name: 'web', desired: 3, updated: 1, available: 3, unavailable: 1, progressDeadlineExceeded: true }],
  checks: [{ at: at(0), status: 'Degraded' }, { at: at(10), status: 'Degraded' }, { at: at(20), status: 'Degraded' }],
  persistenceChecks: 3,
  intervalSeconds: 10,
  candidate: { uptime: 0.995, minUptime: 0.99, mode: 'metrics', ciState: 'success', evidence: '99.50% Healthy over 24.0 h deployed (minimum 99.00%)' },
  ci: ciVerdict([{ name: 'ci/build', state: 'success' }, { name: 'lint', state: 'success' }], { branch: ['ci/build'] }, 'abc1234def'),
  headIsRollbackCommit: true,
  otherOpenPullRequests: [],
  mergeability: { mergeable: true, mergeableState: 'clean' },
};

function result(id: InvariantId, facts: InvariantFacts): { result: CheckResult; detail: string } {
  const found = evaluateInvariants(facts, now).find((r) => r.id === id)!;
  return { result: found.result, detail: found.detail };
}

const cases: Array<[InvariantId, CheckResult, Partial<InvariantFacts> | ((f: InvariantFacts) => InvariantFacts), RegExp]> = [
  ['I1_environment', 'PASS', {}, /staging/],
  ['I1_environment', 'FAIL', { environment: 'production' }, /production: a human approves/],
  ['I2_health_degraded', 'PASS', {}, /Degraded now/],
  ['I2_health_degraded', 'FAIL', { health: 'Healthy' }, /Healthy now/],
  ['I2_health_degraded', 'UNKNOWN', (f) => { const { health: _h, ...rest } = f; return rest; }, /could not be read/],
  ['I2_health_degraded', 'UNKNOWN', { health: 'Unknown' }, /could not be read/],
  // Issue 21: Progressing while the current revision's pods fail early is a degradation Argo CD has not named yet.
  ['I2_health_degraded', 'PASS', { health: 'Progressing', failsEarly: crashLoop }, /^Argo CD reports Progressing now, and CrashLoopBackOff: the current revision of Deployment\/web .*web-7d9f-a\/web: CrashLoopBackOff, 4 restarts/],
  ['I2_health_degraded', 'FAIL', { health: 'Progressing' }, /^Argo CD reports Progressing now, and no pod of the current revision fails early$/],
  ['I2_health_degraded', 'FAIL', { health: 'Healthy', failsEarly: crashLoop }, /Healthy now/],
  ['I3_replica_shortage', 'PASS', {}, /web: 1\/3 updated, 3 available, 1 unavailable, ProgressDeadlineExceeded/],
  ['I3_replica_shortage', 'FAIL', { deployments: [{ name: 'web', desired: 3, updated: 3, available: 3, unavailable: 0, progressDeadlineExceeded: false }] }, /every Deployment runs its current revision in full: web: 3\/3 updated, 3 available, 0 unavailable/],
  ['I3_replica_shortage', 'FAIL', { deployments: [] }, /no Deployments/],
  ['I3_replica_shortage', 'UNKNOWN', (f) => { const { deployments: _d, ...rest } = f; return rest; }, /could not be read/],
  ['I4_persistence', 'PASS', {}, /3 consecutive Degraded checks/],
  ['I4_persistence', 'FAIL', { checks: [{ at: at(0), status: 'Degraded' }, { at: at(10), status: 'Degraded' }] }, /2 of 3 checks/],
  ['I4_persistence', 'FAIL', { checks: [{ at: at(0), status: 'Degraded' }, { at: at(10), status: 'Progressing' }, { at: at(20), status: 'Degraded' }] }, /read Progressing/],
  ['I4_persistence', 'FAIL', { checks: [{ at: at(0), status: 'Degraded' }, { at: at(30), status: 'Degraded' }, { at: at(40), status: 'Degraded' }] }, /more than 2 intervals/],
  ['I4_persistence', 'PASS', { checks: [{ at: at(0), status: 'Progressing', signal: 'CrashLoopBackOff' }, { at: at(10), status: 'Progressing', signal: 'CrashLoopBackOff' }, { at: at(20), status: 'Degraded' }] },
    /3 consecutive failing \(Progressing with pods failing early: CrashLoopBackOff; or Degraded\) checks/],
  ['I4_persistence', 'FAIL', { checks: [{ at: at(0), status: 'Progressing', signal: 'ImagePullBackOff' }, { at: at(10), status: 'Progressing' }, { at: at(20), status: 'Progressing', signal: 'ImagePullBackOff' }] }, /read Progressing/],
  // A signal on a check that did not read Progressing counts for nothing more than its health.
  ['I4_persistence', 'FAIL', { checks: [{ at: at(0), status: 'Degraded' }, { at: at(10), status: 'Healthy', signal: 'CrashLoopBackOff' }, { at: at(20), status: 'Degraded' }] }, /read Healthy/],
  ['I4_persistence', 'UNKNOWN', (f) => { const { checks: _c, ...rest } = f; return rest; }, /could not be read/],
  ['I5_stable_previous', 'PASS', {}, /99\.50% uptime \(minimum 99\.00%\)/],
  ['I5_stable_previous', 'FAIL', { candidate: { uptime: 0.98, minUptime: 0.99, mode: 'metrics', ciState: 'success', evidence: '' } }, /98\.00% uptime/],
  ['I5_stable_previous', 'PASS', { candidate: { uptime: null, minUptime: 0.99, mode: 'ci-only', ciState: 'success', evidence: 'CI-only selection (queryPrometheus: UNAVAILABLE: fetch failed): combined status and check runs of abc1234 are success' } }, /CI-only selection \(queryPrometheus: UNAVAILABLE/],
  ['I5_stable_previous', 'FAIL', { candidate: { uptime: null, minUptime: 0.99, mode: 'ci-only', ciState: 'failure', evidence: '' } }, /CI is failure/],
  ['I5_stable_previous', 'UNKNOWN', (f) => { const { candidate: _c, ...rest } = f; return rest; }, /could not be read/],
  ['I6_ci_success', 'PASS', {}, /required check passed on abc1234: ci\/build/],
  ['I6_ci_success', 'UNKNOWN', { ci: ciVerdict([{ name: 'ci/build', state: 'success' }], { branch: ['ci/build', 'ci/test'] }, 'abc1234') }, /waiting for ci\/test \(not reported\)/],
  ['I6_ci_success', 'FAIL', { ci: ciVerdict([{ name: 'ci/test', state: 'failure' }], { branch: ['ci/build', 'ci/test'] }, 'abc1234') }, /required check failed on abc1234: ci\/test/],
  ['I6_ci_success', 'FAIL', { headIsRollbackCommit: false }, /not the operator's rollback commit/],
  ['I6_ci_success', 'UNKNOWN', (f) => { const { ci: _c, ...rest } = f; return rest; }, /could not be read/],
  ['I7_no_conflicts', 'PASS', {}, /no other open PR/],
  ['I7_no_conflicts', 'FAIL', { otherOpenPullRequests: [{ number: 7, title: 'Bump image' }] }, /#7/],
  ['I7_no_conflicts', 'UNKNOWN', (f) => { const { otherOpenPullRequests: _o, ...rest } = f; return rest; }, /could not be read/],
  ['I8_branch_protection', 'PASS', {}, /clean/],
  ['I8_branch_protection', 'PASS', { mergeability: { mergeable: true, mergeableState: 'unstable' } }, /required checks pass/],
  ['I8_branch_protection', 'FAIL', { mergeability: { mergeable: true, mergeableState: 'blocked' } }, /blocked/],
  ['I8_branch_protection', 'FAIL', { mergeability: { mergeable: false, mergeableState: 'dirty' } }, /not mergeable/],
  ['I8_branch_protection', 'UNKNOWN', { mergeability: { mergeable: null, mergeableState: 'unknown' } }, /still computing/],
  ['I6_ci_success', 'UNKNOWN', { beforePullRequest: true }, /once CI reports/],
  ['I7_no_conflicts', 'UNKNOWN', { beforePullRequest: true }, /fresh reads before any merge/],
  ['I8_branch_protection', 'UNKNOWN', { beforePullRequest: true }, /before any merge/],
];

describe('invariants', () => {
  it.each(cases)('%s is %s', (id, expected, change, detail) => {
    const facts = typeof change === 'function' ? change(passing) : { ...passing, ...change };
    const got = result(id, facts);
    expect(got.result).toBe(expected);
    expect(got.detail).toMatch(detail);
  });

  it('evaluates all eight, in order, with the check time', () => {
    const results = evaluateInvariants(passing, now);
    expect(results.map((r) => r.id)).toEqual(['I1_environment', 'I2_health_degraded', 'I3_replica_shortage', 'I4_persistence', 'I5_stable_previous', 'I6_ci_success', 'I7_no_conflicts', 'I8_branch_protection']);
    expect(results.every((r) => r.checkedAt === now.toISOString())).toBe(true);
    expect(allPass(results)).toBe(true);
  });

  it('never counts UNKNOWN as PASS', () => {
    const results = evaluateInvariants({ environment: 'staging', persistenceChecks: 3, intervalSeconds: 10 }, now);
    expect(results.filter((r) => r.result === 'UNKNOWN').map((r) => r.id)).toHaveLength(7);
    expect(allPass(results)).toBe(false);
    expect(violations(results)).toEqual([]);
  });

  it('lets production merge on I2–I8 but never on I1 alone', () => {
    const results = evaluateInvariants({ ...passing, environment: 'production' }, now);
    expect(allPass(results)).toBe(false);
    expect(allPass(results, PRODUCTION_MERGE_INVARIANTS)).toBe(true);
    expect(violations(results)).toEqual([]);
  });
});

describe('I3: a shortage of the current revision', () => {
  const web = { name: 'web', desired: 2, updated: 2, available: 2, unavailable: 0, progressDeadlineExceeded: false };
  const i3 = (deployments: InvariantFacts['deployments']) => result('I3_replica_shortage', { ...passing, deployments });

  it('passes for the default RollingUpdate stuck on a bad release: old ReplicaSet at full strength (3/1/2/1 for 2 replicas)', () => {
    // What a real kube-controller-manager reports: maxSurge 25 % rounds up to 1 new pod, maxUnavailable 25 % down to 0.
    expect(i3([{ ...web, updated: 1, available: 2, unavailable: 1, progressDeadlineExceeded: true }])).toEqual({
      result: 'PASS', detail: 'short of the current revision: web: 1/2 updated, 2 available, 1 unavailable, ProgressDeadlineExceeded',
    });
  });

  it('passes on each sign alone: fewer updated than desired, any unavailable, or the progress deadline exceeded', () => {
    expect(i3([{ ...web, updated: 1 }]).result).toBe('PASS');
    expect(i3([{ ...web, unavailable: 1 }]).result).toBe('PASS');
    expect(i3([{ ...web, progressDeadlineExceeded: true }]).result).toBe('PASS');
    // Recreate with a bad release: all new, none available.
    expect(i3([{ ...web, updated: 2, available: 0, unavailable: 2 }]).detail).toBe('short of the current revision: web: 2/2 updated, 0 available, 2 unavailable');
  });

  it('passes when one of several Deployments is short, naming only that one', () => {
    expect(i3([web, { ...web, name: 'worker', updated: 0, available: 2, unavailable: 1 }])).toEqual({
      result: 'PASS', detail: 'short of the current revision: worker: 0/2 updated, 2 available, 1 unavailable',
    });
  });

  it('fails when every Deployment is fully rolled out with its current revision, even with surplus old pods counted as available', () => {
    expect(i3([web, { ...web, name: 'worker', desired: 0, updated: 0, available: 0 }])).toEqual({
      result: 'FAIL', detail: 'every Deployment runs its current revision in full: web: 2/2 updated, 2 available, 0 unavailable; worker: 0/0 updated, 0 available, 0 unavailable',
    });
    // Total available above the desired count (old pods still terminating) is no shortage either.
    expect(i3([{ ...web, available: 3 }]).result).toBe('FAIL');
  });

  it('fails with no Deployments and is UNKNOWN when the Deployments could not be read', () => {
    expect(i3([]).result).toBe('FAIL');
    expect(i3(undefined)).toEqual({ result: 'UNKNOWN', detail: 'Deployment status could not be read' });
  });
});

describe('mergeVerdict', () => {
  const all = (result: CheckResult, except: Partial<Record<InvariantId, CheckResult>> = {}) =>
    evaluateInvariants(passing, now).map((r) => ({ ...r, result: except[r.id] ?? result }));
  const ask = (q: Partial<MergeQuestion>): ReturnType<typeof mergeVerdict> => mergeVerdict({
    environment: 'staging', invariants: all('PASS'), observedSeconds: 60, settings: { approvalTimeoutSeconds: 3600 }, ...q,
  });

  it('merges staging when all eight PASS, and only then', () => {
    expect(ask({})).toMatchObject({ verdict: 'merge', detail: /all eight invariants PASS/ });
    expect(ask({ invariants: all('PASS', { I6_ci_success: 'UNKNOWN' }) })).toMatchObject({ verdict: 'wait', detail: /UNKNOWN: I6_ci_success/ });
    // An approval changes nothing in staging: the invariants decide.
    expect(ask({ invariants: all('PASS', { I8_branch_protection: 'UNKNOWN' }), approval: { approvedBy: 'alice' } })).toMatchObject({ verdict: 'wait' });
  });

  it('merges production only with a recorded approval and I2–I8 PASS (I1 fails there by design)', () => {
    const production = { environment: 'production' as const, invariants: all('PASS', { I1_environment: 'FAIL' }) };
    expect(ask(production)).toMatchObject({ verdict: 'wait', detail: /waiting for an authorized approval/ });
    expect(ask({ ...production, approval: { approvedBy: 'alice' } })).toMatchObject({ verdict: 'merge', detail: 'production: approved by alice; I2–I8 PASS' });
    expect(ask({ ...production, approval: { approvedBy: 'alice' }, invariants: all('PASS', { I1_environment: 'FAIL', I7_no_conflicts: 'UNKNOWN' }) }))
      .toMatchObject({ verdict: 'wait', detail: /UNKNOWN: I7_no_conflicts/ });
  });

  it('aborts on a FAIL other than I1 and I2, approval or not, before any deadline', () => {
    for (const id of PRODUCTION_MERGE_INVARIANTS.filter((i) => i !== 'I2_health_degraded')) {
      expect(ask({ environment: 'production', approval: { approvedBy: 'alice' }, invariants: all('PASS', { I1_environment: 'FAIL', [id]: 'FAIL' }) }))
        .toMatchObject({ verdict: 'abort', reason: id === 'I6_ci_success' ? 'CIFailure' : 'InvariantViolated', detail: new RegExp(`^${id}: `) });
    }
    // I2 failing is health coming back, which the machine handles before it asks (HealthRestoredBeforeMerge).
    expect(ask({ invariants: all('PASS', { I2_health_degraded: 'FAIL' }) })).toMatchObject({ verdict: 'wait' });
  });

  it('at the approval deadline: ApprovalTimeout without an approval, InvariantViolated when invariants stayed UNKNOWN', () => {
    const late = 3601;
    expect(ask({ environment: 'production', invariants: all('PASS', { I1_environment: 'FAIL' }), observedSeconds: late }))
      .toEqual({ verdict: 'abort', reason: 'ApprovalTimeout', detail: 'no authorized approval within 60 min' });
    expect(ask({ invariants: all('PASS', { I6_ci_success: 'UNKNOWN' }), observedSeconds: late }))
      .toEqual({ verdict: 'abort', reason: 'InvariantViolated', detail: 'invariants still not all PASS after 60 min (UNKNOWN: I6_ci_success)' });
    // A merge that became possible just in time still merges.
    expect(ask({ observedSeconds: late })).toMatchObject({ verdict: 'merge' });
    expect(ask({ observedSeconds: 3600, invariants: all('PASS', { I6_ci_success: 'UNKNOWN' }) })).toMatchObject({ verdict: 'wait' });
  });
});

describe('deadlines', () => {
  const settings = { ciTimeoutSeconds: 300, approvalTimeoutSeconds: 3600, recoveryTimeoutSeconds: 600, healthRestorationSeconds: 60 };
  it('fire strictly after their window of observed time', () => {
    expect([ciTimedOut(300, settings), ciTimedOut(301, settings)]).toEqual([false, true]);
    expect([approvalTimedOut(3600, settings), approvalTimedOut(3601, settings)]).toEqual([false, true]);
    expect([recoveryTimedOut(600, settings), recoveryTimedOut(601, settings)]).toEqual([false, true]);
  });
  it('health restoration holds once Healthy for the whole window', () => {
    const after = (s: number) => new Date(t0 + s * 1000);
    expect([restorationHeld(at(0), after(59), settings), restorationHeld(at(0), after(60), settings)]).toEqual([false, true]);
  });
});

describe('CI: the checks a merge requires', () => {
  const sha = '1a2b3c4d5e';
  it('waits for every required context, and passes only when each reported success on the commit', () => {
    const required = { branch: ['ci/build', 'ci/test'] };
    expect(ciVerdict([{ name: 'ci/build', state: 'success' }], required, sha)).toMatchObject({ state: 'pending', detail: 'waiting for ci/test (not reported) on 1a2b3c4' });
    expect(ciVerdict([{ name: 'ci/build', state: 'success' }, { name: 'ci/test', state: 'pending' }], required, sha).state).toBe('pending');
    expect(ciVerdict([{ name: 'ci/build', state: 'success' }, { name: 'ci/test', state: 'success' }, { name: 'lint', state: 'failure' }], required, sha))
      .toMatchObject({ state: 'success', detail: 'required checks passed on 1a2b3c4: ci/build, ci/test (not required: lint=failure)' });
  });

  it('fails naming the required check that failed; the worst report of a context stands', () => {
    expect(ciVerdict([{ name: 'ci/build', state: 'success' }, { name: 'ci/build', state: 'error' }], { branch: ['ci/build'] }, sha))
      .toMatchObject({ state: 'failure', failed: ['ci/build'], detail: 'required check failed on 1a2b3c4: ci/build' });
  });

  it('adds the policy\'s required checks to the branch\'s', () => {
    expect(ciVerdict([{ name: 'ci/build', state: 'success' }], { branch: ['ci/build'], policy: ['security/scan'] }, sha).detail).toContain('security/scan (not reported)');
  });

  it('without required checks: every reported check must pass, and none at all is not a pass unless the policy says requiredChecks: []', () => {
    expect(ciVerdict([{ name: 'a', state: 'success' }, { name: 'b', state: 'success' }], { branch: [] }, sha).state).toBe('success');
    expect(ciVerdict([{ name: 'a', state: 'success' }, { name: 'b', state: 'failure' }], { branch: [] }, sha).state).toBe('failure');
    expect(ciVerdict([], { branch: [] }, sha)).toMatchObject({ state: 'pending', detail: expect.stringContaining('merge.requiredChecks: [] merges without CI') });
    expect(ciVerdict([], { branch: [], policy: [] }, sha).state).toBe('success');
  });

  it('a failing required check aborts as CIFailure, not InvariantViolated', () => {
    const facts = { ...passing, ci: ciVerdict([{ name: 'ci/build', state: 'failure' }], { branch: ['ci/build'] }, sha) };
    const verdict = mergeVerdict({ environment: 'staging', invariants: evaluateInvariants(facts, now), observedSeconds: 0, settings: { approvalTimeoutSeconds: 60 } });
    expect(verdict).toMatchObject({ verdict: 'abort', reason: 'CIFailure' });
  });
});
