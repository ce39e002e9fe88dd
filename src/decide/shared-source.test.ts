// Two apps rendering one shared source (issue 18 §4): a staging rollback that changes what production
// deploys waits for an approver, and a second attempt never opens a second PR restoring the same files.
import { describe, expect, it } from 'vitest';
import { INVARIANT_IDS, type AttemptRecord } from '../fsm/record.ts';
import { decide, type Facts, type Preflight } from './machine.ts';
import { Reason, type State } from '../fsm/table.ts';
import { SETTINGS } from '../fsm/testing.ts';

const now = new Date('2026-12-06T12:00:00Z');
const later = (seconds: number) => new Date(now.getTime() + seconds * 1000);
const pr = { number: 42, url: 'https://github.example/acme/gitops/pull/42', branch: 'ai-operator/rollback/shop-staging-00000000', state: 'open' as const };
const built = { sha: '1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d', tree: 't', parent: 'p' };
const production = { namespace: 'argocd', name: 'shop-production', environment: 'production' as const, paths: ['apps/shop/base'] };

function record(state: State, extra: Partial<AttemptRecord> = {}): AttemptRecord {
  return {
    correlationId: '00000000-0000-4000-8000-000000000042', app: { namespace: 'argocd', name: 'shop-staging' }, environment: 'staging',
    source: { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/shop/overlays/staging', targetRevision: 'main' },
    settings: { ...SETTINGS, approvers: { users: ['alice'], groups: [] } }, state, reason: Reason.StableCandidateFound, message: '', since: now.toISOString(), version: 5,
    createdAt: now.toISOString(), degradation: { firstSeenAt: now.toISOString(), checks: 3 }, invariants: [], transitions: [], currentRevision: 'bad',
    candidate: { revision: 'good', shortRevision: 'good', uptime: 1, mode: 'metrics', evidence: 'e', ciState: 'success', paths: ['apps/shop/base', 'apps/shop/overlays/staging'] },
    ...extra,
  };
}

const passing = (id: string) => ({ id, result: 'PASS', detail: '', checkedAt: now.toISOString() }) as AttemptRecord['invariants'][number];

function facts(r: AttemptRecord, extra: Partial<Facts> = {}): Facts {
  return {
    now, app: r.app, environment: r.environment, settings: r.settings, record: r, checks: [], suspended: false, nextCorrelationId: 'x',
    source: r.source!, health: { status: 'Degraded', revision: 'bad' }, human: {},
    approvalEnforcement: { enforced: true, since: '2026-12-06T00:00:00Z' },
    ...extra,
  };
}

const preflight = (extra: Partial<Preflight> = {}): Preflight => ({
  invariants: INVARIANT_IDS.map(passing), changedFiles: 1, base: 'main', files: [{ path: 'apps/shop/base/deployment.yaml', change: 'restored' }], affected: [], ...extra,
});

describe('a rollback of a shared source', () => {
  it('keeps the blast radius with the PR it opens', () => {
    const opened = decide(facts(record('CandidateResolved'), {
      preflight: preflight({ affected: [production] }), pullRequestJustOpened: true,
      pullRequest: { ref: pr, headSha: built.sha, base: 'main', rollbackCommit: built },
    }));
    expect(opened.transition).toMatchObject({ to: 'PRCreated', reason: 'PullRequestOpened' });
    expect(opened.record?.affected).toEqual([production]);
  });

  it('reads the blast radius first for a PR found after a restart, then keeps it', () => {
    const adopted = facts(record('CandidateResolved'), { pullRequest: { ref: pr, headSha: built.sha, base: 'main', rollbackCommit: built } });
    expect(decide(adopted).needs).toBe('preflight');
    expect(decide({ ...adopted, preflight: preflight({ affected: [production] }) }).record?.affected).toEqual([production]);
  });

  it('is not auto-merged in staging when it changes what production deploys: the approval is asked for, and an authorized one merges it', () => {
    const awaiting = record('AwaitingMergeApproval', { pullRequest: pr, rollbackCommit: built, affected: [production] });
    const invariants = INVARIANT_IDS.map((id) => (id === 'I1_environment' ? { ...passing(id), result: 'FAIL' as const, detail: 'environment is staging, but the rollback also changes shop-production (production): apps/shop/base: a human approves' } : passing(id)));
    const base = { pullRequest: { ref: pr, headSha: built.sha, base: 'main', rollbackCommit: built }, invariants };
    const waiting = decide(facts(awaiting, base));
    expect(waiting.intents).toEqual([{ kind: 'requestApproval', number: 42 }]);
    const approved = decide(facts({ ...awaiting, approvalRequestedAt: now.toISOString() }, { ...base, human: { approval: { username: 'alice', writtenAt: later(1).toISOString() } } }));
    expect(approved.record?.approval).toMatchObject({ approvedBy: 'alice', commitSha: built.sha });
    expect(approved.intents).toContainEqual({ kind: 'mergePullRequest', number: 42, headSha: built.sha, method: 'squash' });
    // Without the blast radius, the same facts merge at once.
    expect(decide(facts({ ...awaiting, affected: [] }, { ...base, invariants: INVARIANT_IDS.map(passing) })).intents).toEqual([{ kind: 'mergePullRequest', number: 42, headSha: built.sha, method: 'squash' }]);
  });

  it('merged by the operator after an approval is ApprovedAndMerged, not AutoMerged', () => {
    const awaiting = record('AwaitingMergeApproval', { pullRequest: pr, rollbackCommit: built, affected: [production], approval: { approvedBy: 'alice', approvedAt: now.toISOString(), commitSha: built.sha } });
    const merged = decide(facts(awaiting, { pullRequest: { ref: { ...pr, state: 'merged' }, headSha: built.sha, base: 'main', mergedByOperator: true, mergeCommitSha: 'm' } }));
    expect(merged.transition).toMatchObject({ to: 'RollbackMerged', reason: 'ApprovedAndMerged' });
  });

  it('a second attempt waits for the open rollback PR restoring the same files, opens none, and leaves when health comes back', () => {
    const production = record('CandidateResolved', { app: { namespace: 'argocd', name: 'shop-production' }, environment: 'production' });
    const other = { number: 42, title: 'Rollback shop-staging (staging) to good' };
    const waiting = decide(facts(production, { preflight: preflight({ competing: [other] }) }));
    expect(waiting.intents).toEqual([]);
    expect(waiting.transition).toBeUndefined();
    expect(waiting.record?.message).toBe('waiting for rollback pull request #42 (Rollback shop-staging (staging) to good), which already changes files of this app\'s source set: no second pull request restoring them is opened');
    // Its merge healed this app too.
    expect(decide(facts(waiting.record!, { now: later(30), health: { status: 'Healthy', revision: 'merged' } })).transition).toMatchObject({ to: 'Idle', reason: 'HealthRestoredBeforeMerge' });
    // Closed without a merge: this attempt opens its own.
    expect(decide(facts(waiting.record!, { now: later(30), preflight: preflight() })).intents).toMatchObject([{ kind: 'openPullRequest' }]);
  });

  it('once the PR it waited for merged, waits for Argo CD to deploy it: never NothingToRollBack while the branch already holds the restore', () => {
    const other = { number: 42, title: 'Rollback shop-staging (staging) to good' };
    const waiting = decide(facts(record('CandidateResolved', { app: { namespace: 'argocd', name: 'shop-production' }, environment: 'production' }), { preflight: preflight({ competing: [other] }) })).record!;
    expect(waiting.waitingFor).toEqual(other);
    // Merged: no longer open, and the branch already matches the target — but the app still runs the bad source.
    const merged = decide(facts(waiting, { now: later(10), preflight: preflight({ changedFiles: 0, files: [] }) }));
    expect(merged.transition).toBeUndefined();
    expect(merged.intents).toEqual([]);
    expect(merged.record?.message).toBe('rollback pull request #42 (Rollback shop-staging (staging) to good) was merged and restores this app\'s source set too: waiting for Argo CD to deploy it');
    // Argo CD deploys it: Healthy ends the attempt.
    expect(decide(facts(merged.record!, { now: later(20), health: { status: 'Healthy', revision: 'merged' } })).transition).toMatchObject({ to: 'Idle', reason: 'HealthRestoredBeforeMerge' });
    // An attempt that never waited for anyone still says the degradation is not in Git.
    expect(decide(facts(record('CandidateResolved'), { preflight: preflight({ changedFiles: 0, files: [] }) })).transition).toMatchObject({ to: 'Abort', reason: 'NothingToRollBack' });
  });

  it('gives up on a competing PR still open after the approval timeout, without opening one', () => {
    let r = record('CandidateResolved', { environment: 'production' });
    const other = { number: 42, title: 'Rollback shop-staging (staging) to good' };
    let t = 0;
    for (let i = 0; i < 10_000 && r.state === 'CandidateResolved'; i++) {
      t += SETTINGS.intervalSeconds;
      const d = decide(facts(r, { now: later(t), preflight: preflight({ competing: [other] }) }));
      expect(d.intents).toEqual([]);
      r = d.record ?? r;
    }
    expect(r).toMatchObject({ state: 'Abort', reason: 'InvariantViolated', message: expect.stringContaining('rollback pull request #42 (Rollback shop-staging (staging) to good) still open after') });
    expect(t).toBeGreaterThanOrEqual(SETTINGS.approvalTimeoutSeconds);
  });
});

describe('the invariants, evaluated by decide() from the raw facts observe read', () => {
  const raw = { environment: 'staging' as const, health: 'Degraded' as const, persistenceChecks: 3, intervalSeconds: 10, beforePullRequest: true,
    deployments: [{ name: 'shop', desired: 1, updated: 1, available: 0, unavailable: 1, progressDeadlineExceeded: true }],
    checks: [0, 10, 20].map((s) => ({ at: new Date(now.getTime() - (30 - s) * 1000).toISOString(), status: 'Degraded' as const, revision: 'bad' })),
    candidate: { uptime: 1, minUptime: 0.99, mode: 'metrics' as const, ciState: 'success' as const, evidence: 'e' } };

  it('opens the PR on I1–I5 as the merge verdict evaluates them', () => {
    const decision = decide(facts(record('CandidateResolved'), { preflight: { invariantFacts: raw, changedFiles: 1, base: 'main', affected: [] } }));
    const open = decision.intents.find((i) => i.kind === 'openPullRequest');
    expect(open && open.kind === 'openPullRequest' && open.preflight.invariants?.filter((i) => i.result === 'PASS').map((i) => i.id)).toEqual(
      ['I1_environment', 'I2_health_degraded', 'I3_replica_shortage', 'I4_persistence', 'I5_stable_previous']);
  });

  it('refuses the PR when the raw facts fail one of them: no Deployment short of replicas (I3)', () => {
    const decision = decide(facts(record('CandidateResolved'), { preflight: { invariantFacts: { ...raw, deployments: [{ name: 'shop', desired: 1, updated: 1, available: 1, unavailable: 0, progressDeadlineExceeded: false }] }, changedFiles: 1, base: 'main', affected: [] } }));
    expect(decision.transition).toMatchObject({ to: 'Abort', reason: 'InvariantViolated' });
    expect(decision.record?.invariants.find((i) => i.id === 'I3_replica_shortage')?.result).toBe('FAIL');
  });
});
