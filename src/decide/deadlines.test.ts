// Deadlines count observed time, and an outage is waited out, never concluded
// from (issue 12 §2): decide() on records and facts as a reconcile gathers them.
import { describe, expect, it } from 'vitest';
import { decide, type Facts } from './machine.ts';
import type { AttemptRecord } from '../fsm/record.ts';
import { Reason, type State } from '../fsm/table.ts';
import { SETTINGS } from '../fsm/testing.ts';

const T0 = Date.parse('2026-12-02T00:00:00Z');
const at = (s: number) => new Date(T0 + s * 1000);
const pr = { number: 7, url: 'https://github.example/acme/gitops/pull/7', branch: 'ai-operator/rollback/app-00000000', state: 'open' as const };

function recordIn(state: State): AttemptRecord {
  return {
    correlationId: '00000000-0000-4000-8000-000000000001', app: { namespace: 'argocd', name: 'app' }, environment: 'staging', settings: SETTINGS,
    state, reason: Reason.PullRequestOpened, message: 'opened pull request #7', since: at(0).toISOString(), version: 3, createdAt: at(0).toISOString(),
    degradation: { firstSeenAt: at(0).toISOString(), checks: 3 }, invariants: [], transitions: [], currentRevision: 'bad', pullRequest: pr,
    rollbackCommit: { sha: 'head', tree: 'tree', parent: 'base' },
    candidate: { revision: 'good', shortRevision: 'good', uptime: 1, mode: 'metrics', evidence: 'e', ciState: 'success' },
    observed: { seconds: 0, at: at(0).toISOString() },
  };
}

function factsAt(seconds: number, record: AttemptRecord, extra: Partial<Facts> = {}): Facts {
  return {
    now: at(seconds), app: record.app, environment: 'staging', settings: SETTINGS, record, checks: [],
    health: { status: 'Degraded', revision: 'bad' }, suspended: false, nextCorrelationId: 'x', human: {},
    pullRequest: { ref: pr, headSha: 'head' }, ci: 'pending', ...extra,
  };
}

/** Reconciles every `step` seconds while the world stays as `extra` says; the records written, in order. */
function run(record: AttemptRecord, from: number, to: number, step: number, extra: Partial<Facts> = {}): AttemptRecord {
  let current = record;
  for (let s = from; s <= to; s += step) {
    const decision = decide(factsAt(s, current, extra));
    if (decision.record) current = decision.record;
    if (current.state !== record.state) break;
  }
  return current;
}

describe('deadlines count only the time the operator observed', () => {
  // SETTINGS: interval 10 s, CI timeout 300 s, recovery timeout 600 s.
  it('times CI out after ciTimeoutSeconds of reconciles that read it', () => {
    const after = run(recordIn('PRCreated'), 10, 320, 10);
    expect(after).toMatchObject({ state: 'Abort', reason: Reason.CITimeout });
    expect(Date.parse(after.since) - T0).toBe(310_000);
  });

  it('does not count an outage: 20 minutes unobserved cost two intervals, not a CITimeout', () => {
    const before = run(recordIn('PRCreated'), 10, 100, 10);
    expect(before).toMatchObject({ state: 'PRCreated', observed: { seconds: 100 } });
    // etcd (or the leader, or GitHub) gone from 100 s to 1300 s: the next reconcile reads CI at 1300 s
    const after = decide(factsAt(1300, before)).record!;
    expect(after).toMatchObject({ state: 'PRCreated', observed: { seconds: 120, at: at(1300).toISOString() } });
    // The clock of a deadline is not a new version of the attempt.
    expect(after.version).toBe(before.version);
    // And the timeout comes once 300 s were observed in all
    expect(run(after, 1310, 1600, 10)).toMatchObject({ state: 'Abort', reason: Reason.CITimeout, since: at(1490).toISOString() });
  });

  it('does not run without a fresh read of the fact it is about', () => {
    // No PR read (GitHub answered nothing this reconcile): nothing is written, nothing times out
    const record = recordIn('PRCreated');
    expect(decide(factsAt(5000, record, { pullRequest: undefined, ci: undefined })).record).toBeUndefined();
    expect(decide(factsAt(5000, { ...record, state: 'RollbackMerged', reason: Reason.AutoMerged }, { health: undefined })).record).toBeUndefined();
  });

  it('starts again at every transition', () => {
    const merged = decide(factsAt(320, recordIn('AwaitingMergeApproval'), { pullRequest: { ref: { ...pr, state: 'merged' }, headSha: 'head', mergedByOperator: true } })).record!;
    expect(merged).toMatchObject({ state: 'RollbackMerged', observed: { seconds: 0, at: at(320).toISOString() } });
  });
});

describe('an integration outage is waited out (after call()\'s retries)', () => {
  const down = { code: 'UNAVAILABLE' as const, message: 'GitHub answered 502', call: 'createPullRequest' };

  it('keeps CandidateResolved, PRCreated and AwaitingMergeApproval where they are, saying which call failed', () => {
    for (const state of ['CandidateResolved', 'PRCreated', 'AwaitingMergeApproval'] as const) {
      const decision = decide(factsAt(30, recordIn(state), { failure: down, pullRequest: undefined }));
      expect(decision.transition, state).toBeUndefined();
      expect(decision.intents, state).toEqual([]);
      expect(decision.record, state).toMatchObject({ state, retrying: true, message: 'createPullRequest failed (UNAVAILABLE), retrying every interval: GitHub answered 502' });
    }
  });

  it('says it once, and gives the state its own message back once the integration answers', () => {
    const waiting = decide(factsAt(30, recordIn('PRCreated'), { failure: down, pullRequest: undefined })).record!;
    expect(decide(factsAt(40, waiting, { failure: down, pullRequest: undefined })).record).toBeUndefined();
    expect(decide(factsAt(50, waiting)).record).toMatchObject({ state: 'PRCreated', message: 'waiting for CI on #7', retrying: undefined });
  });

  it('still aborts on an answer no retry changes (PermissionDenied, Conflict)', () => {
    const refused = decide(factsAt(30, recordIn('CandidateResolved'), { failure: { ...down, code: 'PERMISSION_DENIED' }, pullRequest: undefined }));
    expect(refused.transition).toMatchObject({ to: 'Abort', reason: Reason.PermissionDenied });
  });

  it('never takes Healthy for "restored before the merge" while the PR could not be read: it may be our own merge', () => {
    const decision = decide(factsAt(30, recordIn('AwaitingMergeApproval'), { failure: { ...down, call: 'getPullRequestStatus' }, pullRequest: undefined, health: { status: 'Healthy', revision: 'merged' } }));
    expect(decision.intents).toEqual([]);
    expect(decision.transition).toBeUndefined();
  });
});

describe('an Application that changes under its attempt', () => {
  const source = { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/app', targetRevision: 'main' };
  const withSource = (state: State): AttemptRecord => ({ ...recordIn(state), source });

  it('ends the attempt when spec.source changed: its PR closed first, then Abort SourceChanged with the key released', () => {
    const moved = { ...source, path: 'apps/app-v2' };
    const first = decide(factsAt(30, withSource('AwaitingMergeApproval'), { source: moved }));
    expect(first.transition).toBeUndefined();
    expect(first.intents).toMatchObject([{ kind: 'closePullRequest', number: 7, comment: expect.stringContaining('**SourceChanged** — spec.source changed mid-attempt (path apps/app -> apps/app-v2)') }]);
    const closed = { ref: { ...pr, state: 'closed' as const }, headSha: 'head' };
    const decision = decide(factsAt(31, withSource('AwaitingMergeApproval'), { source: moved, pullRequest: closed }));
    expect(decision.transition).toEqual({ from: 'AwaitingMergeApproval', to: 'Abort', reason: Reason.SourceChanged });
    expect(decision.record).toMatchObject({ message: 'spec.source changed mid-attempt (path apps/app -> apps/app-v2): the rollback was built for the old source', pullRequest: { state: 'closed' } });
    expect(decision.release).toBe(true);
    // The same source: nothing to say
    expect(decide(factsAt(30, withSource('PRCreated'), { source })).transition).toBeUndefined();
  });

  it('ends it in SourceChanged also when the new source is already Healthy: the change decides, not which the operator saw first', () => {
    const moved = { ...source, path: 'apps/app-v2' };
    const healthy = { status: 'Healthy' as const, revision: 'new' };
    for (const state of ['PRCreated', 'AwaitingMergeApproval'] as const) {
      expect(decide(factsAt(30, withSource(state), { source: moved, health: healthy })).intents).toMatchObject([{ kind: 'closePullRequest', comment: expect.stringContaining('**SourceChanged**') }]);
    }
    const closed = { ref: { ...pr, state: 'closed' as const }, headSha: 'head' };
    expect(decide(factsAt(31, withSource('PRCreated'), { source: moved, health: healthy, pullRequest: closed })).transition).toEqual({ from: 'PRCreated', to: 'Abort', reason: Reason.SourceChanged });
  });

  it('ends a staging attempt before its merge when a policy makes the app production; not after, and not the other way', () => {
    const closed = { ref: { ...pr, state: 'closed' as const }, headSha: 'head' };
    expect(decide(factsAt(30, withSource('AwaitingMergeApproval'), { source, liveEnvironment: 'production' })).intents).toMatchObject([{ kind: 'closePullRequest' }]);
    const toProduction = decide(factsAt(30, withSource('AwaitingMergeApproval'), { source, liveEnvironment: 'production', pullRequest: closed }));
    expect(toProduction.transition).toEqual({ from: 'AwaitingMergeApproval', to: 'Abort', reason: Reason.EnvironmentChanged });
    expect(toProduction.release).toBe(true);
    const merged = { ...withSource('RollbackMerged'), reason: Reason.AutoMerged };
    expect(decide(factsAt(30, merged, { source, liveEnvironment: 'production' })).transition?.reason).not.toBe(Reason.EnvironmentChanged);
    const production = { ...withSource('PRCreated'), environment: 'production' as const };
    expect(decide(factsAt(30, production, { source, environment: 'production', liveEnvironment: 'staging' })).transition).toBeUndefined();
  });
});
