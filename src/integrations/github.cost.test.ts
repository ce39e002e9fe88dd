// What a burst of rollbacks costs in GitHub requests (issue 23 §3): N apps of one
// monorepo degrade at once; the application reconciler (observe → decide → execute,
// as the operator wires it, 16 reconciles at a time) runs on the real GitHub client
// against the in-process simulator, Argo CD, the cluster and Prometheus being the
// fake world (no uptime data: CI-only candidate selection, as in `make bench`).
// Every request the simulator answered is counted by route and by purpose, for the
// opening of the PRs and for the polling while their CI is pending.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeWorld, type FakeApp } from '../../dev/fakes/world.ts';
import { startGitHubSim, type GitHubSim } from '../../dev/github-sim/index.ts';
import { loadConfig, policyDefaults } from '../config.ts';
import { createLogger } from '../observability/log.ts';
import { Metrics } from '../observability/metrics.ts';
import { settingsFrom } from '../policy/settings.ts';
import { ApplicationReconciler } from '../reconcilers/application.ts';
import { AttemptStore } from '../store/attempt-store.ts';
import { MemoryKV } from '../store/memory.ts';
import { GitHubClient } from './github.ts';

const N = Number(process.env.GITHUB_COST_APPS ?? 60);
const REPO = { owner: 'acme', repo: 'gitops' };
const INTERVAL = 10;
const defaults = policyDefaults(loadConfig({ GITHUB_ORG: 'acme', GITHUB_TOKEN: 'test-token' }));
const appName = (i: number) => `app-${String(i).padStart(4, '0')}`;

/** What each route is for, as the issue splits it. */
export function purposeOf(route: string): string {
  if (route === 'GET /repos/{owner}/{repo}/commits') return 'history';
  if (/^GET \/repos\/\{owner\}\/\{repo\}\/git\/(trees|blobs)/.test(route)) return 'trees and files';
  if (/^GET \/repos\/\{owner\}\/\{repo\}\/git\/(ref|commits)/.test(route)) return 'refs and commits (reads)';
  if (/^(POST|PATCH) \/repos\/\{owner\}\/\{repo\}\/git\//.test(route)) return 'tree/commit/ref (writes)';
  if (route === 'POST /repos/{owner}/{repo}/pulls' || route === 'POST /repos/{owner}/{repo}/issues/{issue_number}/labels') return 'PR and labels (writes)';
  if (/^GET \/repos\/\{owner\}\/\{repo\}\/pulls/.test(route)) return 'PR reads';
  if (/\/status$|\/check-runs$/.test(route)) return 'CI';
  if (route.includes('/merge')) return 'merge';
  if (/^GET \/repos\/\{owner\}\/\{repo\}(\/branches|\/rules|$)/.test(route)) return 'branch facts';
  return route;
}

function sum(counters: Record<string, number>): number {
  return Object.values(counters).reduce((a, b) => a + b, 0);
}

function minus(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]).filter(([, v]) => (v as number) > 0));
}

function byPurpose(counters: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [route, n] of Object.entries(counters)) out[purposeOf(route)] = (out[purposeOf(route)] ?? 0) + n;
  return out;
}

const perRollback = (counters: Record<string, number>, n: number) =>
  Object.fromEntries(Object.entries(byPurpose(counters)).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, Number((v / n).toFixed(2))]));

describe(`GitHub requests per rollback, ${N} apps of one repository degrading at once`, () => {
  let sim: GitHubSim;
  let token: string;
  let good: string;
  let bad: string;

  beforeAll(async () => {
    sim = await startGitHubSim({ validate: true, rateLimit: 1_000_000 });
    ({ token } = sim.control.addUser({ login: 'ai-operator-bot' }));
    await sim.control.createRepo({ ...REPO, files: { 'README.md': '# GitOps\n' } });
    const files = (tag: string) => Object.fromEntries(Array.from({ length: N }, (_, i) => [`apps/${appName(i)}/deployment.yaml`, `image: ${tag}\n`]));
    ({ sha: good } = await sim.control.push({ ...REPO, files: files('v1'), message: 'Release v1' }));
    ({ sha: bad } = await sim.control.push({ ...REPO, files: files('v2'), message: 'Release v2 (broken)' }));
    sim.control.setStatus({ ...REPO, sha: good, state: 'success', context: 'ci/build' });
  }, 60_000);

  afterAll(async () => {
    expect(sim.violations()).toEqual([]);
    await sim.stop();
  });

  it('counts the requests of opening every PR, and of polling them while CI is pending', async () => {
    const kv = new MemoryKV();
    let now = Date.now();
    kv.now = () => now;
    const world = new FakeWorld(kv);
    const metrics = new Metrics();
    // Limits an Enterprise Server's administrator might set: what is measured here is requests, not waiting.
    const github = new GitHubClient({ baseUrl: sim.url, auth: { kind: 'token', token }, org: 'acme', metrics, now: () => now, sleep: async () => {}, limits: { writesPerMinute: 100_000, writesPerHour: 1_000_000 } });
    const reconciler = new ApplicationReconciler({
      store: new AttemptStore(kv, undefined, () => now), argocd: world, github, cluster: world, history: world, attempts: world, approvalEnforcement: world,
      monitoring: () => ({ settings: settingsFrom(defaults, { detection: { intervalSeconds: INTERVAL }, merge: { approvers: { users: ['alice'] } } }), environment: 'staging', suspended: false }),
      audit: { record: async () => {} }, metrics, log: createLogger('ERROR'), argocdNamespace: 'argocd', clock: () => new Date(now),
      allowedOwner: 'acme', githubHosts: ['github.com'],
    });
    const deployedAt = new Date(now - 24 * 3600_000).toISOString();
    for (let i = 0; i < N; i++) {
      const name = appName(i);
      const app: FakeApp = {
        ref: { namespace: 'argocd', name }, uid: `uid-${name}`, labels: { 'ai-operator.enabled': 'true', environment: 'staging' }, health: 'Degraded',
        syncRevision: bad, history: [{ id: 0, revision: good, deployedAt }, { id: 1, revision: bad, deployedAt: new Date(now - 3600_000).toISOString() }],
        resources: [{ kind: 'Deployment', name, namespace: name }], destinationNamespace: name,
        source: { repoURL: 'https://github.com/acme/gitops.git', path: `apps/${name}`, targetRevision: 'main' },
        deployments: [{ name, desired: 1, updated: 1, available: 0, unavailable: 1, progressDeadlineExceeded: true }],
        uptime: {}, healthAfterMerge: 'Healthy',
      };
      await world.addApp(app);
    }
    const keys = Array.from({ length: N }, (_, i) => `argocd/${appName(i)}`);
    /** One interval: every app reconciled, 16 at a time (the operator's workers). */
    const tick = async () => {
      now += INTERVAL * 1000;
      let next = 0;
      await Promise.all(Array.from({ length: 16 }, async () => {
        while (next < keys.length) await reconciler.reconcile(keys[next++]!);
      }));
    };
    const store = new AttemptStore(kv, undefined, () => now);
    const prsOpen = async () => (await store.allAttempts()).filter((r) => r.pullRequest).length;

    const start = sim.control.counters();
    let ticks = 0;
    while ((await prsOpen()) < N && ticks < 20) {
      await tick();
      ticks++;
    }
    const atOpen = sim.control.counters();
    const openCost = minus(atOpen, start);
    expect(await prsOpen()).toBe(N);
    const POLLS = 6;
    for (let i = 0; i < POLLS; i++) await tick();
    const pollCost = minus(sim.control.counters(), atOpen);

    const report = {
      apps: N, ticksToOpen: ticks,
      openingPerRollback: Number((sum(openCost) / N).toFixed(2)), openingSplit: perRollback(openCost, N),
      pollingPerRollbackPerInterval: Number((sum(pollCost) / N / POLLS).toFixed(2)), pollingSplit: perRollback(pollCost, N * POLLS),
      openingRoutes: openCost, pollingRoutes: pollCost,
    };
    process.stdout.write(`${JSON.stringify(report, null, 1)}\n`);
  }, 240_000);
});
