// A side effect refused for good is not repeated (issue 19 §1): the rule of
// intent-failure.ts, and decide() on the three paths that wait for a close
// (the Application ended or its source moved, health back before the merge, a reset).
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../api/errors.ts';
import { commentPossible, leftUndone, ON_PERMANENT_FAILURE, onIntentFailure, PERMANENT, TRANSIENT, type IntentFailure } from './intent-failure.ts';
import { decide, type Facts } from '../decide/machine.ts';
import type { AttemptRecord } from './record.ts';
import { isAllowed, Reason, type State } from './table.ts';
import { SETTINGS } from './testing.ts';

const T0 = Date.parse('2026-12-02T00:00:00Z');
const at = (s: number) => new Date(T0 + s * 1000);
const pr = { number: 42, url: 'https://github.example/acme/gitops/pull/42', branch: 'ai-operator/rollback/app-00000000', state: 'open' as const };
const source = { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/app', targetRevision: 'main' };
const ARCHIVED_403: IntentFailure = { kind: 'closePullRequest', number: 42, code: 'PERMISSION_DENIED',
  message: 'closePullRequest: PERMISSION_DENIED: HTTP 403: Repository was archived so is read-only. - https://docs.github.com/rest' };
const NO_ACCESS_403: IntentFailure = { ...ARCHIVED_403, message: 'closePullRequest: PERMISSION_DENIED: HTTP 403: Resource not accessible by integration' };
const OUTAGE: IntentFailure = { ...ARCHIVED_403, code: 'UNAVAILABLE', message: 'closePullRequest: UNAVAILABLE: HTTP 502: Server Error' };

function recordIn(state: State, reason: Reason = Reason.PullRequestOpened): AttemptRecord {
  return {
    correlationId: '00000000-0000-4000-8000-000000000001', app: { namespace: 'argocd', name: 'app' }, environment: 'staging', settings: SETTINGS,
    state, reason, message: 'opened pull request #42', since: at(0).toISOString(), version: 3, createdAt: at(0).toISOString(),
    degradation: { firstSeenAt: at(0).toISOString(), checks: 3 }, invariants: [], transitions: [], currentRevision: 'bad', pullRequest: pr, source,
    rollbackCommit: { sha: 'head', tree: 'tree', parent: 'base' },
    candidate: { revision: 'good', shortRevision: 'good', uptime: 1, mode: 'metrics', evidence: 'e', ciState: 'success' },
    observed: { seconds: 0, at: at(0).toISOString() },
  };
}

function factsAt(seconds: number, record: AttemptRecord, extra: Partial<Facts> = {}): Facts {
  return {
    now: at(seconds), app: record.app, environment: 'staging', settings: SETTINGS, record, checks: [], source,
    health: { status: 'Degraded', revision: 'bad' }, suspended: false, nextCorrelationId: 'x', human: {},
    pullRequest: { ref: pr, headSha: 'head', rollbackCommit: { sha: 'head', tree: 'tree', parent: 'base' } }, ci: 'pending', ...extra,
  };
}

describe('the rule', () => {
  it('sorts every error code as transient or permanent, and gives every intent a row', () => {
    expect([...TRANSIENT, ...PERMANENT].sort()).toEqual([...ERROR_CODES].sort());
    expect(TRANSIENT.filter((c) => PERMANENT.includes(c))).toEqual([]);
    expect(Object.keys(ON_PERMANENT_FAILURE).sort()).toEqual(['closePullRequest', 'commentPullRequest', 'mergePullRequest', 'openPullRequest', 'removeApproval', 'requestApproval']);
  });

  it('holds on an outage whatever the intent; a refused close proceeds, a refused open or merge aborts', () => {
    for (const code of TRANSIENT) expect(onIntentFailure({ kind: 'closePullRequest', code })).toBe('hold');
    for (const code of PERMANENT) {
      expect(onIntentFailure({ kind: 'closePullRequest', code })).toBe('proceed');
      expect(onIntentFailure({ kind: 'mergePullRequest', code })).toBe('abort');
      expect(onIntentFailure({ kind: 'openPullRequest', code })).toBe('abort');
    }
  });

  it('comments after a refusal only where a comment can land: not on an archived repository, not on a PR that is gone', () => {
    expect(commentPossible(ARCHIVED_403)).toBe(false);
    expect(commentPossible({ ...ARCHIVED_403, code: 'NOT_FOUND', message: 'HTTP 404: Not Found' })).toBe(false);
    expect(commentPossible(NO_ACCESS_403)).toBe(true);
  });

  it('says what was left undone and what to do, the call and code once', () => {
    expect(leftUndone(ARCHIVED_403, 'close', 'close it by hand'))
      .toBe('could not close #42 (PERMISSION_DENIED: HTTP 403: Repository was archived so is read-only. - https://docs.github.com/rest) — close it by hand');
  });
});

describe('a close refused for good is not repeated: the transition it waited for is taken, the PR left open', () => {
  const healthy = { status: 'Healthy' as const, revision: 'new' };

  it('health restored before the merge: Idle, the refusal in the message, a Warning note, no comment on an archived repository', () => {
    for (const state of ['PRCreated', 'AwaitingMergeApproval'] as const) {
      // The first decision asks for the close
      expect(decide(factsAt(30, recordIn(state), { health: healthy })).intents).toMatchObject([{ kind: 'closePullRequest', number: 42 }]);
      // Refused for good: not asked again, Idle
      const decision = decide(factsAt(30, recordIn(state), { health: healthy, intentFailure: ARCHIVED_403 }));
      expect(decision.transition).toEqual({ from: state, to: 'Idle', reason: Reason.HealthRestoredBeforeMerge });
      expect(decision.record).toMatchObject({ state: 'Idle', pullRequest: { number: 42, state: 'open' },
        message: expect.stringMatching(/^health restored before the merge; could not close #42 \(PERMISSION_DENIED: HTTP 403: Repository was archived so is read-only\..*\) — close it by hand$/) });
      expect(decision.intents).toEqual([]);
      expect(decision.notes).toMatchObject([{ kind: 'left-undone', reason: 'PullRequestNotClosed', message: expect.stringContaining('could not close #42') }]);
      // No pull_request.closed event: it was not closed
      expect(decision.events.map((e) => e.type)).not.toContain('pull_request.closed');
    }
  });

  it('comments once where a comment may land (write access to the PR lost, comments allowed)', () => {
    const decision = decide(factsAt(30, recordIn('PRCreated'), { health: healthy, intentFailure: NO_ACCESS_403 }));
    expect(decision.intents).toMatchObject([{ kind: 'commentPullRequest', number: 42, marker: 'close-refused-00000000-0000-4000-8000-000000000001',
      comment: expect.stringContaining('close it by hand') }]);
  });

  it('an outage holds the attempt: the close is asked again next interval, not next round', () => {
    const held = decide(factsAt(30, recordIn('PRCreated'), { health: healthy, intentFailure: OUTAGE }));
    expect(held.transition).toBeUndefined();
    expect(held.intents).toEqual([]);
    expect(held.record).toMatchObject({ state: 'PRCreated', retrying: true, message: expect.stringContaining('closePullRequest failed (UNAVAILABLE)') });
    // The next reconcile (no failure in it yet) asks again
    expect(decide(factsAt(40, held.record!, { health: healthy })).intents).toMatchObject([{ kind: 'closePullRequest' }]);
  });

  it('a refusal of another PR\'s close, or of another intent, is not this close\'s', () => {
    expect(decide(factsAt(30, recordIn('PRCreated'), { health: healthy, intentFailure: { ...ARCHIVED_403, number: 7 } })).intents).toMatchObject([{ kind: 'closePullRequest', number: 42 }]);
  });

  it('the Application deleted: Abort ApplicationDeleted, key released, PR left open', () => {
    const decision = decide(factsAt(30, recordIn('PRCreated'), { applicationGone: true, pullRequest: undefined, health: undefined, intentFailure: ARCHIVED_403 }));
    expect(decision.transition).toEqual({ from: 'PRCreated', to: 'Abort', reason: Reason.ApplicationDeleted });
    expect(decision.release).toBe(true);
    expect(decision.record).toMatchObject({ pullRequest: { state: 'open' }, message: expect.stringMatching(/^Application argocd\/app was deleted; could not close #42 .* — close it by hand$/) });
  });

  it('a repoURL migration (SourceChanged) whose old repository refuses the close: Abort SourceChanged, released, not stuck', () => {
    const migrated = { ...source, repoURL: 'https://github.com/acme/gitops-new.git' };
    for (const state of ['PRCreated', 'AwaitingMergeApproval', 'CandidateResolved'] as const) {
      const first = decide(factsAt(30, recordIn(state), { source: migrated }));
      expect(first.intents, state).toMatchObject([{ kind: 'closePullRequest', number: 42, comment: expect.stringContaining('**SourceChanged**') }]);
      for (const refusal of [ARCHIVED_403, { ...ARCHIVED_403, code: 'NOT_FOUND' as const, message: 'closePullRequest: NOT_FOUND: HTTP 404: Not Found' }]) {
        // The old repository may be unreadable too (404): the observe failure does not hide the close's
        const decision = decide(factsAt(31, recordIn(state), { source: migrated, intentFailure: refusal, pullRequest: undefined,
          failure: { code: refusal.code, message: refusal.message, call: 'getPullRequestStatus' } }));
        expect(decision.transition, state).toEqual({ from: state, to: 'Abort', reason: Reason.SourceChanged });
        expect(decision.release).toBe(true);
        expect(decision.record?.message).toMatch(/^spec\.source changed mid-attempt \(repoURL .* -> .*gitops-new\.git\): the rollback was built for the old source; could not close #42 /);
        expect(decision.intents).toEqual([]);
      }
    }
  });

  it('a reset: Abort -> Idle (Reset) with the refusal said, instead of POST /reset answering 202 for ever', () => {
    const aborted = recordIn('Abort', Reason.CIFailure);
    expect(decide(factsAt(30, aborted, { human: { reset: true } })).intents).toMatchObject([{ kind: 'closePullRequest', number: 42 }]);
    const decision = decide(factsAt(31, aborted, { human: { reset: true }, intentFailure: ARCHIVED_403 }));
    expect(decision.transition).toEqual({ from: 'Abort', to: 'Idle', reason: Reason.Reset });
    expect(decision.record).toMatchObject({ state: 'Idle', pullRequest: { state: 'open' }, message: expect.stringMatching(/^reset by a human; could not close #42 .* — close it by hand$/) });
    expect(isAllowed('Abort', 'Idle', Reason.Reset)).toBe(true);
  });
});
