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

  it('says why when the pods of the current revision failed early while Argo CD said Progressing: the pods, reasons and restart counts (issue 21)', () => {
    const signal = {
      signal: 'CrashLoopBackOff', detail: 'the current revision of Deployment/web (revision 7d9f) fails early: …',
      pods: [
        { workload: 'Deployment/web', pod: 'web-7d9f-a', container: 'web', reason: 'CrashLoopBackOff', restarts: 4 },
        { workload: 'Deployment/web', pod: 'web-7d9f-b', container: 'web', reason: 'ImagePullBackOff', restarts: 0, waitingSeconds: 75 },
      ],
    };
    const body = pullRequestBody({
      ...ctx, record: { ...record, degradation: { ...record.degradation, signal } },
      checks: [{ at, status: 'Progressing', signal: 'CrashLoopBackOff' }, { at, status: 'Degraded' }],
    });
    expect(body).toContain('Argo CD reported **web** (staging) `Progressing` while the pods of its current revision failed early (`CrashLoopBackOff`) on 2 consecutive checks');
    expect(body).toContain('| 1 | 2026-11-22T00:00:00.000Z | Progressing, pods failing early (CrashLoopBackOff) | — |');
    expect(body).toContain('| 2 | 2026-11-22T00:00:00.000Z | Degraded | — |');
    expect(body).toContain('| `Deployment/web` | `web-7d9f-a` | `web` | CrashLoopBackOff | 4 | — |');
    expect(body).toContain('| `Deployment/web` | `web-7d9f-b` | `web` | ImagePullBackOff | 0 | 75 s |');
    expect(pullRequestBody(ctx)).not.toContain('failed early');
  });

  it('leaves the line out when the Deployments could not be read', () => {
    expect(pullRequestBody(ctx)).not.toContain('Rollout of the current revision');
  });

  it('lists the source set\'s paths with the files restored or deleted under each, the commit rolled back from, and the other apps it changes', () => {
    const shared = {
      ...ctx,
      record: { ...record, rolledBackFrom: 'c'.repeat(40), candidate: { ...record.candidate!, paths: ['apps/shop/base', 'apps/shop/overlays/staging'], deploymentId: 7 } },
      files: [{ path: 'apps/shop/base/deployment.yaml', change: 'restored' as const }, { path: 'apps/shop/base/new.yaml', change: 'deleted' as const }],
      affected: [{ namespace: 'argocd', name: 'shop-production', environment: 'production' as const, paths: ['apps/shop/base'] }],
    };
    const body = pullRequestBody(shared);
    expect(body).toContain('to its trees at `aaaaaaa` (deployment #7); nothing outside these paths changes:');
    expect(body).toContain('- `apps/shop/base`: `apps/shop/base/deployment.yaml` (restored), `apps/shop/base/new.yaml` (deleted: absent then)');
    expect(body).toContain('- `apps/shop/overlays/staging`: unchanged');
    expect(body).toContain('Rolled back from `ccccccc`, the last commit that changed the set at the deployed revision `bbbbbbb`.');
    expect(body).toContain('- **shop-production** (argocd, production): `apps/shop/base`');
    // Staging, but not merged on its own: an approver is asked for.
    expect(body).toContain('This is a **staging** rollback that also changes shop-production (production): apps/shop/base: ai-operator will not merge it on its own.');
    expect(pullRequestBody(ctx)).toContain('None: no other Application deploys a file this commit changes.');
    // A staging policy without approvers: nobody may approve here, and the body says what a human does instead.
    const nobody = pullRequestBody({ ...shared, record: { ...shared.record, settings: { ...shared.record.settings, approvers: { users: [], groups: [] } } } });
    expect(nobody).toContain('Note: the staging policy names no merge.approvers, so nobody may approve it here: a human merges the pull request on GitHub');
    expect(nobody).not.toContain('kubectl annotate');
  });
});
