import { describe, expect, it } from 'vitest';
import type { AttemptRecord } from '../fsm/record.ts';
import { Reason } from '../fsm/table.ts';
import { SETTINGS } from '../fsm/testing.ts';
import { pullRequestBody, type PullRequestContext } from './pr-generator.ts';

const at = '2026-11-22T00:00:00.000Z';
const record: AttemptRecord = {
  correlationId: '00000000-0000-4000-8000-000000000001', app: { namespace: 'argocd', name: 'web' }, environment: 'staging', settings: SETTINGS,
  state: 'CandidateResolved', reason: Reason.DegradationObserved, message: '', since: at, version: 3, createdAt: at,
  degradation: { firstSeenAt: at, checks: 3 }, currentRevision: 'b'.repeat(40),
  candidate: { revision: 'a'.repeat(40), shortRevision: 'aaaaaaa', uptime: null, mode: 'ci-only', evidence: 'CI-only selection', ciState: 'success' },
  invariants: [], transitions: [],
};
const ctx: PullRequestContext = {
  record, checks: [{ at, status: 'Degraded' }], undone: [], invariants: [], files: [], affected: [],
  app: { ref: record.app, labels: {}, history: [], resources: [], source: { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/web', targetRevision: 'main' } },
};

describe('the PR body', () => {
  it('shows each Deployment\'s rollout of the current revision, as I3 reads it', () => {
    const body = pullRequestBody({ ...ctx, deployments: [
      { name: 'web', desired: 2, updated: 1, available: 2, unavailable: 1, progressDeadlineExceeded: true },
      { name: 'worker', desired: 1, updated: 1, available: 1, unavailable: 0, progressDeadlineExceeded: false },
    ] });
    expect(body).toContain('Rollout of the current revision: `web: 1/2 updated, 2 available, 1 unavailable, ProgressDeadlineExceeded`, `worker: 1/1 updated, 1 available, 0 unavailable`.');
  });

  it('leaves the line out when the Deployments could not be read', () => {
    expect(pullRequestBody(ctx)).not.toContain('Rollout of the current revision');
  });
});
