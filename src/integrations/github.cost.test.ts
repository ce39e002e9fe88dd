// What a burst of rollbacks costs in GitHub requests (issue 23 §3): N apps of one
// monorepo degrade at once; the application reconciler (observe → decide → execute,
// as the operator wires it, 16 reconciles at a time) runs on the real GitHub client
// against the in-process simulator, Argo CD, the cluster and Prometheus being the
// fake world (no uptime data: CI-only candidate selection, as in `make bench`).
// Every request the simulator answered is counted by route and by purpose, for the
// opening of the PRs and for the polling while their CI is pending. Time is a fake
// clock shared by the operator and the simulator's secondary limits: an interval
// is 10 s, a minute of GitHub's limits is six of them.
//
// Measured before this change (60 apps): 15.78 requests per rollback to open
// (PR reads 4.97, tree/commit/ref writes 3, CI 2, ref and commit reads 2, PR and
// labels 2, history 1, trees 0.53, branch facts 0.27) and 3.03 per waiting PR per
// interval (CI 2, the PR 1). GITHUB_COST_APPS=N runs it with N apps.
import { describe, expect, it } from 'vitest';
import { FakeWorld, type FakeApp } from '../../dev/fakes/world.ts';
import { GITHUB_SECONDARY_LIMITS, startGitHubSim, type SecondaryLimits } from '../../dev/github-sim/index.ts';
import { loadConfig, policyDefaults } from '../config.ts';
import type { AttemptRecord } from '../fsm/record.ts';
import { createLogger } from '../observability/log.ts';
import { Metrics } from '../observability/metrics.ts';
import { settingsFrom } from '../policy/settings.ts';
import { ApplicationReconciler } from '../reconcilers/application.ts';
import { AttemptStore } from '../store/attempt-store.ts';
import { MemoryKV } from '../store/memory.ts';
import { GitHubClient } from './github.ts';
import type { GitHubLimits } from './github-budget.ts';

const N = Number(process.env.GITHUB_COST_APPS ?? 60);
const REPO = { owner: 'acme', repo: 'gitops' };
const INTERVAL = 10;
const defaults = policyDefaults(loadConfig({ GITHUB_ORG: 'acme', GITHUB_TOKEN: 'test-token' }));
const appName = (i: number) => `app-${String(i).padStart(4, '0')}`;

/** What each route is for, as the issue splits it. */
function purposeOf(route: string): string {
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

const sum = (counters: Record<string, number>) => Object.values(counters).reduce((a, b) => a + b, 0);

function minus(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]).filter(([, v]) => (v as number) > 0));
}

function perRollback(counters: Record<string, number>, n: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [route, count] of Object.entries(counters)) out[purposeOf(route)] = (out[purposeOf(route)] ?? 0) + count;
  return Object.fromEntries(Object.entries(out).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, Number((v / n).toFixed(2))]));
}

interface BurstOptions {
  apps: number;
  /** What the operator keeps (GITHUB_WRITES_PER_MINUTE, …). */
  limits: Partial<GitHubLimits>;
  /** What the simulator enforces, on the same clock. */
  simLimits: SecondaryLimits;
  /** Apps whose environment is production. */
  production?: (i: number) => boolean;
  maxTicks: number;
  pollTicks: number;
}

/** N apps degrade at once; every interval, each is reconciled. Until every PR is open, then `pollTicks` more. */
async function burst(options: BurstOptions) {
  let now = Date.now();
  const sim = await startGitHubSim({ validate: true, rateLimit: 1_000_000, secondaryLimits: options.simLimits, clock: () => now });
  try {
    const { token } = sim.control.addUser({ login: 'ai-operator-bot' });
    await sim.control.createRepo({ ...REPO, files: { 'README.md': '# GitOps\n' } });
    const files = (tag: string) => Object.fromEntries(Array.from({ length: options.apps }, (_, i) => [`apps/${appName(i)}/deployment.yaml`, `image: ${tag}\n`]));
    const { sha: good } = await sim.control.push({ ...REPO, files: files('v1'), message: 'Release v1' });
    const { sha: bad } = await sim.control.push({ ...REPO, files: files('v2'), message: 'Release v2 (broken)' });
    sim.control.setStatus({ ...REPO, sha: good, state: 'success', context: 'ci/build' });

    const kv = new MemoryKV();
    kv.now = () => now;
    const world = new FakeWorld(kv);
    const metrics = new Metrics();
    const github = new GitHubClient({
      baseUrl: sim.url, auth: { kind: 'token', token }, org: 'acme', metrics, budgetMetrics: metrics, now: () => now, sleep: async () => {},
      limits: options.limits, ciPollMs: 60_000, pullListMaxAgeMs: INTERVAL * 1000,
    });
    const production = options.production ?? (() => false);
    const reconciler = new ApplicationReconciler({
      store: new AttemptStore(kv, undefined, () => now), argocd: world, github, cluster: world, history: world, attempts: world, approvalEnforcement: world,
      monitoring: (app) => ({
        settings: settingsFrom(defaults, { detection: { intervalSeconds: INTERVAL }, merge: { approvers: { users: ['alice'] } } }),
        environment: app.labels.environment === 'production' ? 'production' : 'staging', suspended: false,
      }),
      audit: { record: async () => {} }, metrics, log: createLogger('ERROR'), argocdNamespace: 'argocd', clock: () => new Date(now),
      allowedOwner: 'acme', githubHosts: ['github.com'],
    });
    const deployedAt = new Date(now - 24 * 3600_000).toISOString();
    for (let i = 0; i < options.apps; i++) {
      const name = appName(i);
      const app: FakeApp = {
        ref: { namespace: 'argocd', name }, uid: `uid-${name}`, labels: { 'ai-operator.enabled': 'true', environment: production(i) ? 'production' : 'staging' }, health: 'Degraded',
        syncRevision: bad, history: [{ id: 0, revision: good, deployedAt }, { id: 1, revision: bad, deployedAt: new Date(now - 3600_000).toISOString() }],
        resources: [{ kind: 'Deployment', name, namespace: name }], destinationNamespace: name,
        source: { repoURL: 'https://github.com/acme/gitops.git', path: `apps/${name}`, targetRevision: 'main' },
        deployments: [{ name, desired: 1, updated: 1, available: 0, unavailable: 1, progressDeadlineExceeded: true }],
        uptime: {}, healthAfterMerge: 'Healthy',
      };
      await world.addApp(app);
    }
    const keys = Array.from({ length: options.apps }, (_, i) => `argocd/${appName(i)}`);
    const store = new AttemptStore(kv, undefined, () => now);
    /** What the waiting attempts' status said, once each. */
    const waitingSaid = new Set<string>();
    const tick = async () => {
      now += INTERVAL * 1000;
      let next = 0;
      await Promise.all(Array.from({ length: 16 }, async () => {
        while (next < keys.length) await reconciler.reconcile(keys[next++]!);
      }));
      for (const r of await store.allAttempts()) if (r.state === 'CandidateResolved' && r.retrying) waitingSaid.add(r.message);
    };
    const attempts = async (): Promise<AttemptRecord[]> => store.allAttempts();
    const opened = async () => (await attempts()).filter((r) => r.pullRequest).length;

    const start = sim.control.counters();
    let ticks = 0;
    while ((await opened()) < options.apps && ticks < options.maxTicks) {
      await tick();
      ticks++;
    }
    const atOpen = sim.control.counters();
    const openedAll = await opened();
    for (let i = 0; i < options.pollTicks; i++) await tick();
    const openCost = minus(atOpen, start);
    const pollCost = minus(sim.control.counters(), atOpen);
    const pulls = sim.control.pulls(REPO);
    return {
      ticks, openedAll, pulls, waitingSaid, answers: sim.control.answers(), violations: sim.violations(), records: await attempts(),
      metrics: await metrics.registry.metrics(),
      report: {
        apps: options.apps, intervalsToOpenAll: ticks,
        openingPerRollback: Number((sum(openCost) / options.apps).toFixed(2)), openingSplit: perRollback(openCost, options.apps),
        pollingPerRollbackPerInterval: Number((sum(pollCost) / options.apps / Math.max(1, options.pollTicks)).toFixed(2)),
        pollingSplit: perRollback(pollCost, options.apps * Math.max(1, options.pollTicks)),
      },
    };
  } finally {
    await sim.stop();
  }
}

describe(`GitHub requests of ${N} apps of one repository degrading at once`, () => {
  it('cost at most 8 requests per rollback to open its PR, and under half a request per waiting PR per interval', async () => {
    // Limits an Enterprise Server's administrator might set: what is measured here is requests, not waiting.
    const b = await burst({ apps: N, limits: { writesPerMinute: 1_000_000, writesPerHour: 1_000_000, pointsPerMinute: 1_000_000 }, simLimits: {}, maxTicks: 10, pollTicks: 12 });
    process.stdout.write(`${JSON.stringify(b.report)}\n`);
    expect(b.violations).toEqual([]);
    expect(b.openedAll).toBe(N);
    expect(b.pulls).toHaveLength(N);
    // Opening: the history of the app's path, one look for its PR, the five writes; the rest is shared.
    expect(b.report.openingPerRollback).toBeLessThanOrEqual(8);
    expect(b.report.openingSplit.history).toBe(1);
    expect(b.report.openingSplit['tree/commit/ref (writes)']).toBe(3);
    expect(b.report.openingSplit['PR and labels (writes)']).toBe(2);
    // Polling: CI of each rollback commit every minute (two requests), one list of the repository's open PRs per interval.
    expect(b.report.pollingPerRollbackPerInterval).toBeLessThanOrEqual(0.5);
    expect(b.report.pollingSplit.CI).toBeCloseTo(2 / 6, 1);
    expect(b.answers.secondaryRateLimited).toBe(0);
  }, Math.max(240_000, N * 1500));

  it('open every PR under GitHub\'s documented secondary limits, production first, with no secondary-rate-limit answer', async () => {
    const apps = 40;
    // 40 openings take 200 writes: 80 a minute lets 16 out in each minute.
    const b = await burst({
      apps, limits: {}, simLimits: GITHUB_SECONDARY_LIMITS, production: (i) => i % 8 === 7, maxTicks: 30, pollTicks: 0,
    });
    process.stdout.write(`${JSON.stringify({ ...b.report, answers: b.answers })}\n`);
    expect(b.violations).toEqual([]);
    expect(b.openedAll).toBe(apps);
    expect(b.answers.secondaryRateLimited).toBe(0);
    expect(b.answers.byStatus['403'] ?? 0).toBe(0);
    // Three minutes (18 intervals) or so: 16 openings a minute.
    expect(b.ticks).toBeGreaterThanOrEqual(14);
    expect(b.ticks).toBeLessThanOrEqual(24);
    // The attempts that waited said why, in their status.
    expect([...b.waitingSaid].some((m) => /^createPullRequest failed \(RATE_LIMITED\), retrying every interval: .*GitHub's write budget of this installation \(80 per minute, 500 per hour\)/.test(m))).toBe(true);
    // Production before staging: no staging attempt that had to wait opened its PR before a production one.
    const openedAt = (r: AttemptRecord) => Date.parse(r.transitions.find((t) => t.to === 'PRCreated')!.at);
    const first = Math.min(...b.records.map(openedAt));
    const [production, staging] = [b.records.filter((r) => r.environment === 'production'), b.records.filter((r) => r.environment === 'staging')];
    expect(production).toHaveLength(5);
    const lastProduction = Math.max(...production.map(openedAt));
    expect(lastProduction).toBeGreaterThan(first);
    expect(staging.filter((r) => openedAt(r) > first && openedAt(r) < lastProduction)).toEqual([]);
    expect(b.metrics).toMatch(/^ai_operator_github_write_wait_seconds_count [1-9]/m);
    expect(b.metrics).toMatch(/^ai_operator_github_secondary_rate_limits_total 0$/m);
  }, 240_000);
});
