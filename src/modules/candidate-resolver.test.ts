// The candidate search over the scripted fake world: what its outcomes say.
import { describe, expect, it } from 'vitest';
import { FakeWorld, fakeSha, type FakeApp } from '../../dev/fakes/world.ts';
import { SETTINGS } from '../fsm/testing.ts';
import type { CommitInfo } from '../ports/github.ts';
import { IntegrationError } from '../ports/errors.ts';
import { MemoryKV } from '../store/memory.ts';
import { renderUptimeQuery, resolveCandidate } from './candidate-resolver.ts';
import { DEFAULT_UPTIME_QUERY } from '../config.ts';

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

describe('renderUptimeQuery', () => {
  it('measures one app instance: name and namespace, both escaped (issue 18 §6)', () => {
    expect(renderUptimeQuery(DEFAULT_UPTIME_QUERY, { name: 'web', namespace: 'team-a' }, 3600)).toBe(
      '(sum(count_over_time(argocd_app_info{name="web",namespace="team-a",health_status="Healthy"}[3600s])) or vector(0)) / sum(count_over_time(argocd_app_info{name="web",namespace="team-a"}[3600s]))');
    expect(renderUptimeQuery('q{namespace="$namespace"}', { name: 'x', namespace: 'a"b\\c' }, 1)).toBe('q{namespace="a\\"b\\\\c"}');
  });

  it('substitutes in one pass: a value is never read again for placeholders', () => {
    expect(renderUptimeQuery('q{name="$app",namespace="$namespace"}[$window]', { name: 'a$namespace$window', namespace: 'n' }, 90.7)).toBe('q{name="a$namespace$window",namespace="n"}[90s]');
  });
});

describe('resolveCandidate', () => {
  it('states the deployed window for humans: a 72 s window is "72 s", not "0.0 h"', async () => {
    const { w, app, good, bad } = await world(72);
    const outcome = await resolveCandidate(w, w, { app, repo, settings: SETTINGS, currentRevision: bad, excluded: [], now, clock: () => now });
    expect(outcome).toMatchObject({ kind: 'found', candidate: { revision: good } });
    expect(outcome.kind === 'found' && outcome.candidate.evidence).toBe('100.00% Healthy over 72 s deployed (minimum 99.00%)');
  });

  it('keeps the commits the rollback undoes with the candidate, newest first, first line only', async () => {
    const { w, app, good, bad } = await world(3600);
    await w.setCommits('apps/web', [
      { sha: bad, message: 'Break web\n\nLong explanation', author: 'carol', date: ago(100), url: 'https://github.example/c/bad' },
      { sha: good, message: 'Good web', author: 'dave', date: ago(3700), url: 'https://github.example/c/good' },
    ]);
    const outcome = await resolveCandidate(w, w, { app, repo, settings: SETTINGS, currentRevision: bad, excluded: [], now, clock: () => now });
    expect(outcome.kind === 'found' && outcome.candidate.undone).toEqual([
      { sha: bad, message: 'Break web', author: 'carol', date: ago(100), url: 'https://github.example/c/bad' },
    ]);
    // The set's history at what runs, once: the target is one of its commits, so what it reaches is read off it.
    expect(await w.callCount('readRepositoryContent')).toBe(1);
  });

  it('states a long window in hours', async () => {
    const { w, app, bad } = await world(3.5 * 3600);
    const outcome = await resolveCandidate(w, w, { app, repo, settings: SETTINGS, currentRevision: bad, excluded: [], now, clock: () => now });
    expect(outcome.kind === 'found' && outcome.candidate.evidence).toContain('over 3.5 h deployed');
  });

  it('says plainly that no deployed revision is known, and asks GitHub nothing', async () => {
    for (const commits of [1, 2]) {
      const { w, app } = await world(3600, { commits });
      const outcome = await resolveCandidate(w, w, { app, repo, settings: SETTINGS, currentRevision: '', excluded: [], now, clock: () => now });
      expect(outcome).toEqual({ kind: 'none', detail: 'Argo CD reports no deployed revision (status.sync.revision is empty): nothing to roll back from' });
      expect(await w.callCount('readRepositoryContent')).toBe(0);
    }
  });

  it('refuses a deployed revision that is not a commit SHA (a tag), and asks GitHub nothing', async () => {
    const { w, app } = await world(3600);
    const outcome = await resolveCandidate(w, w, { app, repo, settings: SETTINGS, currentRevision: 'v1.2.3', excluded: [], now, clock: () => now });
    expect(outcome).toEqual({ kind: 'none', detail: 'Argo CD reports the deployed revision as "v1.2.3", not a commit SHA: nothing to roll back from' });
    expect(await w.callCount('readRepositoryContent')).toBe(0);
  });

  it('without an earlier deployment (a new or recreated Application), chooses among the commits of its source set by CI alone', async () => {
    const { w, app, good, bad } = await world(3600);
    const outcome = await resolveCandidate(w, w, { app: { ...app, history: app.history.slice(1) }, repo, settings: SETTINGS, currentRevision: bad, excluded: [], now, clock: () => now });
    expect(outcome).toMatchObject({ kind: 'found', rolledBackFrom: bad, candidate: { revision: good, mode: 'ci-only', evidence: expect.stringContaining(`status.history holds no deployment before the one running ${bad.slice(0, 7)} (a new or recreated Application)`) } });
    expect(outcome.kind === 'found' && outcome.candidate.deploymentId).toBeUndefined();
  });

  it('names the deployed revision when neither an earlier deployment nor an earlier commit exists', async () => {
    const { w, app, bad } = await world(3600, { commits: 1 });
    const outcome = await resolveCandidate(w, w, { app: { ...app, history: app.history.slice(1) }, repo, settings: SETTINGS, currentRevision: bad, excluded: [], now, clock: () => now });
    expect(outcome).toEqual({ kind: 'none', detail: `status.history holds no deployment before the one running ${bad.slice(0, 7)} (a new or recreated Application), and no earlier commit changed its source set: nothing to roll back to` });
  });
});

describe('resolveCandidate: the search budget', () => {
  /** web runs `bad`; three older revisions were each deployed an hour and were 50% Healthy. */
  async function slowWorld() {
    const w = new FakeWorld(new MemoryKV());
    const [c3, c2, c1, bad] = ['c3', 'c2', 'c1', 'bad'].map((n) => fakeSha(`web:${n}`)) as [string, string, string, string];
    const app: FakeApp = {
      ref: { namespace: 'argocd', name: 'web' }, labels: { environment: 'staging' }, health: 'Degraded', syncRevision: bad,
      history: [c3, c2, c1, bad].map((revision, id) => ({ id, revision, deployedAt: ago(100 + (3 - id) * 3600) })),
      resources: [], source: { repoURL: 'https://github.com/acme/gitops.git', path: 'apps/web', targetRevision: 'main' },
      deployments: [], uptime: { [c1]: 0.5, [c2]: 0.5, [c3]: 0.5 }, healthAfterMerge: 'Healthy',
    };
    await w.addApp(app);
    await w.setCommits('apps/web', [bad, c1, c2, c3].map((sha, i): CommitInfo => ({ sha, message: sha, author: 'carol', date: ago(100 + i * 3600), url: `https://github.example/c/${sha}` })));
    return { w, app, bad };
  }

  /** A clock that moves only when Prometheus is asked: each query takes `secondsPerQuery`. */
  function slowPrometheus(w: FakeWorld, secondsPerQuery: number) {
    let t = now.getTime();
    const queries: number[] = [];
    return {
      clock: () => new Date(t),
      queries,
      metrics: { uptime: async (query: string, at: number) => { queries.push(at); t += secondsPerQuery * 1000; return w.uptime(query, at); } },
    };
  }

  it('stops once the budget measured on the injected clock is spent, naming how many commits it measured', async () => {
    const { w, app, bad } = await slowWorld();
    const slow = slowPrometheus(w, 60);
    const outcome = await resolveCandidate(w, slow.metrics, {
      app, repo, settings: { ...SETTINGS, searchTimeoutSeconds: 100 }, currentRevision: bad, excluded: [], now, clock: slow.clock,
    });
    // 0 s and 60 s are within 100 s; at 120 s the third commit is not asked about.
    expect(outcome).toEqual({ kind: 'timeout', detail: 'candidate search exceeded 100 s after 2 deployment(s)' });
    expect(slow.queries).toHaveLength(2);
  });

  it('measures every commit when the same clock stays within the budget', async () => {
    const { w, app, bad } = await slowWorld();
    const slow = slowPrometheus(w, 60);
    const outcome = await resolveCandidate(w, slow.metrics, {
      app, repo, settings: { ...SETTINGS, searchTimeoutSeconds: 180 }, currentRevision: bad, excluded: [], now, clock: slow.clock,
    });
    expect(outcome).toMatchObject({ kind: 'none', detail: expect.stringMatching(/^no deployment reached 99.00% uptime: #2 .*: 50.00%, #1 .*: 50.00%, #0 .*: 50.00%$/) });
    expect(slow.queries).toHaveLength(3);
  });
});

describe('resolveCandidate: candidates are deployments of the source set (issue 18 §2)', () => {
  const URL = 'https://github.com/acme/gitops.git';
  const commit = (sha: string, seconds: number, message = sha): CommitInfo => ({ sha, message, author: 'carol', date: ago(seconds), url: `https://github.example/c/${sha}` });
  const [good, bad, other, innocent] = ['good', 'bad', 'other', 'innocent'].map((n) => fakeSha(`mono:${n}`)) as [string, string, string, string];
  const base = (image: string) => `apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: shop}\nspec: {template: {spec: {containers: [{name: shop, image: ${image}}]}}}\n`;

  /** Kustomize: overlays/staging over a shared base; each commit's files scripted, so digests are of real content. */
  async function kustomizeWorld(history: Array<{ sha: string; files: Record<string, string>; seconds: number }>) {
    const w = new FakeWorld(new MemoryKV());
    for (const h of history) await w.setFilesAt(h.sha, h.files);
    const current = history[history.length - 1]!.sha;
    const app: FakeApp = {
      ref: { namespace: 'argocd', name: 'shop-staging' }, labels: { environment: 'staging' }, health: 'Degraded', syncRevision: current,
      history: history.map((h, id) => ({ id, revision: h.sha, deployedAt: ago(h.seconds) })),
      resources: [], source: { repoURL: URL, path: 'apps/shop/overlays/staging', targetRevision: 'main' },
      deployments: [], uptime: {}, healthAfterMerge: 'Healthy',
    };
    return { w, app };
  }

  const files = (image: string, annotation = '') => ({
    'apps/shop/base/kustomization.yaml': 'resources: [deployment.yaml]\n',
    'apps/shop/base/deployment.yaml': base(image),
    'apps/shop/overlays/staging/kustomization.yaml': `resources: [../../base]\n${annotation ? `commonAnnotations: {note: ${annotation}}\n` : ''}`,
    'apps/b/config.yaml': 'b: 1\n',
  });

  it('a bad base under an innocent overlay commit: restores the base and the overlay to the last good deployment, lists both commits undone', async () => {
    const { w, app } = await kustomizeWorld([
      { sha: good, files: files('v1'), seconds: 7200 },
      { sha: innocent, files: files('v1', 'hi'), seconds: 3600 },
      { sha: bad, files: files('v2-broken', 'hi'), seconds: 100 },
    ]);
    await w.setCommits('apps/shop/overlays/staging', [commit(innocent, 3600), commit(good, 7200)]);
    await w.setCommits('apps/shop/base', [commit(bad, 100), commit(good, 7200)]);
    const uptime = { [good]: 1, [innocent]: 1 };
    const metrics = { uptime: async (query: string, at: number) => w.uptime(query, at) };
    await w.addApp({ ...app, uptime });
    const outcome = await resolveCandidate(w, metrics, { app, repo, settings: SETTINGS, currentRevision: bad, excluded: [], now, clock: () => now });
    // The newest deployment that differs and was stable: the innocent overlay's own, which keeps its annotation.
    expect(outcome).toMatchObject({ kind: 'found', rolledBackFrom: bad, candidate: { revision: innocent, deploymentId: 1, paths: ['apps/shop/base', 'apps/shop/overlays/staging'] } });
    expect(outcome.kind === 'found' && outcome.candidate.undone?.map((c) => c.sha)).toEqual([bad]);
  });

  it('in a monorepo: another app\'s later commit is what Argo CD synced; the bad commit is what is rolled back from, its deployment skipped as the same source', async () => {
    const { w, app } = await kustomizeWorld([
      { sha: good, files: files('v1'), seconds: 7200 },
      { sha: bad, files: files('v2-broken'), seconds: 600 },
      { sha: other, files: { ...files('v2-broken'), 'apps/b/config.yaml': 'b: 2\n' }, seconds: 100 },
    ]);
    await w.setCommits('apps/shop/base', [commit(bad, 600), commit(good, 7200)]);
    await w.setCommits('apps/shop/overlays/staging', [commit(good, 7200)]);
    await w.addApp({ ...app, uptime: { [good]: 1, [bad]: 1 } });
    const outcome = await resolveCandidate(w, w, { app, repo, settings: SETTINGS, currentRevision: other, excluded: [], now, clock: () => now });
    expect(outcome).toMatchObject({ kind: 'found', rolledBackFrom: bad, candidate: { revision: good, deploymentId: 0 } });
    expect(outcome.kind === 'found' && outcome.candidate.undone?.map((c) => c.sha)).toEqual([bad]);
  });

  it('never chooses a deployment whose source is one rolled back from before, whatever commit it was deployed at', async () => {
    const { w, app } = await kustomizeWorld([
      { sha: good, files: files('v1'), seconds: 7200 },
      { sha: bad, files: files('v2-broken'), seconds: 3600 },
      { sha: other, files: files('v3-also-broken'), seconds: 100 },
    ]);
    await w.setCommits('apps/shop/base', [commit(other, 100), commit(bad, 3600), commit(good, 7200)]);
    await w.addApp({ ...app, uptime: { [good]: 1, [bad]: 1 } });
    const outcome = await resolveCandidate(w, w, { app, repo, settings: SETTINGS, currentRevision: other, excluded: [bad], now, clock: () => now });
    expect(outcome).toMatchObject({ kind: 'found', candidate: { revision: good } });
  });

  it('passes over a rolled-back-from commit, or a deployment, that a force push took out of the repository', async () => {
    const { w, app } = await kustomizeWorld([
      { sha: good, files: files('v1'), seconds: 7200 },
      { sha: bad, files: files('v2-broken'), seconds: 100 },
    ]);
    await w.setCommits('apps/shop/base', [commit(bad, 100), commit(good, 7200)]);
    await w.addApp({ ...app, uptime: { [good]: 1 } });
    await w.setCi(good, { state: 'success', runs: [{ name: 'ci', state: 'success' }] });
    const gone = fakeSha('rewritten');
    const absent = () => Promise.reject(new IntegrationError('contentDigest', 'NOT_FOUND', 'HTTP 404'));
    const github = Object.assign(Object.create(w) as FakeWorld, {
      contentDigest: (r: typeof repo, sha: string, paths: string[]) => (sha === gone ? absent() : w.contentDigest(r, sha, paths)),
      listFilesAt: (r: typeof repo, sha: string, prefix: string) => (sha === gone ? absent() : w.listFilesAt(r, sha, prefix)),
    });
    const withGone = { ...app, history: [...app.history, { id: 0.5, revision: gone, deployedAt: ago(3600) }] };
    const outcome = await resolveCandidate(github, w, { app: withGone, repo, settings: SETTINGS, currentRevision: bad, excluded: [gone], now, clock: () => now });
    expect(outcome).toMatchObject({ kind: 'found', candidate: { revision: good } });
  });

  it('skips a deployment whose Helm-repository chart version differs from the spec\'s: the change is not in Git', async () => {
    const { w, app } = await kustomizeWorld([
      { sha: good, files: files('v1'), seconds: 7200 },
      { sha: bad, files: files('v2-broken'), seconds: 100 },
    ]);
    await w.setCommits('apps/shop/base', [commit(bad, 100), commit(good, 7200)]);
    await w.addApp({ ...app, uptime: { [good]: 1 } });
    const charted = { ...app, rendered: { source: { repoURL: URL, path: 'apps/shop/overlays/staging' }, charts: ['https://charts.example.com redis@9.2.0'] },
      history: app.history.map((h) => ({ ...h, charts: [`https://charts.example.com redis@${h.revision === good ? '9.1.0' : '9.2.0'}`] })) };
    const outcome = await resolveCandidate(w, w, { app: charted, repo, settings: SETTINGS, currentRevision: bad, excluded: [], now, clock: () => now });
    expect(outcome).toMatchObject({ kind: 'none', detail: expect.stringContaining('deployed https://charts.example.com redis@9.1.0, not https://charts.example.com redis@9.2.0 as now') });
  });
});
