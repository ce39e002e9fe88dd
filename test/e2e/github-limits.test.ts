// GitHub's secondary rate limits on the real stack (issue 23 §3): 30 Applications
// of one GitOps repository degrade at once while the GitHub simulator enforces
// GitHub's documented secondary limits, content-creating requests lowered to 60 a
// minute (opening a rollback PR takes 5: 12 PRs a minute), and the operator runs
// with GITHUB_WRITES_PER_MINUTE=60. The operator (src/main.ts), the real etcd,
// NATS and API server; the Argo CD simulator reports the apps Degraded.
// Then every PR opens, in about three minutes, and GitHub never answers that a
// secondary limit was exceeded; the attempts that wait for their turn say so in
// their status; the wait is in ai_operator_github_write_wait_seconds. The requests
// per rollback, by purpose, are printed (what the bench reports at scale).
import { afterEach, describe, expect, inject, it } from 'vitest';
import { kubectlOk } from './support/kube.ts';
import { eventually } from './support/operator.ts';
import { createDeployedApplication, deployment, givenRollbackScenario, REPO, type Stopper } from './support/rollback-scenario.ts';

const stack = inject('stack');
const stoppers: Stopper[] = [];
afterEach(async () => { for (const stop of stoppers.splice(0).reverse()) await stop(); });

const APPS = 30;
const WRITES_PER_MINUTE = 60;
const ROLLBACK_BRANCHES = /^ai-operator\/rollback\//;

function purposeOf(route: string): string {
  if (route === 'GET /repos/{owner}/{repo}/commits') return 'history';
  if (/^(POST|PATCH) \/repos\/\{owner\}\/\{repo\}\/git\//.test(route)) return 'tree/commit/ref';
  if (route === 'POST /repos/{owner}/{repo}/pulls' || route.endsWith('/labels')) return 'PR and labels';
  if (/^GET \/repos\/\{owner\}\/\{repo\}\/pulls/.test(route)) return 'PR reads';
  if (/\/status$|\/check-runs$/.test(route)) return 'CI';
  return 'other reads';
}

const sample = (metrics: string, series: string) => Number(new RegExp(`^${series.replace(/[{}.*+?^$()|[\]\\]/g, '\\$&')} (\\S+)$`, 'm').exec(metrics)?.[1] ?? Number.NaN);

describe('GitHub\'s secondary rate limits', () => {
  it(`${APPS} apps degrading at once: every rollback PR opens within the limits, with no secondary-rate-limit answer`, async () => {
    // Given a GitOps repository whose 30 app paths were deployed from a good release 24 h ago
    const s = await givenRollbackScenario(stack, 'gh-limits', { environment: 'staging', startOperator: false }, stoppers);
    await kubectlOk(stack, ['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'ai-operator.io/v1alpha1', kind: 'RollbackPolicy', metadata: { name: 'burst', namespace: s.namespace },
      spec: { environment: 'staging', selector: { matchLabels: { group: 'burst' } }, detection: { intervalSeconds: 1, persistenceChecks: 3 }, cooldownSeconds: 0, maxAttemptsPerHour: 0 },
    }));
    const names = Array.from({ length: APPS }, (_, i) => `burst-${String(i).padStart(2, '0')}`);
    const manifests = (image: string, broken: boolean) => Object.fromEntries(names.map((app) => [`apps/${app}/deployment.yaml`, deployment(app, s.target, image, broken)]));
    const { sha: good } = await s.github.control.push({ ...REPO, files: manifests('v1', false), message: 'Release v1 of the burst apps' });
    s.ci(good, 'success');
    for (const app of names) await createDeployedApplication(stack, { namespace: s.namespace, name: app, environment: 'staging', path: `apps/${app}`, target: s.target, good, labels: { group: 'burst' } });

    // And GitHub enforcing its secondary limits, 60 content-creating requests a minute; the operator told the same
    s.github.control.setSecondaryLimits({ github: true, contentPerMinute: WRITES_PER_MINUTE, contentPerHour: 1000 });
    // (Its policy checks every second; POLL_INTERVAL_SEC as in production spaces its polls of the waiting PRs.)
    const operator = await s.startOperator({
      GITHUB_WRITES_PER_MINUTE: String(WRITES_PER_MINUTE), GITHUB_WRITES_PER_HOUR: '1000', POLL_INTERVAL_SEC: '10', CI_WAIT_TIMEOUT: '3600', LOG_LEVEL: 'WARN',
    });
    await eventually('the operator ready', async () => (await fetch(`http://127.0.0.1:${operator.httpPort}/readyz`)).ok, 60_000, 250);
    await eventually('the policy claimed', async () => (await kubectlOk(stack, ['get', 'rollbackpolicy', 'burst', '-n', s.namespace, '-o', 'jsonpath={.status.installation}'])).trim() !== '', 60_000, 250);
    s.github.control.resetCounters();
    s.github.control.resetAnswers();

    // When a broken release of all 30 is pushed (one commit) and Argo CD reports them Degraded
    const started = Date.now();
    const { sha: bad } = await s.github.control.push({ ...REPO, files: manifests('v2', true), message: 'Release v2 of the burst apps (broken)' });
    s.ci(bad, 'success');

    // Then the attempts that wait for their turn say why, in their status
    const said = new Set<string>();
    const pulls = await eventually(`${APPS} rollback PRs`, async () => {
      for (const r of await s.attempts()) if (r.state === 'CandidateResolved' && r.retrying) said.add(r.message);
      const open = s.github.control.pulls(REPO).filter((p) => ROLLBACK_BRANCHES.test(p.head) && p.state === 'open');
      return open.length === APPS ? open : undefined;
    }, 330_000, 1000).catch(async (error: Error) => {
      throw new Error(`${error.message}: ${JSON.stringify((await s.attempts()).map((r) => [r.app.name, r.state, r.message]))}\n${s.logs()}`);
    });
    const seconds = (Date.now() - started) / 1000;
    const counters = s.github.control.counters();
    const answers = s.github.control.answers();
    const metrics = await operator.metrics();

    // And every PR opened, one per app, with no secondary-rate-limit answer from GitHub
    expect(pulls).toHaveLength(APPS);
    // (an attempt records its PR once the opening is done, and the opening labels the PR after creating it: that
    // second write waits for its turn in the write budget, so the last records follow the last PRs by up to a minute)
    const recorded = await eventually('every attempt recording its PR', async () => {
      const apps = new Set((await s.attempts()).filter((r) => r.pullRequest).map((r) => r.app.name));
      return apps.size === APPS ? apps : undefined;
    }, 120_000, 500).catch(async () => new Set((await s.attempts()).filter((r) => r.pullRequest).map((r) => r.app.name)));
    expect(recorded.size).toBe(APPS);
    expect(answers.secondaryRateLimited).toBe(0);
    expect(answers.byStatus['403']).toBeUndefined();
    expect(sample(metrics, 'ai_operator_github_secondary_rate_limits_total')).toBe(0);
    // 150 writes at 60 a minute: no sooner than two minutes after the first
    expect(seconds).toBeGreaterThan(100);
    expect([...said].some((m) => /^createPullRequest failed \(RATE_LIMITED\), retrying every interval: .*GitHub's write budget of this installation \(60 per minute, 1000 per hour\) is spent/.test(m))).toBe(true);
    expect(sample(metrics, 'ai_operator_github_write_wait_seconds_count')).toBeGreaterThanOrEqual(APPS);
    // The last ones waited two minutes or so for their turn
    expect(metrics).toMatch(/^ai_operator_github_write_wait_seconds_bucket\{le="60"\} \d+$/m);
    expect(sample(metrics, 'ai_operator_github_write_wait_seconds_bucket{le="60"}')).toBeLessThan(APPS);

    // What the burst cost, per rollback and by purpose (CI of the PRs opened first polled meanwhile)
    const total = Object.values(counters).reduce((a, b) => a + b, 0);
    const split: Record<string, number> = {};
    for (const [route, n] of Object.entries(counters)) split[purposeOf(route)] = (split[purposeOf(route)] ?? 0) + n;
    console.info(`${APPS} PRs in ${seconds.toFixed(0)} s; GitHub requests per rollback: ${(total / APPS).toFixed(2)} ${JSON.stringify(Object.fromEntries(Object.entries(split).map(([k, v]) => [k, Number((v / APPS).toFixed(2))])))}; answers ${JSON.stringify(answers)}`);
    expect(total / APPS).toBeLessThanOrEqual(12);
    expect(operator.child.exitCode).toBeNull();
  }, 420_000);
});
