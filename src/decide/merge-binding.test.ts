// What decide() merges (issue 17 §1–§3): only the recorded rollback commit, only into the app's branch, and
// in production only with an approval given for that commit and not withdrawn. Pure.
import { describe, expect, it } from 'vitest';
import { INVARIANT_IDS, type AttemptRecord } from '../fsm/record.ts';
import { decide, type Facts } from './machine.ts';
import { Reason, type State } from '../fsm/table.ts';
import { SETTINGS } from '../fsm/testing.ts';

const now = new Date('2026-12-06T12:00:00Z');
const pr = { number: 42, url: 'https://github.example/acme/gitops/pull/42', branch: 'ai-operator/rollback/app-00000000', state: 'open' as const };
const built = { sha: '1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d', tree: 't', parent: 'p' };

function record(state: State, environment: 'staging' | 'production', extra: Partial<AttemptRecord> = {}): AttemptRecord {
  return {
    correlationId: '00000000-0000-4000-8000-000000000042', app: { namespace: 'argocd', name: 'app' }, environment,
    source: { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/app', targetRevision: 'main' },
    settings: { ...SETTINGS, approvers: { users: ['alice'], groups: [] } }, state, reason: Reason.CISucceeded, message: '', since: now.toISOString(), version: 5,
    createdAt: now.toISOString(), degradation: { firstSeenAt: now.toISOString(), checks: 3 }, invariants: [], transitions: [], currentRevision: 'bad',
    candidate: { revision: 'good', shortRevision: 'good', uptime: 1, mode: 'metrics', evidence: 'e', ciState: 'success' },
    pullRequest: pr, rollbackCommit: built, ...extra,
  };
}

function facts(r: AttemptRecord, extra: Partial<Facts> = {}): Facts {
  return {
    now, app: r.app, environment: r.environment, settings: r.settings, record: r, checks: [], suspended: false, nextCorrelationId: 'x',
    source: r.source!, health: { status: 'Degraded', revision: 'bad' }, human: {},
    pullRequest: { ref: pr, headSha: built.sha, base: 'main', rollbackCommit: built },
    approvalEnforcement: { enforced: true, since: '2026-12-06T00:00:00Z' },
    invariants: INVARIANT_IDS.map((id) => ({ id, result: id === 'I1_environment' && r.environment === 'production' ? 'FAIL' : 'PASS', detail: '', checkedAt: now.toISOString() })),
    ...extra,
  };
}

describe('the merge is bound to the rollback commit', () => {
  it('merges by the recorded SHA', () => {
    expect(decide(facts(record('AwaitingMergeApproval', 'staging'))).intents).toEqual([{ kind: 'mergePullRequest', number: 42, headSha: built.sha, method: 'squash' }]);
  });

  it('binds a record written before the rollback commit was kept to the one observe checked, and merges by it', () => {
    const legacy = record('AwaitingMergeApproval', 'staging', { rollbackCommit: undefined });
    const decision = decide(facts(legacy));
    expect(decision.record?.rollbackCommit).toEqual(built);
    expect(decision.intents).toEqual([{ kind: 'mergePullRequest', number: 42, headSha: built.sha, method: 'squash' }]);
  });

  it('aborts PullRequestChanged when the head moved, naming it and who made it; the PR is commented', () => {
    for (const state of ['PRCreated', 'AwaitingMergeApproval'] as const) {
      const decision = decide(facts(record(state, 'staging'), { pullRequest: { ref: pr, headSha: '9f8e7d6c5b', base: 'main', headAuthor: 'mallory <m@example.com>' } }));
      expect(decision.transition).toEqual({ from: state, to: 'Abort', reason: Reason.PullRequestChanged });
      expect(decision.record!.message).toBe('the head of #42 is 9f8e7d6, not the rollback commit 1a2b3c4; pushed by mallory <m@example.com>: not merged');
      expect(decision.intents).toMatchObject([{ kind: 'commentPullRequest', comment: expect.stringContaining('**PullRequestChanged**') }]);
    }
  });

  it('aborts PullRequestChanged when the base was retargeted away from the branch the app deploys', () => {
    const decision = decide(facts(record('AwaitingMergeApproval', 'staging'), { pullRequest: { ref: pr, headSha: built.sha, base: 'release', rollbackCommit: built } }));
    expect(decision.record).toMatchObject({ state: 'Abort', reason: Reason.PullRequestChanged, message: '#42 was retargeted to release; app deploys main: not merged' });
  });

  it('judges the base against the branch resolved when the attempt started (HEAD: the default branch), not main (issue 18 §5)', () => {
    const onMaster = record('AwaitingMergeApproval', 'staging', { branch: 'master', source: { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/app', targetRevision: 'HEAD' } });
    expect(decide(facts(onMaster, { pullRequest: { ref: pr, headSha: built.sha, base: 'master', rollbackCommit: built } })).intents).toEqual([
      { kind: 'mergePullRequest', number: 42, headSha: built.sha, method: 'squash' },
    ]);
    const retargeted = decide(facts(onMaster, { pullRequest: { ref: pr, headSha: built.sha, base: 'main', rollbackCommit: built } }));
    expect(retargeted.record).toMatchObject({ state: 'Abort', reason: Reason.PullRequestChanged, message: '#42 was retargeted to main; app deploys master: not merged' });
  });

  it('never adopts a PR found under the branch name whose head is not the rollback commit', () => {
    const decision = decide(facts(record('CandidateResolved', 'staging', { pullRequest: undefined, rollbackCommit: undefined }), {
      pullRequest: { ref: pr, headSha: 'abc', base: 'main', notRollback: 'it was opened by mallory, not by ai-operator-bot' },
    }));
    expect(decision.record).toMatchObject({ state: 'Abort', reason: Reason.PullRequestChanged });
    expect(decision.record!.message).toContain('is not this attempt\'s rollback (it was opened by mallory, not by ai-operator-bot)');
  });
});

describe('a production approval is bound to the commit and can be withdrawn', () => {
  it('records the commit an approval was given for, and merges by it', () => {
    const decision = decide(facts(record('AwaitingMergeApproval', 'production'), { human: { approval: { username: 'alice', writtenAt: now.toISOString() } } }));
    expect(decision.record!.approval).toEqual({ approvedBy: 'alice', approvedAt: now.toISOString(), commitSha: built.sha });
    expect(decision.intents).toContainEqual({ kind: 'mergePullRequest', number: 42, headSha: built.sha, method: 'squash' });
  });

  it('withdraws an approval whose annotation was removed: no merge, said once', () => {
    const approved = record('AwaitingMergeApproval', 'production', { approval: { approvedBy: 'alice', approvedAt: now.toISOString(), commitSha: built.sha } });
    const decision = decide(facts(approved));
    expect(decision.intents.some((i) => i.kind === 'mergePullRequest')).toBe(false);
    expect(decision.record).toMatchObject({ approval: undefined, approvalWithdrawn: { approvedBy: 'alice', detail: 'its annotation was removed' } });
    expect(decision.notes).toContainEqual(expect.objectContaining({ kind: 'approval-withdrawn', reason: 'ApprovalWithdrawn' }));
    expect(decide(facts(decision.record!)).notes.filter((n) => n.kind === 'approval-withdrawn')).toEqual([]);
  });

  it('does not count an approval recorded for another commit', () => {
    const stale = record('AwaitingMergeApproval', 'production', { approval: { approvedBy: 'alice', approvedAt: now.toISOString(), commitSha: 'ffffffffff' } });
    const decision = decide(facts(stale, { human: { approval: { username: 'alice' } } }));
    expect(decision.record!.approvalWithdrawn?.detail).toMatch(/^it was given for fffffff, not the rollback commit 1a2b3c4$/);
    expect(decision.intents.some((i) => i.kind === 'mergePullRequest')).toBe(false);
  });

  it('neither records nor removes an approval while enforcement is unknown', () => {
    const decision = decide(facts(record('AwaitingMergeApproval', 'production'), {
      human: { approval: { username: 'alice', writtenAt: now.toISOString() } }, approvalEnforcement: { enforced: false, unknown: true, problem: 'not checked yet' },
    }));
    expect(decision.record?.approval).toBeUndefined();
    expect(decision.intents.map((i) => i.kind)).not.toContain('removeApproval');
    expect(decision.intents.map((i) => i.kind)).not.toContain('mergePullRequest');
  });
});
