// The candidate search over the scripted fake world: what its outcomes say.
import { describe, expect, it } from 'vitest';
import { FakeWorld, fakeSha, type FakeApp } from '../../dev/fakes/world.ts';
import { SETTINGS } from '../fsm/testing.ts';
import type { CommitInfo } from '../ports/github.ts';
import { MemoryKV } from '../store/memory.ts';
import { resolveCandidate } from './candidate-resolver.ts';

const now = new Date('2026-11-22T03:00:00Z');
const ago = (seconds: number) => new Date(now.getTime() - seconds * 1000).toISOString();
const repo = { owner: 'acme', repo: 'gitops' };

/** web: `good` deployed `goodSeconds` before `bad`, which runs now. */
async function world(goodSeconds: number, options: { commits?: number } = {}) {
  const w = new FakeWorld(new MemoryKV());
  const [good, bad] = [fakeSha('web:good'), fakeSha('web:bad')];
  const app: FakeApp = {
    ref: { namespace: 'argocd', name: 'web' }, labels: { environment: 'staging' }, health: 'Degraded', syncRevision: bad,
    history: [{ id: 0, revision: good, deployedAt: ago(100 + goodSeconds) }, { id: 1, revision: bad, deployedAt: ago(100) }],
    resources: [], source: { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/web', targetRevision: 'main' },
    deployments: [], uptime: { [good]: 1 }, healthAfterMerge: 'Healthy',
  };
  const commit = (sha: string, seconds: number): CommitInfo => ({ sha, message: sha, author: 'carol', date: ago(seconds), url: `https://github.example/c/${sha}` });
  await w.addApp(app);
  await w.setCommits('apps/web', [commit(bad, 100), commit(good, 100 + goodSeconds)].slice(0, options.commits ?? 2));
  await w.setCi(good, { state: 'success', runs: [{ name: 'ci', state: 'success' }] });
  return { w, app, good, bad };
}

describe('resolveCandidate', () => {
  it('states the deployed window for humans: a 72 s window is "72 s", not "0.0 h"', async () => {
    const { w, app, good, bad } = await world(72);
    const outcome = await resolveCandidate(w, w, { app, repo, settings: SETTINGS, currentRevision: bad, excluded: [], now });
    expect(outcome).toMatchObject({ kind: 'found', candidate: { revision: good } });
    expect(outcome.kind === 'found' && outcome.candidate.evidence).toBe('100.00% Healthy over 72 s deployed (minimum 99.00%)');
  });

  it('states a long window in hours', async () => {
    const { w, app, bad } = await world(3.5 * 3600);
    const outcome = await resolveCandidate(w, w, { app, repo, settings: SETTINGS, currentRevision: bad, excluded: [], now });
    expect(outcome.kind === 'found' && outcome.candidate.evidence).toContain('over 3.5 h deployed');
  });

  it('says plainly that no deployed revision is known, and asks GitHub nothing', async () => {
    for (const commits of [1, 2]) {
      const { w, app } = await world(3600, { commits });
      const outcome = await resolveCandidate(w, w, { app, repo, settings: SETTINGS, currentRevision: '', excluded: [], now });
      expect(outcome).toEqual({ kind: 'none', detail: 'Argo CD reports no deployed revision (status.sync.revision is empty): nothing to roll back from' });
      expect(await w.callCount('readRepositoryContent')).toBe(0);
    }
  });

  it('names the deployed revision when no older commit exists', async () => {
    const { w, app, bad } = await world(3600, { commits: 1 });
    const outcome = await resolveCandidate(w, w, { app, repo, settings: SETTINGS, currentRevision: bad, excluded: [], now });
    expect(outcome).toEqual({ kind: 'none', detail: `no commit of apps/web older than ${bad.slice(0, 7)} to roll back to` });
  });
});
